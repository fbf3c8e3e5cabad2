"""The button macros against fake xlwings books (issue 5): exactly which cells are written.

`fill_tiers` must write the output columns and nothing else — never an input cell, never a
formula cell, never a cell outside the table's output columns (except its audit row on 审计) —
create missing output columns after the table, evaluate every row even when some are bad,
and record an audit row.
"""
from __future__ import annotations

import datetime as dt

import pytest
import xlwings as xw

from addin import excel_io, macros
from addin import tiering as tg
from engine import api
from engine.errors import Problem
from tests.fake_excel import ExcelError, FakeBook, book_with

AS_OF = dt.datetime(2024, 6, 30)
HEADER = ["担保业务编号", "被担保人名称", "分类基准日", "担保起始日", "主债务逾期天数", "资产负债率",
          "销售收入同比变动", "反担保覆盖率", "最近回访日期"]
OUTPUT_HEADERS = ["状态", "错误", "备注", "预警信号数", "风险分类", "触发规则", "逾期对应五级分类", "回访类型",
                  "回访频率", "下次回访日期", "回访状态", "回访计划报送截止日", "还款提醒日", "主责人", "协同人",
                  "年度时间预算(天)", "可否新增担保", "错误说明"]


def loan(gid, overdue, as_of=AS_OF, ratio=0.5, last_visit=dt.datetime(2024, 6, 1)):
    return [gid, "甲公司", as_of, dt.datetime(2024, 1, 1), overdue, ratio, 0.1, 1.2, last_visit]


def review_book(rows, top=3, params=None):
    """A 在保 sheet with a title in A1 and the table's header on row `top` (no ListObject)."""
    book = book_with("在保", "参数")
    sheet = book.sheet("在保")
    sheet.put(1, 1, [["在保客户风险分类表 2024Q2"]])
    sheet.put(top, 1, [HEADER, *rows])
    if params:
        book.sheet("参数").put(1, 1, params)
    return book, sheet


def snapshot(sheet):
    return dict(sheet.cells)


def cells_of_column(sheet, header_row, col, n):
    return [sheet.cells.get((header_row + 1 + i, col)) for i in range(n)]


# --------------------------------------------------------------------------- fill_tiers
def test_fill_writes_only_the_output_columns_and_evaluates_every_row():
    rows = [loan("G1", 120.0), loan("G2", "abc", ratio=ExcelError("#N/A")), [None] * 9, loan("G3", 0.0, as_of=None),
            loan("G4", 5.0)]
    book, sheet = review_book(rows, params=[["参数", "值"], ["as_of_date", AS_OF]])
    before = snapshot(sheet)

    summary = macros.fill_tiers(book=book)

    assert summary is not None and summary.ruleset == "guarantee"
    width, first_new = len(HEADER), len(HEADER) + 1
    new_cols = range(first_new, first_new + len(OUTPUT_HEADERS))
    written = sheet.written_cells()
    # exactly the output columns over the header row and the five table rows; nothing else
    assert written == {(r, c) for r in range(3, 3 + 1 + len(rows)) for c in new_cols}
    assert not any(c <= width for _r, c in written)
    for key, value in before.items():  # every input cell (and the title) is unchanged
        assert sheet.cells.get(key) == value
    assert [sheet.cells.get((3, c)) for c in new_cols] == OUTPUT_HEADERS

    def out(header):
        return cells_of_column(sheet, 3, first_new + OUTPUT_HEADERS.index(header), len(rows))

    assert out("状态") == ["OK", "ERROR", None, "OK", "OK"]
    assert out("风险分类") == ["风险", "待定", None, "良好", "关注"]
    assert out("错误")[1] == "INVALID:overdue_days;INVALID:asset_liability_ratio"
    assert out("错误说明") == [None, "#ERR 主债务逾期天数: 'abc' 不是整数; 资产负债率: '#N/A' 不是数字或百分比",
                            None, None, None]
    assert out("下次回访日期")[0] == dt.datetime(2024, 6, 30)  # a real date cell, not text
    assert out("年度时间预算(天)")[0] == 24
    # the blank as_of_date of G3 was graded with the 参数 sheet's date but stays blank itself
    assert sheet.cells.get((3 + 4, 3)) is None and out("回访计划报送截止日")[3] == dt.datetime(2024, 7, 10)
    assert (summary.rows, summary.ok, summary.error, summary.blank) == (4, 3, 1, 1)
    date_col = first_new + OUTPUT_HEADERS.index("下次回访日期")
    assert (4, date_col, "yyyy-mm-dd") in sheet.format_writes


def test_audit_row_reads_a_serial_as_of_date_in_the_workbook_s_date_system():
    """A 1904 workbook's serial 43646 is 2023-07-01, not 2019-06-30: the audit row says the date
    the rows were graded with."""
    for date1904, expected in ((False, "2019-06-30"), (True, "2023-07-01")):
        book, _sheet = review_book([loan("G1", 0.0, as_of=None)], params=[["as_of_date", 43646.0]])
        book.api.Date1904 = date1904
        macros.fill_tiers(book=book)
        rows = excel_io.read_values(book.sheet("审计").used_range)
        record = dict(zip(rows[0], rows[1], strict=True))
        assert record["基准日(参数表)"] == expected


def test_fill_records_an_audit_row_and_shows_progress():
    book, _sheet = review_book([loan("G1", 120.0), loan("G2", 0.0)],
                               params=[["risk_visit_interval_days", 10.0], ["as_of_date", "2024-06-30"],
                                       ["credit.grade_a_min_score", 90.0], ["typo_param", 1.0]])
    summary = macros.fill_tiers(book=book)
    audit = book.sheet("审计")
    rows = excel_io.read_values(audit.used_range)
    assert rows[0] == list(macros.AUDIT_HEADER)
    record = dict(zip(rows[0], rows[1], strict=True))
    compiled = api.compile("guarantee", {"risk_visit_interval_days": 10})
    assert record["规则集"] == "guarantee" and record["版本"] == compiled.version
    assert record["摘要(digest)"] == compiled.digest == summary.digest
    assert record["参数(非默认)"] == "risk_visit_interval_days=10"
    assert record["基准日(参数表)"] == "2024-06-30"
    assert (record["行数"], record["OK"], record["ERROR"]) == (2, 2, 0)
    assert record["忽略的参数"] == "typo_param"  # another ruleset's scoped row is not "ignored"
    assert dt.datetime.strptime(record["时间"], "%Y-%m-%d %H:%M:%S")
    history = [h for h in book.app.status_history if isinstance(h, str)]
    assert history[0].startswith("tierbook: 读取表格")
    assert any("计算 2 行" in h for h in history) and any("写入 风险分类" in h for h in history)
    assert history[-1].startswith("tierbook: 在保 已分级 2 行 (OK 2, ERROR 0)")
    assert book.app.screen_updating is True


def test_fill_twice_gives_the_same_table():
    book, sheet = review_book([loan("G1", 120.0), loan("G2", "abc"), loan("G3", 30.0)])
    macros.fill_tiers(book=book)
    first = snapshot(sheet)
    sheet.writes.clear()
    summary = macros.fill_tiers(book=book)
    assert summary.created == ()
    assert snapshot(sheet) == first
    assert all(c > len(HEADER) for _r, c in sheet.written_cells())
    assert len(excel_io.read_values(book.sheet("审计").used_range)) == 3  # header + one row per run


def _table_book():
    book = book_with("Loans", "参数")
    sheet = book.sheet("Loans")
    header = [*HEADER, "风险分类", "备注说明"]  # an output column already there, and a free column of the analyst
    rows = [loan("G1", 120.0) + ["旧值", "keep"], loan("G2", 0.0) + [None, None], loan("G3", 5.0) + [None, "x"]]
    table = sheet.add_table("tbl_guarantee", 2, 2, [header, *rows])
    risk_col = 2 + header.index("风险分类")
    sheet.formulas[(4, risk_col)] = '=TIER("guarantee",B2:J2,B4:J4)'
    return book, sheet, table, header, risk_col


@pytest.mark.parametrize("keep_formulas", [False, True])
def test_fill_an_excel_table_reuses_existing_output_columns(keep_formulas):
    book, sheet, table, header, risk_col = _table_book()
    before = snapshot(sheet)

    summary = macros.fill_tiers(book=book, keep_formulas=keep_formulas)

    assert sheet.cells[(3, risk_col)] == "风险"  # overwritten old value
    assert sheet.cells[(5, risk_col)] == "关注"
    if keep_formulas:
        assert (4, risk_col) not in sheet.written_cells() and sheet.formulas[(4, risk_col)].startswith("=TIER(")
        assert (summary.kept, summary.replaced) == (("风险分类×1",), ())
    else:
        assert sheet.cells[(4, risk_col)] == "良好" and (4, risk_col) not in sheet.formulas
        assert (summary.kept, summary.replaced) == ((), ("风险分类×1",))
    free_col = 2 + header.index("备注说明")
    input_cols = set(range(2, 2 + len(HEADER)))
    assert not any(c in input_cols or c == free_col for _r, c in sheet.written_cells())
    for key, value in before.items():
        if key[1] != risk_col:
            assert sheet.cells.get(key) == value
    created = [h for h in OUTPUT_HEADERS if h != "风险分类"]
    assert list(summary.created) == created
    first_new = 2 + len(header)
    assert [sheet.cells[(2, first_new + j)] for j in range(len(created))] == created
    assert table.resizes[-1] == (2, 2, 5, first_new + len(created) - 1)  # the table takes in the new columns


def test_fill_a_template_layout_replaces_the_spill_next_to_the_table_with_values():
    """Templates: an Excel table of inputs, output headers right of it, one spilled =TIER_TABLE under them."""
    book = book_with("表", "参数")
    sheet = book.sheet("表")
    rows = [loan("G1", 120.0), loan("G2", "abc"), loan("G3", 0.0)]
    table = sheet.add_table("担保项目", 3, 1, [HEADER, *rows])
    template_outputs = OUTPUT_HEADERS[:-1]  # 状态 … 可否新增担保, without 错误说明
    first_out = 1 + len(HEADER)
    sheet.put(3, first_out, [template_outputs])
    sheet.formulas[(4, first_out)] = '=TIER_TABLE("guarantee",担保项目[#All],$J$3:$Z$3,参数!$A$1:$B$30)'
    sheet.put(4, first_out + 1, [["stale cached value"]])
    inputs_before = {k: v for k, v in snapshot(sheet).items() if k[1] < first_out}

    summary = macros.fill_tiers(book=book)

    assert summary.created == ("错误说明",) and summary.replaced == ("状态×1",)
    assert table.resizes == []  # outputs stay outside the table, where the spill was
    assert all(c >= first_out for _r, c in sheet.written_cells())
    assert {k: v for k, v in sheet.cells.items() if k[1] < first_out} == inputs_before
    assert (4, first_out) not in sheet.formulas and sheet.cells[(4, first_out)] == "OK"
    assert (4, first_out + 1) not in sheet.cells  # the stale value under 错误 is cleared (G1 has no errors)
    risk = first_out + template_outputs.index("风险分类")
    assert [sheet.cells.get((r, risk)) for r in (4, 5, 6)] == ["风险", "待定", "良好"]
    reason = first_out + len(template_outputs)
    assert sheet.cells[(3, reason)] == "错误说明" and sheet.cells[(5, reason)].startswith("#ERR 主债务逾期天数")


def test_fill_refuses_to_create_columns_over_existing_content():
    book, sheet = review_book([loan("G1", 120.0), loan("G2", 0.0)])
    sheet.put(5, len(HEADER) + 4, [["someone's note"]])
    before = snapshot(sheet)
    assert macros.fill_tiers(book=book) is None
    assert sheet.writes == [] and snapshot(sheet) == before
    assert book.app.alerts and "已有内容" in book.app.alerts[0] and "Traceback" not in book.app.alerts[0]
    assert book.app.status_history[-1].startswith("#ERR ")


def test_fill_reports_unusable_sheets_in_one_message():
    book = book_with("空")
    assert macros.fill_tiers(book=book) is None
    assert book.app.alerts[0].startswith("#ERR ") and "为空" in book.app.alerts[0]
    book = book_with("杂")
    book.sheet("杂").put(1, 1, [["名称", "金额"], ["a", 1.0]])
    assert macros.fill_tiers(book=book) is None
    assert "表头" in book.app.alerts[0]


def test_fill_uses_the_ruleset_named_on_the_parameter_sheet_or_the_argument():
    book = book_with("表", "参数")
    sheet = book.sheet("表")
    sheet.put(1, 1, [["客户编号", "评估日期", "月均销售额(元)", "平均回款天数"], ["C1", AS_OF, "25,000", 20.0]])
    book.sheet("参数").put(1, 1, [["规则集", "credit"], ["grade_a_min_score", 101.0]])
    summary = macros.fill_tiers(book=book)
    assert summary.ruleset == "credit" and summary.params == "grade_a_min_score=101"
    header = [sheet.cells.get((1, c)) for c in range(1, 30)]
    assert sheet.cells[(2, header.index("客户等级") + 1)] == "B"  # 100 points < 101
    assert macros.fill_tiers(book=book, ruleset="no_such") is None and "未知规则集" in book.app.alerts[-1]


def test_fill_from_excel_uses_book_caller(mocker):
    book, sheet = review_book([loan("G1", 120.0)])
    caller = mocker.patch.object(xw.Book, "caller", return_value=book)
    summary = macros.fill_tiers()
    assert caller.called and summary.ok == 1
    assert sheet.cells[(4, len(HEADER) + 1 + OUTPUT_HEADERS.index("风险分类"))] == "风险"


def test_formula_like_text_is_written_as_text(mocker):
    """A text output that Excel would run as a formula (PRODUCT §10) is written with a leading quote."""
    book, sheet = review_book([loan("G1", 120.0)])
    evaluate = tg._evaluate  # noqa: SLF001

    def hostile(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        result["owner_role"] = result["owner_role"].copy()
        result["owner_role"][0] = "=cmd|' /C calc'!A0"
        return result

    mocker.patch.object(tg, "_evaluate", side_effect=hostile)
    macros.fill_tiers(book=book)
    col = len(HEADER) + 1 + OUTPUT_HEADERS.index("主责人")
    assert sheet.cells[(4, col)] == "'=cmd|' /C calc'!A0"


@pytest.mark.parametrize("header, rows, expected", [
    (["客户号", "评估日期", "存款月日均余额", "贷款余额"], [["P1", AS_OF, 10.0, 0.0]], "bank_layering"),
    (["担保业务编号", "分类基准日", "担保起始日"], [["G1", AS_OF, AS_OF]], "guarantee"),
])
def test_the_ruleset_is_recognised_from_the_headers(header, rows, expected):
    definitions = macros._definitions()  # noqa: SLF001
    assert macros.choose_ruleset(header, None, None, None, definitions) == expected
    assert macros.choose_ruleset(header, None, None, "tbl_credit", definitions) == "credit"
    assert macros.choose_ruleset(header, "x", "y", "tbl_credit", definitions) == "x"


# --------------------------------------------------------------------------- check_rules
def test_check_rules_lists_problems_on_its_sheet(mocker):
    book = book_with("表", "参数")
    book.sheet("参数").put(1, 1, [["规则集", "guarantee"]])
    problem = Problem("guarantee.yaml", 120, "gap", "overdue_days 91..95 matches no rule", "add a rule", "warning")
    mocker.patch.object(api, "check_ruleset", return_value=[problem])
    rows = macros.check_rules(book=book)
    sheet = book.sheet("规则检查")
    assert excel_io.read_values(sheet.used_range) == rows
    assert rows[0] == list(macros.CHECK_HEADER)
    assert rows[1] == ["guarantee", "guarantee.yaml", 120, "warning", "gap", "overdue_days 91..95 matches no rule",
                       "add a rule"]
    assert "0 个错误, 1 个警告" in book.app.status_history[-1]
    book.sheet("规则检查").put(40, 1, [["stale"]])
    mocker.patch.object(api, "check_ruleset", return_value=[])
    rows = macros.check_rules(book=book)
    assert rows[1][3] == "ok" and (40, 1) not in book.sheet("规则检查").cells  # the sheet is rewritten


def test_check_rules_on_the_shipped_core_rulesets_runs_the_real_checks():
    book = FakeBook()
    book.sheets.add("表")
    rows = macros.check_rules(book=book, ruleset="credit")
    assert rows[0] == list(macros.CHECK_HEADER) and rows[1][0] == "credit"
    assert all(r[3] in ("ok", "warning") for r in rows[1:])


# --------------------------------------------------------------------------- quarterly report
def _quarter_book():
    header = ["担保业务编号", "被担保人名称", "分类基准日", "担保起始日", "主债务逾期天数", "资产负债率",
              "最近回访日期"]
    start = dt.datetime(2024, 1, 1)
    book = book_with("本季", "上季", "参数")
    book.sheet("本季").put(1, 1, [header, ["G1", "甲", None, start, 120.0, 0.5, dt.datetime(2024, 6, 1)],
                                  ["G2", "乙", None, 45292.0, 0.0, 0.9, None]])
    march = dt.datetime(2024, 3, 31)
    book.sheet("上季").put(1, 1, [header, ["G1", "甲", march, start, 0.0, 0.5, None],
                                  ["G2", "乙", march, 45292.0, 0.0, 0.9, None]])
    book.sheet("参数").put(1, 1, [["as_of_date", AS_OF]])
    return book


def test_build_report_writes_the_quarterly_workbook_beside_the_book_and_opens_it(tmp_path):
    import openpyxl

    book = _quarter_book()
    book.fullname = str(tmp_path / "review.xlsm")
    before = {name: snapshot(book.sheet(name)) for name in ("本季", "上季", "参数")}
    path = macros.build_report(book=book)
    assert path is not None and path.parent == tmp_path and path.name.startswith("review_分级报告_guarantee_")
    assert path.is_file() and book.app.books.opened == [str(path)]
    assert all(book.sheet(name).writes == [] and snapshot(book.sheet(name)) == before[name] for name in before)
    report = openpyxl.load_workbook(path, read_only=True)
    assert "迁移矩阵" in report.sheetnames
    texts = [str(v) for row in report["汇总"].iter_rows(values_only=True) for v in row if v is not None]
    assert any("本季基准日 2024-06-30" in t and "上季基准日 2024-03-31" in t for t in texts)
    report.close()


def test_build_report_names_a_missing_previous_sheet(tmp_path):
    book = _quarter_book()
    assert macros.build_report(book=book, previous_sheet="2024Q1", output=str(tmp_path / "r.xlsx")) is None
    assert "2024Q1" in book.app.alerts[0] and not (tmp_path / "r.xlsx").exists()

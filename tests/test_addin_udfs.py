"""The worksheet functions called as Python with the values xlwings hands over (issue 5).

No Excel: the UDFs are plain callables; `xw.Book.caller` is mocked for the 参数 sheet. Values are
shaped like xlwings delivers them — floats for integers, `datetime` for date cells, None for
empty cells, '#N/A' for error cells (err_to_str), numbers stored as text, Chinese headers,
ragged 2-D lists with empty trailing rows and columns.
"""
from __future__ import annotations

import datetime as dt
import importlib
import random
import shutil
import sys
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import xlwings as xw

from addin import excel_io, udfs
from addin import excel_values as xv
from addin import tiering as tg
from engine import api
from engine.outputs import render_frame
from tests.fake_excel import book_with
from tests.rowgen import random_rows

AS_OF = dt.datetime(2024, 6, 30)
G_HEADER = ["担保业务编号", "被担保人名称", "分类基准日", "担保起始日", "主债务逾期天数", "是否已代偿", "资产负债率",
            "销售收入同比变动", "反担保覆盖率", "最近回访日期"]


@pytest.fixture(autouse=True)
def _no_caller(mocker):
    """No calling workbook unless a test provides one; fresh caches for every test."""
    mocker.patch.object(excel_io, "caller_book", return_value=None)
    excel_io.CALLER_CONTEXTS.clear()
    yield
    excel_io.CALLER_CONTEXTS.clear()


def g_row(gid, overdue, last_visit=dt.datetime(2024, 6, 1), **extra):
    row = {"担保业务编号": gid, "被担保人名称": "甲公司", "分类基准日": AS_OF, "担保起始日": dt.datetime(2024, 1, 1),
           "主债务逾期天数": overdue, "是否已代偿": None, "资产负债率": 0.5, "销售收入同比变动": 0.1,
           "反担保覆盖率": 1.2, "最近回访日期": last_visit}
    row.update(extra)
    return [row[h] for h in G_HEADER]


def column(result, header):
    index = result[0].index(header)
    return [row[index] for row in result[1:]]


# --------------------------------------------------------------------------- Excel values
@pytest.mark.parametrize("serial, expected", [
    (1.0, dt.date(1900, 1, 1)),
    (59.0, dt.date(1900, 2, 28)),
    (60.0, None),  # Excel's 1900-02-29 (the Lotus 1-2-3 leap-year bug) never existed
    (61.0, dt.date(1900, 3, 1)),
    (45473.0, dt.date(2024, 6, 30)),
    (45473.75, dt.date(2024, 6, 30)),  # the time part is dropped
    (2958465.0, dt.date(9999, 12, 31)),
    (2958466.0, None),
    (0.0, None),
    (-3.0, None),
    (float("nan"), None),
])
def test_excel_serials_follow_the_1900_date_system(serial, expected):
    assert xv.excel_serial_to_date(serial) == expected


def test_excel_serials_in_the_1904_date_system():
    assert xv.excel_serial_to_date(0.0, date1904=True) == dt.date(1904, 1, 1)
    assert xv.excel_serial_to_date(44011.0, date1904=True) == dt.date(2024, 6, 30)


def test_normalise_table_trims_trailing_empty_rows_and_columns_and_pads_ragged_rows():
    raw = [["a", "b", None, None], ["1", 2.0], [None, None, "  ", None], ["x", None, None, None, None],
           [None, None], [None, "", None, None]]
    table = xv.normalise_table(raw)
    assert table.header == ["a", "b"]
    assert table.rows == [["1", 2.0], [None, None], ["x", None]]
    assert raw[1] == ["1", 2.0]  # the caller's lists are not modified


@pytest.mark.parametrize("value, shaped", [
    (None, []), (5.0, [[5.0]]), ([1.0, "a"], [[1.0, "a"]]), ([[1.0], [2.0]], [[1.0], [2.0]]),
    ((("a", "b"), ("c", "d")), [["a", "b"], ["c", "d"]]),
])
def test_udf_arguments_are_lifted_to_two_dimensions(value, shaped):
    assert xv.as_2d(value) == shaped


@pytest.mark.parametrize("text, written", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("+1", "'+1"), ("@SUM(A1)", "'@SUM(A1)"), ("012", "'012"),
    ("2024-06-30", "'2024-06-30"), ("风险", "风险"), ("GR-3b", "GR-3b"), ("项目经理;法务", "项目经理;法务"),
])
def test_text_written_to_cells_stays_text(text, written):
    assert xv.excel_text(text) == written


def test_date_column_serials_become_dates_before_the_engine_sees_them():
    cells = [45473.0, dt.datetime(2024, 1, 1, 15, 30), None, 60.0, "2024/6/1", True]
    converted = xv.column_for_engine(cells, "date")
    assert converted.dtype == object  # mixed cells keep their own objects
    assert list(converted) == [dt.date(2024, 6, 30), dt.datetime(2024, 1, 1, 15, 30), None, "1900-02-29",
                               "2024/6/1", True]
    typed = xv.column_for_engine([45473.0, dt.datetime(2024, 1, 1, 15, 30), None], "date")
    assert typed.dtype.kind == "M"
    assert [str(d) for d in typed] == ["2024-06-30", "2024-01-01", "NaT"]


def test_numbers_in_text_columns_are_not_packed_as_floats():
    assert xv.column_for_engine([1.0, None], "text").dtype == object
    assert xv.column_for_engine([1.0, None], "number").dtype == np.float64
    assert xv.column_for_engine([1.0, "12,000"], "number").dtype == object


# --------------------------------------------------------------------------- TIER_TABLE
def test_tier_table_grades_excel_shaped_rows_and_reports_bad_rows_in_words():
    table = [
        G_HEADER + [None, None],  # empty trailing columns of the selection
        g_row("G1", 120.0),
        g_row("G2", "abc", 资产负债率="#N/A"),
        [None] * 12,  # an empty row inside the table
        g_row("G3", 0.0, last_visit=45444.0),  # a date serial: 2024-06-01
        g_row("G4", "5", 资产负债率="75%", 反担保覆盖率="0.8"),  # numbers stored as text
        [None] * 12, [None] * 12,  # empty rows to the end of the selection
    ]
    result = udfs.TIER_TABLE("guarantee", table)
    assert result[0][:5] == ["状态", "错误", "备注", "预警信号数", "风险分类"]
    assert result[0][-1] == "错误说明"
    assert len(result) == 1 + 5  # header + rows up to the last non-empty one
    assert column(result, "状态") == ["OK", "ERROR", "", "OK", "OK"]
    assert column(result, "风险分类") == ["风险", "待定", "", "良好", "关注"]
    assert column(result, "触发规则") == ["GR-3b", "", "", "GR-3h", "GR-3d"]
    assert column(result, "错误") == ["", "INVALID:overdue_days;INVALID:asset_liability_ratio", "", "", ""]
    assert column(result, "错误说明")[1] == "#ERR 主债务逾期天数: 'abc' 不是整数; 资产负债率: '#N/A' 不是数字或百分比"
    assert column(result, "下次回访日期")[0] == "2024-06-30"
    assert column(result, "下次回访日期")[2] == "" and column(result, "回访类型")[2] == ""
    assert column(result, "年度时间预算(天)")[0] == 24
    assert column(result, "预警信号数")[4] == 2  # 75% > 70 % and 0.8 < 1.00


def test_tier_table_with_requested_outputs_spills_data_rows_and_shows_errors_in_their_cells():
    """Named outputs are the header cells above the formula: no second header row (the spill lines up)."""
    table = [G_HEADER, g_row("G1", 120.0), g_row("G2", -1.0)]
    result = udfs.TIER_TABLE("guarantee", table, ["风险分类", "next_visit_date"])
    assert result == [["风险", "2024-06-30"], ["#ERR 主债务逾期天数: -1 小于下限 0"] * 2]
    assert udfs.TIER_TABLE("guarantee", table, "risk_class, 回访频率") == [["风险", "每半月"], [result[1][0]] * 2]
    with_errors = udfs.TIER_TABLE("guarantee", table, ["状态", "错误", "风险分类"])
    assert with_errors == [["OK", "", "风险"], ["ERROR", "INVALID:overdue_days", "待定"]]
    assert udfs.TIER_TABLE("guarantee", table, [None, None])[0][0] == "状态"  # blank names = the default


def test_tier_table_unknown_output_is_one_error_cell_with_a_suggestion():
    result = udfs.TIER_TABLE("guarantee", [G_HEADER, g_row("G1", 1.0)], ["risk_clas"])
    assert len(result) == 1 and result[0][0].startswith("#ERR ")
    assert "risk_class" in result[0][0]


@pytest.mark.parametrize("table, fragment", [
    ([["a", "b"], [1.0, 2.0]], "表头未匹配"),
    ([], "表格为空"),
    (None, "表格为空"),
])
def test_unusable_tables_give_one_readable_error(table, fragment):
    result = udfs.TIER_TABLE("credit", table)
    assert result == [[result[0][0]]] and result[0][0].startswith("#ERR ") and fragment in result[0][0]
    assert "Traceback" not in result[0][0]


def test_no_traceback_reaches_a_cell_even_for_internal_errors(mocker):
    mocker.patch.object(tg, "_evaluate", side_effect=RuntimeError("boom"))
    table_result = udfs.TIER_TABLE("guarantee", [G_HEADER, g_row("G1", 1.0)])
    single = udfs.TIER("guarantee", G_HEADER, g_row("G1", 1.0))
    for text in (table_result[0][0], single):
        assert text.startswith("#ERR 内部错误") and "boom" in text and "Traceback" not in text and "\n" not in text


@pytest.mark.parametrize("ruleset_id", ["credit", "guarantee", "bank_layering"])
def test_tier_table_over_10000_excel_shaped_rows_equals_tier_eval(ruleset_id):
    """Same values as `engine.api.evaluate` + `render_frame` (what `tier eval` writes) on the same data."""
    compiled = api.compile(ruleset_id)
    records = random_rows(compiled, 10_000, seed=5)
    rng = random.Random(7)
    excel_rows = []
    for record in records:
        row = []
        for inp in compiled.definition.inputs:
            value = record.get(inp.key)
            if value == "":
                value = None  # Excel reports an empty cell as None
            elif inp.type == "date" and isinstance(value, dt.datetime) and rng.random() < 0.5:
                record[inp.key] = value.date()
                value = float((value - dt.datetime(1899, 12, 30)).days)  # the serial of the date
            elif isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            row.append(value)
        excel_rows.append(row)
    header = [inp.zh or inp.key for inp in compiled.definition.inputs]
    result = udfs.TIER_TABLE(ruleset_id, [header, *excel_rows])
    assert len(result) == 1 + len(records) or all(xv.row_is_blank(r) for r in excel_rows[len(result) - 1:])

    reference = render_frame(api.evaluate(compiled, records), compiled)
    names = ["status", "errors", "notes", *(o.key for o in compiled.definition.outputs)]
    blank_rows = [all(tg.xv.is_blank_cell(v) for v in row) for row in excel_rows]
    mismatches = []
    for position, name in enumerate(names):
        expected = reference[name].tolist()
        for index, cell in enumerate(row[position] for row in result[1:]):
            if blank_rows[index]:
                assert cell == ""
            elif not _same(cell, expected[index]):
                mismatches.append((index, name, cell, expected[index]))
    assert not mismatches[:10]
    assert sum(r[0] == "ERROR" for r in result[1:]) > 100  # the messy rows did produce errors
    errors_at = result[0].index("错误说明")
    assert all(r[errors_at].startswith("#ERR ") for r in result[1:] if r[0] == "ERROR")


def _same(cell: object, text: str) -> bool:
    if cell == "":
        return text == ""
    if isinstance(cell, bool):
        return text == ("TRUE" if cell else "FALSE")
    if isinstance(cell, (int, float)):
        return text != "" and float(text) == float(cell)
    return str(cell) == text


@pytest.mark.parametrize("template, ruleset_id", [
    ("credit_grading.xlsm", "credit"), ("guarantee_review.xlsm", "guarantee"), ("bank_layering.xlsm", "bank_layering")])
def test_tier_table_fills_the_spill_of_the_shipped_templates(template, ruleset_id):
    """The templates' `=TIER_TABLE(id, 表[#All], output headers, 参数!A:B)`: same rows as their cached results."""
    import openpyxl

    from workbook_templates import __file__ as templates_init

    path = Path(templates_init).parent / template
    book = openpyxl.load_workbook(path, data_only=True)
    sheet = book.worksheets[0]
    (ref,) = [t.ref for t in sheet.tables.values()]
    first = ref.split(":")[0]
    table = [[c.value for c in row] for row in sheet[ref]]
    header_row, width = sheet[first].row, len(table[0])
    outputs = []
    for cell in sheet[header_row][width:]:
        if cell.value is None:
            break
        outputs.append(cell.value)
    params = [[r[0], r[1]] for r in book["参数"].iter_rows(min_row=1, max_col=2, values_only=True) if r[0] is not None]
    result = udfs.TIER_TABLE(ruleset_id, table, outputs, params)
    cached = [[c.value for c in row[width:width + len(outputs)]]
              for row in sheet.iter_rows(min_row=header_row + 1, max_row=header_row + len(table) - 1)]
    assert len(result) == len(table) - 1 and all(len(r) == len(outputs) for r in result)
    for got_row, cached_row in zip(result, cached, strict=True):
        for got, want in zip(got_row, cached_row, strict=True):
            if isinstance(want, dt.datetime):
                want = want.date().isoformat()
            assert _same(got, "" if want is None else (str(want) if not isinstance(want, float) else repr(want))), \
                (got, want)


# --------------------------------------------------------------------------- TIER / TIER_WHY
def test_tier_returns_the_tier_by_default_and_any_output_by_name():
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", 120.0)) == "风险"
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", 120.0), "下次回访日期") == "2024-06-30"
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", 120.0), "time_budget_days_per_year") == 24
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", 120.0), "status") == "OK"


def test_tier_of_a_bad_row_is_the_reason():
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", "abc")) == "#ERR 主债务逾期天数: 'abc' 不是整数"
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", 1.0, 担保起始日=None)) == "#ERR 担保起始日: 必填, 不能为空"
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", 1.0), "errors") == ""


def test_tier_of_a_row_violating_a_cross_field_check_names_the_condition():
    header = G_HEADER + ["担保到期日"]
    row = g_row("G1", 0.0) + [dt.datetime(2023, 1, 1)]
    assert udfs.TIER("guarantee", header, row) == "#ERR 担保到期日: 不应出现 担保到期日 < 担保起始日"


def test_tier_why_explains_a_guarantee_overdue_120_days_in_words():
    text = udfs.TIER_WHY("guarantee", G_HEADER, g_row("G1", 120.0))
    first, *lines = text.splitlines()
    assert first.startswith("风险分类 = 风险") and "guarantee 1.0.0" in first and "参数: 默认值" in first
    why = next(line for line in lines if "GR-3b" in line)
    assert "风险" in why and "主债务逾期天数 120 > 90" in why
    visit = next(line for line in lines if line.startswith("回访类型"))
    assert "最近回访日期 2024-06-01" in visit and "15 天" in visit and "2024-06-16" in visit
    nxt = next(line for line in lines if line.startswith("下次回访日期"))
    assert "2024-06-30" in nxt and "max(" in nxt and "分类基准日 2024-06-30" in nxt


def test_tier_why_shows_changed_parameters_and_errors():
    text = udfs.TIER_WHY("guarantee", G_HEADER, g_row("G1", 120.0), [["risk_visit_interval_days", 10.0]])
    assert "risk_visit_interval_days=10" in text.splitlines()[0]
    assert "10 天" in text and "2024-06-11" in text
    bad = udfs.TIER_WHY("guarantee", G_HEADER, g_row("G1", "abc"))
    assert bad.startswith("风险分类 = 待定") and "#ERR 主债务逾期天数: 'abc' 不是整数" in bad


# --------------------------------------------------------------------------- parameters
def test_params_argument_overrides_defaults_and_rejects_unknown_keys():
    table = [G_HEADER, g_row("G1", 91.0)]
    assert column(udfs.TIER_TABLE("guarantee", table), "风险分类") == ["风险"]
    overridden = udfs.TIER_TABLE("guarantee", table, None, [["参数", "值"], ["风险类逾期天数(超过即风险)", 100.0]])
    assert column(overridden, "风险分类") == ["关注"]
    overridden = udfs.TIER_TABLE("guarantee", table, [None], [["risk_overdue_days_above", "100"]])
    assert column(overridden, "风险分类") == ["关注"]
    bad = udfs.TIER_TABLE("guarantee", table, None, [["risk_overdue_day_above", 100.0]])
    assert bad[0][0].startswith("#ERR ") and "risk_overdue_days_above" in bad[0][0]
    bad_value = udfs.TIER("guarantee", G_HEADER, g_row("G1", 91.0), None, [["risk_overdue_days_above", "多"]])
    assert bad_value.startswith("#ERR ") and "risk_overdue_days_above" in bad_value


def test_the_parameter_sheet_of_the_calling_workbook_applies_and_the_argument_wins(mocker):
    book = book_with("表", "参数")
    book.sheet("参数").put(1, 1, [["参数", "值", "说明"], ["risk_overdue_days_above", 100.0, "x"],
                                   ["credit.grade_a_min_score", 95.0, None], ["as_of_date", 45565.0, None],
                                   ["visit_interval_months_watch", None, None]])
    mocker.patch.object(excel_io, "caller_book", return_value=book)
    excel_io.CALLER_CONTEXTS.clear()
    row = g_row("G1", 91.0)
    row[G_HEADER.index("分类基准日")] = None  # filled from the sheet: 45565 = 2024-09-30
    assert udfs.TIER("guarantee", G_HEADER, row) == "关注"
    assert udfs.TIER("guarantee", G_HEADER, row, "回访计划报送截止日") == "2024-10-10"
    assert udfs.TIER("guarantee", G_HEADER, row, None, [["risk_overdue_days_above", 90.0]]) == "风险"
    params = udfs.TIER_PARAMS("guarantee")
    risk = next(r for r in params if r[0] == "risk_overdue_days_above")
    assert risk[1:3] == [100, 90]
    assert row[G_HEADER.index("分类基准日")] is None  # the input cell itself is never filled


def test_book_caller_is_what_the_udfs_ask_for(mocker):
    """Through the real `excel_io.caller_book`: xw.Book.caller (mocked) supplies the workbook."""
    mocker.stopall()
    book = book_with("表", "Parameters")
    book.sheet("Parameters").put(1, 1, [["risk_overdue_days_above", 100.0]])
    caller = mocker.patch.object(xw.Book, "caller", return_value=book)
    excel_io.CALLER_CONTEXTS.clear()
    assert udfs.TIER("guarantee", G_HEADER, g_row("G1", 91.0)) == "关注"
    assert caller.called


def test_tier_rulesets_and_tier_params_spill_lists():
    rulesets = udfs.TIER_RULESETS()
    assert rulesets[0] == ["规则集", "版本", "名称", "Title"]
    ids = [r[0] for r in rulesets[1:]]
    assert {"credit", "guarantee", "bank_layering"} <= set(ids)
    credit = next(r for r in rulesets if r[0] == "credit")
    assert credit[1] == "1.0.0" and credit[2] == "客户信用分级"
    params = udfs.TIER_PARAMS("credit")
    assert params[0] == ["参数", "当前值", "默认值", "说明", "Description"]
    row = next(r for r in params if r[0] == "new_customer_default_collection_days")
    assert row[1:4] == [45, 45, "新客户默认回款天数"]
    assert udfs.TIER_PARAMS("no_such_ruleset")[0][0].startswith("#ERR 未知规则集")


# --------------------------------------------------------------------------- cache and threads
def test_compiled_rulesets_are_cached_by_content_and_parameters(tmp_path, mocker):
    path = tmp_path / "mine.yaml"
    shutil.copy(api.load_ruleset("credit").path, path)
    cache = tg.RulesetCache()
    first = cache.get(str(path))
    assert cache.get(str(path)) is first
    assert cache.get(str(path), {"grade_a_min_score": 90}) is not first
    compile_calls = mocker.spy(api, "compile")
    assert cache.get(str(path)) is first and compile_calls.call_count == 0
    path.write_text(path.read_text(encoding="utf-8").replace('version: "1.0.0"', 'version: "1.0.1"'), encoding="utf-8")
    changed = cache.get(str(path))
    assert changed.version == "1.0.1" and compile_calls.call_count == 1


def test_a_relative_ruleset_path_is_resolved_against_the_workbook_folder(tmp_path):
    (tmp_path / "rules").mkdir()
    shutil.copy(api.load_ruleset("credit").path, tmp_path / "rules" / "my_credit.yaml")
    assert tg.resolve_ref("rules/my_credit.yaml", tmp_path) == tmp_path / "rules" / "my_credit.yaml"
    with pytest.raises(tg.RulesetError):
        tg.resolve_ref("rules/my_credit.yaml", None)  # never the current directory


def test_udf_calls_from_eight_threads_give_the_single_thread_results():
    small = [G_HEADER] + [g_row(f"G{i}", float(i * 17 % 130), 资产负债率=i / 10) for i in range(6)]
    calls = []
    for index in range(200):
        params = [None, [["risk_overdue_days_above", 60.0]], [["watch_min_warning_count", 1.0]]][index % 3]
        if index % 2:
            calls.append(("table", params))
        else:
            calls.append(("tier", params, small[1 + index % 6]))

    def run(call):
        if call[0] == "table":
            return udfs.TIER_TABLE("guarantee", small, None, call[1])
        return udfs.TIER("guarantee", G_HEADER, call[2], None, call[1])

    tg.CACHE.clear()
    expected = [run(c) for c in calls]
    tg.CACHE.clear()
    results: dict[int, list] = {}
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            results[number] = [run(c) for c in calls]
        except BaseException as exc:  # noqa: BLE001 — reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(results) == 8
    for number in range(8):
        assert results[number] == expected
    assert not any(str(r).startswith("#ERR") for r in expected)


def test_garbage_collection_is_back_on_after_udf_calls():
    import gc

    udfs.TIER_TABLE("guarantee", [G_HEADER, g_row("G1", 1.0)])
    udfs.TIER_TABLE("guarantee", None)
    assert gc.isenabled()


# --------------------------------------------------------------------------- function wizard metadata
def test_decorators_record_wizard_docs_for_every_argument():
    """Apply xlwings' own (Windows) decorators to addin.udfs: names, docs and options are valid."""
    added = {}
    for name in ("pythoncom", "pywintypes", "win32com", "win32com.client"):
        if name not in sys.modules:
            sys.modules[name] = added[name] = mock.MagicMock(name=name)
    try:
        sys.modules.pop("xlwings.udfs", None)
        import xlwings.udfs as xu
    finally:
        for name in added:
            sys.modules.pop(name, None)
        sys.modules.pop("xlwings.udfs", None)
    try:
        with mock.patch.object(xw, "func", xu.xlfunc), mock.patch.object(xw, "arg", xu.xlarg), \
                mock.patch.object(xw, "ret", xu.xlret):
            module = importlib.reload(udfs)
            functions = {name: getattr(module, name).__xlfunc__ for name in
                         ("TIER", "TIER_TABLE", "TIER_WHY", "TIER_RULESETS", "TIER_PARAMS")}
    finally:
        importlib.reload(udfs)
    for name, meta in functions.items():
        assert meta["category"] == "tierbook", name
        assert meta["ret"]["doc"] and len(meta["ret"]["doc"]) < 255, name
        assert "convert" not in meta["ret"]["options"], name  # no annotation turned into a converter
        for arg in meta["args"]:
            assert not arg["doc"].startswith("Positional argument"), (name, arg["name"])
            assert "convert" not in arg["options"], (name, arg["name"])
    table_args = {a["name"]: a for a in functions["TIER_TABLE"]["args"]}
    assert table_args["table"]["options"] == {"ndim": 2, "err_to_str": True}
    assert table_args["outputs"]["optional"] is None and table_args["params"]["options"] == {"ndim": 2}
    assert [a["name"] for a in functions["TIER"]["args"]] == ["ruleset", "headers", "row", "output", "params"]

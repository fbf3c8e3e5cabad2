"""`tier fill` honours the workbook's 参数 / Parameters sheet exactly as the add-in's fill button does.

Before, the same workbook could be graded differently by the button (which reads the sheet's
overrides, 规则集 row and as_of_date) and by `tier fill` (which ignored the sheet). The parsing
now lives in `engine.workbook_params`, read by both; these tests build workbooks with openpyxl
(only to make the input), run `tier fill`, and compare with `addin.macros.fill_tiers` run on a
fake of the same workbook (tests/fake_excel.py).
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from engine import api
from engine.cli import main
from engine.errors import ParameterError
from engine.fill import fill_workbook, output_specs
from tests.fake_excel import FakeBook

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "workbook_templates"
HEADER = ["担保业务编号", "被担保人名称", "分类基准日", "担保起始日", "主债务逾期天数", "资产负债率",
          "销售收入同比变动", "反担保覆盖率", "最近回访日期"]
AS_OF = dt.datetime(2024, 6, 30)


def loan(gid: str, overdue: object, as_of: object = AS_OF) -> list[object]:
    return [gid, "甲公司", as_of, dt.datetime(2024, 1, 1), overdue, 0.5, 0.1, 1.2, dt.datetime(2024, 6, 1)]


def make_book(path: Path, rows: list[list[object]], params: list[list[object]] | None,
              date1904: bool = False) -> Path:
    """A plain workbook: 在保 (header on row 1, dates as date cells) and, if given, a 参数 sheet."""
    book = openpyxl.Workbook()
    if date1904:
        book.epoch = CALENDAR_MAC_1904
    sheet = book.active
    sheet.title = "在保"
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    for cells in sheet.iter_rows(min_row=2):
        for cell in cells:
            if isinstance(cell.value, dt.datetime):
                cell.number_format = "yyyy-mm-dd"
    if params is not None:
        block = book.create_sheet("参数")
        for row in params:
            block.append(row)
    book.save(path)
    return path


def values(path: Path, sheet: str = "在保") -> list[list[object]]:
    book = openpyxl.load_workbook(path)
    try:
        return [list(row) for row in book[sheet].iter_rows(values_only=True)]
    finally:
        book.close()


def column(path: Path, header: str, sheet: str = "在保", header_row: int = 0) -> list[object]:
    grid = values(path, sheet)
    index = grid[header_row].index(header)
    return [row[index] for row in grid[header_row + 1:]]


def fill(path: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["fill", str(path), *args])
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- overrides
def test_a_sheet_override_changes_the_graded_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [loan("G1", 95)]  # overdue 95 > 90 (default) → 风险; > 100 is needed when the sheet says so
    plain = make_book(tmp_path / "plain.xlsx", rows, params=None)
    assert fill(plain, "--ruleset", "guarantee", capsys=capsys)[0] == 0
    assert column(plain, "风险分类") == ["风险"]

    book = make_book(tmp_path / "book.xlsx", rows, [["参数", "取值"], ["风险类逾期天数(超过即风险)", 100]])
    code, err = fill(book, "--ruleset", "guarantee", capsys=capsys)
    assert code == 0
    assert column(book, "风险分类") == ["关注"]
    assert err.count("\n") == 1  # one summary line
    assert "参数表 参数 / parameters from sheet '参数': risk_overdue_days_above=100" in err


def test_param_on_the_command_line_beats_the_sheet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], [["risk_overdue_days_above", 100]])
    code, err = fill(book, "-r", "guarantee", "--param", "risk_overdue_days_above=90", capsys=capsys)
    assert code == 0
    assert column(book, "风险分类") == ["风险"]
    assert "命令行参数 / parameters from --param: risk_overdue_days_above=90" in err
    assert "over the sheet: risk_overdue_days_above" in err


def test_the_ruleset_row_names_the_ruleset_when_none_is_given(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], [["规则集", "guarantee"], ["风险类逾期天数", 100]])
    code, err = fill(book, capsys=capsys)
    assert code == 0 and column(book, "风险分类") == ["关注"]
    assert "ruleset guarantee from the 参数 sheet" in err


def test_no_ruleset_anywhere_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], [["风险类逾期天数", 100]])
    before = book.read_bytes()
    code, err = fill(book, capsys=capsys)
    assert code == 2
    assert err.count("\n") == 1 and "--ruleset" in err and "规则集" in err
    assert book.read_bytes() == before


def test_explicit_ruleset_wins_over_a_conflicting_ruleset_row(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], [["规则集", "credit"]])
    code, err = fill(book, "--ruleset", "guarantee", capsys=capsys)
    assert code == 0 and column(book, "风险分类") == ["风险"]
    assert "规则集 row names 'credit'; --ruleset guarantee used" in err


def test_sheet_params_can_be_switched_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], [["risk_overdue_days_above", 100]])
    code, err = fill(book, "-r", "guarantee", "--no-sheet-params", capsys=capsys)
    assert code == 0 and column(book, "风险分类") == ["风险"]
    assert "from sheet" not in err


# --------------------------------------------------------------------------- as_of_date
@pytest.mark.parametrize("date1904, sheet_value", [
    (False, AS_OF),  # a date cell
    (False, "2024-06-30"),  # date text
    (False, 45473),  # a serial typed without a date format (1900 system)
    (True, 44011),  # the same day in a 1904-system workbook
])
def test_blank_as_of_cells_are_graded_with_the_sheet_date_but_stay_blank(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], date1904: bool, sheet_value: object) -> None:
    rows = [loan("G1", 0), loan("G2", 0, as_of=None), loan("G3", 0, as_of=dt.datetime(2024, 9, 30))]
    book = make_book(tmp_path / "book.xlsx", rows, [["规则集", "guarantee"], ["评估基准日", sheet_value]],
                     date1904=date1904)
    code, err = fill(book, capsys=capsys)
    assert code == 0
    assert column(book, "状态") == ["OK", "OK", "OK"]
    assert column(book, "分类基准日")[1] is None  # the input cell was not written
    due = column(book, "回访计划报送截止日")  # the 10th of the quarter after as_of_date
    assert due[:2] == [dt.datetime(2024, 7, 10)] * 2 and due[2] == dt.datetime(2024, 10, 10)
    assert "基准日 / as_of_date 2024-06-30" in err and "graded 1 blank cell(s), left blank" in err


def test_a_table_without_an_as_of_column_takes_the_sheet_date(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "在保"
    header = [h for h in HEADER if h != "分类基准日"]
    sheet.append(header)
    sheet.append([v for h, v in zip(HEADER, loan("G1", 0), strict=True) if h != "分类基准日"])
    book.create_sheet("参数").append(["as_of_date", AS_OF])
    book.save(tmp_path / "book.xlsx")
    report = fill_workbook(tmp_path / "book.xlsx", "guarantee")
    assert report.ok == 1 and report.params.as_of_filled == 1
    assert column(tmp_path / "book.xlsx", "回访计划报送截止日") == [dt.datetime(2024, 7, 10)]


# --------------------------------------------------------------------------- unknown and bad rows
def test_an_unknown_key_is_reported_as_ignored_and_does_not_fail(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    params = [["参数", "取值"], ["typo_param", 3], ["credit.grade_a_min_score", 90], ["说明: 清空取值 = 默认值", None]]
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], params)
    code, err = fill(book, "-r", "guarantee", capsys=capsys)
    assert code == 0 and column(book, "风险分类") == ["风险"]
    # another ruleset's scoped row is not "ignored"; a note with a blank value is no row at all
    assert "已忽略 / ignored (no parameter of guarantee): typo_param" in err
    assert "grade_a_min_score" not in err and "说明" not in err


@pytest.mark.parametrize("key, value, fragment", [
    ("risk_overdue_days_above", "abc", "'abc'"),
    ("风险类逾期天数(超过即风险)", -5, "-5"),  # below the parameter's minimum
    ("评估基准日", "下周一", "'下周一'"),
])
def test_a_bad_value_fails_with_one_line_naming_sheet_row_and_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object, fragment: str) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], [["参数", "取值"], ["规则集", "guarantee"], [key, value]])
    before = book.read_bytes()
    code, err = fill(book, capsys=capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "[参数]" in err and "row 3 (B3)" in err and fragment in err
    assert book.read_bytes() == before  # nothing written


def test_a_bad_command_line_value_is_not_blamed_on_the_sheet(tmp_path: Path) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95)], [["risk_overdue_days_above", "abc"]])
    with pytest.raises(ParameterError) as caught:  # --param replaces the bad sheet value: fine
        fill_workbook(book, "guarantee", params={"risk_overdue_days_above": "x"})
    assert "[参数]" not in str(caught.value) and "'x'" in str(caught.value)
    assert fill_workbook(book, "guarantee", params={"risk_overdue_days_above": "100"}).ok == 1
    with pytest.raises(ParameterError, match="--param as_of_date"):
        fill_workbook(book, "guarantee", params={"as_of_date": "soon", "risk_overdue_days_above": "100"})


# --------------------------------------------------------------------------- the workbook itself
def test_only_the_filled_sheet_changes_and_the_parameter_sheet_keeps_its_bytes(tmp_path: Path) -> None:
    book = make_book(tmp_path / "book.xlsx", [loan("G1", 95), loan("G2", 0, as_of=None)],
                     [["参数", "取值"], ["risk_overdue_days_above", 100], ["as_of_date", AS_OF]])
    with zipfile.ZipFile(book) as archive:
        before = {info.filename: archive.read(info) for info in archive.infolist()}
    fill_workbook(book, "guarantee")
    with zipfile.ZipFile(book) as archive:
        after = {info.filename: archive.read(info) for info in archive.infolist()}
    assert list(after) == list(before)
    assert {name for name in before if before[name] != after[name]} == {"xl/worksheets/sheet1.xml"}


def test_a_shipped_template_is_filled_with_its_own_parameter_sheet(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The template's 参数 sheet (规则集 row, every parameter at its default, a blank as_of_date)."""
    path = tmp_path / "review.xlsm"
    shutil.copyfile(TEMPLATES / "guarantee_review.xlsm", path)
    book = openpyxl.load_workbook(path, keep_vba=True)
    params = book["参数"]
    row_of = {params.cell(r, 1).value: r for r in range(1, params.max_row + 1)}
    params.cell(row_of["risk_overdue_days_above"], 2).value = 10_000  # nothing is 风险 by overdue days
    params.cell(row_of["as_of_date"], 2).value = AS_OF
    main_sheet = book.worksheets[0]
    header_row = next(r for r in range(1, 10) if main_sheet.cell(r, 3).value == "分类基准日")
    main_sheet.cell(header_row + 1, 3).value = None
    book.save(path)

    code, err = fill(path, "--values", capsys=capsys)
    assert code == 0
    assert "ruleset guarantee from the 参数 sheet" in err and "risk_overdue_days_above=10000" in err
    assert "18 more at their defaults" in err and "graded 1 blank cell(s)" in err
    grid = values(path, main_sheet.title)
    header = grid[header_row - 1]
    body = [row for row in grid[header_row:] if row[0] is not None]
    risk, rule = header.index("风险分类"), header.index("触发规则")
    assert body[0][header.index("分类基准日")] is None and body[0][header.index("状态")] == "OK"
    assert not any(row[rule] == "GR-3b" for row in body)  # the overdue rule no longer fires
    assert any(row[risk] for row in body)


# --------------------------------------------------------------------------- same as the add-in
def fake_book_of(path: Path) -> FakeBook:
    """The workbook as xlwings would hand it to the add-in: numbers as floats, date cells as datetimes."""
    source = openpyxl.load_workbook(path)
    book = FakeBook(fullname=str(path))
    book.api.Date1904 = source.epoch == CALENDAR_MAC_1904
    for ws in source.worksheets:
        sheet = book.sheets.add(ws.title)
        for cells in ws.iter_rows():
            for cell in cells:
                value = cell.value
                if value is None:
                    continue
                sheet.cells[(cell.row, cell.column)] = float(value) if type(value) is int else value
    return book


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith("'"):
        value = value[1:]  # the add-in's guard against Excel re-typing text
    if value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@pytest.mark.parametrize("params, date1904", [
    ([["规则集", "guarantee"], ["as_of_date", AS_OF]], False),
    ([["参数", "取值"], ["规则集", "guarantee"], ["风险类逾期天数(超过即风险)", 100], ["guarantee.watch_min_warning_count", 1],
      ["typo_param", 1], ["评估基准日", 45473]], False),
    ([["规则集", "guarantee"], ["risk_visit_interval_days", 10], ["as_of_date", 44011]], True),
])
def test_tier_fill_writes_what_the_fill_button_writes(tmp_path: Path, params: list[list[object]],
                                                      date1904: bool) -> None:
    from addin import macros

    rows = [loan("G1", 95), loan("G2", 0, as_of=None), [None] * len(HEADER), loan("G3", "abc"),
            loan("G4", 300, as_of=None), loan("G5", 0)]
    rows[5][5] = 0.8  # one warning signal
    path = make_book(tmp_path / "book.xlsx", rows, params, date1904=date1904)
    fake = fake_book_of(path)
    summary = macros.fill_tiers(book=fake)
    assert summary is not None, fake.app.alerts
    report = fill_workbook(path)

    sheet = fake.sheet("在保")
    button_header = [sheet.cells.get((1, c)) for c in range(1, 40)]
    grid = values(path)
    compared = 0
    for index, header in enumerate(grid[0]):
        if index < len(HEADER) or header is None:
            continue
        col = button_header.index(header) + 1
        from_button = [_cell(sheet.cells.get((r, col))) for r in range(2, 2 + len(rows))]
        from_fill = [_cell(row[index]) for row in grid[1:1 + len(rows)]]
        assert from_fill == from_button, header
        compared += 1
    assert compared == len(output_specs(api.load_ruleset("guarantee")))  # status, errors, notes, every output
    assert (report.rows, report.ok, report.error) == (summary.rows, summary.ok, summary.error)
    assert column(path, "分类基准日")[1] is None and sheet.cells.get((3, 3)) is None


# --------------------------------------------------------------------------- one way
def test_the_parameter_parsing_is_the_engines_and_needs_no_excel() -> None:
    from addin import excel_values, tiering
    from engine import workbook_params

    assert tiering.read_params is workbook_params.read_params
    assert tiering.ParamSet is workbook_params.ParamSet
    assert excel_values.serial_to_date_or_raw is workbook_params.serial_to_date_or_raw
    code = ("import sys, engine.workbook_params, engine.fill, engine.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('xlwings', 'addin')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

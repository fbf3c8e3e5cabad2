"""`tier fill` keeps everything it does not own (issue 6): compared part by part inside the zip.

The fixture is a macro workbook an analyst might really have: a credit table (an Excel table with
data validation and conditional formats), a chart and an image on the same sheet, a second sheet
of formulas reading the table, defined names and a VBA project. A fill must change only the
target sheet's XML (and the table part when it adds columns to the table), write exactly the output
cells, leave input cells alone, be a byte-identical no-op the second time, and never leave a
half-written workbook behind.
"""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from engine import api
from engine.errors import InputError
from engine.fill import fill_workbook, output_specs

REPO = Path(__file__).resolve().parent.parent
CREDIT_HEADERS = ["客户编号", "客户名称", "评估日期", "月均销售额", "平均回款天数", "是否新客户", "最近拜访日期"]
ROWS = [
    ["C001", "华东纸业", "2024-06-30", 25000, 20, "否", "2024-05-15"],
    ["C002", "=cmd|' /C calc'!A0", "2024-06-30", "12,000", 50, "否", None],
    ["C003", "南方包装", "2024-06-30", 3000, None, "是", "2023-12-01"],
    ["C004", "坏数据", "2024-06-30", "abc", 20, "否", None],
    [None, None, None, None, None, None, None],
    ["C006", "北方物流", "2024/6/30", 18000.5, 75, "N", "2024-07-31"],
]


def _png() -> bytes:
    """A valid 8×8 red PNG made by hand (no imaging library needed)."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def vba_project(folder: Path) -> Path:
    """A real vbaProject.bin (two sheets, a standard module), as our template builder writes it."""
    from workbook_templates.vba_project import build_vba_project

    return build_vba_project(folder / "vbaProject.bin", sheet_count=2)


def make_fixture(path: Path, with_outputs: bool = False) -> Path:
    """The macro workbook described in the module docstring."""
    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"created": __import__("datetime").datetime(2024, 1, 1)})
    book.add_vba_project(str(vba_project(path.parent)))
    sheet = book.add_worksheet("客户")
    date_fmt = book.add_format({"num_format": "yyyy-mm-dd"})
    headers = CREDIT_HEADERS + (["状态", "客户等级"] if with_outputs else [])
    sheet.write_row(0, 0, ["客户信用分级 — 测试工作簿"])
    for r, row in enumerate(ROWS, start=3):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, str):
                sheet.write_string(r, c, value)
            else:
                sheet.write_number(r, c, value)
        if with_outputs and row[0]:
            sheet.write_formula(r, 8, f'=IF(D{r + 1}>0,"A","C")', None, "A")
    sheet.add_table(2, 0, 2 + len(ROWS), len(headers) - 1,
                    {"name": "客户表", "columns": [{"header": h} for h in headers], "style": "Table Style Medium 2"})
    sheet.data_validation(3, 5, 2 + len(ROWS), 5, {"validate": "list", "source": ["是", "否"]})
    sheet.conditional_format(3, 3, 2 + len(ROWS), 3, {"type": "cell", "criteria": ">", "value": 20000,
                                                      "format": book.add_format({"bg_color": "#C6EFCE"})})
    sheet.set_column(0, 6, 14, None)
    sheet.set_column(2, 2, 12, date_fmt)
    chart = book.add_chart({"type": "column"})
    chart.add_series({"name": "月均销售额", "categories": "='客户'!$A$4:$A$9", "values": "='客户'!$D$4:$D$9"})
    sheet.insert_chart("B14", chart)
    image = path.parent / "logo.png"
    image.write_bytes(_png())
    sheet.insert_image("H14", str(image))
    sheet.insert_button("K2", {"macro": "FillTiers", "caption": "Fill"})
    other = book.add_worksheet("汇总")
    other.write_string(0, 0, "客户数")
    other.write_formula(0, 1, "=COUNTA('客户'!A4:A9)", None, 5)
    other.write_formula(1, 1, "=SUM(客户表[月均销售额])", None, 0)
    book.define_name("销售额", "='客户'!$D$4:$D$9")
    book.define_name("汇总!本地名", "='汇总'!$B$1")
    book.set_vba_name("ThisWorkbook")
    book.close()
    return path


def parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def sheet_values(path: Path, sheet: str = "客户") -> list[list[object]]:
    book = openpyxl.load_workbook(path)
    try:
        return [list(row) for row in book[sheet].iter_rows(values_only=True)]
    finally:
        book.close()


@pytest.fixture()
def workbook(tmp_path: Path) -> Path:
    return make_fixture(tmp_path / "客户分级.xlsm")


def test_fill_changes_only_the_target_sheet_and_table(workbook: Path) -> None:
    before = parts(workbook)
    report = fill_workbook(workbook, "credit")
    after = parts(workbook)
    assert list(after) == list(before), "the part list and its order are kept"
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"xl/worksheets/sheet1.xml", "xl/tables/table1.xml"}
    for name in ("xl/vbaProject.bin", "xl/charts/chart1.xml", "xl/media/image1.png", "xl/worksheets/sheet2.xml",
                 "xl/workbook.xml", "xl/drawings/drawing1.xml", "xl/styles.xml"):
        assert after[name] == before[name], name
    sheet_xml = after["xl/worksheets/sheet1.xml"].decode()
    for kept in ("<dataValidations", "<conditionalFormatting", "<drawing ", "<legacyDrawing ", "<tableParts"):
        assert kept in sheet_xml, kept
    assert report.rows == 5 and report.ok + report.error == 5
    assert report.columns_added[:4] == ("状态", "错误", "备注", "销售额得分")


def test_fill_writes_exactly_the_output_cells(workbook: Path) -> None:
    before = sheet_values(workbook)
    fill_workbook(workbook, "credit")
    after = sheet_values(workbook)
    definition = api.load_ruleset("credit")
    specs = output_specs(definition)
    width = len(CREDIT_HEADERS)
    assert after[2][:width] == before[2][:width]
    assert after[2][width:width + len(specs)] == [zh for _k, zh, _e, _t in specs]
    for r in range(len(after)):
        assert after[r][:width] == before[r][:width], f"input cells of row {r + 1} unchanged"
        if r > 2 + len(ROWS) or r < 2:
            assert all(v is None for v in after[r][width:width + len(specs)]), f"nothing outside the table, row {r + 1}"
    expected = api.evaluate("credit", [dict(zip(CREDIT_HEADERS, row)) for row in ROWS if row[0]])
    rows = {row[0]: row for row in after[3:3 + len(ROWS)] if row[0]}
    col = {key: width + i for i, (key, *_r) in enumerate(specs)}
    for _i, exp in expected.iterrows():
        got = rows[exp["客户编号"]]
        assert got[col["status"]] == exp["status"]
        assert (got[col["errors"]] or "") == exp["errors"]
        assert got[col["grade"]] == exp["grade"]
    assert rows["C001"][col["grade"]] == "A" and rows["C001"][col["total_score"]] == 100
    assert rows["C004"][col["status"]] == "ERROR" and rows["C004"][col["grade"]] == "待定"
    assert "INVALID:monthly_avg_sales" in rows["C004"][col["errors"]]
    blank_row = after[3 + 4]
    assert all(v is None for v in blank_row), "an all-blank input row gets no outputs"


def test_formula_like_text_stays_text(workbook: Path) -> None:
    """Output text is written as an inline string, which Excel never evaluates (OWASP)."""
    from engine.fill import _cell_xml

    xml = _cell_xml("", "A1", None, "inlineStr", "=cmd|' /C calc'!A0")
    assert 't="inlineStr"' in xml and "<f>" not in xml and "=cmd|&apos;" not in xml
    fill_workbook(workbook, "credit")
    book = openpyxl.load_workbook(workbook)
    assert book["客户"]["B5"].value == "=cmd|' /C calc'!A0"
    assert book["客户"]["B5"].data_type == "s", "input text that looks like a formula is still a string"
    book.close()


def test_second_fill_is_a_byte_identical_no_op(workbook: Path) -> None:
    fill_workbook(workbook, "credit")
    first = workbook.read_bytes()
    mtime = workbook.stat().st_mtime_ns
    report = fill_workbook(workbook, "credit")
    assert not report.changed and report.cells_written == 0
    assert workbook.read_bytes() == first
    assert workbook.stat().st_mtime_ns == mtime, "a no-op does not even rewrite the file"


def test_output_option_leaves_the_original_untouched(workbook: Path, tmp_path: Path) -> None:
    original = workbook.read_bytes()
    out = tmp_path / "filled.xlsm"
    fill_workbook(workbook, "credit", output=out)
    assert workbook.read_bytes() == original
    assert sheet_values(out)[3][7] == "OK"


def test_formula_output_cells_are_kept_unless_values(tmp_path: Path) -> None:
    path = make_fixture(tmp_path / "with_formulas.xlsm", with_outputs=True)
    report = fill_workbook(path, "credit")
    assert "客户等级" in report.formula_columns_kept
    book = openpyxl.load_workbook(path)
    assert str(book["客户"]["I4"].value).startswith("=IF("), "a formula in an output column is not overwritten"
    assert book["客户"]["H4"].value == "OK", "status (no formula) is filled"
    book.close()
    report = fill_workbook(path, "credit", values=True)
    assert report.formula_columns_kept == ()
    book = openpyxl.load_workbook(path)
    assert book["客户"]["I4"].value == "A"
    assert book["客户"]["I7"].value == "待定"
    book.close()


def test_params_change_the_result(workbook: Path) -> None:
    fill_workbook(workbook, "credit", params={"grade_a_min_score": 101})
    values = sheet_values(workbook)
    grade_col = len(CREDIT_HEADERS) + [k for k, *_r in output_specs(api.load_ruleset("credit"))].index("grade")
    assert values[3][grade_col] == "B"


def test_missing_required_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no_date.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("S")
    sheet.write_row(0, 0, ["客户编号", "月均销售额", "平均回款天数"])
    sheet.write_row(1, 0, ["C1", 100, 10])
    book.close()
    original = path.read_bytes()
    with pytest.raises(InputError, match="评估日期"):
        fill_workbook(path, "credit")
    assert path.read_bytes() == original


def test_cells_in_the_way_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "blocked.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("S")
    sheet.write_row(0, 0, ["评估日期", "月均销售额", "平均回款天数"])
    sheet.write_row(1, 0, ["2024-06-30", 100, 10])
    sheet.write_string(1, 5, "someone else's note")
    book.close()
    with pytest.raises(InputError, match="F2"):
        fill_workbook(path, "credit")


def test_plain_sheet_without_table_and_shared_strings(tmp_path: Path) -> None:
    """A workbook saved by openpyxl (shared strings, no ListObject) fills too; dates typed as dates."""
    path = tmp_path / "plain.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "数据"
    sheet.append(["评估日期", "月均销售额", "平均回款天数", "最近拜访日期"])
    sheet.append([__import__("datetime").datetime(2024, 6, 30), 25000, 20, __import__("datetime").datetime(2024, 5, 31)])
    sheet["A2"].number_format = "yyyy-mm-dd"
    sheet["D2"].number_format = "yyyy-mm-dd"
    book.save(path)
    fill_workbook(path, "credit")
    values = sheet_values(path, "数据")
    header = values[0]
    row = dict(zip(header, values[1]))
    assert row["客户等级"] == "A" and row["状态"] == "OK"
    assert str(row["下次拜访日期"])[:10] == "2024-06-30"


def test_not_a_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a valid"):
        fill_workbook(path, "credit")


def test_cli_fill(workbook: Path) -> None:
    from engine.cli import main

    assert main(["fill", str(workbook), "--ruleset", "credit"]) == 0
    assert sheet_values(workbook)[3][7] == "OK"
    assert main(["fill", str(workbook), "--ruleset", "credit", "--sheet", "nope"]) == 2


def test_kill_during_write_leaves_the_original_intact(workbook: Path) -> None:
    """SIGKILL while the new zip is half written: the target still holds the original bytes."""
    original = workbook.read_bytes()
    script = textwrap.dedent(f"""
        import sys, time, zipfile
        sys.path.insert(0, {str(REPO)!r})
        real = zipfile.ZipFile.writestr
        count = [0]
        def slow(self, *args, **kwargs):
            count[0] += 1
            if count[0] == 3:
                print("writing", flush=True)
                time.sleep(60)
            return real(self, *args, **kwargs)
        zipfile.ZipFile.writestr = slow
        from engine.fill import fill_workbook
        fill_workbook({str(workbook)!r}, "credit")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=str(REPO))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert workbook.read_bytes() == original
    leftovers = [p for p in workbook.parent.iterdir() if p.name.endswith(".part")]
    for leftover in leftovers:  # the killed writer's temporary file: never the target
        assert leftover != workbook
    fill_workbook(workbook, "credit")
    assert workbook.read_bytes() != original
    time.sleep(0)

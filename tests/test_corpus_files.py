"""Bad input files: each is refused with one clear line (exit 2), never a traceback or a partial file.

PRODUCT §10 / issue 9: empty files, damaged and encrypted workbooks, CSV encodings, header
problems, huge inputs and zip bombs — through `tier eval` (a subprocess, as a user runs it) and
through the Python API (`engine.io.read_table`, `engine.evaluate`), which raise `InputError` with
the same message. Files are built at test time by `tests/corpus/files.py`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

import engine
from engine import io as tio
from engine.errors import InputError
from tests.corpus import files as bad

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "corpus"


def tier(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TIERBOOK_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, env=environment, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line_refusal(run: subprocess.CompletedProcess, fragment: str) -> str:
    """Exit 2, exactly one line on stderr starting 'tier: ', containing `fragment`; nothing on stdout."""
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert lines[0].startswith("tier: ")
    assert fragment in lines[0], lines[0]
    assert run.stdout == ""
    return lines[0][len("tier: "):]


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Files in folder other than `keep`: a refused run must leave nothing behind."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --------------------------------------------------------------------------- bad files, one line each
XLSX_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty": (lambda d: _touch(d / "empty.xlsx"), "文件为空 / the workbook file is empty (0 bytes)"),
    "truncated": (lambda d: bad.truncated(bad.credit_xlsx(d, "src.xlsx"), d / "truncated.xlsx"),
                  "the workbook is damaged (truncated zip)"),
    "not-a-zip": (lambda d: _write(d / "text.xlsx", b"customer,score\r\nC1,90\r\n"),
                  "not a valid .xlsx (not a zip archive)"),
    "password-protected": (lambda d: bad.encrypted_like(d / "locked.xlsx"),
                           "the workbook is password-protected (encrypted) or an old .xls"),
    "corrupted-member": (lambda d: bad.corrupted_member(bad.credit_xlsx(d, "src.xlsx"), d / "crc.xlsx"),
                         "cannot open the workbook"),
    "damaged-sheet-xml": (lambda d: _damaged_sheet(d), "cannot read the sheet: ParseError"),
    "no-workbook-part": (lambda d: bad.rezip(bad.credit_xlsx(d, "src.xlsx"), d / "nowb.xlsx",
                                             drop=("xl/workbook.xml",)), "not an Excel workbook"),
    "billion-laughs-xml": (lambda d: bad.shared_strings_replaced(bad.credit_xlsx(d, "src.xlsx"), d / "lol.xlsx",
                                                                 bad.BILLION_LAUGHS), "amplification"),
    "external-entity-xml": (lambda d: bad.shared_strings_replaced(bad.credit_xlsx(d, "src.xlsx"), d / "xxe.xlsx",
                                                                  bad.XXE), "undefined entity"),
    "zip-bomb": (lambda d: bad.zip_bomb(d / "bomb.xlsx"), "refused as a possible zip bomb"),
    "zip-bomb-lying-sizes": (lambda d: bad.lying_zip_bomb(d / "liar.xlsx"), "Bad CRC-32"),
    "too-many-columns": (lambda d: bad.wide_xlsx(d / "wide.xlsx", 17_000),
                         "列数过多 / 17,000 columns, over the limit of 16,384"),
}

CSV_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty": (lambda d: _touch(d / "empty.csv"), "the CSV file is empty (no header row)"),
    "bom-only": (lambda d: _write(d / "bom.csv", b"\xef\xbb\xbf"), "the CSV file is empty (no header row)"),
    "whitespace-only": (lambda d: _write(d / "blank.csv", b" \r\n\t\r\n"), "the CSV file is empty (no header row)"),
    "undecodable": (lambda d: _write(d / "binary.csv", b"\xff\xfe\xff\xff,\x81\r\n"),
                    "cannot decode the CSV as UTF-8 or GBK/GB18030"),
    "duplicated-header": (lambda d: bad.credit_csv(d, header=bad.CREDIT_HEADER[:6] + ["月均销售额(元)"]),
                          "duplicated header '月均销售额(元)'"),
    "two-headers-one-input": (lambda d: bad.credit_csv(d, header=bad.CREDIT_HEADER[:6] + ["月均销售额"]),
                              "input 'monthly_avg_sales' appears in two columns: '月均销售额(元)' and '月均销售额'"),
    "too-many-columns": (lambda d: _write(d / "wide.csv", (",".join(f"c{i}" for i in range(20_000)) + "\r\n").encode()),
                         "列数过多 / 20,000 columns, over the limit of 16,384"),
    "zip-named-csv": (lambda d: _write(d / "book.csv", bad.credit_xlsx(d, "src.xlsx").read_bytes()),
                      "cannot decode the CSV"),
}


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _damaged_sheet(folder: Path) -> Path:
    source = bad.credit_xlsx(folder, "src.xlsx")
    with zipfile.ZipFile(source) as archive:
        name = bad.sheet_part(source)
        xml = archive.read(name)
    return bad.rezip(source, folder / "damaged.xlsx", {name: xml[: len(xml) // 2]})


ALL_CASES = [(f"xlsx-{k}", *v) for k, v in XLSX_CASES.items()] + [(f"csv-{k}", *v) for k, v in CSV_CASES.items()]


@pytest.mark.parametrize(("name", "build", "fragment"), ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_bad_file_refused_cli_and_api(tmp_path: Path, name: str, build, fragment: str) -> None:
    """One line (CLI) / InputError (API) with the same text; no output file; nothing modified."""
    source = build(tmp_path)
    previous = tmp_path / "previous.xlsx"  # an earlier result the refused run must not touch
    previous.write_bytes(b"an earlier result")
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    message = assert_one_line_refusal(tier("eval", "credit", str(source), "-o", str(tmp_path / "out.csv")), fragment)
    assert source.name in message, "the message names the file"
    assert_one_line_refusal(tier("eval", "credit", str(source), "-o", str(previous)), fragment)
    assert leftovers(tmp_path, set(before)) == [], "no output, no temporary file"
    assert {p.name: digest(p) for p in tmp_path.iterdir()} == before, "inputs and earlier outputs are never modified"

    from engine.rows import alias_index

    compiled = engine.compile("credit")
    with pytest.raises(InputError) as caught:
        frame = tio.read_table(source, known_headers=set(alias_index(compiled.definition)))
        engine.evaluate(compiled, frame)  # header problems surface when the columns are mapped
    from engine.rows import HeaderError

    # a DataFrame does not know its file: the CLI (which does) puts it in front of header errors
    prefix = f"{source.name}: " if isinstance(caught.value, HeaderError) else ""
    assert prefix + str(caught.value).splitlines()[0] == message


@pytest.mark.parametrize(("name", "build", "fragment"),
                         [c for c in ALL_CASES if c[0].startswith("csv-")],
                         ids=[c[0] for c in ALL_CASES if c[0].startswith("csv-")])
def test_bad_csv_chunked_path_same_refusal(tmp_path: Path, name: str, build, fragment: str) -> None:
    """Large CSVs take the chunked path (engine.stream): it must refuse the same files the same way."""
    source = build(tmp_path)
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / "out.csv"), "--chunk-rows", "2")
    assert_one_line_refusal(run, fragment)
    assert not (tmp_path / "out.csv").exists()


def test_zip_bomb_refused_before_inflating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal comes from the central directory: no member is ever opened."""
    bomb = bad.zip_bomb(tmp_path / "bomb.xlsx")
    assert bomb.stat().st_size < 2_000_000
    with zipfile.ZipFile(bomb) as archive:
        assert sum(i.file_size for i in archive.infolist()) > 1_000_000_000

    def no_inflating(*_args, **_kwargs):
        raise AssertionError("a member of the zip bomb was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_inflating)
    with pytest.raises(InputError, match="refused as a possible zip bomb"):
        tio.read_table(bomb)
    from engine.fill import fill_workbook

    with pytest.raises(InputError, match="refused as a possible zip bomb"):
        fill_workbook(bomb, "credit")


def test_zip_bomb_by_ratio_under_the_size_limit(tmp_path: Path) -> None:
    """64 MB from 64 KB is no spreadsheet either (ratio > 200 above 50 MB)."""
    bomb = bad.zip_bomb(tmp_path / "dense.xlsx", megabytes=64)
    assert_one_line_refusal(tier("eval", "credit", str(bomb), "-o", str(tmp_path / "o.csv")),
                            "refused as a possible zip bomb")


# --------------------------------------------------------------------------- size limits
def test_csv_over_the_size_limit(tmp_path: Path) -> None:
    source = bad.credit_csv(tmp_path)
    size = source.stat().st_size
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.csv"),
               env={"TIERBOOK_MAX_INPUT_BYTES": str(size - 1)})
    message = assert_one_line_refusal(run, f"the CSV is {size:,} bytes, over the limit of {size - 1:,}")
    assert "TIERBOOK_MAX_INPUT_BYTES" in message
    ok = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.csv"), env={"TIERBOOK_MAX_INPUT_BYTES": str(size)})
    assert ok.returncode == 0, ok.stderr


def test_column_limit_is_configurable(tmp_path: Path) -> None:
    source = bad.credit_csv(tmp_path)
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.csv"), env={"TIERBOOK_MAX_COLUMNS": "6"})
    assert_one_line_refusal(run, "7 columns, over the limit of 6 (TIERBOOK_MAX_COLUMNS)")
    junk = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.csv"), env={"TIERBOOK_MAX_COLUMNS": "many"})
    assert_one_line_refusal(junk, "TIERBOOK_MAX_COLUMNS must be a whole number")


def test_parquet_over_the_size_limit(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pd.DataFrame({"评估日期": ["2024-06-30"] * 50, "月均销售额": ["1"] * 50}).to_parquet(source)
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.xlsx"), env={"TIERBOOK_MAX_INPUT_BYTES": "10"})
    assert_one_line_refusal(run, "uncompressed, over the limit of 10")
    garbage = _write(tmp_path / "bad.parquet", b"PAR1 not really")
    for target in ("o.csv", "o.xlsx"):
        assert_one_line_refusal(tier("eval", "credit", str(garbage), "-o", str(tmp_path / target)),
                                "cannot read Parquet")
    assert not (tmp_path / "o.xlsx").exists() and not (tmp_path / "o.csv").exists()


# --------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "gb18030", "utf-8"])
@pytest.mark.parametrize("chunked", [False, True])
def test_csv_encodings_give_identical_results(tmp_path: Path, encoding: str, chunked: bool) -> None:
    reference = bad.credit_csv(tmp_path, "ref.csv", "utf-8")
    source = bad.credit_csv(tmp_path, f"in-{encoding}.csv", encoding)
    extra = ["--chunk-rows", "2"] if chunked else []
    for path, out in ((reference, "ref-out.csv"), (source, "out.csv")):
        run = tier("eval", "credit", str(path), "-o", str(tmp_path / out), *extra)
        assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "ref-out.csv").read_bytes()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_bytes().decode("utf-8-sig"))))
    assert [r["客户名称"] for r in rows] == ["甲公司", "乙公司", "丙公司"]  # Chinese survives every encoding
    assert [r["errors"] for r in rows] == [
        "", "INVALID:monthly_avg_sales;MISSING:avg_collection_days;INVALID:is_new_customer", ""]


def test_csv_with_bom_header_maps_first_column(tmp_path: Path) -> None:
    """A BOM must not stick to the first header (it would no longer name its input)."""
    source = tmp_path / "bom.csv"
    source.write_bytes(bad.csv_bytes([["评估日期", "月均销售额", "平均回款天数"], ["2024-06-30", "25,000", "20"]],
                                     "utf-8-sig"))
    frame = engine.evaluate("credit", tio.read_table(source))
    assert list(frame.columns[:3]) == ["评估日期", "月均销售额", "平均回款天数"]
    assert (frame.loc[0, "status"], frame.loc[0, "grade"]) == ("OK", "A")


# --------------------------------------------------------------------------- headers
def test_missing_required_column_every_row_missing(tmp_path: Path) -> None:
    """A required column that is absent is not a file error: every row gets its MISSING code."""
    header = [h for h in bad.CREDIT_HEADER if h != "月均销售额(元)"]
    rows = [[c for h, c in zip(bad.CREDIT_HEADER, r) if h != "月均销售额(元)"] for r in bad.CREDIT_ROWS]
    source = bad.credit_csv(tmp_path, header=header, rows=rows)
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.csv"))
    assert run.returncode == 0, run.stderr
    assert "ERROR 3" in run.stderr
    out = list(csv.DictReader(io.StringIO((tmp_path / "o.csv").read_bytes().decode("utf-8-sig"))))
    assert [r["errors"] for r in out] == [
        "MISSING:monthly_avg_sales",
        "MISSING:monthly_avg_sales;MISSING:avg_collection_days;INVALID:is_new_customer",
        "MISSING:monthly_avg_sales"]
    assert [r["grade"] for r in out] == ["待定"] * 3
    compiled = engine.compile("credit")
    from engine.prepare import prepare_row

    assert prepare_row(compiled, {"as_of_date": "2024-06-30"}).reasons["MISSING:monthly_avg_sales"] == \
        "必填项为空 / required value is blank"


def test_missing_optional_columns_take_their_defaults(tmp_path: Path) -> None:
    source = tmp_path / "min.csv"
    source.write_bytes(bad.csv_bytes([["评估日期", "月均销售额", "平均回款天数"], ["2024-06-30", "25,000", "20"]]))
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.csv"))
    assert run.returncode == 0, run.stderr
    (row,) = csv.DictReader(io.StringIO((tmp_path / "o.csv").read_bytes().decode("utf-8-sig")))
    assert (row["status"], row["grade"], row["visit_status"]) == ("OK", "A", "未拜访")


def test_header_matching_two_inputs_names_both(tmp_path: Path) -> None:
    ruleset = CORPUS / "ambiguous_alias.yaml"
    source = tmp_path / "in.csv"
    source.write_bytes(bad.csv_bytes([["评估日期", "月均销售额", "日期"], ["2024-06-30", "25,000", "2024-05-31"]]))
    message = assert_one_line_refusal(tier("eval", str(ruleset), str(source), "-o", str(tmp_path / "o.csv")),
                                      "header '日期' matches several inputs")
    assert "as_of_date" in message and "last_visit_date" in message
    with pytest.raises(InputError, match=r"matches several inputs \(as_of_date, last_visit_date\)"):
        engine.evaluate(str(ruleset), pd.DataFrame({"日期": ["2024-06-30"]}))
    assert not (tmp_path / "o.csv").exists()


def test_sheet_not_found_lists_the_sheets(tmp_path: Path) -> None:
    source = bad.credit_xlsx(tmp_path)
    message = assert_one_line_refusal(tier("eval", "credit", str(source), "--sheet", "客户", "-o",
                                           str(tmp_path / "o.csv")), "no sheet '客户'")
    assert "数据" in message


# --------------------------------------------------------------------------- real Excel cell types
def test_messy_excel_cells_through_tier_eval(tmp_path: Path) -> None:
    """Error values, serial numbers in a date column, date cells and boolean cells from a real .xlsx."""
    source = bad.messy_cells_xlsx(tmp_path)
    before = digest(source)
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / "o.csv"))
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "o.csv").read_bytes().decode("utf-8-sig"))))
    assert [r["errors"] for r in rows] == [
        "INVALID:monthly_avg_sales",                       # #N/A
        "INVALID:as_of_date",                              # 45473 without a date format
        "",                                                # date-time cell, numbers, boolean cell
        "INVALID:monthly_avg_sales;INVALID:is_new_customer",  # #DIV/0!, #VALUE!
    ]
    assert rows[2]["grade"] == "A" and rows[2]["next_visit_date"] == "2024-06-30"
    assert rows[0]["月均销售额(元)"] == "#N/A"  # the error value is shown as Excel shows it
    assert digest(source) == before


FILL_CASES = [(f"xlsx-{k}", *v) for k, v in XLSX_CASES.items() if k != "too-many-columns"]


@pytest.mark.parametrize(("name", "build", "fragment"), FILL_CASES, ids=[c[0] for c in FILL_CASES])
def test_bad_workbook_refused_by_fill(tmp_path: Path, name: str, build, fragment: str) -> None:
    """`tier fill` edits a workbook in place: a damaged one is refused in one line and left as it was.

    (The zip-level fragments differ from `read_table`'s: fill reads the package itself.)
    """
    source = build(tmp_path)
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    run = tier("fill", str(source), "-r", "credit")
    assert_one_line_refusal(run, source.name)
    assert {p.name: digest(p) for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("target", ["o.csv", "o.xlsx", "o.parquet"])
def test_parquet_date_outside_python_dates(tmp_path: Path, target: str) -> None:
    """Found by fuzzing: a Parquet date of year 0 (pandas reads it as datetime64[s]) is an INVALID
    as_of_date on that row — not an internal error while the passthrough column is rendered."""
    import numpy as np

    source = tmp_path / "y0.parquet"
    pd.DataFrame({"评估日期": pd.Series([np.datetime64("0000-12-31"), np.datetime64("2024-06-30")]).astype("datetime64[s]"),
                  "月均销售额": ["25,000", "25,000"], "平均回款天数": ["20", "20"]}).to_parquet(source)
    run = tier("eval", "credit", str(source), "-o", str(tmp_path / target))
    assert run.returncode == 0, run.stderr
    frame = pd.read_csv(tmp_path / target, dtype=str, keep_default_na=False) if target.endswith(".csv") else \
        pd.read_excel(tmp_path / target, dtype=str).fillna("") if target.endswith(".xlsx") else \
        pd.read_parquet(tmp_path / target)
    assert list(frame["errors"]) == ["INVALID:as_of_date", ""]

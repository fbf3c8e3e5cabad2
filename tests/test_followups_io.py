"""Follow-ups on file writing and reading: stale temporary files, header errors naming the file,
atomic PNG pages, boolean input cells spelled as the product spells them.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from engine import cli
from engine import io as tio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "workbook_templates" / "examples"
TWO_HOURS = 2 * 3600


# --------------------------------------------------------------------------- 1. stale .part files
def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _snapshot(folder: Path) -> dict[str, tuple[str, int, bytes]]:
    """name → (kind, mtime ns, bytes): what 'nothing else changed' compares."""
    state = {}
    for entry in sorted(folder.iterdir()):
        info = entry.lstat()
        if entry.is_symlink():
            state[entry.name] = ("link", info.st_mtime_ns, os.readlink(entry).encode())
        elif entry.is_dir():
            state[entry.name] = ("dir", info.st_mtime_ns, b"")
        else:
            state[entry.name] = ("file", info.st_mtime_ns, entry.read_bytes())
    return state


def _plant(folder: Path, target: str) -> tuple[Path, Path]:
    """An old and a fresh temporary file of `target`, and old look-alikes that are not its own."""
    old = folder / f".{target}.k1ll3d_x.part"
    fresh = folder / f".{target}.w0rking_.part"
    for path in (old, fresh):
        path.write_bytes(b"half a file")
    _age(old, TWO_HOURS)
    decoys = [
        ".other.csv.abcdefgh.part",           # another target's leftover
        f".{target}.x.csv.abcdefgh.part",     # the leftover of a target named '{target}.x.csv'
        f".{target}.short.part",              # not mkstemp's 8 characters
        f".{target}.abcdefgh.part.bak",       # not the suffix
        f"{target}.abcdefgh.part",            # not hidden
        f".{target}.abcdefgh.partial",
        "notes.txt",
    ]
    for name in decoys:
        (folder / name).write_bytes(b"keep me")
        _age(folder / name, TWO_HOURS)
    directory = folder / f".{target}.dirdirdi.part"
    directory.mkdir()
    (directory / "inside").write_bytes(b"keep me")
    _age(directory / "inside", TWO_HOURS)
    _age(directory, TWO_HOURS)
    link = folder / f".{target}.linklink.part"
    link.symlink_to(folder / "notes.txt")
    _age(link, TWO_HOURS)
    return old, fresh


def _assert_only_stale_part_removed(before: dict, after: dict, old: Path, written: str) -> None:
    assert old.name in before and old.name not in after, "the killed writer's leftover is removed"
    expected = {name: state for name, state in before.items() if name not in (old.name, written)}
    assert {name: state for name, state in after.items() if name != written} == expected, \
        "the fresh temporary file and every look-alike are untouched"
    assert written in after


@pytest.mark.parametrize("output", ["out.csv", "out.xlsx", "out.parquet"])
def test_eval_removes_the_stale_part_of_its_own_target_only(tmp_path: Path, output: str) -> None:
    source = tmp_path / "credit_customers.csv"
    shutil.copy(EXAMPLES / "credit_customers.csv", source)
    old, fresh = _plant(tmp_path, output)
    before = _snapshot(tmp_path)
    assert cli.main(["eval", "credit", str(source), "-o", str(tmp_path / output)]) == 0
    after = _snapshot(tmp_path)
    _assert_only_stale_part_removed(before, after, old, output)
    assert fresh.read_bytes() == b"half a file"
    assert (tmp_path / f".{output}.dirdirdi.part" / "inside").read_bytes() == b"keep me"


def test_fill_removes_the_stale_part_of_the_workbook_only(tmp_path: Path) -> None:
    workbook = tmp_path / "credit_customers.xlsx"
    shutil.copy(EXAMPLES / "credit_customers.xlsx", workbook)
    old, fresh = _plant(tmp_path, workbook.name)
    before = _snapshot(tmp_path)
    assert cli.main(["fill", str(workbook), "-r", "credit"]) == 0
    after = _snapshot(tmp_path)
    assert after[workbook.name] != before[workbook.name], "the fill really wrote the workbook"
    _assert_only_stale_part_removed(before, after, old, workbook.name)
    assert fresh.read_bytes() == b"half a file"


def test_fill_to_another_file_cleans_that_file_s_parts(tmp_path: Path) -> None:
    workbook = tmp_path / "credit_customers.xlsx"
    shutil.copy(EXAMPLES / "credit_customers.xlsx", workbook)
    source_old, _ = _plant(tmp_path, workbook.name)
    target_old = tmp_path / ".filled.xlsx.k1ll3d_y.part"
    target_old.write_bytes(b"half")
    _age(target_old, TWO_HOURS)
    assert cli.main(["fill", str(workbook), "-r", "credit", "-o", str(tmp_path / "filled.xlsx")]) == 0
    assert not target_old.exists()
    assert source_old.exists(), "the input workbook was not written: its leftovers are not this write's business"


def test_a_part_younger_than_an_hour_stays(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    recent = tmp_path / ".t.csv.abcdefgh.part"
    recent.write_bytes(b"x")
    _age(recent, 3600 - 120)
    with tio.atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert recent.exists() and target.read_bytes() == b"new"
    _age(recent, 3600 + 120)
    assert tio.remove_stale_parts(target) == [recent]
    assert not recent.exists()


def test_the_writer_s_own_temporary_names_match_the_cleanup_pattern(tmp_path: Path) -> None:
    """The pattern is the writer's: if mkstemp's naming changed, cleanup would silently stop."""
    target = tmp_path / "名单 (1).csv"
    seen = []
    for _ in range(20):
        with tio.atomic_path(target) as tmp:
            seen.append(tmp.name)
            tmp.write_bytes(b"x")
    assert all(tio._part_pattern(target).fullmatch(name) for name in seen), seen
    assert not tio._part_pattern(target).fullmatch(".名单 (1).csv.x.csv.abcdefgh.part")


# --------------------------------------------------------------------------- 2. header errors name the file
CREDIT_HEADER = ["客户编号", "评估日期", "月均销售额", "平均回款天数", "是否新客户", "monthly_avg_sales"]
CREDIT_ROW = ["C1", "2024-06-30", "25000", "20", "否", "25000"]


def _refusal(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one stderr line of a refused `tier` run (exit 2)."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _assert_names_the_clash(message: str, file_name: str) -> None:
    assert "出现在两列" in message and "appears in two columns" in message, "bilingual, as the neighbours"
    assert "'月均销售额'" in message and "'monthly_avg_sales'" in message, "both column headers"
    assert file_name in message


def test_input_in_two_columns_of_a_csv_names_the_file(tmp_path: Path, capsys) -> None:
    source = tmp_path / "客户名单_六月.csv"
    source.write_text(",".join(CREDIT_HEADER) + "\n" + ",".join(CREDIT_ROW) + "\n", encoding="utf-8")
    message = _refusal(capsys, ["eval", "credit", str(source), "-o", str(tmp_path / "out.csv")])
    _assert_names_the_clash(message, source.name)
    assert message.startswith(f"tier: {source.name}: ")
    assert not (tmp_path / "out.csv").exists()
    streamed = _refusal(capsys, ["eval", "credit", str(source), "-o", str(tmp_path / "out.csv"), "--chunk-rows", "1"])
    assert streamed == message, "the chunked reader says the same"


def test_input_in_two_columns_of_a_workbook_names_file_and_sheet(tmp_path: Path, capsys) -> None:
    import openpyxl

    source = tmp_path / "六月台账.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "说明"
    book.active["A1"] = "no table here"
    sheet = book.create_sheet("客户明细")
    sheet.append(CREDIT_HEADER)
    sheet.append(CREDIT_ROW)
    book.save(source)
    message = _refusal(capsys, ["eval", "credit", str(source), "--sheet", "客户明细", "-o", str(tmp_path / "out.csv")])
    _assert_names_the_clash(message, source.name)
    assert f"{source.name} [客户明细]: " in message, "file and sheet, as the reader's own errors say them"
    filled = _refusal(capsys, ["fill", str(source), "-r", "credit"])
    _assert_names_the_clash(filled, source.name)
    assert "[客户明细]" in filled


def test_header_of_several_inputs_names_the_file(tmp_path: Path, capsys) -> None:
    source = tmp_path / "ambiguous.csv"
    source.write_text("评估日期,月均销售额,日期\n2024-06-30,25000,2024-05-31\n", encoding="utf-8")
    ruleset = ROOT / "tests" / "corpus" / "ambiguous_alias.yaml"
    message = _refusal(capsys, ["eval", str(ruleset), str(source), "-o", str(tmp_path / "out.csv")])
    assert message.startswith(f"tier: {source.name}: ") and "matches several inputs" in message


def test_api_errors_keep_their_text_and_type() -> None:
    """engine.evaluate on a bare DataFrame knows no file: the message is as before, an InputError."""
    import pandas as pd

    from engine import evaluate
    from engine.errors import InputError
    from engine.rows import HeaderError

    frame = pd.DataFrame([CREDIT_ROW], columns=CREDIT_HEADER)
    with pytest.raises(InputError) as caught:
        evaluate("credit", frame, sheet="客户明细")
    assert isinstance(caught.value, HeaderError)
    assert str(caught.value).startswith("工作表 '客户明细' / sheet '客户明细': 输入 'monthly_avg_sales' 出现在两列")
    import pickle

    again = pickle.loads(pickle.dumps(caught.value.located("x.xlsx")))
    assert str(again).startswith("x.xlsx [客户明细]: 输入 'monthly_avg_sales'")


# --------------------------------------------------------------------------- 4. boolean input cells
BOOL_HEADER = ["客户编号", "评估日期", "月均销售额", "平均回款天数", "是否新客户", "已核实", "备注"]


def _csv_rows(path: Path) -> list[list[str]]:
    import csv
    import io

    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))


def test_real_boolean_cells_of_a_workbook_are_written_as_excel_spells_them(tmp_path: Path) -> None:
    import openpyxl

    source = tmp_path / "in.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(BOOL_HEADER)
    sheet.append(["C1", "2024-06-30", 25000, 20, False, True, "False"])  # 备注: a text cell saying False
    sheet.append(["C2", "2024-06-30", 25000, 20, True, False, "True"])
    book.save(source)
    assert openpyxl.load_workbook(source).active["E2"].data_type == "b", "a real boolean cell"
    target = tmp_path / "out.csv"
    assert cli.main(["eval", "credit", str(source), "-o", str(target)]) == 0
    header, first, second = _csv_rows(target)
    column = {name: index for index, name in enumerate(header)}
    assert [first[column[n]] for n in ("是否新客户", "已核实", "备注")] == ["FALSE", "TRUE", "False"]
    assert [second[column[n]] for n in ("是否新客户", "已核实", "备注")] == ["TRUE", "FALSE", "True"]
    assert first[column["status"]] == "OK", "the boolean cell is still read as a boolean"


def test_text_cells_saying_false_come_back_byte_identical(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    cells = [["C1", "2024-06-30", "25000", "20", "False", "False", "False"],
             ["C2", "2024-06-30", "25000", "20", "否", "True", " false "],
             ["C3", "2024-06-30", "25000", "20", "否", "TRUE", "tRuE"]]
    source.write_text("\r\n".join(",".join(row) for row in [BOOL_HEADER, *cells]) + "\r\n", encoding="utf-8")
    for output in ("whole.csv", "chunked.csv"):
        target = tmp_path / output
        extra = ["--chunk-rows", "2"] if output == "chunked.csv" else []
        assert cli.main(["eval", "credit", str(source), "-o", str(target), *extra]) == 0
        header, *rows = _csv_rows(target)
        assert header[:len(BOOL_HEADER)] == BOOL_HEADER
        assert [row[:len(BOOL_HEADER)] for row in rows] == cells, "inputs as they came in, text for text"


def test_boolean_columns_of_a_parquet_file_and_the_frame_itself(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from engine import api
    from engine import outputs as out

    frame = pd.DataFrame({"客户编号": ["C1", "C2"], "评估日期": ["2024-06-30"] * 2, "月均销售额": ["25000"] * 2,
                          "平均回款天数": ["20"] * 2, "是否新客户": [True, False],
                          "已核实": np.array([False, True]), "备注": np.array([np.True_, "False"], dtype=object)})
    source = tmp_path / "in.parquet"
    frame.iloc[:, :6].to_parquet(source)
    target = tmp_path / "out.csv"
    assert cli.main(["eval", "credit", str(source), "-o", str(target)]) == 0
    _header, *rows = _csv_rows(target)
    assert [row[4:6] for row in rows] == [["TRUE", "FALSE"], ["FALSE", "TRUE"]]

    result = api.evaluate("credit", frame)
    text = out.render_frame(result, api.compile("credit"))
    assert list(text["备注"]) == ["TRUE", "False"] and list(text["已核实"]) == ["FALSE", "TRUE"]
    assert result["已核实"].dtype == bool and list(result["备注"]) == [True, "False"], \
        "the result frame keeps the cells as they are; only their text is spelled"


@pytest.mark.parametrize("chunked", [False, True])
def test_blank_cells_of_nullable_parquet_columns_are_written_empty(tmp_path: Path, chunked: bool) -> None:
    """pd.NA (nullable boolean, Int64, Float64 and string columns of a Parquet file) is a blank:
    the CSV cell is empty, never the text '<NA>'."""
    import pandas as pd

    frame = pd.DataFrame({
        "guarantee_id": pd.array(["G1", None, "G3"], dtype="string"),
        "as_of_date": ["2024-06-30"] * 3, "guarantee_start_date": ["2024-01-01"] * 3,
        "compensated": pd.array([True, None, False], dtype="boolean"),
        "overdue_days": pd.array([0, None, 3], dtype="Int64"),
        "other_warning_count": pd.array([None, 1.0, 2.0], dtype="Float64"),
    })
    source = tmp_path / "in.parquet"
    frame.to_parquet(source)
    target = tmp_path / "out.csv"
    extra = ["--chunk-rows", "1"] if chunked else []
    assert cli.main(["eval", "guarantee", str(source), "-o", str(target), *extra]) == 0
    text = target.read_text(encoding="utf-8-sig")
    assert "<NA>" not in text
    _header, *rows = _csv_rows(target)
    assert [row[:6] for row in rows] == [
        ["G1", "2024-06-30", "2024-01-01", "TRUE", "0", ""],
        ["", "2024-06-30", "2024-01-01", "", "", "1.0"],  # a float cell as pandas writes floats
        ["G3", "2024-06-30", "2024-01-01", "FALSE", "3", "2.0"],
    ]


def test_report_names_the_file_with_a_header_clash(tmp_path: Path, capsys) -> None:
    """`tier report` reads two tables: a header clash says which file (and sheet) it is in."""
    import pandas as pd

    root = Path(__file__).resolve().parent.parent / "workbook_templates" / "examples"
    current = root / "guarantee_loans.csv"
    frame = pd.read_csv(current, dtype=str, encoding="utf-8-sig")
    frame["overdue_days"] = frame["主债务逾期天数(天)"]  # the key next to its Chinese alias: one input twice
    previous = tmp_path / "上季.xlsx"
    frame.to_excel(previous, sheet_name="上季在保", index=False)
    target = tmp_path / "report.xlsx"
    code = cli.main(["report", "--ruleset", "guarantee", "--current", str(current), "--previous", str(previous),
                     "-o", str(target)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "上季.xlsx" in err and "overdue_days" in err and "guarantee_loans.csv" not in err
    assert not target.exists()

"""The `tier` command's contract (PRODUCT §5): acceptance checks call it exactly like this."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

HEADER = ["客户编号", "客户名称", "评估日期", "月均销售额(元)", "平均回款天数", "是否新客户", "最近拜访日期"]
ROWS = [
    ["C1", "甲公司", "2024-06-30", "25,000", "20", "否", "2024/5/31"],
    ["C2", "乙公司", "2024-06-30", "abc", "", "x", ""],
    ["C3", "丙公司", "2024-06-30", "10000", "", "是", "2023-12-31"],
    ["C4", "=cmd|' /C calc'!A0", "2024-06-30", "5000", "61", "", ""],
]


def tier(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True)


def write_csv(path: Path, rows, encoding: str) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([HEADER, *rows])
    path.write_bytes(buffer.getvalue().encode(encoding))


def read_out(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "CSV output must be UTF-8 with BOM for Excel"
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
@pytest.mark.parametrize("engine", ["vector", "rete"])
def test_eval_csv_any_encoding_both_engines(tmp_path: Path, encoding: str, engine: str) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(src, ROWS, encoding)
    run = tier("eval", "credit", str(src), "-o", str(dst), "--engine", engine, "--explain")
    assert run.returncode == 0, run.stderr
    rows = read_out(dst)
    assert list(rows[0])[:7] == HEADER  # input columns unchanged, first
    assert list(rows[0])[7:10] == ["status", "errors", "notes"]
    assert list(rows[0])[-1] == "fired_rules"
    first, bad, new, alert = rows
    assert (first["grade"], first["total_score"], first["next_visit_date"], first["visit_status"]) == ("A", "100", "2024-06-30", "按期")
    assert first["月均销售额(元)"] == "25,000" and first["最近拜访日期"] == "2024/5/31"
    assert first["fired_rules"].startswith("CG-1a;CG-3a")
    assert bad["status"] == "ERROR" and bad["grade"] == "待定"
    assert bad["errors"] == "INVALID:monthly_avg_sales;MISSING:avg_collection_days;INVALID:is_new_customer"
    assert bad["sales_score"] == "" and bad["notes"] == "" and bad["fired_rules"] == ""
    assert new["notes"] == "DEFAULT:avg_collection_days=45" and new["payment_score"] == "20"
    assert new["grade"] == "B" and new["next_visit_date"] == "2024-06-30" and new["visit_status"] == "逾期"
    assert alert["collection_alert"] == "是" and alert["visit_status"] == "未拜访"
    assert alert["客户名称"].lstrip("'") == "=cmd|' /C calc'!A0"


def test_explain_is_optional(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(src, ROWS, "utf-8")
    assert tier("eval", "credit", str(src), "-o", str(dst)).returncode == 0
    assert "fired_rules" not in read_out(dst)[0]


def test_eval_xlsx_and_parquet_roundtrip(tmp_path: Path) -> None:
    import pandas as pd

    src = tmp_path / "in.xlsx"
    pd.DataFrame(ROWS, columns=HEADER).to_excel(src, index=False, sheet_name="客户")
    for out in ("out.xlsx", "out.parquet", "out.csv"):
        run = tier("eval", "credit", str(src), "--sheet", "客户", "-o", str(tmp_path / out))
        assert run.returncode == 0, run.stderr
    assert list(pd.read_parquet(tmp_path / "out.parquet")["grade"]) == ["A", "待定", "B", "C"]
    assert list(pd.read_excel(tmp_path / "out.xlsx", sheet_name="结果")["grade"]) == ["A", "待定", "B", "C"]


@pytest.mark.parametrize(("args", "needle"), [
    (("eval", "credit", "missing.csv", "-o", "{out}"), "not found"),
    (("eval", "credt", "{src}", "-o", "{out}"), "Did you mean 'credit'"),
    (("eval", "credit", "{src}", "-o", "{out}", "--sheet", "nope"), None),
    (("eval", "credit", "{xlsx}", "-o", "{out}", "--sheet", "nope"), "no sheet 'nope'"),
    (("eval", "credit", "{notzip}", "-o", "{out}"), "not a valid .xlsx"),
    (("eval", "credit", "{empty}", "-o", "{out}"), "empty"),
    (("eval", "credit", "{src}", "-o", "{out}", "--param", "nope=1"), "unknown parameter"),
    (("check", "no/such/file.yaml"), "not found"),
])
def test_unusable_input_is_one_clear_line(tmp_path: Path, args, needle) -> None:
    import pandas as pd

    src = tmp_path / "in.csv"
    write_csv(src, ROWS, "utf-8")
    xlsx = tmp_path / "in.xlsx"
    pd.DataFrame(ROWS, columns=HEADER).to_excel(xlsx, index=False)
    notzip = tmp_path / "fake.xlsx"
    notzip.write_text("not a workbook")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    paths = {"src": src, "xlsx": xlsx, "notzip": notzip, "empty": empty, "out": tmp_path / "x.csv"}
    run = tier(*[a.format(**paths) for a in args])
    if needle is None:  # --sheet with a CSV is simply ignored
        assert run.returncode == 0
        return
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert needle in run.stderr.splitlines()[0]


def test_list_shows_every_ruleset_with_version() -> None:
    run = tier("list")
    assert run.returncode == 0
    for rid in ("credit", "guarantee", "bank_layering", "close_time", "industry_code"):
        line = next(line for line in run.stdout.splitlines() if line.startswith(rid + " "))
        assert "1.0.0" in line


def test_test_command_runs_examples() -> None:
    run = tier("test", "credit")
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip().splitlines()[-1].endswith("0 failed")

"""Never lose data (PRODUCT §10): inputs are never modified, and every write is an atomic replace.

* every command, run on real inputs, leaves each input file byte-identical;
* every writer goes through a temporary file beside the target: a process killed with SIGKILL
  at the worst moment — the new file complete, the rename not yet done — leaves the old target
  intact (the `TIERBOOK_TEST_PAUSE_BEFORE_REPLACE` hook of `engine.io.atomic_path` holds it there);
* killed at arbitrary moments of a longer write, the target is always either the old file or the
  complete new one, never a part;
* a write that fails in-process removes its temporary file and leaves the target alone.
"""
from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from engine import io as tio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "workbook_templates" / "examples"


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TIERBOOK_")}
    return base | extra


def tier(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], check=False, capture_output=True, text=True, cwd=cwd,
                          env=env(PYTHONPATH=str(ROOT)), timeout=300)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("credit_customers.csv", "credit_customers.xlsx", "guarantee_loans.xlsx"):
        shutil.copy(EXAMPLES / name, folder / name)
    pd.read_csv(folder / "credit_customers.csv", dtype=str, keep_default_na=False).to_parquet(folder / "credit.parquet")
    shutil.copy(ROOT / "rulesets" / "credit.yaml", folder / "my_credit.yaml")
    return folder


COMMANDS = [
    ("eval-csv-csv", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{out}/a.csv"]),
    ("eval-csv-xlsx", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{out}/a.xlsx", "--explain"]),
    ("eval-xlsx-parquet", ["eval", "credit", "{in}/credit_customers.xlsx", "-o", "{out}/a.parquet"]),
    ("eval-parquet-csv", ["eval", "credit", "{in}/credit.parquet", "-o", "{out}/a.csv"]),
    ("eval-chunked", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{out}/a.csv", "--chunk-rows", "7"]),
    ("eval-rete", ["eval", "{in}/my_credit.yaml", "{in}/credit_customers.csv", "-o", "{out}/a.csv", "--engine", "rete"]),
    ("fill-to-new-file", ["fill", "{in}/guarantee_loans.xlsx", "-r", "guarantee", "-o", "{out}/filled.xlsx"]),
    ("check", ["check", "{in}/my_credit.yaml"]),
    ("test", ["test", "credit"]),
    ("list", ["list", "--params", "{in}/my_credit.yaml"]),
    ("report", ["report", "-r", "credit", "--current", "{in}/credit_customers.csv",
                "--previous", "{in}/credit_customers.xlsx", "-o", "{out}/report.xlsx"]),
]


@pytest.mark.parametrize(("name", "args"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_inputs_never_modified(inputs: Path, tmp_path: Path, name: str, args: list[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = digests(inputs)
    run = tier(*[a.format(**{"in": inputs, "out": out}) for a in args], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert digests(inputs) == before
    assert sorted(p.name for p in inputs.iterdir()) == sorted(before), "nothing added beside the inputs"
    assert not [p for p in out.iterdir() if p.name.endswith(".part")], "no temporary file left"


def test_fill_in_place_changes_only_output_cells(inputs: Path, tmp_path: Path) -> None:
    import openpyxl

    book = inputs / "guarantee_loans.xlsx"
    others = {k: v for k, v in digests(inputs).items() if k != book.name}
    sheet_before = openpyxl.load_workbook(book).worksheets[0]
    width = sheet_before.max_column
    cells_before = [[c.value for c in row[:width]] for row in sheet_before.iter_rows()]
    run = tier("fill", str(book), "-r", "guarantee", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    sheet_after = openpyxl.load_workbook(book).worksheets[0]
    assert [[c.value for c in row[:width]] for row in sheet_after.iter_rows()] == cells_before
    assert sheet_after.max_column > width, "outputs were added after the inputs"
    assert {k: v for k, v in digests(inputs).items() if k != book.name} == others
    first = book.read_bytes()
    again = tier("fill", str(book), "-r", "guarantee", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert book.read_bytes() == first, "filling twice gives the same workbook"


# --------------------------------------------------------------------------- killed before the replace
KILL_CASES = [
    ("eval-xlsx", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{target}"], "existing.xlsx"),
    ("eval-csv", ["eval", "credit", "{in}/credit_customers.xlsx", "-o", "{target}"], "existing.csv"),
    ("eval-parquet", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{target}"], "existing.parquet"),
    ("eval-chunked", ["eval", "credit", "{in}/credit.parquet", "-o", "{target}", "--chunk-rows", "50"], "existing.csv"),
    ("fill-in-place", ["fill", "{target}", "-r", "guarantee"], "guarantee_loans.xlsx"),
    ("fill-to-existing", ["fill", "{in}/guarantee_loans.xlsx", "-r", "guarantee", "-o", "{target}"], "existing.xlsx"),
    ("report", ["report", "-r", "credit", "--current", "{in}/credit_customers.csv", "-o", "{target}"], "existing.xlsx"),
]


def _start_paused(args: list[str], cwd: Path, pause: float = 60) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env=env(PYTHONPATH=str(ROOT), TIERBOOK_TEST_PAUSE_BEFORE_REPLACE=str(pause)))


def _wait_for_pause(process: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    assert process.stderr is not None
    while time.monotonic() < deadline:
        ready, _w, _x = select.select([process.stderr], [], [], 0.5)
        if ready:
            line = process.stderr.readline()
            seen += line
            if "TIERBOOK_TEST_PAUSE_BEFORE_REPLACE" in line:
                return line
            if not line and process.poll() is not None:
                break
    process.kill()
    pytest.fail(f"the writer never reached the replace: {seen}")


@pytest.mark.parametrize(("name", "args", "target_name"), KILL_CASES, ids=[c[0] for c in KILL_CASES])
def test_sigkill_before_replace_keeps_target(inputs: Path, tmp_path: Path, name: str, args: list[str],
                                             target_name: str) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    target = folder / target_name
    if target_name == "guarantee_loans.xlsx":
        shutil.copy(inputs / target_name, target)
    else:
        target.write_bytes(b"the previous result, which must survive")
    original = target.read_bytes()
    input_digests = digests(inputs)
    process = _start_paused([a.format(**{"in": inputs, "target": target}) for a in args], cwd=tmp_path)
    try:
        _wait_for_pause(process)
        assert target.read_bytes() == original, "not replaced before the rename"
        (part,) = [p for p in folder.iterdir() if p.name.endswith(".part")]
        assert part.name.startswith(f".{target.name}.") and part.stat().st_size > 0
        assert part.parent == target.parent, "same folder: os.replace is atomic there"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert target.read_bytes() == original
    leftover = sorted(p.name for p in folder.iterdir() if p != target)
    assert all(n.startswith(f".{target.name}.") and n.endswith(".part") for n in leftover), leftover
    assert digests(inputs) == input_digests


def test_pause_hook_then_replace_completes(inputs: Path, tmp_path: Path) -> None:
    """The hook only delays the rename: let it run out and the new file is in place."""
    target = tmp_path / "existing.csv"
    target.write_bytes(b"old")
    process = _start_paused(["eval", "credit", str(inputs / "credit_customers.csv"), "-o", str(target)],
                            cwd=tmp_path, pause=0.2)
    _wait_for_pause(process)
    assert process.wait(timeout=120) == 0
    assert target.read_bytes().startswith(b"\xef\xbb\xbf") and len(target.read_bytes()) > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


# --------------------------------------------------------------------------- killed at any moment
@pytest.mark.slow
def test_sigkill_at_any_moment_never_leaves_a_partial_file(tmp_path: Path) -> None:
    rows = pd.read_csv(EXAMPLES / "credit_customers.csv", dtype=str, keep_default_na=False)
    big = pd.concat([rows] * 100, ignore_index=True)  # 30,000 rows: a write that takes a while
    source = tmp_path / "big.csv"
    big.to_csv(source, index=False)
    target = tmp_path / "existing.xlsx"
    target.write_bytes(b"previous")
    outcomes = set()
    for delay in (0.3, 0.8, 1.5, 2.5, 4.0, 6.0):
        if target.read_bytes() != b"previous":
            target.write_bytes(b"previous")
        process = subprocess.Popen([sys.executable, "-m", "engine.cli", "eval", "credit", str(source), "-o", str(target)],
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=env(PYTHONPATH=str(ROOT)))
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        data = target.read_bytes()
        if data == b"previous":
            outcomes.add("old")
            continue
        with zipfile.ZipFile(target) as archive:  # complete: a valid zip with the whole sheet
            assert archive.testzip() is None
        frame = pd.read_excel(target, sheet_name=0)
        assert len(frame) == len(big)
        outcomes.add("new")
    assert "old" in outcomes, "at least one kill landed mid-run (the test is meaningful)"


# --------------------------------------------------------------------------- failures in-process
def test_failed_write_removes_temp_and_keeps_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.xlsx"
    target.write_bytes(b"previous")
    frame = pd.DataFrame({"a": ["=1+1", "x"]})

    import xlsxwriter

    def broken_close(self):
        raise OSError("disk full")

    monkeypatch.setattr(xlsxwriter.Workbook, "close", broken_close)
    with pytest.raises(OSError, match="disk full"):
        tio.write_xlsx(frame, frame, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx"]


def test_atomic_path_discards_on_error(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt), tio.atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    with tio.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".t.csv.")
        tmp.write_text("new", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "new"


# --------------------------------------------------------------------------- output over the input
@pytest.mark.parametrize(("name", "args"), [
    ("eval-csv-same-path", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{in}/credit_customers.csv"]),
    ("eval-xlsx-dot-path", ["eval", "credit", "{in}/credit_customers.xlsx", "-o", "{in}/./credit_customers.xlsx"]),
    ("eval-symlink", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{in}/link.csv"]),
    ("eval-chunked", ["eval", "credit", "{in}/credit_customers.csv", "-o", "{in}/credit_customers.csv",
                      "--chunk-rows", "10"]),
    ("report-current", ["report", "-r", "credit", "--current", "{in}/credit_customers.xlsx",
                        "-o", "{in}/credit_customers.xlsx"]),
], ids=["eval-csv-same-path", "eval-xlsx-dot-path", "eval-symlink", "eval-chunked", "report-current"])
def test_output_over_an_input_is_refused(inputs: Path, tmp_path: Path, name: str, args: list[str]) -> None:
    """`-o` naming the input file would replace the analyst's data by a result table."""
    (inputs / "link.csv").symlink_to(inputs / "credit_customers.csv")
    before = digests(inputs)
    run = tier(*[a.format(**{"in": inputs}) for a in args], cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "is the input file" in run.stderr
    assert digests(inputs) == before
    assert (inputs / "link.csv").is_symlink()


def test_re_evaluating_a_result_file(inputs: Path, tmp_path: Path) -> None:
    """A result (input columns + status, errors, notes, outputs) fed back in: graded again or refused
    in one line — never an internal error."""
    first = tmp_path / "first.csv"
    assert tier("eval", "credit", str(inputs / "credit_customers.csv"), "-o", str(first), cwd=tmp_path).returncode == 0
    run = tier("eval", "credit", str(first), "-o", str(tmp_path / "second.csv"), cwd=tmp_path)
    assert run.returncode in (0, 2), run.stderr
    assert "internal error" not in run.stderr and "Traceback" not in run.stderr
    if run.returncode == 0:
        second = pd.read_csv(tmp_path / "second.csv", dtype=str, keep_default_na=False)
        again = pd.read_csv(first, dtype=str, keep_default_na=False)
        assert list(second["grade"]) == list(again["grade"])

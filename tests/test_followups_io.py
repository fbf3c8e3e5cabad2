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

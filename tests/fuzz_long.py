"""The long fuzzing run (not collected by pytest: the name does not start with test_).

    python3 tests/fuzz_long.py                      # ~10 minutes: hypothesis and, if installed, atheris
    python3 tests/fuzz_long.py --minutes 2 --only hypothesis
    python3 tests/fuzz_long.py --json figures.json  # the figures README "Reliability" quotes

Hypothesis runs the properties of `tests/fuzzing.py` (value parser, expression parser, ruleset
loader) in rounds of fresh random examples until each target's share of the time is used.
atheris (`pip install atheris`; a developer tool, not a project dependency) then fuzzes the
same targets coverage-guided, from byte strings, seeded with the shipped rulesets. Each
failure is printed with its reproducer; the run exits 1 if there was any.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- hypothesis
def _hypothesis_targets() -> dict[str, Callable[[int], Callable[[], None]]]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests import fuzzing

    def configured(examples: int) -> Any:
        return settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck), print_blob=True)

    def values(examples: int) -> Callable[[], None]:
        @configured(examples)
        @given(cells=st.lists(fuzzing.ANY_CELL, max_size=16), values=fuzzing.ENUM_VALUES)
        def run(cells: list[Any], values: list[Any] | None) -> None:
            fuzzing.check_parse_value(cells, values)
            fuzzing.check_parse_column(cells)
        return run

    def expressions(examples: int) -> Callable[[], None]:
        @configured(examples)
        @given(text=fuzzing.EXPRESSIONS, data=st.data())
        def run(text: str, data: st.DataObject) -> None:
            fuzzing.check_expression(text, lambda kind: data.draw(fuzzing.VALUE_STRATEGIES[kind]))
        return run

    def rulesets(examples: int) -> Callable[[], None]:
        @configured(examples)
        @given(data=fuzzing.RULESET_BYTES)
        def run(data: bytes) -> None:
            fuzzing.check_ruleset_bytes(data, engines=("vector", "scalar", "rete"))
        return run

    return {"values": values, "expressions": expressions, "rulesets": rulesets}


ROUND = {"values": 300, "expressions": 1_000, "rulesets": 40}


def _leaves(exc: BaseException) -> list[BaseException]:
    """The individual failures of a hypothesis ExceptionGroup (several distinct bugs at once)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def run_hypothesis(seconds_each: float) -> dict[str, Any]:
    from tests import fuzzing

    targets = _hypothesis_targets()
    report: dict[str, Any] = {}
    for name, build in targets.items():
        deadline = time.monotonic() + seconds_each
        before = dict(fuzzing.COUNTS)
        rounds, failures = 0, []
        while time.monotonic() < deadline:
            rounds += 1
            try:
                build(ROUND[name])()
            except Exception as exc:  # noqa: BLE001 — a property failed: record it, keep fuzzing
                for single in _leaves(exc):
                    notes = "\n".join(getattr(single, "__notes__", []))
                    frame = traceback.extract_tb(single.__traceback__)[-1] if single.__traceback__ else None
                    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
                    key = f"{type(single).__name__} at {where}"
                    if key not in {f["key"] for f in failures}:
                        failures.append({"key": key, "error": f"{type(single).__name__}: {str(single)[:300]}",
                                         "reproducer": notes[:3000], "found": 0})
                        print(f"[hypothesis {name}] FAILURE {key}: {str(single)[:200]}\n{notes[:1500]}",
                              file=sys.stderr)
                    next(f for f in failures if f["key"] == key)["found"] += 1
        counts = {k: v - before.get(k, 0) for k, v in fuzzing.COUNTS.items() if v - before.get(k, 0)}
        report[name] = {"rounds": rounds, "seconds": round(seconds_each), "executions": counts,
                        "failures": failures}
        print(f"[hypothesis {name}] {rounds} rounds, {counts}, {len(failures)} distinct failure(s)", file=sys.stderr)
    return report


# --------------------------------------------------------------------------- atheris
ATHERIS_TARGET = r'''
import sys, atheris
sys.path.insert(0, {root!r})
with atheris.instrument_imports(include=["engine"]):
    from tests import fuzzing
    from engine.values import TYPES

def values(data):
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicode(64)
    number = fdp.ConsumeFloat()
    cells = [text, number, fdp.ConsumeInt(9), text.strip() or None]
    fuzzing.check_parse_value(cells, None)
    fuzzing.check_parse_column(cells)

def expressions(data):
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 400))
    fuzzing.check_expression(text, lambda kind: fdp.PickValueInList(fuzzing.SAMPLE_VALUES[kind]))

def rulesets(data):
    fuzzing.check_ruleset_bytes(data)

target = {{"values": values, "expressions": expressions, "rulesets": rulesets}}[{name!r}]

atheris.Setup(sys.argv, target)
atheris.Fuzz()
'''


def run_atheris(seconds_each: float, workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in ("values", "expressions", "rulesets"):
        corpus = workdir / f"corpus-{name}"
        corpus.mkdir(parents=True, exist_ok=True)
        if name == "rulesets":
            for path in sorted((ROOT / "rulesets").glob("*.yaml")):
                (corpus / path.name).write_bytes(path.read_bytes())
        elif name == "expressions":
            for index, text in enumerate(["monthly_avg_sales >= 20000 and n < 5", "add_months(d, 1) > e",
                                          "n in [1..90)", "if(b, n, m) + 1", "concat(t, u) = 'x'"]):
                (corpus / f"seed{index}").write_bytes(bytes([0, 0]) + text.encode())
        script = workdir / f"atheris_{name}.py"
        script.write_text(ATHERIS_TARGET.format(root=str(ROOT), name=name), encoding="utf-8")
        args = [sys.executable, str(script), f"-max_total_time={int(seconds_each)}", "-max_len=60000",
                f"-artifact_prefix={workdir}/crash-{name}-", "-print_final_stats=1", str(corpus)]
        started = time.monotonic()
        run = subprocess.run(args, check=False, capture_output=True, text=True, cwd=workdir, timeout=seconds_each * 3 + 120)
        # libFuzzer's own count (atheris leaves with os._exit when the time is up: no atexit)
        executions = next((int(line.split()[-1]) for line in run.stderr.splitlines()
                           if line.startswith("stat::number_of_executed_units")), None)
        crashes = sorted(str(p) for p in workdir.glob(f"crash-{name}-*"))
        failed = run.returncode != 0
        report[name] = {"seconds": round(time.monotonic() - started), "executions": executions,
                        "exit": run.returncode, "crashes": crashes,
                        "failure": run.stderr[-3000:] if failed else ""}
        print(f"[atheris {name}] {executions} executions, exit {run.returncode}, crashes {crashes}",
              file=sys.stderr)
        if failed:
            print(run.stderr[-3000:], file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="total budget (default 10)")
    parser.add_argument("--only", choices=["hypothesis", "atheris"], help="run one fuzzer only")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--workdir", type=Path, help="atheris corpora and crash files (default: a temp folder)")
    args = parser.parse_args(argv)
    try:
        import atheris  # noqa: F401
        have_atheris = True
    except ImportError:
        have_atheris = False
    fuzzers = [f for f in ("hypothesis", "atheris") if args.only in (None, f)]
    if "atheris" in fuzzers and not have_atheris:
        print("atheris is not installed (pip install atheris): hypothesis only", file=sys.stderr)
        fuzzers.remove("atheris")
    seconds_each = args.minutes * 60 / (3 * len(fuzzers))
    started = time.monotonic()
    figures: dict[str, Any] = {"python": sys.version.split()[0], "minutes_budget": args.minutes}
    if "hypothesis" in fuzzers:
        figures["hypothesis"] = run_hypothesis(seconds_each)
    if "atheris" in fuzzers:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tierbook-fuzz-"))
        figures["atheris"] = run_atheris(seconds_each, workdir)
    figures["minutes"] = round((time.monotonic() - started) / 60, 1)
    failures = sum(len(t["failures"]) for t in figures.get("hypothesis", {}).values()) + \
        sum(1 for t in figures.get("atheris", {}).values() if t["exit"] != 0)
    figures["failures"] = failures
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    print(json.dumps({k: v for k, v in figures.items()}, indent=1, ensure_ascii=False, default=str)[:6000])
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

"""`tier bench`: rows/s of each engine on each core ruleset, against a hand-written numpy baseline.

The figures of PRODUCT §8 come from here, never from timed tests. Every run uses the same
generated table per (ruleset, size): typed columns as a Parquet file or a typed DataFrame holds
them (float64 numbers, datetime64 dates, nullable booleans, arrow-backed text), with values
clustered at every threshold the ruleset compares with, blanks, out-of-range values and
contradictory dates, so every band, every error code and the exact-decimal edges are exercised.

A time is the median of several runs (the machine is shared: the median resists one slow run
better than the mean, and unlike the minimum it does not flatter). `ratio_to_baseline` is the
engine's time divided by the baseline's on the same data in the same process, so ≤ 2 meets the
"within 2× of hand-written numpy" target.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine import expr as ex
from engine.compile import CompiledRuleset

CORE = ("credit", "guarantee", "bank_layering")
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
RETE_MAX_ROWS = 100_000  # durable-rules runs at ~10^4 rows/s: 1M rows would take minutes per run
AS_OF_DATES = np.array(["2024-03-31", "2024-06-30", "2024-12-31", "2025-02-28", "2024-02-29", "2025-09-15"],
                       dtype="datetime64[D]")
# Day offsets before as_of_date at which the rulesets change their answer (14/15/16 for the 15-day
# visits, 89/90/91 for the 90-day window, 364/365/366 for dormancy, month lengths).
DAY_OFFSETS = np.array([0, 1, 14, 15, 16, 29, 30, 31, 59, 60, 61, 89, 90, 91, 92, 181, 182, 183, 184,
                        270, 271, 360, 361, 364, 365, 366, 400, 700])
NUMBER_STEPS = np.array([0.0, 0.0, 0.01, -0.01, 1.0, -1.0])


# --------------------------------------------------------------------------- generated data
def number_constants(compiled: CompiledRuleset) -> list[Decimal]:
    """Every number literal the compiled conditions, assignments and checks compare with (sorted).

    Boundary-rich data clusters at these; the differential tests' row generator uses them too.
    """
    found: set[Decimal] = set()

    def walk(node: object) -> None:
        if isinstance(node, ex.Literal) and isinstance(node.value, Decimal):
            found.add(node.value)
        for value in getattr(node, "__dict__", {}).values():
            if isinstance(value, ex.Node):
                walk(value)
            elif isinstance(value, tuple):
                for item in value:
                    if isinstance(item, ex.Node):
                        walk(item)

    for decision in compiled.decisions:
        for rule in decision.rules:
            if rule.condition is not None:
                walk(rule.condition)
            for _key, node in rule.assignments:
                walk(node)
    for check in compiled.checks:
        if check.fails_when is not None:
            walk(check.fails_when)
    return sorted(found)


def _constants(compiled: CompiledRuleset) -> np.ndarray:
    return np.array([float(v) for v in number_constants(compiled)] or [0.0])


def _blank_where(values: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    values = values.astype(np.float64, copy=True)
    values[rng.random(len(values)) < share] = np.nan
    return values


def _numbers(rng: np.random.Generator, n: int, consts: np.ndarray, inp) -> np.ndarray:
    """Half the rows at a threshold (t, t ± 0.01, t ± 1), the rest spread over the scale."""
    near = rng.choice(consts, n) + rng.choice(NUMBER_STEPS, n)
    top = max(float(consts.max()) * 1.5, 10.0)
    spread = np.round(rng.uniform(0, top, n), 2)
    big = np.round(rng.uniform(0, top * 4, n), 0)
    pick = rng.random(n)
    values = np.where(pick < 0.5, near, np.where(pick < 0.9, spread, big))
    if inp.type == "fraction":
        values = np.where(rng.random(n) < 0.5, np.round(rng.choice(consts, n) + rng.choice(NUMBER_STEPS[:4], n), 2),
                          np.round(rng.uniform(-0.5, 2.0, n), 4))
    if inp.type == "integer":
        values = np.round(values)
        values[rng.random(n) < 0.004] = 2.5  # not a whole number: INVALID
    low = None if inp.min is None else float(inp.min)
    high = None if inp.max is None else float(inp.max)
    if low is not None:
        values = np.where(values < low, low, values)
        values[rng.random(n) < 0.005] = low - 1  # below the minimum: INVALID
    if high is not None:
        values = np.where(values > high, high, values)
    return _blank_where(values, rng, 0.04)


def _days_before(rng: np.random.Generator, as_of: np.ndarray, future_share: float) -> np.ndarray:
    """Dates at the boundary offsets before as_of_date, some month ends, a few in the future."""
    n = len(as_of)
    offsets = np.where(rng.random(n) < 0.7, rng.choice(DAY_OFFSETS, n), rng.integers(0, 800, n))
    days = as_of - offsets.astype("timedelta64[D]")
    future = rng.random(n) < future_share
    days[future] = as_of[future] + rng.integers(1, 40, int(future.sum())).astype("timedelta64[D]")
    month_end = rng.random(n) < 0.1
    ends = (days[month_end].astype("datetime64[M]") + 1).astype("datetime64[D]") - 1
    days[month_end] = np.minimum(ends, as_of[month_end])
    return days


def _with_nat(days: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    stamps = days.astype("datetime64[s]")
    stamps[rng.random(len(stamps)) < share] = np.datetime64("NaT")
    return stamps


def _booleans(rng: np.random.Generator, n: int, true_share: float) -> pd.Series:
    values = pd.array(rng.random(n) < true_share, dtype="boolean")
    values[rng.random(n) < 0.08] = pd.NA
    return pd.Series(values)


def _texts(prefix: str, n: int) -> pd.Series:
    numbers = pc.cast(pa.array(np.arange(1, n + 1)), pa.string())
    ids = pc.binary_join_element_wise(pa.scalar(prefix), pc.utf8_lpad(numbers, 7, "0"), "")
    return pd.Series(ids.to_pandas(), dtype="str")


def generate_table(compiled: CompiledRuleset, n: int, seed: int = 0) -> pd.DataFrame:
    """A typed, boundary-rich table of n rows for any ruleset, columns named by input keys.

    Whole-column numpy throughout (1M rows in well under a second), reproducible by seed.
    Consistency between inputs that the ruleset cross-checks is mostly kept (so most rows are
    OK, as in real data) and sometimes broken (so the error codes appear).
    """
    rng = np.random.default_rng(seed)
    consts = _constants(compiled)
    as_of = AS_OF_DATES[rng.integers(0, len(AS_OF_DATES), n)]
    data: dict[str, object] = {}
    for inp in compiled.inputs:
        if inp.key == "as_of_date":
            data[inp.key] = _with_nat(as_of, rng, 0.003)
        elif inp.type == "date":
            data[inp.key] = _with_nat(_days_before(rng, as_of, 0.01), rng, 0.12)
        elif inp.type in ("number", "fraction", "integer"):
            data[inp.key] = _numbers(rng, n, consts, inp)
        elif inp.type == "boolean":
            data[inp.key] = _booleans(rng, n, 0.1)
        elif inp.type == "enum" and inp.values:
            data[inp.key] = pd.Series(np.array(inp.values, dtype=object)[rng.integers(0, len(inp.values), n)],
                                      dtype="str")
        elif inp.key.endswith("_id"):
            data[inp.key] = _texts(inp.key[:1].upper(), n)
        else:
            names = np.array(["甲公司", "乙商贸", "丙科技", "Acme Ltd", "丁实业"], dtype=object)
            data[inp.key] = pd.Series(names[rng.integers(0, len(names), n)], dtype="str")
    _keep_consistent(compiled.id, data, as_of, rng)
    return pd.DataFrame(data)


def _keep_consistent(rid: str, data: dict[str, object], as_of: np.ndarray, rng: np.random.Generator) -> None:
    """Make the cross-checked inputs of the core rulesets agree for most rows."""
    n = len(as_of)
    if rid == "guarantee":
        start = as_of - rng.integers(-20, 1500, n).astype("timedelta64[D]")
        end = start + rng.integers(-10, 1100, n).astype("timedelta64[D]")  # ~1 % end before start
        data["guarantee_start_date"] = _with_nat(start, rng, 0.003)
        data["guarantee_end_date"] = _with_nat(end, rng, 0.1)
        overdue = np.where(rng.random(n) < 0.75, 0.0, rng.choice([1, 2, 30, 89, 90, 91, 92, 269, 270, 271, 360, 361,
                                                                   400], n).astype(float))
        overdue[rng.random(n) < 0.003] = -1.0
        data["overdue_days"] = _blank_where(overdue, rng, 0.1)
        data["other_warning_count"] = _blank_where(rng.choice([0, 0, 0, 0, 1, 2, 3], n).astype(float), rng, 0.2)
        data["compensated"] = _booleans(rng, n, 0.03)
        data["major_adverse_event"] = _booleans(rng, n, 0.03)
    elif rid == "bank_layering":
        last_txn = data["last_txn_date"]
        since = (as_of.astype("datetime64[s]") - last_txn).astype("timedelta64[D]").astype(np.float64)
        recent = since <= 89
        count = np.where(recent, rng.choice([1, 2, 3, 4, 10], n), 0).astype(float)
        blank_txn = np.isnan(since)
        count[blank_txn] = rng.choice([0, 0, 1, 3, 5], int(blank_txn.sum()))
        flip = rng.random(n) < 0.01  # contradicting the date: INCONSISTENT:txn_count_90d
        count[flip] = np.where(count[flip] > 0, 0, 2)
        data["txn_count_90d"] = _blank_where(count, rng, 0.05)
        balances = ("deposit_avg_balance", "wealth_avg_balance", "loan_balance")
        for key, scale in zip(balances, (8e6, 8e6, 3e6)):
            values = np.where(rng.random(n) < 0.5, np.round(rng.uniform(0, scale, n), 2), data[key])
            data[key] = _blank_where(values, rng, 0.03)
        # A share of sums exactly on a threshold (5999999.99 + 0.01): the exact-decimal edge.
        edge = rng.random(n) < 0.002
        data["deposit_avg_balance"][edge] = rng.choice([5999999.99, 499999.99, 49999.99, 0.1], int(edge.sum()))
        data["wealth_avg_balance"][edge] = rng.choice([0.01, 0.02, 0.2], int(edge.sum()))


# --------------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class Timing:
    """Median wall and CPU seconds of `runs` runs (after one unmeasured warm-up run)."""

    seconds: float
    cpu_seconds: float
    runs: int


def time_runs(run: Callable[[], object], repeat: int) -> Timing:
    run()  # warm-up: caches (compiled ruleset, imports) as a long-lived process has them
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls), statistics.median(cpus), len(walls))


def machine() -> dict[str, object]:
    """What the figures were measured on: CPU, cores, memory, load, library versions."""
    cpu = platform.processor() or platform.machine()
    memory = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
        with open("/proc/meminfo", encoding="utf-8") as handle:
            kb = int(next(line.split()[1] for line in handle if line.startswith("MemTotal")))
            memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory": memory, "os": platform.platform(terse=True),
            "python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
            "pyarrow": pa.__version__, "load_1min": load}


def _targets(engine: str, rows: int, rows_per_s: float, ratio: float | None) -> tuple[str, bool | None]:
    """The PRODUCT §8 target for a measurement and whether it is met (None: no target here)."""
    if engine == "vector" and rows >= 1_000_000:
        return "≥ 2,000,000 rows/s and ≤ 2× baseline", rows_per_s >= 2_000_000 and (ratio is None or ratio <= 2.0)
    if engine == "rete":
        return "≥ 15,000 rows/s", rows_per_s >= 15_000
    return "", None


def bench_throughput(rulesets: Sequence[str], sizes: Sequence[int], engines: Sequence[str], repeat: int,
                     rete_repeat: int, rete_max_rows: int, seed: int = 0,
                     log: Callable[[str], None] = lambda _text: None) -> list[dict[str, object]]:
    """rows/s of each engine × ruleset × size and of the numpy baseline, on the same generated table."""
    from engine import api
    from engine.baseline import BASELINES

    results: list[dict[str, object]] = []
    for rid in rulesets:
        compiled = api.compile(rid)
        for rows in sizes:
            table = generate_table(compiled, rows, seed=seed)
            baseline_time = None
            if rid in BASELINES:
                log(f"{rid} {rows:,} rows: numpy baseline")
                baseline_time = time_runs(lambda rid=rid, table=table: BASELINES[rid](table), repeat)
                results.append(_record("numpy-baseline", rid, rows, baseline_time, baseline_time))
            for engine in engines:
                if engine == "rete" and rows > rete_max_rows:
                    continue
                log(f"{rid} {rows:,} rows: {engine}")
                timing = time_runs(lambda compiled=compiled, table=table, engine=engine:
                                   api.evaluate(compiled, table, engine=engine),
                                   rete_repeat if engine == "rete" else repeat)
                results.append(_record(engine, rid, rows, timing, baseline_time))
    return results


def _record(engine: str, rid: str, rows: int, timing: Timing, baseline: Timing | None) -> dict[str, object]:
    rows_per_s = rows / timing.seconds if timing.seconds > 0 else float("inf")
    ratio = timing.seconds / baseline.seconds if baseline is not None and baseline.seconds > 0 else None
    target, met = _targets(engine, rows, rows_per_s, ratio)
    cpu_rows_per_s = rows / timing.cpu_seconds if timing.cpu_seconds > 0 else float("inf")
    return {"kind": "throughput", "engine": engine, "ruleset": rid, "rows": rows, "runs": timing.runs,
            "cpu_rows_per_s": round(cpu_rows_per_s),
            "seconds": round(timing.seconds, 6), "cpu_seconds": round(timing.cpu_seconds, 6),
            "rows_per_s": round(rows_per_s), "baseline_seconds": None if baseline is None else round(baseline.seconds, 6),
            "ratio_to_baseline": None if ratio is None else round(ratio, 3), "target": target, "meets_target": met}


# --------------------------------------------------------------------------- tier eval on Parquet
def write_parquet_table(compiled: CompiledRuleset, rows: int, path: str, seed: int = 0,
                        block: int = 1_000_000) -> None:
    """A generated table of `rows` rows as one Parquet file, built a block at a time."""
    writer = None
    try:
        for start in range(0, rows, block):
            table = pa.Table.from_pandas(generate_table(compiled, min(block, rows - start), seed=seed + start),
                                         preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


_CHILD = """
import sys
from engine.cli import main
status = main(sys.argv[1:])
peak = ""
try:
    with open("/proc/self/status", encoding="ascii") as handle:
        peak = next((line.split()[1] for line in handle if line.startswith("VmHWM:")), "")
except OSError:
    pass
print(f"TIER_BENCH_PEAK_KIB={peak}", file=sys.stderr)
sys.exit(status)
"""


def run_eval(rid: str, source: str, target: str, extra: Sequence[str] = ()) -> tuple[float, float, int, float]:
    """`tier eval` in a child process → (wall seconds, peak RSS in MiB, exit status, CPU seconds).

    The peak is the child's own VmHWM, read by the child at its end: `ru_maxrss` of a child
    starts from the *parent's* high-water mark (Linux carries it across exec), which would
    report this process's generated tables instead of tier eval's memory.
    """
    command = [sys.executable, "-c", _CHILD, "eval", rid, source, "-o", target, *extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = child.stderr.read() if child.stderr is not None else ""
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    peak_kib = next((float(line.split("=", 1)[1]) for line in err.splitlines()
                     if line.startswith("TIER_BENCH_PEAK_KIB=") and line.split("=", 1)[1]), float(usage.ru_maxrss))
    return seconds, peak_kib / 1024, child.returncode, usage.ru_utime + usage.ru_stime


def bench_eval(rulesets: Sequence[str], sizes: Sequence[int], log: Callable[[str], None] = lambda _t: None,
               seed: int = 0) -> list[dict[str, object]]:
    """End-to-end `tier eval` of Parquet files of each size: seconds, peak memory, flatness."""
    from engine import api

    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="tier-bench-") as folder:
        for rid in rulesets:
            compiled = api.compile(rid)
            peaks: dict[int, float] = {}
            for rows in sizes:
                source = os.path.join(folder, f"{rid}-{rows}.parquet")
                target = os.path.join(folder, f"{rid}-{rows}-out.parquet")
                log(f"{rid} {rows:,} rows: writing the Parquet input")
                write_parquet_table(compiled, rows, source, seed=seed)
                log(f"{rid} {rows:,} rows: tier eval")
                seconds, peak, status, cpu = run_eval(rid, source, target)
                peaks[rows] = peak
                smallest = min(peaks)
                growth = (peak - peaks[smallest]) / peaks[smallest] if rows != smallest else 0.0
                target_text, met = "", None
                if rows == 1_000_000:
                    target_text, met = "< 10 s and < 2 GB peak", seconds < 10 and peak < 2048 and status == 0
                elif rows > smallest:
                    target_text = f"peak within 30 % of the {smallest:,}-row run"
                    met = abs(growth) < 0.30 and status == 0
                results.append({"kind": "tier-eval", "engine": "vector (tier eval, Parquet → Parquet)",
                                "ruleset": rid, "rows": rows, "runs": 1, "seconds": round(seconds, 3),
                                "cpu_seconds": round(cpu, 3),
                                "rows_per_s": round(rows / seconds), "peak_rss_mib": round(peak, 1),
                                "peak_growth_vs_smallest": round(growth, 3), "exit_status": status,
                                "input_mib": round(os.path.getsize(source) / 2**20, 1),
                                "target": target_text, "meets_target": met})
                for path in (source, target):
                    if os.path.exists(path):
                        os.remove(path)
    return results


# --------------------------------------------------------------------------- the command
def add_arguments(parser) -> None:  # argparse.ArgumentParser
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="N",
                        help="table sizes (default: 10000 100000 1000000)")
    parser.add_argument("--ruleset", action="append", metavar="ID", help=f"ruleset(s) (default: {', '.join(CORE)})")
    parser.add_argument("--engine", action="append", choices=["vector", "rete", "scalar"],
                        help="engine(s) (default: vector and rete)")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per figure (median; default 5)")
    parser.add_argument("--rete-repeat", type=int, default=3, help="measured runs of the rete engine (default 3)")
    parser.add_argument("--rete-max-rows", type=int, default=RETE_MAX_ROWS,
                        help=f"largest table given to the rete engine (default {RETE_MAX_ROWS:,})")
    parser.add_argument("--eval-rows", type=int, nargs="*", default=[1_000_000, 5_000_000], metavar="N",
                        help="Parquet sizes for the end-to-end `tier eval` run (default 1000000 5000000; "
                             "none to skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print a JSON array of measurements instead of tables")


def _fmt_table(results: list[dict[str, object]]) -> str:
    lines = [(f"{'engine':15s} {'ruleset':14s} {'rows':>10s} {'median s':>9s} {'rows/s':>11s} {'cpu rows/s':>11s} "
              f"{'baseline s':>10s} {'ratio':>6s}  target")]
    for item in results:
        if item["kind"] != "throughput":
            continue
        ratio = "" if item["ratio_to_baseline"] is None else f"{item['ratio_to_baseline']:.2f}"
        base = "" if item["baseline_seconds"] is None else f"{item['baseline_seconds']:.4f}"
        verdict = "" if item["meets_target"] is None else ("OK " if item["meets_target"] else "MISSED ") + str(item["target"])
        lines.append(f"{item['engine']:15s} {item['ruleset']:14s} {item['rows']:>10,} {item['seconds']:>9.4f} "
                     f"{item['rows_per_s']:>11,} {item['cpu_rows_per_s']:>11,} {base:>10s} {ratio:>6s}  {verdict}")
    evals = [item for item in results if item["kind"] == "tier-eval"]
    if evals:
        lines.append("")
        lines.append(f"{'tier eval (Parquet → Parquet)':30s} {'rows':>10s} {'seconds':>8s} {'cpu s':>7s} "
                     f"{'rows/s':>11s} {'peak MiB':>9s} {'growth':>7s}  target")
        for item in evals:
            verdict = "" if item["meets_target"] is None else ("OK " if item["meets_target"] else "MISSED ") + str(item["target"])
            lines.append(f"{item['ruleset']:30s} {item['rows']:>10,} {item['seconds']:>8.2f} {item['cpu_seconds']:>7.2f} "
                         f"{item['rows_per_s']:>11,} "
                         f"{item['peak_rss_mib']:>9.1f} {item['peak_growth_vs_smallest']:>7.1%}  {verdict}")
    return "\n".join(lines)


def main(args) -> int:  # argparse.Namespace
    """`tier bench`: tables (or --json) on stdout, progress on stderr."""
    rulesets = args.ruleset or list(CORE)
    engines = args.engine or ["vector", "rete"]
    if "rete" in engines:
        from engine.cli import _rete_reason

        reason = _rete_reason()
        if reason:
            print(f"tier bench: rete skipped: {reason}", file=sys.stderr)
            engines = [e for e in engines if e != "rete"]
    info = machine()

    def log(text: str) -> None:
        print(f"tier bench: {text}", file=sys.stderr, flush=True)

    results = bench_throughput(rulesets, sorted(set(args.rows)), engines, args.repeat, args.rete_repeat,
                               args.rete_max_rows, seed=args.seed, log=log)
    if args.eval_rows:
        results += bench_eval(rulesets, sorted(set(args.eval_rows)), log=log, seed=args.seed)
    for item in results:
        item["machine"] = info
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
    else:
        print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['memory']}, {info['os']}, "
              f"Python {info['python']}, numpy {info['numpy']}, pandas {info['pandas']}, pyarrow {info['pyarrow']}; "
              f"load {info['load_1min']:.2f} at start" if info["load_1min"] is not None else "")
        print("times: median wall-clock seconds of the measured runs, after a warm-up run (cpu rows/s: the same "
              "from the process's CPU time, steadier on a shared machine); "
              "ratio = engine time / numpy baseline time on the same table")
        print(_fmt_table(results))
    return 0

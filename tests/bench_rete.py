"""Throughput of the rete engine against the scalar reference: `python -m tests.bench_rete [rows]`.

Prints rows/s for the decision stage only (rows are prepared beforehand, as engine.api does),
best of three runs, for every core ruleset. Not a test: the figures depend on the machine and
its load; PRODUCT asks for ≥ 15,000 rows/s on the credit ruleset.
"""
from __future__ import annotations

import sys
import time

from engine import api, prepare, rete, scalar
from tests.rowgen import random_rows


def _best_rate(run, rows, repeat: int = 3) -> tuple[float, float]:
    """Rows per second of wall time and of this process's CPU time (the latter shows what an
    unloaded machine would do when other processes compete for the cores)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run(rows)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return len(rows) / wall, len(rows) / cpu


def main(n: int = 50_000) -> None:
    for rid in ("credit", "guarantee", "bank_layering"):
        compiled = api.compile(rid)
        keys = [inp.key for inp in compiled.inputs]
        prepared = (prepare.prepare_row(compiled, {k: r.get(k) for k in keys}) for r in random_rows(compiled, n, seed=1))
        rows = [p.values for p in prepared if p.ok]
        rete.decide_rows(compiled, rows[:10])  # register the ruleset outside the timing
        rete_rate = _best_rate(lambda r, c=compiled: rete.decide_rows(c, r), rows)
        scalar_rate = _best_rate(lambda r, c=compiled: scalar.decide_rows(c, r), rows)
        plan = rete._registry[compiled.digest].plan
        print(f"{rid:14s} {len(rows):7d} OK rows  rete {rete_rate[0]:9,.0f} rows/s ({rete_rate[1]:,.0f} per CPU-s)  "
              f"scalar {scalar_rate[0]:9,.0f} rows/s ({scalar_rate[1]:,.0f} per CPU-s)  "
              f"[{len(plan.stages)} stages, {len(plan.actions)} durable rules]")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)

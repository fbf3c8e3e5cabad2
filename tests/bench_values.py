"""Throughput of `engine.values.parse_column` (not collected by pytest: no `test_` prefix).

Run: `python3 tests/bench_values.py [rows]`. Prints rows/s for the column shapes a 1M-row table
brings: number text with thousands separators, float64 cells, date text, and an object column
as an Excel range delivers it (floats, text and blanks mixed).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.values import parse_column  # noqa: E402


def _best_of(repeat: int, run: Callable[[], object]) -> float:
    """The fastest of `repeat` runs: the machine is shared, the minimum is the signal."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(rows: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    amounts = rng.uniform(0, 1e7, rows).round(2)
    number_text = pd.Series([f"{v:,.2f}" for v in amounts], dtype="str")
    floats = pd.Series(amounts)
    days = np.datetime64("2000-01-01") + rng.integers(0, 9000, rows)
    date_text = pd.Series(np.datetime_as_string(days, unit="D"), dtype="str")
    mixed = pd.Series(np.where(rng.random(rows) < 0.5, amounts, None).astype(object))
    mixed[::7] = "12,000.50"
    cases = [
        ("number text '12,000.50'", number_text, "number"),
        ("float64", floats, "number"),
        ("date text 'YYYY-MM-DD'", date_text, "date"),
        ("object (float/str/None)", mixed, "number"),
    ]
    for label, column, kind in cases:
        seconds = _best_of(3, lambda: parse_column(column, kind))
        print(f"{label:28s} {kind:7s} {rows:>9,} rows  {seconds * 1000:8.1f} ms  {rows / seconds / 1e6:6.2f} M rows/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)

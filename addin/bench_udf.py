"""Benchmark: Python time of `=TIER_TABLE` over 10,000 Excel-shaped rows, ruleset cached.

    python -m addin.bench_udf [--rows 10000] [--repeat 15] [--ruleset guarantee ...]

PRODUCT §8 target: under 50 ms per call once the ruleset is compiled (the first call compiles
and is reported separately). The rows are shaped the way xlwings delivers a range: floats for
every number, `datetime` for date cells, None for empty cells, text for text; a few cells are
numbers stored as text, date serials and bad values, as real sheets have them.

Printed per ruleset: the median CPU time of the cached calls (the verdict: CPU time is what the
process itself spends, steady on a shared machine where wall time waits for other processes),
the minimum and median wall time, the first (compiling) call, and where the CPU time of one call
goes (reading cells, the engine, the #ERR texts of ERROR rows, building the result).
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
from collections.abc import Callable

from addin import tiering as tg
from addin import udfs
from engine import api

AS_OF = dt.datetime(2024, 6, 30)


def _day(rng: random.Random, back: int, forward: int = 0) -> dt.datetime:
    return AS_OF + dt.timedelta(days=rng.randint(-back, forward))


def credit_rows(n: int, seed: int = 0) -> list[list[object]]:
    rng = random.Random(seed)
    rows: list[list[object]] = [["客户编号", "客户名称", "评估日期", "月均销售额(元)", "平均回款天数", "是否新客户",
                                 "最近拜访日期"]]
    for i in range(n):
        sales = float(rng.choice([rng.randint(0, 40000), 20000, 10000, 5000]))
        days = rng.choice([float(rng.randint(0, 90)), None, 30.0, 45.5])
        rows.append([f"C{i:05d}", f"客户{i}", AS_OF, sales if rng.random() > 0.02 else "12,000", days,
                     rng.choice(["是", "否", None, None]), rng.choice([None, _day(rng, 400)])])
    return rows


def guarantee_rows(n: int, seed: int = 0) -> list[list[object]]:
    rng = random.Random(seed)
    rows: list[list[object]] = [["担保业务编号", "被担保人名称", "分类基准日", "担保起始日", "担保到期日",
                                 "主债务逾期天数",
                                 "是否已代偿", "重大风险事件", "资产负债率", "销售收入同比变动", "反担保覆盖率",
                                 "其他一般预警信号数", "最近回访日期"]]
    for i in range(n):
        start = _day(rng, 700, 30)
        rows.append([f"G{i:05d}", f"被担保人{i}", AS_OF, start, start + dt.timedelta(days=rng.choice([365, 730])),
                     rng.choice([0.0, 0.0, 0.0, 5.0, 91.0, 120.0, None]), rng.choice([None, "否", "是"]),
                     rng.choice([None, None, "否", "是"]), rng.choice([round(rng.random(), 2), None, 0.7]),
                     rng.choice([None, -0.1, -0.3, 0.2]), rng.choice([1.2, 0.8, None, 1.0]),
                     float(rng.randint(0, 2)), rng.choice([None, start + dt.timedelta(days=30), _day(rng, 200)])])
        if rng.random() < 0.01:
            rows[-1][5] = "abc"  # a bad cell: the row shows #ERR, the others evaluate
    return rows


def bank_rows(n: int, seed: int = 0) -> list[list[object]]:
    rng = random.Random(seed)
    rows: list[list[object]] = [["客户号", "评估日期", "存款月日均余额", "理财/基金/保险等代销产品月日均余额",
                                 "贷款余额",
                                 "近90天客户主动交易笔数", "最近一次客户主动交易日期", "最近联系/拜访日期"]]
    for i in range(n):
        count = rng.randint(0, 10)  # consistent with the last transaction (BL INCONSISTENT check)
        last_txn = rng.choice([None, _day(rng, 89)]) if count else rng.choice([None, _day(rng, 600) - dt.timedelta(90)])
        rows.append([f"P{i:07d}", AS_OF, float(rng.choice([rng.randint(0, 8_000_000), 50000, 500000])),
                     rng.choice([None, float(rng.randint(0, 1_000_000))]), rng.choice([None, 0.0, 1_000_000.0]),
                     float(count), last_txn, rng.choice([None, _day(rng, 200)])])
    return rows


BUILDERS: dict[str, Callable[[int, int], list[list[object]]]] = {
    "credit": credit_rows, "guarantee": guarantee_rows, "bank_layering": bank_rows}


def _stages(ruleset: str, rows: list[list[object]]) -> dict[str, float]:
    """CPU time of each stage of one cached call (ms); 'errors' = the #ERR texts of ERROR rows."""
    from addin import excel_values as xv

    clock = time.process_time
    with tg.gc_paused:
        t0 = clock()
        compiled, merged, date1904 = udfs.compiled_for(ruleset)
        t1 = clock()
        table = xv.normalise_table(rows)
        found = tg.match_inputs(compiled, table.header)
        types = {i.key: i.type for i in compiled.definition.inputs}
        data = {key: xv.column_for_engine([r[i] for r in table.rows], types[key]) for key, i in found.items()}
        t2 = clock()
        tg._evaluate(compiled, data, len(table.rows), False, "")  # noqa: SLF001 — a benchmark looks inside
        t3 = clock()
        run = tg.evaluate_cells(compiled, table.header, table.rows, merged, date1904)
        t4 = clock()
        view = tg.default_view(compiled)
        [tg.view_header(view), *tg.view_cells(run, view)]
        t5 = clock()
    errors = (t4 - t3) - (t2 - t1) - (t3 - t2)
    return {"ruleset lookup": (t1 - t0) * 1e3, "cells → columns": (t2 - t1) * 1e3, "engine": (t3 - t2) * 1e3,
            "errors": max(0.0, errors) * 1e3, "result → cells": (t5 - t4) * 1e3}


def bench(ruleset: str, n: int, repeat: int) -> dict[str, float]:
    rows = BUILDERS[ruleset](n, 0)
    tg.CACHE.clear()
    started = time.perf_counter()
    first = udfs.TIER_TABLE(ruleset, rows)
    cold = (time.perf_counter() - started) * 1e3
    if isinstance(first, list) and first and str(first[0][0]).startswith(tg.ERR_PREFIX):
        raise SystemExit(f"{ruleset}: {first[0][0]}")
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        udfs.TIER_TABLE(ruleset, rows)
        cpus.append((time.process_time() - cpu) * 1e3)
        walls.append((time.perf_counter() - wall) * 1e3)
    return {"rows": n, "first call (compiles)": cold, "min": min(walls), "median": statistics.median(walls),
            "median cpu": statistics.median(cpus), **_stages(ruleset, rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--ruleset", action="append", choices=sorted(BUILDERS))
    args = parser.parse_args(argv)
    direct = "engine.api.evaluate_columns" if hasattr(api, "evaluate_columns") else "engine.api.evaluate (DataFrame)"
    print(f"TIER_TABLE over {args.rows:,} Excel-shaped rows, ruleset cached; engine entry: {direct}")
    print("target (PRODUCT §8): < 50 ms of Python time per call")
    for ruleset in args.ruleset or list(BUILDERS):
        try:
            result = bench(ruleset, args.rows, args.repeat)
        except Exception as exc:  # noqa: BLE001 — e.g. a ruleset not written yet: report, go on
            print(f"{ruleset:>14}: skipped ({type(exc).__name__}: {exc})")
            continue
        verdict = "OK" if result["median cpu"] < 50 else "over target"
        print(f"{ruleset:>14}: cpu median {result['median cpu']:.1f} ms — {verdict}; wall min {result['min']:.1f} ms, "
              f"median {result['median']:.1f} ms; first call {result['first call (compiles)']:.0f} ms")
        print(" " * 16 + "cpu of one call: " + ", ".join(
            f"{k} {result[k]:.1f}" for k in ("ruleset lookup", "cells → columns", "engine", "errors",
                                            "result → cells")) + " ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Concurrency (PRODUCT §10): calls from many threads give exactly the single-thread results.

Excel may call the add-in's functions from several threads, and one process may serve many
workbooks. Checked here, 8 threads × 1,000 calls each:

* `engine.evaluate` over the three engines (the rete engine's durable-rules host is one shared C
  library behind a lock), the core rulesets and a mix of good and bad rows;
* `engine.compile` with changing parameters — more distinct ones than the compile cache holds, so
  threads evict and rebuild entries while others read them;
* the worksheet functions `TIER` / `TIER_TABLE` (`addin.udfs`), which share the add-in's cache;

and compiled rulesets are immutable: every attempt to change one raises, and after all the
threaded work each one is exactly as it was.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

import engine
from engine import api

THREADS = 8
CALLS = 1_000

CREDIT = pd.DataFrame({
    "评估日期": ["2024-06-30", "2024-06-30", "2024-02-30", "2024-06-30"],
    "月均销售额": ["25,000", "9999.99", "1", "abc"],
    "平均回款天数": [20, "", 61, 30],
    "是否新客户": ["否", "是", "", "x"],
    "最近拜访日期": ["2024/5/31", "", "2024-07-01", ""],
}, dtype=object)
GUARANTEE = pd.DataFrame({
    "分类基准日": ["2024-06-30", "2024-06-30", "2024-06-30"],
    "担保起始日": ["2024-01-10", "2023-06-01", ""],
    "担保到期日": ["2025-01-10", "2024-06-01", "2025-01-01"],
    "主债务逾期天数": ["", "95", "2.5"],
    "资产负债率": ["0.50", "75%", "0.9"],
    "最近回访日期": ["2024-03-31", "", ""],
}, dtype=object)
BANK = pd.DataFrame({
    "评估日期": ["2024-06-30", "2024-06-30", "2024-06-30"],
    "存款月日均余额": ["49999.99", "6,000,000", ""],
    "贷款余额": ["", "0", ""],
    "近90天客户主动交易笔数": ["5", "0", "1"],
    "最近一次客户主动交易日期": ["2024-06-20", "2024-01-01", "2024-06-01"],
}, dtype=object)
TABLES = {"credit": CREDIT, "guarantee": GUARANTEE, "bank_layering": BANK}


def _engines() -> list[str]:
    try:
        from engine.rete import rete_available
    except ImportError:
        return ["vector", "scalar"]
    return ["vector", "scalar"] + (["rete"] if rete_available() is None else [])


ENGINES = _engines()


def _run_threads(work: Callable[[int, int], Any]) -> list[list[Any]]:
    """Run work(thread, call) CALLS times on each of THREADS threads, all started together."""
    results: list[list[Any]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        try:
            start.wait()
            for call in range(CALLS):
                results[index].append(work(index, call))
        except BaseException as exc:  # noqa: BLE001 — reported below with the thread's context
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors[:3]
    assert all(len(r) == CALLS for r in results)
    return results


def _cell(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value  # NaN == NaN for the comparison


def _snapshot(frame: pd.DataFrame) -> tuple:
    return tuple(frame.columns), tuple(tuple(map(_cell, row)) for row in frame.to_numpy(dtype=object).tolist())


@pytest.mark.slow
def test_evaluate_from_eight_threads_equals_one_thread() -> None:
    compiled = {rid: engine.compile(rid) for rid in TABLES}
    cases = [(rid, eng) for rid in TABLES for eng in ENGINES]

    def call(thread: int, index: int) -> tuple:
        rid, eng = cases[(thread + index) % len(cases)]
        return rid, eng, _snapshot(engine.evaluate(compiled[rid], TABLES[rid], engine=eng, explain=True))

    expected = {(rid, eng): _snapshot(engine.evaluate(compiled[rid], TABLES[rid], engine=eng, explain=True))
                for rid, eng in cases}
    inputs_before = {rid: _snapshot(frame) for rid, frame in TABLES.items()}
    before = {rid: repr(c) for rid, c in compiled.items()}
    results = _run_threads(call)
    wrong = [(rid, eng) for thread in results for rid, eng, got in thread if got != expected[(rid, eng)]]
    assert wrong == []
    assert {rid: _snapshot(frame) for rid, frame in TABLES.items()} == inputs_before, "inputs untouched"
    assert {rid: repr(c) for rid, c in compiled.items()} == before, "compiled rulesets unchanged"
    # engines agree with each other too, whatever the interleaving was
    for rid in TABLES:
        assert len({expected[(rid, eng)] for eng in ENGINES}) == 1, rid


def test_compile_from_eight_threads_with_cache_churn() -> None:
    definition = api.load_ruleset("credit")
    values = [15_000 + 10 * i for i in range(api._CACHE_SIZE + 16)]  # more than the cache holds
    expected = {v: api.compile(definition, {"sales_70_points_min": v}).digest for v in values}
    row = pd.DataFrame({"评估日期": ["2024-06-30"], "月均销售额": ["15100"], "平均回款天数": [20]}, dtype=object)

    def call(thread: int, index: int) -> tuple:
        value = values[(thread * 37 + index) % len(values)]
        compiled = api.compile(definition, {"sales_70_points_min": value})
        graded = engine.evaluate(compiled, row, engine="scalar").loc[0, "sales_score"] if index % 25 == 0 else None
        return value, compiled.digest, compiled.params["sales_70_points_min"], graded

    results = _run_threads(call)
    for thread in results:
        for value, digest, bound, graded in thread:
            assert digest == expected[value]
            assert bound == Decimal(value)
            if graded is not None:  # 15100 reaches the 70-point band only when the threshold allows
                assert int(graded) == (70 if value <= 15_100 else 50)


@pytest.mark.slow
def test_udfs_from_eight_threads_equal_one_thread() -> None:
    udfs = pytest.importorskip("addin.udfs")
    header = ["客户编号", "评估日期", "月均销售额", "平均回款天数", "是否新客户", "最近拜访日期"]
    rows = [["C1", "2024-06-30", "25,000", 20, "否", "2024/5/31"],
            ["C2", "2024-06-30", "abc", None, "x", None],
            ["C3", "2024-06-30", 10000.0, None, "是", "2023-12-31"],
            ["C4", "2024-06-30", 5000, 61, None, None]]
    g_header = list(GUARANTEE.columns)
    g_rows = GUARANTEE.where(GUARANTEE.notna(), None).to_numpy().tolist()
    calls: list[Callable[[], Any]] = [
        lambda: udfs.TIER("credit", header, rows[0]),
        lambda: udfs.TIER("credit", header, rows[1]),
        lambda: udfs.TIER("credit", header, rows[2], "next_visit_date"),
        lambda: udfs.TIER("guarantee", g_header, g_rows[1], "风险分类"),
        lambda: udfs.TIER_TABLE("credit", [header, *rows]),
        lambda: udfs.TIER_TABLE("guarantee", [g_header, *g_rows], ["风险分类", "next_visit_date", "错误"]),
        lambda: udfs.TIER_TABLE("credit", [header, *rows], None, [["sales_70_points_min", 30000]]),
    ]
    expected = [fn() for fn in calls]
    assert expected[0] == "A" and expected[4][0][0] == "状态"  # sanity: real results, not error texts

    def call(thread: int, index: int) -> tuple[int, Any]:
        which = (thread * 3 + index) % len(calls)
        return which, calls[which]()

    results = _run_threads(call)
    wrong = [which for thread in results for which, got in thread if got != expected[which]]
    assert wrong == []


# --------------------------------------------------------------------------- immutability
def _mutations(compiled: Any) -> list[tuple[str, Callable[[], None]]]:
    decision = compiled.decisions[0]
    rule = decision.rules[0]
    definition = compiled.definition
    return [
        ("bind a parameter", lambda: compiled.params.__setitem__("sales_70_points_min", Decimal(1))),
        ("delete a parameter", lambda: compiled.params.__delitem__("sales_70_points_min")),
        ("retype a fact", lambda: compiled.fact_types.__setitem__("grade", "number")),
        ("fake an override", lambda: compiled.overridden.__setitem__("x", 1)),
        ("replace the decisions", lambda: setattr(compiled, "decisions", ())),
        ("add an attribute", lambda: setattr(compiled, "extra", 1)),
        ("change the digest", lambda: setattr(compiled, "digest", "x")),
        ("rename a rule", lambda: setattr(rule, "id", "X")),
        ("drop a condition", lambda: setattr(rule, "condition", None)),
        ("append a rule", lambda: decision.rules.append(rule)),  # type: ignore[attr-defined]
        ("edit an expression", lambda: setattr(rule.condition, "op", "<")),
        ("edit an assignment", lambda: rule.assignments.__setitem__(0, ("x", None))),
        ("change an input", lambda: setattr(compiled.inputs[0], "type", "text")),
        ("change an input bound", lambda: setattr(compiled.inputs[3], "min", None)),
        ("change a check", lambda: setattr(compiled.checks[0], "code", "X")),
        ("change the definition", lambda: setattr(definition.inputs[0], "key", "x")),
        ("change a label", lambda: setattr(definition.title, "zh", "x")),
        ("change an example input", lambda: definition.examples[0].input.__setitem__("as_of_date", "x")),
        ("change an example expectation", lambda: definition.examples[0].expect.__setitem__("status", "ERROR")),
        ("change example params", lambda: definition.examples[0].params.__setitem__("x", 1)),
    ]


@pytest.mark.parametrize("index", range(20))
def test_compiled_ruleset_refuses_mutation(index: int) -> None:
    compiled = engine.compile("credit")
    before = repr(compiled)
    name, mutate = _mutations(compiled)[index]
    with pytest.raises((TypeError, AttributeError, dataclasses.FrozenInstanceError)):
        mutate()
    assert repr(compiled) == before, name
    assert engine.compile("credit") is compiled, "the cached object is the one shared"

"""The vector engine's speed-ups change nothing but speed (issue 8).

Each shortcut of engine/vector.py and engine/outputs.py is switched off and the results compared
with the shortcut on, for every shipped ruleset, on boundary-rich messy rows: labels held as
codes (`CodedText`), literal assignments gathered through the fired rule, calendar expressions
evaluated once per distinct input combination, and `join_codes` without a sort. The uncertain
rows (re-done exactly) may only shrink, never differ in what they produce.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine import api, vector
from engine import outputs as out
from engine.ruleset import available_rulesets
from tests.rowgen import random_rows

RULESETS = sorted(available_rulesets())


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every shortcut off: text as object arrays, per-rule masked assignment, whole-table dates."""
    monkeypatch.setattr(vector, "_by_distinct_inputs", lambda node, env, ctx: None)
    monkeypatch.setattr(vector, "_coded_output", lambda *args: None)
    monkeypatch.setattr(vector, "_literal_output", lambda *args: None)
    monkeypatch.setattr(vector, "_coded_concat", lambda node, env, n: None)


@pytest.mark.parametrize("rid", RULESETS)
def test_shortcuts_change_nothing(rid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = api.compile(rid)
    frame = pd.DataFrame(random_rows(compiled, 4_000, seed=len(rid)), dtype=object)
    monkeypatch.setattr(vector, "_MEMO_MIN_ROWS", 0)  # the distinct-input path even on small tables
    fast = api.evaluate(compiled, frame, explain=True)
    with monkeypatch.context() as patch:
        _plain(patch)
        plain = api.evaluate(compiled, frame, explain=True)
    pd.testing.assert_frame_equal(fast, plain)


def test_calendar_memo_is_used_and_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """add_months over 200k rows goes through the distinct-input path and agrees with the plain one."""
    compiled = api.compile("guarantee")
    rng = np.random.default_rng(1)
    n = 200_000
    days = np.datetime64("2024-06-30") - rng.integers(0, 900, n).astype("timedelta64[D]")
    frame = pd.DataFrame({
        "as_of_date": np.full(n, np.datetime64("2024-06-30"), dtype="datetime64[s]"),
        "guarantee_start_date": (days - 400).astype("datetime64[s]"),
        "guarantee_end_date": (days + rng.integers(-5, 900, n).astype("timedelta64[D]")).astype("datetime64[s]"),
        "overdue_days": rng.choice([0.0, 5.0, 91.0, np.nan], n),
        "last_visit_date": days.astype("datetime64[s]"),
    })
    used = []
    real = vector._by_distinct_inputs

    def spy(node, env, ctx):
        result = real(node, env, ctx)
        used.append(result is not None)
        return result

    monkeypatch.setattr(vector, "_by_distinct_inputs", spy)
    fast = api.evaluate(compiled, frame)
    assert sum(used) >= 3  # visit due date, plan due date, repayment reminder
    monkeypatch.setattr(vector, "_by_distinct_inputs", lambda node, env, ctx: None)
    pd.testing.assert_frame_equal(fast, api.evaluate(compiled, frame))


@pytest.mark.parametrize("n", [0, 1, 7, 5_000])
@pytest.mark.parametrize("codes", [0, 1, 3, 20, 45])
def test_join_codes_equals_naive_join(n: int, codes: int) -> None:
    rng = np.random.default_rng(n + codes)
    items = [(f"C{i}", rng.random(n) < rng.choice([0.0, 0.001, 0.3, 1.0])) for i in range(codes)]
    expected = [";".join(code for code, mask in items if mask[row]) for row in range(n)]
    assert list(out.join_codes(items, n)) == expected


def test_coded_text_reads_like_object_text() -> None:
    fact = vector.CodedText(np.array([0, 1, -1, 1], dtype=np.int32), ("A", "B"))
    assert list(fact.values) == ["A", "B", None, "B"]
    assert list(fact.materialize(np.array([False, True, True, False]), "待定")) == ["A", "待定", "待定", "B"]
    assert list(fact.lookup([False, True])) == [False, True, False, True]

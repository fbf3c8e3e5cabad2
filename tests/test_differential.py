"""The engines must agree exactly: outputs, errors, notes and fired-rule traces (PRODUCT §4).

vector (numpy, column-wise) vs scalar (exact reference) vs rete (durable-rules), on every
example, on boundary-rich generated rows for every shipped ruleset, on random rows from a
property test, and on a ≥100k-row run where durable-rules' drops and collisions would show.
"""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import api
from engine import outputs as out
from engine.ruleset import available_rulesets
from tests.rowgen import random_rows

RULESETS = sorted(available_rulesets())
CORE = ("credit", "guarantee", "bank_layering")


def _rendered(rid: str, rows, engine: str) -> pd.DataFrame:
    compiled = api.compile(rid)
    frame = api.evaluate(compiled, pd.DataFrame(rows, dtype=object), engine=engine, explain=True)
    return out.render_frame(frame, compiled)


def _assert_same(rid: str, rows, left: str, right: str) -> None:
    a, b = _rendered(rid, rows, left), _rendered(rid, rows, right)
    diff = (a != b).any(axis=1)
    if diff.any():
        first = diff.to_numpy().nonzero()[0][0]
        cols = [c for c in a.columns if a.iloc[first][c] != b.iloc[first][c]]
        pytest.fail(f"{rid}: {left} vs {right} differ on {int(diff.sum())} rows; first row {first}: "
                    f"input {rows[first]!r}; " + "; ".join(f"{c}: {a.iloc[first][c]!r} != {b.iloc[first][c]!r}" for c in cols))


@pytest.mark.parametrize("rid", RULESETS)
@pytest.mark.parametrize("other", ["scalar", "rete"])
def test_boundary_rows_agree(rid: str, other: str) -> None:
    rows = random_rows(api.compile(rid), 3000, seed=hash(rid) % 1000)
    _assert_same(rid, rows, "vector", other)


@pytest.mark.parametrize("rid", CORE)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40))
def test_random_rows_agree(rid: str, seed: int, n: int) -> None:
    rows = random_rows(api.compile(rid), n, seed=seed)
    _assert_same(rid, rows, "vector", "rete")
    _assert_same(rid, rows, "vector", "scalar")


@pytest.mark.slow
@pytest.mark.parametrize("rid", CORE)
def test_large_run_rete_drops_nothing(rid: str) -> None:
    """100k rows through durable-rules: every row comes back, identical to the vector engine."""
    rows = random_rows(api.compile(rid), 100_000, seed=7)
    _assert_same(rid, rows, "vector", "rete")

"""The numpy baselines of `tier bench` do the same work as the engine (issue 8), and the bench runs.

A benchmark ratio means something only if both sides compute the same thing: each hand-written
baseline (engine/baseline.py) must return exactly the frame `engine.evaluate` returns — statuses,
error codes in column order, notes, every output with its dtype, 待定 on ERROR rows — on the
boundary-rich tables the benchmark generates.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine import api, bench, cli
from engine import outputs as out
from engine.baseline import BASELINES


@pytest.mark.parametrize("rid", bench.CORE)
@pytest.mark.parametrize("seed", [0, 11])
def test_baseline_equals_engine(rid: str, seed: int) -> None:
    compiled = api.compile(rid)
    table = bench.generate_table(compiled, 40_000, seed=seed)
    expected = api.evaluate(compiled, table)
    got = BASELINES[rid](table)
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("rid", bench.CORE)
def test_generated_tables_are_boundary_rich(rid: str) -> None:
    """Every tier, OK and ERROR rows, several error codes: the bench exercises the whole ruleset."""
    compiled = api.compile(rid)
    table = bench.generate_table(compiled, 30_000, seed=3)
    result = api.evaluate(compiled, table)
    tiers = set(result[compiled.definition.tier_output])
    assert {"OK", "ERROR"} <= set(result["status"])
    assert len(tiers) >= 4  # all the tiers plus 待定
    codes = {code for text in result["errors"] for code in text.split(";") if code}
    assert len(codes) >= 4
    assert (result["status"] == "OK").mean() > 0.8  # mostly valid rows, like real data


def test_generator_is_reproducible_and_typed() -> None:
    compiled = api.compile("guarantee")
    first, second = bench.generate_table(compiled, 2_000, seed=5), bench.generate_table(compiled, 2_000, seed=5)
    pd.testing.assert_frame_equal(first, second)
    assert first["as_of_date"].dtype.kind == "M"
    assert first["overdue_days"].dtype == np.float64
    assert str(first["compensated"].dtype) == "boolean"


def test_bank_layering_baseline_decides_sums_on_exact_decimals() -> None:
    """5999999.99 + 0.01 is 私人银行 (6,000,000 exactly), 0.1 + 0.2 shows as 0.3 (RULESETS §0.3)."""
    frame = pd.DataFrame({
        "customer_id": pd.Series(["P1", "P2"], dtype="str"),
        "as_of_date": np.array(["2024-06-30", "2024-06-30"], dtype="datetime64[s]"),
        "deposit_avg_balance": [5_999_999.99, 0.1], "wealth_avg_balance": [0.01, 0.2], "loan_balance": [0.0, 0.0],
        "txn_count_90d": [3.0, 3.0],
        "last_txn_date": np.array(["2024-06-01", "2024-06-01"], dtype="datetime64[s]"),
        "last_contact_date": np.array(["NaT", "NaT"], dtype="datetime64[s]"),
    })
    got = BASELINES["bank_layering"](frame)
    assert list(got["segment"]) == ["私人银行", "大众"]
    assert list(out.render_frame(got, api.compile("bank_layering"))["aum"]) == ["6000000", "0.3"]
    pd.testing.assert_frame_equal(got, api.evaluate("bank_layering", frame))


def test_bench_json_has_one_object_per_engine_ruleset_size(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["bench", "--rows", "1000", "3000", "--ruleset", "credit", "--engine", "vector",
                       "--repeat", "1", "--eval-rows", "--json"])
    assert status == 0
    items = json.loads(capsys.readouterr().out)
    keys = {(item["engine"], item["ruleset"], item["rows"]) for item in items}
    assert keys == {("vector", "credit", 1000), ("vector", "credit", 3000),
                    ("numpy-baseline", "credit", 1000), ("numpy-baseline", "credit", 3000)}
    for item in items:
        assert item["rows_per_s"] > 0
        assert item["ratio_to_baseline"] == pytest.approx(item["seconds"] / item["baseline_seconds"], rel=0.02)
        assert item["machine"]["logical_cpus"] >= 1


def test_bench_table_names_targets(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["bench", "--rows", "2000", "--ruleset", "guarantee", "--engine", "vector", "--repeat", "1",
                       "--eval-rows"])
    out = capsys.readouterr().out
    assert status == 0
    assert "machine:" in out and "numpy-baseline" in out
    assert any(line.startswith("vector") and "guarantee" in line and "2,000" in line for line in out.splitlines())

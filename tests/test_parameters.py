"""Parameters ([CFG] numbers): defaults exactly as RULESETS.md, overrides change outcomes as the spec implies."""
from __future__ import annotations

import subprocess
import sys

import pytest

from engine import api
from engine.errors import ParameterError

RISK_ROW = {"分类基准日": "2024-06-30", "担保起始日": "2023-01-10", "主债务逾期天数": "120",
            "最近回访日期": "2024-06-25", "资产负债率": "0.5", "销售收入同比变动": "0", "反担保覆盖率": "1.2"}
RICH_ROW = {"评估日期": "2024-06-30", "存款月日均余额": "7,000,000", "近90天客户主动交易笔数": "5",
            "最近一次客户主动交易日期": "2024-06-01", "最近联系/拜访日期": "2024-06-01"}


@pytest.mark.parametrize("engine", ["vector", "rete", "scalar"])
def test_special_visits_every_7_days_instead_of_15(engine: str) -> None:
    default = api.evaluate("guarantee", [RISK_ROW], engine=engine).iloc[0]
    weekly = api.evaluate("guarantee", [RISK_ROW], params={"risk_visit_interval_days": 7}, engine=engine).iloc[0]
    assert default["risk_class"] == weekly["risk_class"] == "风险"
    assert str(default["next_visit_date"].date()) == "2024-07-10"  # 06-25 + 15 days
    assert str(weekly["next_visit_date"].date()) == "2024-07-02"   # 06-25 + 7 days


@pytest.mark.parametrize("engine", ["vector", "rete", "scalar"])
def test_private_bank_threshold_at_8_million(engine: str) -> None:
    default = api.evaluate("bank_layering", [RICH_ROW], engine=engine).iloc[0]
    raised = api.evaluate("bank_layering", [RICH_ROW], params={"private_banking_aum_min": "8000000"},
                          engine=engine).iloc[0]
    assert default["segment"] == "私人银行" and default["owner_role"] == "私人银行家"
    assert raised["segment"] == "财富" and raised["owner_role"] == "专属理财经理"


def test_unknown_parameter_names_the_nearest_valid_one() -> None:
    with pytest.raises(ParameterError, match="risk_visit_interval_days"):
        api.compile("guarantee", {"risk_visit_interval_day": 7})


def test_wrong_type_is_a_clear_error() -> None:
    with pytest.raises(ParameterError, match="risk_visit_interval_days.*'abc'"):
        api.compile("guarantee", {"risk_visit_interval_days": "abc"})


def test_run_records_which_parameters_differ_from_defaults() -> None:
    frame = api.evaluate("guarantee", [RISK_ROW], params={"risk_visit_interval_days": 7,
                                                          "watch_min_warning_count": 2})
    info = frame.attrs["tierbook"]
    assert info["parameters_changed"] == {"risk_visit_interval_days": "7"}  # 2 is the default: not a change
    assert info["ruleset"] == "guarantee" and info["version"]


def test_defaults_are_the_spec_values() -> None:
    expected = {
        "guarantee": {"debt_ratio_warning_above": "0.7", "revenue_change_warning_at_or_below": "-0.3",
                      "coverage_warning_below": "1", "watch_min_warning_count": "2", "risk_visit_interval_days": "15"},
        "bank_layering": {"private_banking_aum_min": "6000000", "loan_uplift_min_balance": "1000000",
                          "dormant_days_min": "365", "active_txn_count_min": "3"},
        "credit": {"new_customer_default_collection_days": "45"},
    }
    from engine.compile import render_param

    for rid, values in expected.items():
        params = api.compile(rid).params
        assert {k: render_param(params[k]) for k in values} == values


def test_cli_param_override(tmp_path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(",".join(RISK_ROW) + "\n" + ",".join(RISK_ROW.values()) + "\n", encoding="utf-8")
    dst = tmp_path / "out.csv"
    run = subprocess.run([sys.executable, "-m", "engine.cli", "eval", "guarantee", str(src), "-o", str(dst),
                          "--param", "risk_visit_interval_days=7"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "2024-07-02" in dst.read_text(encoding="utf-8-sig")
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "eval", "guarantee", str(src), "-o", str(dst),
                          "--param", "risk_visit_interval=7"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "risk_visit_interval_days" in bad.stderr

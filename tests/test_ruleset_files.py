"""Structural checks of the three core ruleset files (credit, guarantee, bank_layering).

The files are data an analyst edits, so a typo (a misspelt parameter, an example column that
does not exist, a decision that uses a fact before it is derived) must fail here, long before a
workbook run. These tests read the YAML with plain `yaml.safe_load` and need no engine; the
engine-based golden run of the examples lives in another test module. The column lists below
are copied from RULESETS.md §1.1–§1.3 so that the column order and Chinese headers the hidden
acceptance tests rely on cannot drift.
"""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

RULESET_DIR = Path(__file__).resolve().parent.parent / "rulesets"
CORE = ("credit", "guarantee", "bank_layering")

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CODE = re.compile(r"^(MISSING|INVALID|INCONSISTENT):[a-z][a-z0-9_]*$")
IMPLICIT_OUTPUTS = ("status", "errors", "notes")
KEYWORDS = {"and", "or", "not", "in", "true", "false", "blank"}
_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACKET_TAIL = re.compile(r"\s*[(（][^()（）]*[)）]\s*$")

# (key, Chinese header exactly as in the spec table) in the spec's column order.
SPEC_INPUTS: dict[str, list[tuple[str, str]]] = {
    "credit": [
        ("customer_id", "客户编号"), ("customer_name", "客户名称"), ("as_of_date", "评估日期"),
        ("monthly_avg_sales", "月均销售额"), ("avg_collection_days", "平均回款天数"),
        ("is_new_customer", "是否新客户"), ("last_visit_date", "最近拜访日期"),
    ],
    "guarantee": [
        ("guarantee_id", "担保业务编号"), ("customer_name", "被担保人名称"), ("as_of_date", "分类基准日"),
        ("guarantee_start_date", "担保起始日(放款日)"), ("guarantee_end_date", "担保到期日(主债务到期日)"),
        ("overdue_days", "主债务逾期天数"), ("compensated", "是否已代偿"), ("major_adverse_event", "重大风险事件"),
        ("asset_liability_ratio", "资产负债率"), ("revenue_yoy_change", "销售收入同比变动"),
        ("counter_guarantee_coverage", "反担保覆盖率"), ("other_warning_count", "其他一般预警信号数"),
        ("last_visit_date", "最近回访日期"),
    ],
    "bank_layering": [
        ("customer_id", "客户号"), ("as_of_date", "评估日期"), ("deposit_avg_balance", "存款月日均余额"),
        ("wealth_avg_balance", "理财/基金/保险等代销产品月日均余额"), ("loan_balance", "贷款余额"),
        ("txn_count_90d", "近90天客户主动交易笔数"), ("last_txn_date", "最近一次客户主动交易日期"),
        ("last_contact_date", "最近联系/拜访日期"),
    ],
}

SPEC_OUTPUTS: dict[str, list[tuple[str, str]]] = {
    "credit": [
        ("sales_score", "销售额得分"), ("payment_score", "回款得分"), ("total_score", "总分"),
        ("grade", "客户等级"), ("collection_alert", "回款预警"), ("visit_frequency", "拜访频率"),
        ("next_visit_date", "下次拜访日期"), ("visit_status", "拜访状态"), ("owner_role", "负责人"),
        ("time_budget_days_per_month", "月度时间预算(天)"),
    ],
    "guarantee": [
        ("warning_flag_count", "预警信号数"), ("risk_class", "风险分类"), ("class_rule", "触发规则"),
        ("overdue_five_class", "逾期对应五级分类"), ("visit_type", "回访类型"), ("visit_frequency", "回访频率"),
        ("next_visit_date", "下次回访日期"), ("visit_status", "回访状态"), ("plan_due_date", "回访计划报送截止日"),
        ("repayment_reminder_date", "还款提醒日"), ("owner_role", "主责人"), ("support_roles", "协同人"),
        ("time_budget_days_per_year", "年度时间预算(天)"), ("new_guarantee_allowed", "可否新增担保"),
    ],
    "bank_layering": [
        ("aum", "金融资产(元)"), ("segment", "客户层级"), ("value_tier", "价值等级"), ("activity_tier", "活跃度"),
        ("customer_layer", "客户分层"), ("strategy", "经营策略"), ("contact_interval_days", "联系间隔(天)"),
        ("next_contact_date", "下次联系日期"), ("contact_status", "联系状态"), ("owner_role", "管户角色"),
        ("contact_channel", "联系渠道"), ("time_budget_hours_per_month", "月度时间预算(小时)"),
    ],
}

TIER_COLUMN = {"credit": "grade", "guarantee": "risk_class", "bank_layering": "customer_layer"}

# The shipped [CFG] defaults of RULESETS.md §1 (RULESETS: "the shipped defaults must be exactly these").
SPEC_DEFAULTS: dict[str, dict[str, str]] = {
    "credit": {
        "new_customer_default_collection_days": "45",
        "sales_70_points_min": "20000", "sales_50_points_above": "10000", "sales_40_points_above": "5000",
        "collection_30_points_max_days": "30", "collection_20_points_max_days": "45",
        "collection_10_points_max_days": "60", "grade_a_min_score": "80", "grade_b_min_score": "60",
        "visit_interval_months_a": "1", "visit_interval_months_b": "3", "visit_interval_months_c": "6",
        "time_budget_days_a": "1.25", "time_budget_days_b": "0.33", "time_budget_days_c": "0.17",
    },
    "guarantee": {
        "debt_ratio_warning_above": "0.70", "revenue_change_warning_at_or_below": "-0.30",
        "coverage_warning_below": "1.00", "risk_overdue_days_above": "90", "watch_min_warning_count": "2",
        "five_class_watch_max_overdue_days": "90", "five_class_substandard_max_overdue_days": "270",
        "five_class_doubtful_max_overdue_days": "360", "visit_interval_months_good": "6",
        "visit_interval_months_normal": "3", "visit_interval_months_watch": "1", "risk_visit_interval_days": "15",
        "routine_visit_within_days": "15", "plan_due_day": "10", "repayment_reminder_months_before": "1",
        "time_budget_days_good": "1.0", "time_budget_days_normal": "2.0", "time_budget_days_watch": "12.0",
        "time_budget_days_risk": "24.0",
    },
    "bank_layering": {
        "private_banking_aum_min": "6000000", "wealth_aum_min": "500000", "potential_aum_min": "50000",
        "loan_uplift_min_balance": "1000000", "dormant_days_min": "365", "active_txn_count_min": "3",
        "contact_days_high_active": "30", "contact_days_high_potential": "30", "contact_days_high_dormant": "7",
        "contact_days_mid_active": "90", "contact_days_mid_potential": "60", "contact_days_mid_dormant": "30",
        "contact_days_low_active": "180", "contact_days_low_potential": "180", "contact_days_low_dormant": "90",
        "time_budget_hours_private_banking": "4.0", "time_budget_hours_high": "2.0",
        "time_budget_hours_mid": "1.0", "time_budget_hours_low": "0.25",
    },
}


def _load(name: str) -> dict[str, Any]:
    with open(RULESET_DIR / f"{name}.yaml", encoding="utf-8") as handle:
        doc = yaml.safe_load(handle)
    assert isinstance(doc, dict), f"{name}.yaml is not a mapping"
    return doc


@pytest.fixture(params=CORE)
def ruleset(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, _load(request.param)


def _names(expression: str) -> set[str]:
    """Identifiers an expression reads (string literals, keywords and function names removed)."""
    text = _STRING.sub(" ", expression)
    names = set()
    for match in _NAME.finditer(text):
        rest = text[match.end():].lstrip()
        if rest.startswith("("):
            continue  # a function call
        if match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def _strip_eq(value: str) -> str:
    return value[1:] if value.startswith("=") else value


def _expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) for every expression in the file."""
    found: list[tuple[str, str]] = []
    for inp in doc["inputs"]:
        if isinstance(inp.get("required"), str):
            found.append((f"input {inp['key']} required", inp["required"]))
        if inp.get("default_expr") is not None:
            found.append((f"input {inp['key']} default_expr", str(inp["default_expr"])))
    for check in doc.get("checks", []):
        if "fails_when" in check:
            found.append((f"check {check['code']}", check["fails_when"]))
    for decision in doc["decisions"]:
        for key, value in (decision.get("compute") or {}).items():
            found.append((f"{decision['id']} compute {key}", _strip_eq(str(value))))
        for rule in decision.get("rules", []):
            if rule.get("when") is not None:
                found.append((f"{rule['id']} when", str(rule["when"])))
            for key, value in rule["then"].items():
                if isinstance(value, str) and value.startswith("="):
                    found.append((f"{rule['id']} then {key}", value[1:]))
    return found


def _normalize_header(header: str) -> str:
    """§0.11 header matching: trim, drop one trailing bracketed part, trim again."""
    return _BRACKET_TAIL.sub("", header.strip()).strip()


# --------------------------------------------------------------------------- metadata
def test_metadata_is_complete(ruleset: tuple[str, dict[str, Any]]) -> None:
    name, doc = ruleset
    assert doc["id"] == name
    assert doc["version"] == "1.0.0"
    assert doc["title"]["zh"] and doc["title"]["en"]
    assert doc["description"]["zh"] and doc["description"]["en"]
    assert "RULESETS.md §1." in doc["source"]
    assert isinstance(doc["effective_date"], str) and DATE_TEXT.match(doc["effective_date"])


# --------------------------------------------------------------------------- inputs / outputs
def test_inputs_follow_the_spec_columns(ruleset: tuple[str, dict[str, Any]]) -> None:
    name, doc = ruleset
    keys = [inp["key"] for inp in doc["inputs"]]
    assert keys == [key for key, _ in SPEC_INPUTS[name]]
    for inp in doc["inputs"]:
        assert SNAKE.match(inp["key"]), inp["key"]
        assert inp.get("zh") and inp.get("en"), inp["key"]


def test_spec_headers_match_exactly_one_input(ruleset: tuple[str, dict[str, Any]]) -> None:
    name, doc = ruleset
    headers = {
        inp["key"]: {_normalize_header(h) for h in [inp["key"], inp["zh"], inp["en"], *inp.get("aliases", [])]}
        for inp in doc["inputs"]
    }
    for key, spec_header in SPEC_INPUTS[name]:
        wanted = _normalize_header(spec_header)
        matches = [k for k, names in headers.items() if wanted in names]
        assert matches == [key], f"spec header {spec_header!r} matches {matches}"
    everything = [h for names in headers.values() for h in names]
    assert len(everything) == len(set(everything)), "two inputs share a header alias"


def test_outputs_follow_the_spec_columns(ruleset: tuple[str, dict[str, Any]]) -> None:
    name, doc = ruleset
    assert [(o["key"], o["zh"]) for o in doc["outputs"]] == SPEC_OUTPUTS[name]
    for output in doc["outputs"]:
        assert SNAKE.match(output["key"]), output["key"]
        assert output["key"] not in IMPLICIT_OUTPUTS
        assert output.get("type") in ("number", "integer", "date", "text", "boolean")
    tiers = [o["key"] for o in doc["outputs"] if o.get("tier")]
    assert tiers == [TIER_COLUMN[name]]


def test_output_types(ruleset: tuple[str, dict[str, Any]]) -> None:
    _name, doc = ruleset
    for output in doc["outputs"]:
        key, typ = output["key"], output["type"]
        if key.endswith("_date"):
            assert typ == "date", key
        elif key.endswith(("_score", "_count")):
            assert typ == "integer", key
        elif key.startswith("time_budget") or key in ("contact_interval_days", "aum"):
            assert typ == "number", key
        else:
            assert typ == "text", key


# --------------------------------------------------------------------------- parameters
def test_parameters_have_spec_defaults_and_labels(ruleset: tuple[str, dict[str, Any]]) -> None:
    name, doc = ruleset
    params = doc["parameters"]
    assert set(params) == set(SPEC_DEFAULTS[name])
    for key, spec in params.items():
        assert SNAKE.match(key), key
        assert spec["zh"] and spec["en"], key
        assert spec["type"] in ("number", "integer"), key
        assert Decimal(str(spec["default"])) == Decimal(SPEC_DEFAULTS[name][key]), key
        if spec["type"] == "integer":
            assert isinstance(spec["default"], int), key


def test_every_parameter_is_referenced(ruleset: tuple[str, dict[str, Any]]) -> None:
    _name, doc = ruleset
    used: set[str] = set()
    for _where, expression in _expressions(doc):
        used |= _names(expression)
    for inp in doc["inputs"]:
        used |= set(re.findall(r"\{([a-z0-9_]+)\}", str(inp.get("blank_note") or "")))
    unused = set(doc["parameters"]) - used
    assert not unused, f"parameters never used: {sorted(unused)}"


def test_blank_note_placeholders_are_parameters(ruleset: tuple[str, dict[str, Any]]) -> None:
    _name, doc = ruleset
    for inp in doc["inputs"]:
        note = inp.get("blank_note")
        if note is None:
            continue
        for placeholder in re.findall(r"\{([^}]*)\}", note):
            assert placeholder in doc["parameters"], (inp["key"], placeholder)


# --------------------------------------------------------------------------- checks
def test_checks_have_codes_at_input_positions(ruleset: tuple[str, dict[str, Any]]) -> None:
    _name, doc = ruleset
    inputs = {inp["key"] for inp in doc["inputs"]}
    for check in doc.get("checks", []):
        assert CODE.match(check["code"]), check["code"]
        assert check["at"] in inputs, check
        assert ("fails_when" in check) != ("all_blank" in check), check
        assert set(check.get("all_blank", [])) <= inputs, check


def test_expected_check_codes_exist() -> None:
    codes = {name: {c["code"]: c["at"] for c in _load(name).get("checks", [])} for name in CORE}
    assert codes["credit"] == {"INVALID:last_visit_date": "last_visit_date"}
    assert codes["guarantee"] == {"INVALID:guarantee_end_date": "guarantee_end_date",
                                  "INVALID:last_visit_date": "last_visit_date"}
    assert codes["bank_layering"] == {
        "MISSING:balances": "deposit_avg_balance", "INVALID:last_txn_date": "last_txn_date",
        "INVALID:last_contact_date": "last_contact_date", "INCONSISTENT:txn_count_90d": "txn_count_90d"}


# --------------------------------------------------------------------------- decisions
def test_decision_and_rule_ids_are_unique(ruleset: tuple[str, dict[str, Any]]) -> None:
    _name, doc = ruleset
    decision_ids = [d["id"] for d in doc["decisions"]]
    assert len(decision_ids) == len(set(decision_ids))
    # A compute decision counts as one rule named by its decision id (DESIGN "Evaluation output").
    rule_ids = [d["id"] for d in doc["decisions"] if "compute" in d]
    rule_ids += [r["id"] for d in doc["decisions"] for r in d.get("rules", [])]
    assert len(rule_ids) == len(set(rule_ids)), sorted(r for r in rule_ids if rule_ids.count(r) > 1)


def test_tables_are_well_formed(ruleset: tuple[str, dict[str, Any]]) -> None:
    _name, doc = ruleset
    for decision in doc["decisions"]:
        assert ("compute" in decision) != ("rules" in decision), decision["id"]
        if "compute" in decision:
            continue
        assert decision.get("hit", "first") == "first", decision["id"]
        rules = decision["rules"]
        first_keys = set(rules[0]["then"])
        for index, rule in enumerate(rules):
            assert rule["id"].startswith(decision["id"].split("-status")[0].split("-days")[0]), rule["id"]
            assert set(rule["then"]) == first_keys, f"{rule['id']} sets other keys than {rules[0]['id']}"
            if "when" not in rule:
                assert index == len(rules) - 1, f"{rule['id']} has no condition but is not the last row"


def test_names_are_defined_before_use(ruleset: tuple[str, dict[str, Any]]) -> None:
    """Forward chaining: an expression reads inputs, parameters and facts of earlier decisions only."""
    _name, doc = ruleset
    known = {inp["key"] for inp in doc["inputs"]} | set(doc["parameters"])
    inputs_and_params = set(known)
    for inp in doc["inputs"]:
        for field in ("required", "default_expr"):
            if isinstance(inp.get(field), str):
                assert _names(inp[field]) <= inputs_and_params, (inp["key"], field)
    for check in doc.get("checks", []):
        if "fails_when" in check:
            assert _names(check["fails_when"]) <= inputs_and_params, check["code"]
    for decision in doc["decisions"]:
        if "compute" in decision:
            for key, value in decision["compute"].items():
                unknown = _names(_strip_eq(str(value))) - known
                assert not unknown, f"{decision['id']} {key}: unknown {sorted(unknown)}"
                known.add(key)
            continue
        produced: set[str] = set()
        for rule in decision["rules"]:
            reads = _names(str(rule.get("when") or ""))
            for value in rule["then"].values():
                if isinstance(value, str) and value.startswith("="):
                    reads |= _names(value[1:])
            unknown = reads - known
            assert not unknown, f"{rule['id']}: unknown {sorted(unknown)}"
            produced |= set(rule["then"])
        assert not produced & inputs_and_params, f"{decision['id']} overwrites an input or parameter"
        known |= produced
    missing = {o["key"] for o in doc["outputs"]} - known
    assert not missing, f"outputs no decision derives: {sorted(missing)}"


def test_class_rule_names_the_rule_that_fired() -> None:
    doc = _load("guarantee")
    gr3 = next(d for d in doc["decisions"] if d["id"] == "GR-3")
    assert [r["id"] for r in gr3["rules"]] == [f"GR-3{letter}" for letter in "abcdefgh"]
    for rule in gr3["rules"]:
        assert rule["then"]["class_rule"] == rule["id"]


def test_loan_uplift_note_sits_at_loan_balance() -> None:
    doc = _load("bank_layering")
    noted = [r for d in doc["decisions"] for r in d.get("rules", []) if r.get("note")]
    assert [r["id"] for r in noted] == ["BL-4a", "BL-4b"]
    assert all(r["note"] == "LOAN_UPLIFT" and r["note_at"] == "loan_balance" for r in noted)


# --------------------------------------------------------------------------- examples
def test_examples_are_full_csv_rows(ruleset: tuple[str, dict[str, Any]]) -> None:
    name, doc = ruleset
    examples = doc["examples"]
    assert len(examples) >= 25
    names = [e["name"] for e in examples]
    assert len(names) == len(set(names)), "example names must be unique"
    input_keys = [inp["key"] for inp in doc["inputs"]]
    output_keys = {o["key"] for o in doc["outputs"]}
    for example in examples:
        assert list(example["input"]) == input_keys, example["name"]
        for key, value in example["input"].items():
            assert isinstance(value, str), f"{example['name']}: input {key} must be text as a CSV holds it"
        assert set(example["expect"]) <= output_keys | set(IMPLICIT_OUTPUTS), example["name"]
        for key, value in example["expect"].items():
            assert isinstance(value, str), f"{example['name']}: expect {key} must be CSV text, got {value!r}"
        assert set(example.get("params", {})) <= set(doc["parameters"]), example["name"]


def test_example_expectations_are_consistent(ruleset: tuple[str, dict[str, Any]]) -> None:
    name, doc = ruleset
    tier = TIER_COLUMN[name]
    dates = {o["key"] for o in doc["outputs"] if o["type"] == "date"}
    for example in doc["examples"]:
        expect = example["expect"]
        assert expect["status"] in ("OK", "ERROR"), example["name"]
        assert "errors" in expect and "notes" in expect and tier in expect, example["name"]
        if expect["status"] == "ERROR":
            assert expect["errors"] and expect[tier] == "待定" and expect["notes"] == "", example["name"]
            codes = expect["errors"].split(";")
            assert all(CODE.match(code) for code in codes), example["name"]
            others = {k: v for k, v in expect.items() if k not in (*IMPLICIT_OUTPUTS, tier)}
            assert all(v == "" for v in others.values()), example["name"]
        else:
            assert expect["errors"] == "" and expect[tier] not in ("", "待定"), example["name"]
        for key in dates & set(expect):
            assert expect[key] == "" or DATE_TEXT.match(expect[key]), (example["name"], key)


def test_most_examples_check_every_output(ruleset: tuple[str, dict[str, Any]]) -> None:
    _name, doc = ruleset
    every = {o["key"] for o in doc["outputs"]} | set(IMPLICIT_OUTPUTS)
    full = [e for e in doc["examples"] if set(e["expect"]) == every]
    assert len(full) * 4 >= len(doc["examples"]) * 3, f"only {len(full)} full rows"


def test_examples_cover_every_rule(ruleset: tuple[str, dict[str, Any]]) -> None:
    """Each first-match row that sets a tier-relevant literal shows up in some OK expectation."""
    name, doc = ruleset
    ok = [e["expect"] for e in doc["examples"] if e["expect"]["status"] == "OK"]
    for decision in doc["decisions"]:
        for rule in decision.get("rules", []):
            literals = {k: str(v) for k, v in rule["then"].items()
                        if not (isinstance(v, str) and v.startswith("=")) and k in ok[0]}
            if not literals:
                continue
            assert any(all(e.get(k) == v for k, v in literals.items()) for e in ok), \
                f"{name}: no OK example shows {rule['id']} {literals}"


# --------------------------------------------------------------------------- with the loader
def test_the_engine_loader_finds_no_structural_problem(ruleset: tuple[str, dict[str, Any]]) -> None:
    loader = pytest.importorskip("engine.ruleset")
    name, _doc = ruleset
    definition, problems = loader.read_ruleset(RULESET_DIR / f"{name}.yaml")
    assert definition is not None
    assert [p.format() for p in problems] == []


def test_every_expression_parses(ruleset: tuple[str, dict[str, Any]]) -> None:
    expr = pytest.importorskip("engine.expr")
    _name, doc = ruleset
    for where, expression in _expressions(doc):
        try:
            expr.parse_expression(expression)
        except Exception as exc:  # noqa: BLE001 — report which expression failed and why
            pytest.fail(f"{where}: {expression!r} does not parse: {exc}")

"""The rete engine (engine/rete.py) and every durable-rules quirk it has to absorb.

durable-rules 2.0.28 loses rows in ways that only show up under load or on a second run
(/work/shared/spec/DURABLE-NOTES.md): 32-bit message-id collisions, content de-duplication,
actions still pending when a call returns, a 1,024-session cap, a batch that fails whole when one
event matches no rule, and one event firing a rule twice through an `$or`. Each has a test here
that would fail if the wrapper stopped absorbing it. The engine must also agree with the exact
scalar reference (`engine.scalar`) row for row — the differential tests over the shipped
rulesets live in tests/test_differential.py; here the cases are small and hand-made, so a
failure points at one mechanism.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import rete, scalar
from engine.compile import compile_ruleset
from engine.errors import ExpressionError, RuleEngineUnavailable, TierError
from engine.ruleset import load_ruleset

ROOT = Path(__file__).resolve().parent.parent
needs_durable = pytest.mark.skipif(rete.rete_available() is not None, reason=str(rete.rete_available()))

MINI = """\
id: mini
version: "1.0.0"
title: {zh: 测试, en: Test}
source: "tests/test_rete.py"
effective_date: "2024-01-01"
parameters:
  cut: {type: number, default: 0.70, zh: 阈值, en: Cut}
inputs:
  - {key: ratio, zh: 比例, en: Ratio, type: fraction}
  - {key: amount, zh: 金额, en: Amount, type: number}
  - {key: kind, zh: 类别, en: Kind, type: text}
  - {key: flag, zh: 标志, en: Flag, type: boolean}
  - {key: day, zh: 日期, en: Day, type: date}
  - {key: limit, zh: 额度, en: Limit, type: number}
decisions:
  - id: D1                       # overlapping rows: 0.9 matches both, the first must win
    hit: first
    rules:
      - {id: D1a, when: "ratio > cut", then: {band: high}}
      - {id: D1b, when: "ratio > 0.5", then: {band: mid}}
  - id: D2
    hit: collect
    aggregate: list
    rules:
      - {id: D2a, when: "amount > 10000", then: {tags: big}}
      - {id: D2b, when: "kind in ['零售', 'vip']", then: {tags: retail}}
      - {id: D2c, when: "flag", then: {tags: flagged}, note: FLAGGED, note_at: flag}
  - id: D3
    compute:
      total: "amount + 1"
  - id: D4
    hit: first
    rules:
      - {id: D4a, when: "band = 'high' or amount > limit", then: {tier: A}}
      - {id: D4b, when: "day < date(2024, 1, 1)", then: {tier: B}}
      - {id: D4c, when: "not flag and kind not in ['x'] and ratio in (0.1..0.5]", then: {tier: C}}
  - id: D5                       # often no row matches: outputs blank, the chain goes on
    hit: first
    rules:
      - {id: D5a, when: "total >= 100 and (amount - limit > 3 or is_blank(limit))", then: {extra: "=total * 2"}}
  - id: D6
    hit: collect
    aggregate: sum
    rules:
      - {id: D6a, when: "tier = 'A' or tier = 'B'", then: {points: 1}}
      - {id: D6b, when: "present(extra) or band = 'high'", then: {points: 10}}
      - {id: D6c, when: "tier != 'A'", then: {points: 100}}
  - id: D7                       # too large for one durable rule: evaluated in Python instead
    hit: first
    rules:
      - {id: D7a, when: "amount in [LIST] or ratio in [0.7, 0.9]", then: {odd: true}}
      - {id: D7b, then: {odd: false}}
  - id: D8                       # complements (the `not` of each kind of test) under blanks
    hit: collect
    aggregate: count
    rules:
      - {id: D8a, when: "not (amount > 100) and not (day >= date(2024, 1, 1))", then: {nots: 1}}
      - {id: D8b, when: "not (ratio in [0.3..0.7)) and not (kind in ['vip'])", then: {nots: 1}}
      - {id: D8c, when: "not (ratio not in (0.3..0.7]) or not (limit != 5)", then: {nots: 1}}
      - {id: D8d, when: "not (is_blank(kind) or flag) and not present(limit)", then: {nots: 1}}
      - {id: D8e, when: "not (kind not in ['x', 'y']) and not (amount <= 99 or amount = 10000)", then: {nots: 1}}
outputs:
  - {key: band, zh: 档, en: Band, type: text}
  - {key: tags, zh: 标签, en: Tags, type: text}
  - {key: total, zh: 合计, en: Total, type: number}
  - {key: tier, zh: 等级, en: Tier, type: text, tier: true}
  - {key: extra, zh: 附加, en: Extra, type: number}
  - {key: points, zh: 点数, en: Points, type: number}
  - {key: odd, zh: 奇, en: Odd, type: boolean}
  - {key: nots, zh: 否定, en: Negations, type: number}
""".replace("LIST", ", ".join(str(n) for n in range(1, 120, 2)))


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    path = tmp_path_factory.mktemp("rete") / "mini.yaml"
    path.write_text(MINI, encoding="utf-8")
    return compile_ruleset(load_ruleset(path))


def row(ratio=None, amount=None, kind=None, flag=None, day=None, limit=None) -> dict[str, object]:
    return {"ratio": None if ratio is None else Decimal(ratio), "amount": None if amount is None else Decimal(amount),
            "kind": kind, "flag": flag, "day": day, "limit": None if limit is None else Decimal(limit)}


def varied_rows(n: int) -> list[dict[str, object]]:
    """Deterministic rows that walk every band, blank and boundary of the mini ruleset."""
    ratios = [None, "0.1", "0.10", "0.5", "0.50001", "0.7", "0.70", "0.7000000000000001", "0.9", "-3"]
    amounts = [None, "0", "10000", "10000.01", "99", "100", "12345678901234567.1", "-0.5"]
    kinds = [None, "零售", "vip", "x", "VIP", ""]
    flags = [None, True, False]
    days = [None, dt.date(2023, 12, 31), dt.date(2024, 1, 1), dt.date(1969, 7, 20)]
    limits = [None, "5", "96.9", "12345678901234567", "10000"]
    out = []
    for i in range(n):
        out.append(row(ratios[i % 10], amounts[(i // 3) % 8], kinds[(i // 7) % 6], flags[(i // 11) % 3],
                       days[(i // 13) % 4], limits[(i // 17) % 5]))
    return out


# --------------------------------------------------------------------------- availability
def test_available_here() -> None:
    assert rete.rete_available() is None


def test_unavailable_is_one_clear_line_and_decide_rows_raises(monkeypatch, mini) -> None:
    monkeypatch.setitem(sys.modules, "durable_rules_engine", None)  # import now raises ImportError
    monkeypatch.setattr(rete, "_core", None)
    reason = rete.rete_available()
    assert reason is not None and "\n" not in reason
    assert reason.startswith("rete engine unavailable: durable-rules")
    assert "pip install durable-rules" in reason and "Python 3.13" in reason and "vector" in reason
    with pytest.raises(RuleEngineUnavailable) as caught:
        rete.decide_rows(mini, [row()])
    assert isinstance(caught.value, TierError)
    assert str(caught.value) == reason


def test_importing_the_module_never_needs_durable() -> None:
    code = ("import sys; sys.modules['durable_rules_engine'] = None; sys.modules['durable'] = None; "
            "import engine.rete as r; print(r.rete_available())")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rete engine unavailable: durable-rules cannot be imported")


# --------------------------------------------------------------------------- exact encodings
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None, min_value=Decimal("-1e30"),
                       max_value=Decimal("1e30")) | st.sampled_from(
    [Decimal(0), Decimal("-0"), Decimal("0.70"), Decimal("0.7"), Decimal("0.7000000000000001"),
     Decimal(10000), Decimal("10000.01"), Decimal("1E+5"), Decimal("-1.5"), Decimal(-15), Decimal("-0.19"),
     Decimal("-0.2"), Decimal("12345678901234567.1"), Decimal(12345678901234567)])


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


@given(decimals, decimals)
def test_number_codes_order_like_the_decimals(a: Decimal, b: Decimal) -> None:
    left, right = rete._number_code(a), rete._number_code(b)
    assert _sign((left > right) - (left < right)) == _sign((a > b) - (a < b))
    assert (left == right) == (a == b)


@given(st.text(max_size=6), st.text(max_size=6))
def test_text_codes_order_like_the_text(a: str, b: str) -> None:
    left, right = rete._encode_text(a), rete._encode_text(b)
    assert (left < right) == (a < b) and (left == right) == (a == b)


TRICKY = [Decimal(text) for text in (
    "-12345678901234567.1", "-12345678901234567", "-15", "-1.5", "-1.23", "-1.2", "-1", "-0.2", "-0.19", "-0.123",
    "-0.12", "-0.1", "-1E-7", "0", "-0", "0.00", "1E-7", "0.1", "0.12", "0.123", "0.19", "0.2", "0.5",
    "0.50000000000000000001", "0.7", "0.70", "0.7000000000000001", "1", "1.0", "1.2", "1.23", "1.5", "15",
    "10000", "10000.00", "10000.01", "1E+5", "12345678901234567", "12345678901234567.1")]


@pytest.mark.parametrize("a", TRICKY)
def test_number_codes_order_prefixes_and_signs(a: Decimal) -> None:
    for b in TRICKY:
        left, right = rete._number_code(a), rete._number_code(b)
        assert ((left > right) - (left < right)) == ((a > b) - (a < b)), (a, b, left, right)


def test_number_code_rejects_what_it_cannot_order() -> None:
    with pytest.raises(TierError):
        rete._number_code(Decimal("Infinity"))
    with pytest.raises(TierError):
        rete._number_code(Decimal("1E+60000"))


def test_fnv_hash_matches_durable_constants() -> None:
    # durable's state.h: HASH_ID and HASH_SID are the hashes of the reserved property names.
    assert rete._fnv1a_32("id") == 926444256
    assert rete._fnv1a_32("sid") == 3593476751


def test_id_pool_skips_colliding_candidates(monkeypatch) -> None:
    """With a hash under which every three consecutive candidates collide, none may enter the pool."""
    monkeypatch.setattr(rete, "_fnv1a_32", lambda text: int(text, 16) // 3)
    monkeypatch.setattr(rete, "_ids", [])
    monkeypatch.setattr(rete, "_id_hashes", set())
    monkeypatch.setattr(rete, "_id_next", 0)
    ids = rete._id_pool(400)
    assert len(ids) == 400 and len({rete._fnv1a_32(i) for i in ids}) == 400


def test_id_pool_hashes_are_distinct() -> None:
    ids = rete._id_pool(50_000)[:50_000]
    assert len(set(ids)) == 50_000
    assert len({rete._fnv1a_32(i) for i in ids}) == 50_000
    assert rete._fnv1a_32(f"sid-{rete._SESSION}") not in {rete._fnv1a_32(i) for i in ids}


# --------------------------------------------------------------------------- the engine
@needs_durable
def test_matches_the_scalar_reference_row_for_row(mini) -> None:
    rows = varied_rows(1_200)  # more than one batch
    assert rete.decide_rows(mini, rows) == scalar.decide_rows(mini, rows)


@needs_durable
@pytest.mark.parametrize(("ratio", "band"), [("0.70", "mid"), ("0.7", "mid"), ("0.7000000000000001", "high"),
                                             ("0.5", None), ("0.50000000000000000001", "mid")])
def test_exact_decimal_thresholds(mini, ratio: str, band: str | None) -> None:
    """RULESETS §0.3: 0.70 > 0.70 is false; a float would also get the 20-digit case wrong."""
    [result] = rete.decide_rows(mini, [row(ratio=ratio)])
    assert result.facts["band"] == band


@needs_durable
@pytest.mark.parametrize(("amount", "big"), [("10000", False), ("10000.00", False), ("10000.01", True),
                                             ("10000.000000000000000001", True), ("-10000.01", False)])
def test_exact_amount_boundary(mini, amount: str, big: bool) -> None:
    [result] = rete.decide_rows(mini, [row(amount=amount)])
    assert ("D2a" in result.fired) is big


@needs_durable
def test_first_hit_with_overlapping_rows_fires_only_the_first(mini) -> None:
    [result] = rete.decide_rows(mini, [row(ratio="0.9")])  # matches D1a and D1b
    assert result.facts["band"] == "high"
    assert [rule for rule in result.fired if rule.startswith("D1")] == ["D1a"]


@needs_durable
def test_collect_fires_every_matching_row_in_rule_order(mini) -> None:
    [result] = rete.decide_rows(mini, [row(amount="20000", kind="vip", flag=True, limit="1")])
    assert result.facts["tags"] == "big;retail;flagged"
    assert [rule for rule in result.fired if rule.startswith("D2")] == ["D2a", "D2b", "D2c"]
    assert result.notes == (("flag", "FLAGGED"),)
    assert result.facts["points"] == Decimal(11)  # D6a (tier A) + D6b (extra present)


@needs_durable
def test_decision_with_no_matching_row_leaves_blanks_and_the_chain_goes_on(mini) -> None:
    [result] = rete.decide_rows(mini, [row(ratio="0.3", kind="y", flag=False)])
    # D1, D2 and D5 match nothing: their outputs are blank, and the later decisions still run
    assert result.facts["band"] is None and result.facts["tags"] is None and result.facts["extra"] is None
    assert result.fired[:4] == ("D3", "D4c", "D6c", "D7b")
    assert result.facts["tier"] == "C" and result.facts["points"] == Decimal(100)
    [blank] = rete.decide_rows(mini, [row()])
    assert blank.fired[:2] == ("D3", "D7b") and not blank.fired[2].startswith(("D4", "D5", "D6"))
    assert all(value is None for key, value in blank.facts.items() if key not in ("odd", "nots"))


@needs_durable
def test_trace_is_in_decision_order_then_rule_order(mini) -> None:
    [result] = rete.decide_rows(mini, [row(ratio="0.9", amount="20000", kind="vip", flag=True, limit="1")])
    assert result.fired == ("D1a", "D2a", "D2b", "D2c", "D3", "D4a", "D5a", "D6a", "D6b", "D7a")


@needs_durable
def test_or_matching_through_both_branches_fires_once(mini) -> None:
    """durable hands an action the same event twice when both sides of an `$or` hold."""
    [result] = rete.decide_rows(mini, [row(ratio="0.9", amount="20000", limit="1")])  # band high AND amount > limit
    assert result.fired.count("D4a") == 1 and result.facts["tier"] == "A"


@needs_durable
def test_fact_against_absent_fact_is_false(mini) -> None:
    """durable reads garbage when the right-hand fact of `a > b` is absent; the wrapper must not."""
    rows = [row(amount="20000", limit=None), row(amount=None, limit="5"), row(amount="20000", limit="30000")]
    assert [r.facts["tier"] for r in rete.decide_rows(mini, rows)] == [None, None, None]


@needs_durable
def test_blank_item_of_a_negated_list_is_false(mini) -> None:
    # D4c: `kind not in ['x']` with a blank kind is false (expr null semantics), so no tier C
    assert rete.decide_rows(mini, [row(flag=False, ratio="0.3")])[0].facts["tier"] is None
    assert rete.decide_rows(mini, [row(flag=False, ratio="0.3", kind="y")])[0].facts["tier"] == "C"
    assert rete.decide_rows(mini, [row(flag=False, ratio="0.1", kind="y")])[0].facts["tier"] is None  # (0.1..


@needs_durable
def test_complements_under_blanks(mini) -> None:
    """`not (x > 100)` holds for a blank x; `not (x in list)` too; `x not in list` does not."""
    [blank] = rete.decide_rows(mini, [row()])
    assert [rule for rule in blank.fired if rule.startswith("D8")] == ["D8a", "D8b", "D8c", "D8e"]
    assert blank.facts["nots"] == Decimal(4)
    [some] = rete.decide_rows(mini, [row(ratio="0.3", kind="y", flag=False)])
    assert [rule for rule in some.fired if rule.startswith("D8")] == ["D8a", "D8c", "D8d", "D8e"]


@needs_durable
def test_dates_compare_by_day(mini) -> None:
    results = rete.decide_rows(mini, [row(day=dt.date(2023, 12, 31)), row(day=dt.date(2024, 1, 1)),
                                      row(day=dt.date(1969, 7, 20))])
    assert [r.facts["tier"] for r in results] == ["B", None, "B"]


# --------------------------------------------------------------------------- durable's quirks
@needs_durable
def test_same_rows_twice_give_the_same_result(mini) -> None:
    """Content de-duplication: a recalculation re-asserts equal facts, which durable rejects."""
    rows = varied_rows(300)
    first = rete.decide_rows(mini, rows)
    assert rete.decide_rows(mini, rows) == first


@needs_durable
def test_identical_rows_in_one_batch_all_come_back(mini) -> None:
    rows = [row(ratio="0.9", amount="20000", kind="vip", flag=True, limit="1") for _ in range(rete.BATCH_ROWS)]
    results = rete.decide_rows(mini, rows)
    assert len(results) == len(rows)
    assert all(result == results[0] for result in results)
    assert results[0].facts["tier"] == "A"


@needs_durable
def test_five_thousand_rows_in_five_thousand_out(mini) -> None:
    rows = varied_rows(5_000)
    results = rete.decide_rows(mini, rows)
    assert len(results) == 5_000
    assert results == scalar.decide_rows(mini, rows)


@needs_durable
def test_registering_the_same_ruleset_again_works(mini, tmp_path) -> None:
    """durable's host raises on a second registration of a name; a new compile of the same file is fine."""
    path = tmp_path / "mini.yaml"
    path.write_text(MINI, encoding="utf-8")
    again = compile_ruleset(load_ruleset(path))
    assert again.digest == mini.digest and again is not mini
    rows = varied_rows(50)
    assert rete.decide_rows(again, rows) == rete.decide_rows(mini, rows)
    assert list(rete._registry).count(mini.digest) == 1
    # and after being dropped from the registry (LRU), the same name registers again in durable
    rete._registry.pop(mini.digest)
    assert rete.decide_rows(again, rows) == scalar.decide_rows(mini, rows)


@needs_durable
def test_changed_parameters_are_another_ruleset(mini, tmp_path) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(MINI, encoding="utf-8")
    lower = compile_ruleset(load_ruleset(path), {"cut": "0.6"})
    assert lower.digest != mini.digest
    assert rete.decide_rows(lower, [row(ratio="0.65")])[0].facts["band"] == "high"
    assert rete.decide_rows(mini, [row(ratio="0.65")])[0].facts["band"] == "mid"


@needs_durable
def test_more_calls_than_the_session_cap(mini) -> None:
    """A ruleset holds at most 1,024 sessions; each call must leave none behind."""
    one = [row(ratio="0.9")]
    for _ in range(1_100):
        assert rete.decide_rows(mini, one)[0].facts["band"] == "high"


@needs_durable
def test_session_is_deleted_after_every_call(mini) -> None:
    rete.decide_rows(mini, varied_rows(10))
    entry = rete._registry[mini.digest]
    with pytest.raises(Exception, match="309"):  # durable: session (sid) not found
        rete._core.delete_state(entry.handle, rete._SESSION)


@needs_durable
def test_no_background_threads(mini) -> None:
    """durable's Host starts two timer threads that are never stopped; the engine starts none."""
    before = threading.active_count()
    rete.decide_rows(mini, varied_rows(100))
    assert threading.active_count() == before


@needs_durable
def test_every_rule_has_fired_when_the_call_returns(mini) -> None:
    """With durable's host, post_batch can return before any rule fired (0 of 5,000 results)."""
    results = rete.decide_rows(mini, varied_rows(2_000))
    assert all("D3" in result.fired for result in results)  # the compute fires on every row


@needs_durable
def test_colliding_message_ids_are_what_the_pool_avoids() -> None:
    """Two ids with the same 32-bit hash: durable refuses the batch. The pool never hands out both."""
    pair = ("e522789", "e739192")  # found by a birthday search over "e0", "e1", …
    assert rete._fnv1a_32(pair[0]) == rete._fnv1a_32(pair[1])
    core = rete._load_core()
    handle = core.create_ruleset("tierbook_test_collision", json.dumps(
        {"a": {"all": [{"m": {"st": 0}}], "cap": 10}}))
    try:
        events = [{"id": pair[0], "sid": "c", "st": 0}, {"id": pair[1], "sid": "c", "st": 0}]
        result = core.assert_events(handle, json.dumps(events))
        assert result[0] == 2  # ERR_EVENT_OBSERVED: the second event was rejected
        # (deleting session "c" now would abort the process — why the engine never does)
    finally:
        core.delete_ruleset(handle)


@needs_durable
def test_a_refused_batch_is_an_error_and_the_ruleset_is_registered_afresh(mini, monkeypatch) -> None:
    """If durable ever reported a collision, the session must be abandoned, not deleted."""
    real = rete._load_core()
    deleted: list[str] = []

    class Colliding:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def assert_events(handle, text):
            _code, state = real.assert_events(handle, text)
            return 2, state  # as if an id had collided

        @staticmethod
        def delete_state(handle, sid):
            deleted.append(sid)

    rete.decide_rows(mini, [row()])
    monkeypatch.setattr(rete, "_core", Colliding())
    with pytest.raises(TierError, match="already observed"):
        rete.decide_rows(mini, [row()])
    assert mini.digest not in rete._registry
    assert deleted == []  # the collided session was left alone
    monkeypatch.undo()
    assert rete.decide_rows(mini, [row(ratio="0.9")])[0].facts["band"] == "high"


@needs_durable
def test_a_lost_row_is_an_error_not_a_short_result(mini, monkeypatch) -> None:
    original = rete._Batch.handle

    def lose_row_7(self, name, action, frames):
        following = original(self, name, action, frames)
        if 7 < len(self.next_stage) and self.next_stage[7] == 2:
            self.next_stage[7] = 1  # as if durable had never fired stage 1 for row 7
            following = [r for r in following if r != 7]
        return following

    monkeypatch.setattr(rete._Batch, "handle", lose_row_7)
    with pytest.raises(TierError, match="did not finish their chain"):
        rete.decide_rows(mini, varied_rows(20))
    monkeypatch.undo()
    assert len(rete.decide_rows(mini, varied_rows(20))) == 20  # the session was cleaned up


@needs_durable
def test_a_rule_firing_twice_is_an_error(mini, monkeypatch) -> None:
    original = rete._Batch.handle

    def fire_twice(self, name, action, frames):
        following = original(self, name, action, frames)
        if action.stage == 0:
            original(self, name, action, frames)  # as if durable handed the same events over again
        return following

    monkeypatch.setattr(rete._Batch, "handle", fire_twice)
    with pytest.raises(TierError, match="out of order"):
        rete.decide_rows(mini, varied_rows(5))
    monkeypatch.undo()
    assert rete.decide_rows(mini, [row(ratio="0.9")])[0].facts["band"] == "high"


@needs_durable
def test_an_error_in_an_action_propagates_and_the_next_call_works(mini, monkeypatch) -> None:
    """durable's own actions swallow exceptions into the session state; here they surface."""
    def boom(node, env):
        raise ExpressionError("boom")

    monkeypatch.setattr(rete.ex, "eval_scalar", boom)
    with pytest.raises(ExpressionError, match="boom"):
        rete.decide_rows(mini, varied_rows(30))
    monkeypatch.undo()
    assert rete.decide_rows(mini, varied_rows(30)) == scalar.decide_rows(mini, varied_rows(30))


@needs_durable
def test_concurrent_callers_are_serialised(mini) -> None:
    rows = varied_rows(400)
    expected = scalar.decide_rows(mini, rows)
    outcomes: list[object] = []

    def work() -> None:
        try:
            outcomes.append(rete.decide_rows(mini, rows) == expected)
        except Exception as exc:  # noqa: BLE001 — reported in `outcomes`, asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [True] * 4


@needs_durable
def test_empty_input(mini) -> None:
    assert rete.decide_rows(mini, []) == []


@needs_durable
def test_a_wrongly_typed_fact_is_reported(mini) -> None:
    with pytest.raises(TierError, match="declares it number"):
        rete.decide_rows(mini, [row() | {"ratio": "0.9"}])


@needs_durable
def test_shipped_credit_ruleset_agrees_with_scalar() -> None:
    from engine import api, prepare
    from tests.rowgen import random_rows

    compiled = api.compile("credit")
    keys = [inp.key for inp in compiled.inputs]
    prepared = [prepare.prepare_row(compiled, {k: r.get(k) for k in keys}) for r in random_rows(compiled, 6_000, seed=3)]
    rows = [p.values for p in prepared if p.ok]
    assert len(rows) > 2_000
    assert rete.decide_rows(compiled, rows) == scalar.decide_rows(compiled, rows)


# --------------------------------------------------------------------------- translation
def test_translation_is_native_where_durable_can_match(mini) -> None:
    plan = rete._plan(mini)
    rules = json.loads(plan.definition)
    assert rules["s0r0"] == {"all": [{"m": {"$and": [{"st": 0}, {"$gt": {"f0": rete._number_code(Decimal("0.7"))}}]}}],
                             "pri": 0, "cap": rete._CAP}
    assert rules["s0z"]["pri"] == 2  # the catch-all comes after the table's rows
    d4 = next(stage for stage in plan.stages if stage.decision.id == "D4")
    kinds = {(field.source if isinstance(field.source, str) else "expr", field.flag) for field in d4.fields}
    # `amount > limit` (two facts) is a Python flag; `day < date(2024,1,1)` was folded to a literal
    assert ("expr", True) in kinds and ("day", False) in kinds


def test_definitions_are_not_shared_mutable_state(mini) -> None:
    """durable deletes the `run` keys of the definitions it is given; ours are JSON text."""
    plan = rete._plan(mini)
    assert isinstance(plan.definition, str) and "run" not in json.loads(plan.definition)["s0r0"]
    assert rete._plan(mini).definition == plan.definition


@needs_durable
@given(st.lists(st.tuples(st.sampled_from([None, "0.3", "0.7", "0.70", "0.9"]),
                          st.sampled_from([None, "-1", "5", "10000", "10000.01", "99", "100"]),
                          st.sampled_from([None, "零售", "vip", "x", "y"]),
                          st.sampled_from([None, True, False]),
                          st.sampled_from([None, dt.date(2023, 12, 31), dt.date(2024, 1, 1)]),
                          st.sampled_from([None, "1", "96", "10000"])), min_size=1, max_size=30))
def test_random_rows_agree_with_scalar(mini, cells) -> None:
    rows = [row(*cell) for cell in cells]
    assert rete.decide_rows(mini, rows) == scalar.decide_rows(mini, rows)


@needs_durable
def test_large_condition_falls_back_to_python_and_stays_exact(mini) -> None:
    plan = rete._plan(mini)
    d7 = next(stage for stage in plan.stages if stage.decision.id == "D7")
    assert [field.flag for field in d7.fields] == [True]  # the whole `when` is one flag
    results = rete.decide_rows(mini, [row(amount="59"), row(amount="60"), row(ratio="0.9"), row()])
    assert [r.facts["odd"] for r in results] == [True, False, True, False]


@needs_durable
def test_identical_rows_share_one_event_per_stage(mini, monkeypatch) -> None:
    sent: list[int] = []
    original = rete._Batch.events

    def counting(self, rows, number):
        events = original(self, rows, number)
        sent.append(len(events))
        return events

    monkeypatch.setattr(rete._Batch, "events", counting)
    rete.decide_rows(mini, [row(ratio="0.9", amount="20000")] * 500)
    assert sent and all(count == 1 for count in sent)


@needs_durable
def test_rows_a_stage_cannot_tell_apart_share_one_event(mini, monkeypatch) -> None:
    """D1 compares `ratio` with 0.70 and 0.5 only: 0.51 … 0.69 are one region, 0.7 and 0.70 another
    (equal to a constant), above 0.7 a third, blank a fourth — 500 distinct ratios, 5 events."""
    sent: dict[int, int] = {}
    original = rete._Batch.events

    def counting(self, rows, number):
        events = original(self, rows, number)
        sent[number] = sent.get(number, 0) + len(events)
        return events

    monkeypatch.setattr(rete._Batch, "events", counting)
    ratios = [f"0.5{i:03d}1" for i in range(100)] + ["0.7", "0.70", "0.700"] + [f"0.8{i:03d}" for i in range(97)]
    ratios += [None] * 100 + [f"0.{i:03d}" for i in range(100, 200)] + ["0.5", "0.50"] * 50
    rows = [row(ratio=ratio, amount="20000") for ratio in ratios]
    results = rete.decide_rows(mini, rows)
    assert sent[0] == 6  # below 0.5, = 0.5, (0.5, 0.7), = 0.7, above 0.7, blank
    assert [r.facts["band"] for r in results] == [r.facts["band"] for r in scalar.decide_rows(mini, rows)]
    assert results[100].facts["band"] == "mid" and results[103].facts["band"] == "high"  # 0.7 is not > 0.70


@needs_durable
def test_rules_remember_what_they_assigned_for_values_they_saw(mini, monkeypatch) -> None:
    """`total = amount + 1` over 6,000 rows with 8 distinct amounts: evaluated once per amount, the
    same results as the scalar reference; a rule whose inputs never repeat stops remembering."""
    made: list[rete._Memo] = []

    class Recorded(rete._Memo):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(rete, "_Memo", Recorded)
    rows = varied_rows(6_000)
    results = rete.decide_rows(mini, rows)
    expected = scalar.decide_rows(mini, rows)
    assert [r.facts for r in results] == [e.facts for e in expected]
    busy = [m for m in made if m.on and m.lookups >= 5_000]
    assert busy and all(m.lookups - m.hits <= 8 * 6 for m in busy)  # ≤ 8 amounts per batch of 1,000

    made.clear()
    distinct = [row(ratio="0.9", amount=str(1000 + i)) for i in range(4_000)]
    rete.decide_rows(mini, distinct)
    total = [m for m in made if m.lookups + m.hits > 0 and not m.on]
    assert total and all(m.table == {} for m in total), "a rule whose values never repeat stops remembering"


def _outcome(engine, compiled, rows) -> object:
    try:
        return [(r.facts, r.fired) for r in engine.decide_rows(compiled, rows)]
    except ExpressionError as exc:
        return ExpressionError, str(exc)


@needs_durable
@pytest.mark.parametrize("bad", [["not", "hashable"], Decimal("sNaN"), Decimal("NaN"), Decimal("-Infinity")])
def test_a_value_outside_the_model_behaves_as_in_the_scalar_engine(mini, bad) -> None:
    """A caller's raw row with a value the rows stage never makes (a list, a NaN, an infinity):
    what the reference engine does (NaN is blank; others an ExpressionError), never a TypeError
    or InvalidOperation from hashing or ordering it for the memo or the event groups."""
    rows = varied_rows(3_000)
    rows[2_500] = {**rows[2_500], "amount": bad}
    expected = _outcome(scalar, mini, rows)
    got = _outcome(rete, mini, rows)
    assert (got[0] is ExpressionError) == (expected[0] is ExpressionError)
    if expected[0] is not ExpressionError:
        assert got == expected


@needs_durable
def test_least_recently_used_rulesets_are_deleted(mini, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(rete, "_MAX_RULESETS", 2)
    path = tmp_path / "mini.yaml"
    path.write_text(MINI, encoding="utf-8")
    variants = [compile_ruleset(load_ruleset(path), {"cut": cut}) for cut in ("0.1", "0.2", "0.3", "0.4")]
    for variant in variants * 2:
        [result] = rete.decide_rows(variant, [row(ratio="0.35")])
        assert result.facts["band"] == ("high" if variant.params["cut"] < Decimal("0.35") else None)
    assert len(rete._registry) <= 2

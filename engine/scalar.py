"""The reference evaluator: one row at a time, exact `Decimal` arithmetic.

It is the yardstick the other engines are compared with, and the vector engine hands it the
rare rows whose float comparison sits too close to a threshold to be trusted (RULESETS §0.3:
thresholds compare as exact decimals).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping, Sequence

from engine import expr as ex
from engine.compile import CompiledDecision, CompiledRuleset


@dataclass(frozen=True)
class RowDecision:
    facts: Mapping[str, object]
    fired: tuple[str, ...]
    notes: tuple[tuple[str, str], ...]  # (note_at input key, note code)


def aggregate(how: str | None, values: list[object]) -> object:
    """A collect decision's output over the values of the rules that fired (shared by the row engines)."""
    present = [v for v in values if v is not None]
    if how == "count":
        return Decimal(len(present))
    if not present:
        return None
    if how == "sum":
        return sum(present, Decimal(0))
    if how == "min":
        return min(present)
    if how == "max":
        return max(present)
    return ";".join(ex.eval_scalar(ex.Call("concat", (ex.Literal(v, 0),), 0), {}) for v in present)


def decide(decision: CompiledDecision, env: dict[str, object], fired: list[str], notes: list[tuple[str, str]]) -> None:
    """Evaluate one decision for one row, updating env (the row's facts) in place."""
    if decision.hit == "compute":
        rule = decision.rules[0]
        for key, node in rule.assignments:
            env[key] = ex.eval_scalar(node, env)
        fired.append(rule.id)
        if rule.note:
            notes.append((rule.note_at or "", rule.note))
        return
    matched = []
    for rule in decision.rules:
        if rule.condition is None or ex.eval_scalar(rule.condition, env) is True:
            matched.append(rule)
            if decision.hit != "collect":
                break
    for key in decision.outputs:
        env[key] = None
    if decision.hit == "collect":
        for key in decision.outputs:
            values = [ex.eval_scalar(node, env) for rule in matched for k, node in rule.assignments if k == key]
            env[key] = aggregate(decision.aggregate, values)
    elif matched:
        for key, node in matched[0].assignments:
            env[key] = ex.eval_scalar(node, env)
    for rule in matched:
        fired.append(rule.id)
        if rule.note:
            notes.append((rule.note_at or "", rule.note))


def decide_row(compiled: CompiledRuleset, values: Mapping[str, object]) -> RowDecision:
    env = dict(values)
    fired: list[str] = []
    notes: list[tuple[str, str]] = []
    for decision in compiled.decisions:
        decide(decision, env, fired, notes)
    facts = {key: env.get(key) for d in compiled.decisions for key in d.outputs}
    return RowDecision(facts=facts, fired=tuple(fired), notes=tuple(notes))


def decide_rows(compiled: CompiledRuleset, rows: Sequence[Mapping[str, object]]) -> list[RowDecision]:
    return [decide_row(compiled, row) for row in rows]

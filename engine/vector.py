"""The vector engine: every decision evaluated column-wise over the whole table.

No Python loop per row: a decision table costs one boolean mask per rule row, and the first-hit
choice is made with masks. Rows whose result the float arithmetic cannot guarantee (a value a
hair from a threshold, RULESETS §0.3) are marked uncertain and re-done exactly by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import expr as ex
from engine.compile import CompiledRuleset
from engine.prepare import PreparedTable


@dataclass
class TableDecision:
    env: dict[str, ex.Vec]                         # inputs and every derived fact
    fired: list[tuple[str, np.ndarray]]            # (rule id, rows where it fired), in decision/rule order
    notes: list[tuple[str, str, np.ndarray]]       # (note_at, code, rows) emitted by rules
    uncertain: np.ndarray


def _blank(kind: str, n: int) -> np.ndarray:
    return np.full(n, None, dtype=object) if kind == "text" else np.full(n, np.nan)


def _full(vec: ex.Vec, n: int) -> ex.Vec:
    if len(vec.values) == n:
        return vec
    values = np.full(n, vec.values[0], dtype=vec.values.dtype) if len(vec.values) == 1 else np.resize(vec.values, n)
    inexact = None if vec.inexact is None else np.resize(vec.inexact, n)
    return ex.Vec(vec.kind, values, inexact)


def _assign(target: ex.Vec, rows: np.ndarray, source: ex.Vec) -> ex.Vec:
    if isinstance(source.values, np.ndarray) and len(source.values) == 1:
        value = source.values[0]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            value = None if target.kind == "text" else np.nan  # a blank literal takes the target's blank
        target.values[rows] = value
        if source.inexact is not None and source.inexact[0]:
            if target.inexact is None:
                target.inexact = np.zeros(len(target.values), bool)
            target.inexact[rows] = True
        return target
    target.values[rows] = source.values[rows]
    if source.inexact is not None:
        if target.inexact is None:
            target.inexact = np.zeros(len(target.values), bool)
        target.inexact[rows] = source.inexact[rows]
    return target


def _literal_vec(node: ex.Node, env: dict[str, ex.Vec], ctx: ex.VectorContext) -> ex.Vec:
    """Evaluate; literals stay length-1 (cheap to assign to a subset of rows)."""
    if isinstance(node, ex.Literal):
        one = ex.VectorContext(1)
        return ex.eval_vector(node, {}, one)
    return _full(ex.eval_vector(node, env, ctx), ctx.n)


def decide_table(compiled: CompiledRuleset, prepared: PreparedTable) -> TableDecision:
    n = prepared.n
    ctx = ex.VectorContext(n)
    ctx.uncertain |= prepared.uncertain
    env = dict(prepared.env)
    fired: list[tuple[str, np.ndarray]] = []
    notes: list[tuple[str, str, np.ndarray]] = []
    everyone = np.ones(n, bool)
    for decision in compiled.decisions:
        if decision.hit == "compute":
            rule = decision.rules[0]
            for key, node in rule.assignments:
                env[key] = _full(ex.eval_vector(node, env, ctx), n)
            fired.append((rule.id, everyone))
            if rule.note:
                notes.append((rule.note_at or "", rule.note, everyone))
            continue
        outputs = {key: ex.Vec(compiled.fact_types[key], _blank(compiled.fact_types[key], n), None)
                   for key in decision.outputs}
        remaining = np.ones(n, bool)
        hits: list[tuple[object, np.ndarray]] = []
        for rule in decision.rules:
            cond = everyone if rule.condition is None else ex.eval_condition(rule.condition, env, ctx)
            if decision.hit == "collect":
                hit = cond
            else:
                hit = cond & remaining
                remaining = remaining & ~cond
            hits.append((rule, hit))
            if not remaining.any() and decision.hit != "collect":
                break
        if decision.hit == "collect":
            _collect(decision, hits, outputs, env, ctx, n)
        else:
            for rule, hit in hits:
                if not hit.any():
                    continue
                for key, node in rule.assignments:
                    _assign(outputs[key], hit, _literal_vec(node, env, ctx))
        env.update(outputs)
        for rule, hit in hits:
            if hit.any():
                fired.append((rule.id, hit))
                if rule.note:
                    notes.append((rule.note_at or "", rule.note, hit))
    return TableDecision(env=env, fired=fired, notes=notes, uncertain=ctx.uncertain)


def _collect(decision, hits, outputs, env, ctx, n) -> None:
    how = decision.aggregate
    for key, out in outputs.items():
        if how == "count":
            count = np.zeros(n)
            for rule, hit in hits:
                if any(k == key for k, _ in rule.assignments):
                    count += hit
            out.values[:] = count
            out.kind = "number"
            continue
        for rule, hit in hits:
            for k, node in rule.assignments:
                if k != key or not hit.any():
                    continue
                value = _full(_literal_vec(node, env, ctx), n) if how != "list" else _literal_vec(node, env, ctx)
                if how == "list":
                    text = _full(ex.eval_vector(ex.Call("concat", (node,), 0), env, ctx), n).values
                    current = out.values
                    joined = np.where(np.equal(current, None), text, current.astype(object) + ";" + text.astype(object))
                    current[hit] = joined[hit]
                elif how == "sum":
                    current = out.values
                    current[hit] = np.where(np.isnan(current[hit]), 0.0, current[hit]) + value.values[hit]
                    out.inexact = np.ones(n, bool)
                elif how in ("min", "max"):
                    pick = np.fmin if how == "min" else np.fmax
                    out.values[hit] = pick(out.values[hit], value.values[hit])

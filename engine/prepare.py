"""Raw cells → typed input values, error codes and input notes (RULESETS §0.2–§0.6, §0.11).

Two entry points that must agree exactly (the differential test compares them):
`prepare_row` for the row-at-a-time engines and `prepare_table` for the vector engine.

Order of work, the same in both:
1. parse every input in column order (blank / valid / INVALID, then the declared range);
2. blanks: MISSING when required (a `required` expression sees the other inputs with invalid or
   blank ones replaced by their blank default), else the blank default and the blank note;
3. cross-field checks, only when every input they use has no code and a value;
4. codes and notes ordered by the column position they attach to (own code before checks).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Sequence

import numpy as np

from engine import expr as ex
from engine.compile import CompiledCheck, CompiledInput, CompiledRuleset
from engine.values import parse_column, parse_value

OWN_CODE = 0  # sub-position of an input's own MISSING/INVALID code; checks follow in file order


@dataclass
class PreparedRow:
    values: dict[str, object]
    errors: list[tuple[tuple[int, int], str]] = field(default_factory=list)  # ((position, sub), code)
    notes: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # code → human text (for Excel cells)

    @property
    def ok(self) -> bool:
        return not self.errors


def _kind(inp: CompiledInput) -> str:
    return {"number": "number", "fraction": "number", "integer": "number", "date": "date",
            "boolean": "boolean"}.get(inp.type, "text")


def _out_of_range(inp: CompiledInput, value: object) -> str | None:
    if not isinstance(value, Decimal):
        return None
    if inp.min is not None and value < inp.min:
        return f"{value} 小于下限 {inp.min} / is below the minimum {inp.min}"
    if inp.max is not None and value > inp.max:
        return f"{value} 大于上限 {inp.max} / is above the maximum {inp.max}"
    return None


def _blank_default(inp: CompiledInput) -> object:
    """The value a blank cell takes *for other inputs' required tests*: a literal default or blank."""
    if isinstance(inp.default, ex.Literal):
        return inp.default.value
    return None


@dataclass(frozen=True)
class _RowPlan:
    """What the row path needs of a ruleset, looked up and compiled once (not per row)."""

    position: Mapping[str, int]
    inputs: tuple[CompiledInput, ...]
    keys: tuple[str, ...]  # the inputs' keys, in column order
    blank_defaults: Mapping[str, object]  # `_blank_default` of each input
    required: Mapping[str, bool | ex.ScalarFunction]
    defaults: Mapping[str, ex.ScalarFunction]  # inputs that have a default
    # (sort key, check, fails_when compiled, the inputs among its `uses`); fails_when None: all_blank
    checks: tuple[tuple[tuple[int, int], CompiledCheck, ex.ScalarFunction | None, tuple[str, ...]], ...]


_ROW_PLANS: dict[int, tuple[CompiledRuleset, _RowPlan]] = {}  # by id(compiled); the entry keeps it alive


def _row_plan(compiled: CompiledRuleset) -> _RowPlan:
    entry = _ROW_PLANS.get(id(compiled))
    if entry is not None and entry[0] is compiled:
        return entry[1]
    position = compiled.position
    plan = _RowPlan(
        position=position,
        inputs=compiled.inputs,
        keys=tuple(inp.key for inp in compiled.inputs),
        blank_defaults={inp.key: _blank_default(inp) for inp in compiled.inputs},
        required={inp.key: ex.compile_scalar(inp.required) if isinstance(inp.required, ex.Node) else bool(inp.required)
                  for inp in compiled.inputs},
        defaults={inp.key: ex.compile_scalar(inp.default) for inp in compiled.inputs if inp.default is not None},
        checks=tuple(((position.get(check.at, len(position)), index), check,
                      None if check.all_blank else ex.compile_scalar(check.fails_when),  # type: ignore[arg-type]
                      tuple(key for key in check.uses if key in position))
                     for index, check in enumerate(compiled.checks, start=1)),
    )
    if len(_ROW_PLANS) >= 64:
        _ROW_PLANS.clear()
    _ROW_PLANS[id(compiled)] = (compiled, plan)
    return plan


# One parsed cell: (state, value, problem); state is 'ok', 'blank' or 'invalid'.
_Parsed = tuple[str, object, "str | None"]
_BLANK: _Parsed = ("blank", None, None)


def _parse_cell(inp: CompiledInput, cell: object) -> _Parsed:
    value, problem = parse_value(cell, inp.type, inp.values or None)
    if problem is None:
        if value is None:  # parse_value's answer for a blank cell (a value is never None)
            return _BLANK
        problem = _out_of_range(inp, value)
        if problem is None:
            return ("ok", value, None)
    return ("invalid", None, problem)


# Cell types whose equal values always parse alike, so a column's repeated cells are parsed once.
# Not Decimal (1.0 == 1.00 but the exponent is kept), not aware datetimes (equal instants, other
# wall-clock dates); a float zero is keyed with its sign (0.0 == -0.0, but '-0.0' is kept).
_MEMO_TYPES = frozenset({str, bool, int, float, dt.date, np.float64, np.int64, np.bool_, np.datetime64})
_NAN_KEY = object()  # every NaN parses alike (blank) but no NaN equals another


def _memo_keys(cells: Sequence[object]) -> list[object] | None:
    """A key per cell such that equal keys mean cells that parse alike (None: no key for this cell).

    A typed numpy column (what pandas holds for numbers, dates, flags) gives plain Python keys
    cheaply: its float/int/bool values, or a datetime64's integer ticks (one unit per column).
    """
    if isinstance(cells, np.ndarray) and cells.dtype != object and cells.ndim == 1:
        kind = cells.dtype.kind
        if kind in "iub":
            return cells.tolist()
        if kind == "f":
            return [_NAN_KEY if x != x else (x, math.copysign(1.0, x)) if x == 0 else x for x in cells.tolist()]
        if kind == "M":
            return cells.view(np.int64).tolist()
        return None
    keys: list[object] = []
    for cell in cells:
        kind = type(cell)
        if kind not in _MEMO_TYPES:
            keys.append(None)
        elif cell != cell:  # NaN, NaT: blank, all alike (as distinct keys they would pile up in one hash bucket)
            keys.append(_NAN_KEY)
        elif (kind is float or kind is np.float64) and cell == 0:
            keys.append((kind, cell, math.copysign(1.0, cell)))
        else:
            keys.append((kind, cell))
    return keys


def _parse_column(inp: CompiledInput, cells: Sequence[object] | None, n: int) -> list[_Parsed]:
    """Every cell of one input column parsed as `_parse_cell` does, cells that parse alike once."""
    if cells is None:
        return [_BLANK] * n
    keys = _memo_keys(cells)
    if keys is None:
        return [_parse_cell(inp, cell) for cell in cells]
    memo: dict[object, _Parsed] = {}
    out: list[_Parsed] = []
    append = out.append
    for index, key in enumerate(keys):
        if key is None:
            append(_parse_cell(inp, cells[index]))
            continue
        parsed = memo.get(key)
        if parsed is None:
            parsed = memo[key] = _parse_cell(inp, cells[index])
        append(parsed)
    return out


def prepare_row(compiled: CompiledRuleset, raw: Mapping[str, Any]) -> PreparedRow:
    """Validate one row given as input key → raw cell value (missing keys are blank)."""
    plan = _row_plan(compiled)
    return _finish_row(plan, [_parse_cell(inp, raw.get(inp.key)) for inp in plan.inputs])


def prepare_rows(compiled: CompiledRuleset, columns: Mapping[str, Sequence[object]], n: int) -> list[PreparedRow]:
    """`prepare_row` of every row of a table given as input key → column of raw cells.

    The same work, column by column: cells of a column that parse alike (dates, categories and
    flags repeat) are parsed once, and the ruleset's expressions are compiled once.
    """
    plan = _row_plan(compiled)
    if not plan.inputs:
        return [_finish_row(plan, ()) for _ in range(n)]
    parsed_columns = [_parse_column(inp, columns.get(inp.key), n) for inp in plan.inputs]
    return [_finish_row(plan, cells) for cells in zip(*parsed_columns)]


def _finish_row(plan: _RowPlan, parsed: Sequence[_Parsed]) -> PreparedRow:
    """Codes, defaults, notes and checks of one row whose cells are parsed (in input order).

    A value is None exactly when its cell is blank (and got no default), invalid or missing.
    """
    position = plan.position
    values = dict(zip(plan.keys, [cell[1] for cell in parsed]))
    row = PreparedRow(values=values)
    blanks: list[CompiledInput] = []
    raw_blank: set[str] = set()
    for inp, (cell_state, _value, problem) in zip(plan.inputs, parsed):
        if cell_state == "ok":
            continue
        if cell_state == "invalid":
            code = f"INVALID:{inp.key}"
            row.errors.append(((position[inp.key], OWN_CODE), code))
            row.reasons[code] = problem  # type: ignore[assignment]
        else:
            blanks.append(inp)
            raw_blank.add(inp.key)

    if blanks:
        # `required` and defaults see the other inputs with invalid or blank ones as their blank default
        required_env = {key: plan.blank_defaults[key] if value is None else value for key, value in values.items()}
        for inp in blanks:
            required = plan.required[inp.key]
            if not isinstance(required, bool):
                required = required(required_env) is True
            if required:
                code = f"MISSING:{inp.key}"
                row.errors.append(((position[inp.key], OWN_CODE), code))
                row.reasons[code] = "必填项为空 / required value is blank"
                continue
            default = plan.defaults.get(inp.key)
            if default is not None:
                values[inp.key] = default(required_env)
            if inp.blank_note:
                row.notes.append(((position[inp.key], OWN_CODE), inp.blank_note))

    for sort_key, check, fails_when, uses in plan.checks:
        if fails_when is None:  # all_blank: fails when every listed cell is blank
            fails = all(key in raw_blank or key not in values for key in check.all_blank)
        else:
            # only when every input it uses has a value (none invalid, missing or blank without default)
            for key in uses:
                if values[key] is None:
                    fails = False
                    break
            else:
                fails = fails_when(values) is True
        if fails:
            row.errors.append((sort_key, check.code))
            row.reasons[check.code] = "交叉校验未通过 / cross-field check failed"
    if len(row.errors) > 1:
        row.errors.sort(key=lambda item: item[0])
    if len(row.notes) > 1:
        row.notes.sort(key=lambda item: item[0])
    return row


# --------------------------------------------------------------------------- vector
@dataclass
class PreparedTable:
    n: int
    env: dict[str, ex.Vec]
    errors: list[tuple[tuple[int, int], str, np.ndarray]]  # (sort key, code, mask) in code order
    notes: list[tuple[tuple[int, int], str, np.ndarray]]
    uncertain: np.ndarray  # rows the float path cannot decide exactly → scalar re-evaluation

    @property
    def error_mask(self) -> np.ndarray:
        mask = np.zeros(self.n, bool)
        for _key, _code, rows in self.errors:
            mask |= rows
        return mask


def _blank_vec(kind: str, n: int) -> ex.Vec:
    if kind == "text":
        return ex.Vec("text", np.full(n, None, dtype=object), None)
    return ex.Vec(kind, np.full(n, np.nan), None)


def _fill(vec: ex.Vec, mask: np.ndarray, other: ex.Vec) -> ex.Vec:
    """vec with rows in mask taken from other (same kind)."""
    if not mask.any():
        return vec
    values = vec.values.copy()
    # A one-row `other` is a constant (a literal default): stored as a scalar, never broadcast.
    constant = len(other.values) == 1
    values[mask] = other.values[0] if constant else other.values[mask]
    inexact = vec.inexact
    if other.inexact is not None:
        inexact = (np.zeros(len(values), bool) if inexact is None else inexact.copy())
        inexact[mask] = other.inexact[0] if constant else other.inexact[mask]
    return ex.Vec(vec.kind, values, inexact)


def _default_vec(node: ex.Node, env: Mapping[str, ex.Vec], ctx: ex.VectorContext) -> ex.Vec:
    """A default's values: one row for a literal (see `_fill`), else the whole column."""
    if isinstance(node, ex.Literal):
        return ex.eval_vector(node, {}, ex.VectorContext(1))
    return _broadcast(ex.eval_vector(node, env, ctx), ctx.n)


def _broadcast(vec: ex.Vec, n: int) -> ex.Vec:
    if len(vec.values) == n:
        return vec
    return ex.Vec(vec.kind, np.resize(vec.values, n), None if vec.inexact is None else np.resize(vec.inexact, n))


_NAMES_READ: dict[str, frozenset[str]] = {}  # by CompiledRuleset.digest (content + bound parameters)


def _names_read(compiled: CompiledRuleset) -> frozenset[str]:
    """Every name an expression of the ruleset reads, and every output key (cached by digest)."""
    cached = _NAMES_READ.get(compiled.digest)
    if cached is None:
        if len(_NAMES_READ) > 256:
            _NAMES_READ.clear()
        cached = _NAMES_READ[compiled.digest] = _collect_names_read(compiled)
    return cached


def _collect_names_read(compiled: CompiledRuleset) -> frozenset[str]:
    names: set[str] = {o.key for o in compiled.definition.outputs}
    nodes: list[ex.Node] = []
    for decision in compiled.decisions:
        for rule in decision.rules:
            nodes.extend(node for _key, node in rule.assignments)
            if rule.condition is not None:
                nodes.append(rule.condition)
    for check in compiled.checks:
        names.update(check.all_blank)
        names.update(check.uses)
        if check.fails_when is not None:
            nodes.append(check.fails_when)
    for inp in compiled.inputs:
        nodes.extend(node for node in (inp.required, inp.default) if isinstance(node, ex.Node))
    for node in nodes:
        names |= ex.free_names(node)
    return frozenset(names)


def _passthrough(inp: CompiledInput, read: frozenset[str]) -> bool:
    """A text input nothing reads and that can carry no code or note (ids, names).

    Its cells can be neither INVALID nor MISSING and no decision sees them, so parsing them
    (a Python str per cell) is skipped: for a 1M-row table that was the largest single cost
    of the prepare stage (issue 8).
    """
    return (inp.type == "text" and inp.key not in read and inp.required is False and inp.default is None
            and not inp.blank_note)


def prepare_table(compiled: CompiledRuleset, columns: Mapping[str, Any], n: int) -> PreparedTable:
    """Validate a whole table given as input key → column of raw cells (absent keys are blank)."""
    position = compiled.position
    read = _names_read(compiled)
    ctx = ex.VectorContext(n)
    env: dict[str, ex.Vec] = {}
    blank: dict[str, np.ndarray] = {}
    bad: dict[str, np.ndarray] = {}
    errors: list[tuple[tuple[int, int], str, np.ndarray]] = []
    notes: list[tuple[tuple[int, int], str, np.ndarray]] = []
    for inp in compiled.inputs:
        kind = _kind(inp)
        if inp.key not in columns or _passthrough(inp, read):
            env[inp.key] = _blank_vec(kind, n)
            blank[inp.key] = np.ones(n, bool)
            bad[inp.key] = np.zeros(n, bool)
            continue
        parsed = parse_column(columns[inp.key], inp.type, inp.values or None)
        invalid = parsed.invalid.copy()
        values = parsed.values
        if kind == "number" and (inp.min is not None or inp.max is not None):
            vec = ex.Vec("number", values, parsed.inexact)
            for bound, op in ((inp.min, "<"), (inp.max, ">")):
                if bound is None:
                    continue
                node = ex.Compare(op, ex.Name("v", 0), ex.Literal(bound, 0), 0)
                invalid |= ex.eval_condition(node, {"v": vec}, ctx) & ~parsed.blank
        if invalid.any():
            values = values.copy()
            values[invalid] = None if kind == "text" else np.nan
            errors.append(((position[inp.key], OWN_CODE), f"INVALID:{inp.key}", invalid))
        env[inp.key] = ex.Vec(kind, values, parsed.inexact if kind == "number" else None)
        blank[inp.key] = parsed.blank
        bad[inp.key] = invalid

    required_env: dict[str, ex.Vec] = {}
    for inp in compiled.inputs:
        vec = env[inp.key]
        default = _blank_default(inp)
        if default is not None:
            vec = _fill(vec, blank[inp.key] | bad[inp.key], _default_vec(ex.Literal(default, 0), {}, ctx))
        required_env[inp.key] = vec
    missing_of: dict[str, np.ndarray] = {}
    for inp in compiled.inputs:
        rows = blank[inp.key]
        if not rows.any():
            missing_of[inp.key] = np.zeros(n, bool)
            continue
        if isinstance(inp.required, ex.Node):
            missing = rows & ex.eval_condition(inp.required, required_env, ctx)
        else:
            missing = rows if inp.required else np.zeros(n, bool)
        missing_of[inp.key] = missing
        if missing.any():
            errors.append(((position[inp.key], OWN_CODE), f"MISSING:{inp.key}", missing))
        defaulted = rows & ~missing
        if inp.default is not None and defaulted.any():
            env[inp.key] = _fill(env[inp.key], defaulted, _default_vec(inp.default, required_env, ctx))
        if inp.blank_note and defaulted.any():
            notes.append(((position[inp.key], OWN_CODE), inp.blank_note, defaulted))

    for index, check in enumerate(compiled.checks, start=1):
        if check.all_blank:
            fails = np.ones(n, bool)
            for key in check.all_blank:
                fails &= blank.get(key, np.ones(n, bool))
        else:
            usable = np.ones(n, bool)
            for key in check.uses:
                if key in env:
                    usable &= ~bad[key] & ~missing_of[key]
                    vec = env[key]
                    usable &= (np.not_equal(vec.values, None) if vec.kind == "text" else ~np.isnan(vec.values))
            fails = usable & ex.eval_condition(check.fails_when, env, ctx)
        if fails.any():
            errors.append(((position.get(check.at, len(position)), index), check.code, fails))
    errors.sort(key=lambda item: item[0])
    notes.sort(key=lambda item: item[0])
    return PreparedTable(n=n, env=env, errors=errors, notes=notes, uncertain=ctx.uncertain)

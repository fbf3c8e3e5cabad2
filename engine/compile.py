"""`RulesetDef` + parameter overrides → `CompiledRuleset`, the immutable thing the engines run.

Compiling binds parameters (defaults, then overrides) into the expressions as literals, so the
engines see plain comparisons against constants (durable-rules can match those natively, numpy
broadcasts them), and it fails before the first row: every expression is parsed and type-checked
here. The result is immutable and named by a digest of the file content and the bound
parameters — the cache key of the add-in and the rete engine's ruleset name.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Mapping

from engine import expr as ex
from engine.errors import ExpressionError, ParameterError, RulesetError
from engine.ruleset import RulesetDef
from engine.values import parse_value

FACT_KIND = {"number": "number", "fraction": "number", "integer": "number", "date": "date",
             "boolean": "boolean", "text": "text", "enum": "text"}
PARAM_KIND = {"number": "number", "integer": "number", "text": "text", "boolean": "boolean", "date": "date"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class CompiledRule:
    id: str
    condition: ex.Node | None
    assignments: tuple[tuple[str, ex.Node], ...]
    note: str | None
    note_at: str | None


@dataclass(frozen=True)
class CompiledDecision:
    id: str
    hit: str
    aggregate: str | None
    rules: tuple[CompiledRule, ...]
    outputs: tuple[str, ...]
    reads: frozenset[str]


@dataclass(frozen=True)
class CompiledInput:
    """How the prepare stage treats one input column."""

    key: str
    type: str
    values: tuple[str, ...]
    min: Decimal | None
    max: Decimal | None
    required: ex.Node | bool  # bool, or an expression over other inputs
    default: ex.Node | None  # value used when blank and not required
    blank_note: str | None


@dataclass(frozen=True)
class CompiledCheck:
    code: str
    at: str
    fails_when: ex.Node | None
    all_blank: tuple[str, ...]
    uses: tuple[str, ...]


@dataclass(frozen=True)
class CompiledRuleset:
    definition: RulesetDef
    params: Mapping[str, object]
    decisions: tuple[CompiledDecision, ...]
    fact_types: Mapping[str, str]
    digest: str
    inputs: tuple[CompiledInput, ...]
    checks: tuple[CompiledCheck, ...]
    overridden: Mapping[str, object]  # parameters that differ from the file's defaults

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def version(self) -> str:
        return self.definition.version

    @property
    def position(self) -> Mapping[str, int]:
        """Input key → column position, the order of error and note codes (RULESETS §0.4)."""
        return {inp.key: index for index, inp in enumerate(self.inputs)}


# --------------------------------------------------------------------------- parameters
def _literal_value(value: Any) -> object:
    """A YAML literal → the scalar value model (numbers exact, via their text)."""
    if isinstance(value, (bool, str, Decimal)) or value is None:
        return value
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return str(value)


def coerce_param(definition: RulesetDef, key: str, raw: Any) -> object:
    """Turn a parameter value (from YAML, the CLI's text, a workbook cell) into its typed value."""
    names = [p.key for p in definition.parameters]
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ParameterError(
            f"未知参数 / unknown parameter {key!r} for ruleset {definition.id!r}.{hint} "
            f"Run `tier list --params {definition.id}` or see the 参数 sheet for valid names."
        )
    spec = definition.parameter(key)
    value_type = {"number": "number", "integer": "integer", "text": "text", "boolean": "boolean",
                  "date": "date"}[spec.type]
    if spec.type == "text":
        value = "" if raw is None else str(raw)
    else:
        value, problem = parse_value(raw, value_type)
        if problem or value is None:
            raise ParameterError(
                f"参数 {key!r} 的值 {raw!r} 无效 / parameter {key!r}: value {raw!r} is not a valid {spec.type}"
                f"{' (' + problem + ')' if problem else ''}; default is {spec.default!r}"
            )
    if isinstance(value, Decimal):
        low = None if spec.min is None else Decimal(repr(spec.min))
        high = None if spec.max is None else Decimal(repr(spec.max))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ParameterError(
                f"参数 {key!r} 的值 {raw!r} 超出范围 / parameter {key!r}: {raw!r} is outside "
                f"[{spec.min if spec.min is not None else '-∞'}, {spec.max if spec.max is not None else '∞'}]"
            )
    return value


def bind_params(definition: RulesetDef, overrides: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """Defaults, then overrides (all validated) → (bound values, the overrides that changed something)."""
    bound = {p.key: coerce_param(definition, p.key, p.default) for p in definition.parameters}
    changed: dict[str, object] = {}
    for key, raw in (overrides or {}).items():
        value = coerce_param(definition, str(key), raw)
        if value != bound[str(key)]:
            changed[str(key)] = value
        bound[str(key)] = value
    return bound, changed


def render_param(value: object) -> str:
    """Parameter values as they appear in notes and audit text (45, 0.7, 2024-01-31, TRUE)."""
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.date):
        return value.isoformat()
    return "" if value is None else str(value)


def fill_template(template: str, params: Mapping[str, object]) -> str:
    return _PLACEHOLDER.sub(lambda m: render_param(params[m.group(1)]) if m.group(1) in params else m.group(0),
                            template)


# --------------------------------------------------------------------------- compiling
def _parse(text: str, where: str, params: Mapping[str, object]) -> ex.Node:
    try:
        node = ex.parse_expression(text)
    except ExpressionError as exc:
        raise RulesetError(f"{where}: {exc}") from exc
    return ex.substitute(node, {k: v for k, v in params.items() if k in ex.free_names(node)})


def _then_node(value: Any, where: str, params: Mapping[str, object]) -> ex.Node:
    if isinstance(value, str) and value.startswith("="):
        return _parse(value[1:], where, params)
    return ex.Literal(_literal_value(value), 0)


def compile_ruleset(definition: RulesetDef, params: Mapping[str, Any] | None = None) -> CompiledRuleset:
    """Bind parameters, parse and type-check every expression; raise `RulesetError` on the first problem.

    `engine.check.check_ruleset` reports *all* problems without raising; this is the strict path
    used before evaluating rows.
    """
    bound, changed = bind_params(definition, params)
    fact_types: dict[str, str] = {i.key: FACT_KIND.get(i.type, "text") for i in definition.inputs}
    input_types = dict(fact_types)

    inputs = []
    for inp in definition.inputs:
        where = f"{definition.path}:{inp.line} input {inp.key}"
        required: ex.Node | bool
        if isinstance(inp.required, str):
            required = _parse(inp.required, where + " required", bound)
            _typecheck(required, input_types, where + " required")
        else:
            required = bool(inp.required)
        default = None
        if inp.default_expr is not None:
            default = _parse(str(inp.default_expr), where + " default_expr", bound)
        elif inp.default is not None:
            literal = inp.default
            if inp.type in ("number", "fraction", "integer", "date", "boolean"):
                parsed, problem = parse_value(literal, inp.type)
                if problem:
                    raise RulesetError(f"{where}: default {literal!r} is not a valid {inp.type}")
                literal = parsed
            default = ex.Literal(_literal_value(literal), 0)
        inputs.append(CompiledInput(
            key=inp.key, type=inp.type, values=inp.values,
            min=None if inp.min is None else Decimal(repr(inp.min)),
            max=None if inp.max is None else Decimal(repr(inp.max)),
            required=required, default=default,
            blank_note=fill_template(inp.blank_note, bound) if inp.blank_note else None,
        ))

    checks = []
    for check in definition.checks:
        where = f"{definition.path}:{check.line} check {check.code}"
        node = None
        if check.fails_when is not None:
            node = _parse(str(check.fails_when), where, bound)
            _typecheck(node, input_types, where)
        uses = tuple(sorted(ex.free_names(node))) if node is not None else check.all_blank
        checks.append(CompiledCheck(code=check.code, at=check.at, fails_when=node, all_blank=check.all_blank,
                                    uses=uses))

    decisions = []
    for decision in definition.decisions:
        rules = []
        outputs: list[str] = []
        reads: set[str] = set()
        local_types = dict(fact_types)
        for rule in decision.rules:
            where = f"{definition.path}:{rule.line} rule {rule.id}"
            condition = None
            if rule.when is not None:
                condition = _parse(rule.when, where + " when", bound)
                _typecheck(condition, local_types, where + " when")
                reads |= ex.free_names(condition)
            assignments = []
            for key, value in rule.then:
                node = _then_node(value, f"{where} then {key}", bound)
                kind = _typecheck(node, local_types, f"{where} then {key}")
                reads |= ex.free_names(node)
                if decision.hit == "compute":
                    local_types[key] = kind  # later computes may read earlier ones
                assignments.append((key, node))
                if key not in outputs:
                    outputs.append(key)
                previous = fact_types.get(key)
                if previous and previous != kind and kind != "blank" and key not in input_types:
                    if previous != "blank":
                        raise RulesetError(f"{where}: {key!r} is {kind} here but {previous} elsewhere")
                if key in input_types:
                    raise RulesetError(f"{where}: {key!r} is an input; a decision cannot overwrite it")
                if previous in (None, "blank"):
                    fact_types[key] = kind
            note = fill_template(rule.note, bound) if rule.note else None
            rules.append(CompiledRule(id=rule.id, condition=condition, assignments=tuple(assignments),
                                      note=note, note_at=rule.note_at))
        if decision.hit == "collect" and decision.aggregate in ("sum", "count"):
            for key in outputs:
                fact_types[key] = "number"
        decisions.append(CompiledDecision(id=decision.id, hit=decision.hit, aggregate=decision.aggregate,
                                          rules=tuple(rules), outputs=tuple(outputs),
                                          reads=frozenset(reads - set(outputs)) if decision.hit != "compute"
                                          else frozenset(reads)))
    for key, kind in list(fact_types.items()):
        if kind == "blank":
            fact_types[key] = "text"
    for out in definition.outputs:
        if out.key not in fact_types:
            raise RulesetError(f"{definition.path}:{out.line} output {out.key!r} is never set by any decision")

    digest_source = definition.content_hash + "|" + "|".join(f"{k}={render_param(v)}" for k, v in sorted(bound.items()))
    return CompiledRuleset(
        definition=definition,
        params=MappingProxyType(bound),
        decisions=tuple(decisions),
        fact_types=MappingProxyType(fact_types),
        digest=hashlib.sha256(digest_source.encode("utf-8")).hexdigest()[:24],
        inputs=tuple(inputs),
        checks=tuple(checks),
        overridden=MappingProxyType(changed),
    )


def _typecheck(node: ex.Node, types: Mapping[str, str], where: str) -> str:
    if isinstance(node, ex.Literal):
        return "blank" if node.value is None else ex.kind_of_value(node.value)
    try:
        return ex.infer_type(node, {k: v for k, v in types.items() if v != "blank"} | {
            k: "text" for k, v in types.items() if v == "blank"})
    except ExpressionError as exc:
        raise RulesetError(f"{where}: {exc}") from exc

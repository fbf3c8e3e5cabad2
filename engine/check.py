"""`tier check`: static analysis of a ruleset — every problem at once, each with a line and a fix.

`compile_ruleset` stops at the first problem because it guards a run; an analyst fixing a file
wants the whole list in one pass (STYLE §2.8), so this module walks everything and *collects*:

* names and types: unknown names (with a did-you-mean), type mismatches, syntax errors, enum
  literals outside the declared `values`, unused parameters, outputs nobody sets;
* order: a decision that reads a fact a *later* decision sets (`use-before-define`: the fix is to
  move it) and decisions that depend on each other in a loop (`cycle`: no order can fix it);
* decision tables, after binding parameters to their defaults: rows that can never fire
  (`unreachable`), numeric values no row covers (`gap`) and, for `hit: unique`, values two rows
  both match (`overlap`).

The table analysis must never cry wolf, so it reasons only about what it fully understands:
conjunctions of comparisons of one name with constants (`x >= 5000`, `x in [1..90]`,
`grade = 'A'`, a boolean name). Anything else in a row (a call, `or`, two names compared) makes
that row *opaque*: for a gap it counts as covering everything its understood parts allow (an
over-approximation), and it never shadows a later row or overlaps another one. Numeric ends are
exact `Decimal`s with open/closed ends; whole-number and finite-valued facts (scores set from
literals, integer inputs) are tracked so `x = 0` / `x in [1..90]` on an integer is not a "gap".
"""
from __future__ import annotations

import datetime as dt
import difflib
import itertools
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from engine import expr as ex
from engine.compile import FACT_KIND, PARAM_KIND, coerce_param, render_param
from engine.errors import ExpressionError, ParameterError, Problem, TierError
from engine.ruleset import DecisionDef, InputDef, ParamDef, RulesetDef, read_ruleset
from engine.values import parse_value

__all__ = ["CODES", "check_ruleset"]

# Stable problem codes (tests and the add-in's "Check rules" sheet key on them).
CODES = (
    "unknown-field", "unknown-name", "type", "syntax", "use-before-define", "cycle", "unreachable",
    "gap", "overlap", "enum-value", "unused-param", "unknown-output", "tier-column", "name-clash",
    "redefined",
)

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_MAX_POINTS = 512  # finite value sets larger than this are widened to bounds
_MAX_WORK = 20_000  # cells visited by one coverage question before it gives up (no claim)
_MAX_COMBOS = 64  # enum/boolean combinations a gap analysis splits into before projecting them away


# =========================================================================== public API
def check_ruleset(source: str | os.PathLike | RulesetDef) -> list[Problem]:
    """Every problem of a ruleset file (or loaded definition); never raises for its content.

    Structural problems found while loading come first (in file order), then the semantic ones
    sorted by line. Severity is 'error' except `unused-param` and the gaps of `collect` tables.
    """
    try:
        if isinstance(source, RulesetDef):
            definition, structural = source, _structural_problems(source)
        else:
            definition, structural = read_ruleset(source)
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        # The loader expects lists/mappings/text where the format says so; a value of another
        # type in an odd place must still give a report, not a traceback.
        return [Problem(os.fspath(getattr(source, "path", source)), None, "structure",
                        f"cannot read the ruleset structure: {type(exc).__name__}: {exc}",
                        "check that lists are lists (`- item` or [a, b]) and mappings are mappings, "
                        "as in docs/DESIGN.md 'Ruleset file format'")]
    if definition is None:
        return structural
    try:
        found = _Checker(definition).run()
    except RecursionError:  # pragma: no cover - expressions are depth-limited by the parser
        found = [Problem(definition.path, None, "syntax", "ruleset too deeply nested to analyse",
                         "simplify the expressions")]
    seen = {(p.line, p.code, p.message) for p in structural}
    found = [p for p in found if (p.line, p.code, p.message) not in seen]
    found.sort(key=lambda p: (p.line if p.line is not None else 1 << 30))
    return list(structural) + found


def _structural_problems(definition: RulesetDef) -> list[Problem]:
    """The loader's problems for an already loaded definition (re-read only if unchanged on disk)."""
    path = Path(definition.path)
    if not definition.path or not path.is_file():
        return []
    again, problems = read_ruleset(path)
    if again is None or again.content_hash != definition.content_hash:
        return []
    return problems


# =========================================================================== intervals
@dataclass(frozen=True)
class Interval:
    """A set of numbers between two ends; `None` is −∞ / +∞ (always open)."""

    low: Decimal | None
    low_closed: bool
    high: Decimal | None
    high_closed: bool

    def is_empty(self) -> bool:
        if self.low is None or self.high is None:
            return False
        return not (self.low < self.high or (self.low == self.high and self.low_closed and self.high_closed))

    def contains(self, value: Decimal) -> bool:
        above = self.low is None or value > self.low or (value == self.low and self.low_closed)
        below = self.high is None or value < self.high or (value == self.high and self.high_closed)
        return above and below

    def intersect(self, other: Interval) -> Interval:
        low, low_closed = self.low, self.low_closed
        if other.low is not None and (low is None or other.low > low or
                                      (other.low == low and not other.low_closed)):
            low, low_closed = other.low, other.low_closed
        high, high_closed = self.high, self.high_closed
        if other.high is not None and (high is None or other.high < high or
                                       (other.high == high and not other.high_closed)):
            high, high_closed = other.high, other.high_closed
        return Interval(low, low_closed, high, high_closed)

    def sample(self) -> Decimal:
        """A number strictly inside (or the point itself): decides membership of a whole piece."""
        if self.low is None and self.high is None:
            return Decimal(0)
        if self.low is None:
            return self.high - 1  # type: ignore[operator]
        if self.high is None:
            return self.low + 1
        if self.low == self.high:
            return self.low
        return (self.low + self.high) / 2

    def whole_numbers(self) -> tuple[int | None, int | None] | None:
        """(first, last) whole number inside (None = unbounded), or None if there is none."""
        first = None if self.low is None else (math.ceil(self.low) if self.low_closed else math.floor(self.low) + 1)
        last = None if self.high is None else (math.floor(self.high) if self.high_closed else math.ceil(self.high) - 1)
        if first is not None and last is not None and first > last:
            return None
        return first, last

    def render(self) -> str:
        if self.low is not None and self.low == self.high:
            return f"{{{_num(self.low)}}}"
        low = "(-∞" if self.low is None else ("[" if self.low_closed else "(") + _num(self.low)
        high = "∞)" if self.high is None else _num(self.high) + ("]" if self.high_closed else ")")
        return f"{low}, {high}"


FULL = Interval(None, False, None, False)
NumSet = tuple[Interval, ...]  # a union of intervals (not necessarily disjoint)


def _num(value: Decimal) -> str:
    return render_param(value)


def _compare_set(op: str, value: Decimal) -> NumSet:
    """`x <op> value` as a set of x."""
    if op == "=":
        return (Interval(value, True, value, True),)
    if op == "!=":
        return (Interval(None, False, value, False), Interval(value, False, None, False))
    if op == "<":
        return (Interval(None, False, value, False),)
    if op == "<=":
        return (Interval(None, False, value, True),)
    if op == ">":
        return (Interval(value, False, None, False),)
    return (Interval(value, True, None, False),)  # >=


def _intersect_sets(first: NumSet, second: NumSet) -> NumSet:
    out = tuple(a.intersect(b) for a in first for b in second)
    return tuple(i for i in out if not i.is_empty())


def _complement(values: NumSet) -> NumSet:
    pieces = _pieces([values])
    return tuple(p for p in pieces if not _in_numset(p.sample(), values))


def _in_numset(value: Decimal, values: NumSet) -> bool:
    return any(i.contains(value) for i in values)


def _endpoints(sets: Iterable[NumSet]) -> list[Decimal]:
    points: set[Decimal] = set()
    for values in sets:
        for interval in values:
            if interval.low is not None:
                points.add(interval.low)
            if interval.high is not None:
                points.add(interval.high)
    return sorted(points)


def _pieces(sets: Iterable[NumSet], extra: Iterable[Decimal] = ()) -> list[Interval]:
    """The number line cut at every end of `sets`: open stretches and single points, in order.

    No piece straddles an end, so each piece lies wholly inside or wholly outside each set and
    one sample number decides it.
    """
    points = sorted(set(_endpoints(sets)) | set(extra))
    if not points:
        return [FULL]
    out = [Interval(None, False, points[0], False)]
    for index, point in enumerate(points):
        out.append(Interval(point, True, point, True))
        nxt = points[index + 1] if index + 1 < len(points) else None
        out.append(Interval(point, False, nxt, False))
    return out


# =========================================================================== value domains
@dataclass(frozen=True)
class Domain:
    """What values a name can hold on a row that reaches the decisions (an over-approximation).

    kind: 'number' | 'text' | 'boolean' | 'date' | 'blank' | 'unknown'; points: every possible
    non-blank value when known to be few; low/high: inclusive numeric bounds (None = unbounded);
    integral: only whole numbers; maybe_blank: the value may be blank.
    """

    kind: str
    points: frozenset | None = None
    low: Decimal | None = None
    high: Decimal | None = None
    integral: bool = False
    maybe_blank: bool = True

    def feasible(self, piece: Interval) -> bool:
        """Some possible value lies in `piece`."""
        if self.points is not None:
            return any(isinstance(p, Decimal) and piece.contains(p) for p in self.points)
        clipped = piece.intersect(Interval(self.low, True, self.high, True))
        if clipped.is_empty():
            return False
        return not self.integral or clipped.whole_numbers() is not None

    def clip(self, piece: Interval) -> Interval:
        return piece.intersect(Interval(self.low, True, self.high, True))


UNKNOWN = Domain("unknown")
BOOLEAN = Domain("boolean", frozenset({True, False}), maybe_blank=False)


def _value_domain(value: object) -> Domain:
    if value is None:
        return Domain("blank", frozenset())
    if isinstance(value, bool):
        return Domain("boolean", frozenset({value}), maybe_blank=False)
    if isinstance(value, Decimal):
        return Domain("number", frozenset({value}), value, value, value == value.to_integral_value(), False)
    if isinstance(value, dt.date):
        return Domain("date", frozenset({value}), maybe_blank=False)
    return Domain("text", frozenset({value}), maybe_blank=False)


def _points_domain(values: Sequence[object], maybe_blank: bool) -> Domain:
    present = [v for v in values if v is not None]
    blank = maybe_blank or len(present) < len(values)
    if not present:
        return Domain("blank", frozenset(), maybe_blank=True)
    kinds = {_value_domain(v).kind for v in present}
    if len(kinds) != 1:
        return replace(UNKNOWN, maybe_blank=blank)
    kind = kinds.pop()
    points = frozenset(present)
    if len(points) > _MAX_POINTS:
        points = None  # type: ignore[assignment]
    if kind == "number":
        return Domain("number", points, min(present), max(present),  # type: ignore[type-var]
                      all(v == v.to_integral_value() for v in present), blank)  # type: ignore[union-attr]
    return Domain(kind, points, maybe_blank=blank)


def _union(first: Domain, second: Domain) -> Domain:
    if first.kind == "blank":
        return replace(second, maybe_blank=True)
    if second.kind == "blank":
        return replace(first, maybe_blank=True)
    if first.kind != second.kind:
        return replace(UNKNOWN, maybe_blank=first.maybe_blank or second.maybe_blank)
    points = None
    if first.points is not None and second.points is not None and len(first.points | second.points) <= _MAX_POINTS:
        points = first.points | second.points
    low = None if first.low is None or second.low is None else min(first.low, second.low)
    high = None if first.high is None or second.high is None else max(first.high, second.high)
    return Domain(first.kind, points, low, high, first.integral and second.integral,
                  first.maybe_blank or second.maybe_blank)


def _union_all(domains: Sequence[Domain]) -> Domain:
    if not domains:
        return Domain("blank", frozenset())
    out = domains[0]
    for item in domains[1:]:
        out = _union(out, item)
    return out


def _abstract(node: ex.Node, doms: Mapping[str, Domain]) -> Domain:
    """The domain of an expression's value: exact enumeration when its names have few values."""
    names = sorted(ex.free_names(node))
    choices = []
    size = 1
    for name in names:
        dom = doms.get(name, UNKNOWN)
        if dom.points is None:
            break
        options = list(dom.points) + ([None] if dom.maybe_blank else [])
        size *= max(len(options), 1)
        if size > _MAX_POINTS:
            break
        choices.append(options)
    else:
        results: list[object] = []
        try:
            for combo in itertools.product(*choices):
                results.append(ex.eval_scalar(node, dict(zip(names, combo))))
        except (TierError, TypeError, ArithmeticError, ValueError, OverflowError):
            pass
        else:
            return _points_domain(results, maybe_blank=False)
    return _structural(node, doms)


def _structural(node: ex.Node, doms: Mapping[str, Domain]) -> Domain:
    if isinstance(node, ex.Literal):
        return _value_domain(node.value)
    if isinstance(node, ex.Name):
        return doms.get(node.name, UNKNOWN)
    if isinstance(node, (ex.Compare, ex.InList, ex.InRange, ex.And, ex.Or, ex.Not)):
        return BOOLEAN
    if isinstance(node, ex.Neg):
        inner = _structural(node.operand, doms)
        if inner.kind != "number":
            return replace(UNKNOWN, maybe_blank=inner.maybe_blank)
        return Domain("number", None, None if inner.high is None else -inner.high,
                      None if inner.low is None else -inner.low, inner.integral, inner.maybe_blank)
    if isinstance(node, ex.BinOp):
        left, right = _structural(node.left, doms), _structural(node.right, doms)
        blank = left.maybe_blank or right.maybe_blank or node.op == "/"
        if left.kind != "number" or right.kind != "number":
            return Domain("number" if node.op == "/" else "unknown", maybe_blank=blank)
        if node.op == "+":
            low = None if left.low is None or right.low is None else left.low + right.low
            high = None if left.high is None or right.high is None else left.high + right.high
            return Domain("number", None, low, high, left.integral and right.integral, blank)
        if node.op == "-":
            low = None if left.low is None or right.high is None else left.low - right.high
            high = None if left.high is None or right.low is None else left.high - right.low
            return Domain("number", None, low, high, left.integral and right.integral, blank)
        if node.op == "*":
            ends = (left.low, left.high, right.low, right.high)
            if all(e is not None for e in ends):
                products = [a * b for a in (left.low, left.high) for b in (right.low, right.high)]  # type: ignore[operator]
                return Domain("number", None, min(products), max(products), left.integral and right.integral, blank)
            return Domain("number", None, None, None, left.integral and right.integral, blank)
        return Domain("number", maybe_blank=True)
    if isinstance(node, ex.Call):
        args = [_structural(a, doms) for a in node.args]
        any_blank = any(a.maybe_blank for a in args)
        func = node.func
        if func == "if":
            return _union(args[1], args[2])
        if func in ("is_blank", "present"):
            return BOOLEAN
        if func == "concat":
            return Domain("text", maybe_blank=False)
        if func in ("add_days", "add_months", "date", "quarter_start", "next_quarter_start"):
            return Domain("date", maybe_blank=True)
        if func in ("year", "days_between"):
            return Domain("number", None, None, None, True, any_blank)
        if func in ("month", "day", "quarter"):
            high = {"month": 12, "day": 31, "quarter": 4}[func]
            return Domain("number", None, Decimal(1), Decimal(high), True, any_blank)
        if func in ("min", "max"):
            if any(a.kind != "number" for a in args):
                return replace(_union_all(args), points=None)
            lows = [a.low for a in args]
            highs = [a.high for a in args]
            if func == "min":
                low = None if any(v is None for v in lows) else min(lows)  # type: ignore[type-var]
                known = [v for v in highs if v is not None]
                high = min(known) if known else None
            else:
                known = [v for v in lows if v is not None]
                low = max(known) if known else None
                high = None if any(v is None for v in highs) else max(highs)  # type: ignore[type-var]
            return Domain("number", None, low, high, all(a.integral for a in args), any_blank)
        if func == "abs":
            inner = args[0]
            return Domain("number", None, Decimal(0), None, inner.integral, inner.maybe_blank)
        if func == "round":
            places = node.args[1]
            whole = isinstance(places, ex.Literal) and isinstance(places.value, Decimal) and places.value <= 0
            return Domain("number", None, None, None, whole or args[0].integral, any_blank)
    return UNKNOWN


# =========================================================================== row shapes


@dataclass(frozen=True)
class Shape:
    """What a row's condition says, as far as the analysis understands it.

    constraints: name → allowed values (a `NumSet` for numbers, a frozenset for enum/boolean/text);
    a constrained name never matches blank. exact: the condition is *exactly* the conjunction of
    the constraints (nothing opaque was dropped). never: a literal `false` conjunct.
    """

    constraints: Mapping[str, object]
    exact: bool
    never: bool = False

    @property
    def catch_all(self) -> bool:
        return self.exact and not self.never and not self.constraints


def _conjuncts(node: ex.Node) -> tuple[ex.Node, ...]:
    if isinstance(node, ex.And):
        return tuple(c for item in node.items for c in _conjuncts(item))
    return (node,)


def _shape(node: ex.Node | None, doms: Mapping[str, Domain]) -> Shape:
    if node is None:
        return Shape({}, True)
    constraints: dict[str, object] = {}
    exact, never = True, False
    for conjunct in _conjuncts(node):
        if isinstance(conjunct, ex.Literal) and isinstance(conjunct.value, bool):
            never = never or not conjunct.value
            continue
        atom = _atom(conjunct, doms)
        if atom is None:
            exact = False
            continue
        name, allowed = atom
        if name in constraints:
            before = constraints[name]
            if isinstance(before, frozenset) != isinstance(allowed, frozenset):
                exact = False
                continue
            allowed = before & allowed if isinstance(allowed, frozenset) else _intersect_sets(before, allowed)  # type: ignore[operator, arg-type]
        constraints[name] = allowed
    return Shape(constraints, exact, never)


def _atom(node: ex.Node, doms: Mapping[str, Domain]) -> tuple[str, object] | None:
    """`name <op> constant` and friends → (name, allowed values); anything else → None (opaque)."""
    if isinstance(node, ex.Compare):
        flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}
        if isinstance(node.left, ex.Name) and isinstance(node.right, ex.Literal):
            name, op, value = node.left.name, node.op, node.right.value
        elif isinstance(node.left, ex.Literal) and isinstance(node.right, ex.Name):
            name, op, value = node.right.name, flip[node.op], node.left.value
        else:
            return None
        dom = doms.get(name, UNKNOWN)
        if dom.kind == "number" and isinstance(value, Decimal):
            return name, _compare_set(op, value)
        if dom.kind in ("text", "boolean") and isinstance(value, (str, bool)) and op in ("=", "!="):
            if (dom.kind == "boolean") != isinstance(value, bool):
                return None
            if op == "=":
                return name, frozenset({value})
            if dom.points is not None:
                return name, frozenset(dom.points - {value})
        return None
    if isinstance(node, ex.InList) and isinstance(node.item, ex.Name):
        if not all(isinstance(o, ex.Literal) for o in node.options):
            return None
        name = node.item.name
        dom = doms.get(name, UNKNOWN)
        values = [o.value for o in node.options]  # type: ignore[attr-defined]
        if dom.kind == "number" and all(isinstance(v, Decimal) and not isinstance(v, bool) for v in values):
            points: NumSet = tuple(Interval(v, True, v, True) for v in values)  # type: ignore[arg-type]
            return name, (_complement(points) if node.negated else points)
        if dom.kind == "text" and all(isinstance(v, str) for v in values):
            if not node.negated:
                return name, frozenset(values)
            if dom.points is not None:
                return name, frozenset(dom.points - set(values))
        return None
    if isinstance(node, ex.InRange) and isinstance(node.item, ex.Name):
        low, high = node.low, node.high
        dom = doms.get(node.item.name, UNKNOWN)
        if (dom.kind == "number" and isinstance(low, ex.Literal) and isinstance(high, ex.Literal)
                and isinstance(low.value, Decimal) and isinstance(high.value, Decimal)):
            span: NumSet = (Interval(low.value, node.low_closed, high.value, node.high_closed),)
            return node.item.name, (_complement(span) if node.negated else span)
        return None
    if isinstance(node, ex.Name):
        if doms.get(node.name, UNKNOWN).kind == "boolean":
            return node.name, frozenset({True})
        return None
    if isinstance(node, ex.Not):
        # `not x` is true for a blank x, so the complement is exact only for names never blank.
        inner = _atom(node.operand, doms)
        if inner is None or doms.get(inner[0], UNKNOWN).maybe_blank:
            return None
        name, allowed = inner
        if isinstance(allowed, frozenset):
            points = doms[name].points
            return None if points is None else (name, frozenset(points - allowed))
        return name, _complement(allowed)  # type: ignore[arg-type]
    return None


# =========================================================================== value atoms
_BLANK = ("<blank>",)  # sentinels: not str/bool/Decimal, so they never equal a real value
_OTHER = ("<other>",)


def _atoms(name: str, constraints: Sequence[object], dom: Domain, with_blank: bool) -> list[object]:
    """The distinct kinds of value `name` can take, as far as `constraints` can tell them apart."""
    out: list[object]
    if dom.kind == "number":
        sets = [c for c in constraints if not isinstance(c, frozenset)]
        extra = [e for e in (dom.low, dom.high) if e is not None]
        out = [p for p in _pieces(sets, extra) if dom.feasible(p)]  # type: ignore[arg-type]
    else:
        mentioned = {v for c in constraints if isinstance(c, frozenset) for v in c}
        if dom.points is not None:
            out = sorted(dom.points, key=_sort_key)
        else:
            out = sorted(mentioned, key=_sort_key) + [_OTHER]
    if with_blank and dom.maybe_blank:
        out.append(_BLANK)
    return out


def _admits(allowed: object, atom: object) -> bool:
    if atom is _BLANK or atom is _OTHER:
        return False
    if isinstance(atom, Interval):
        return not isinstance(allowed, frozenset) and _in_numset(atom.sample(), allowed)  # type: ignore[arg-type]
    return isinstance(allowed, frozenset) and atom in allowed


class _Budget:
    def __init__(self) -> None:
        self.left = _MAX_WORK

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _covered(target: Shape, earlier: Sequence[Shape], doms: Mapping[str, Domain]) -> bool | None:
    """Every value combination `target` may match is matched by one of `earlier` (exact rows).

    True/False, or None when the question is too big to settle (then no claim is made).
    Blank is a value of its own here: a row constraining x never matches a blank x.
    """
    names = sorted({n for s in (target, *earlier) for n in s.constraints})
    atoms: dict[str, list[object]] = {}
    for name in names:
        cons = [s.constraints[name] for s in (target, *earlier) if name in s.constraints]
        dom = doms.get(name, UNKNOWN)
        if dom.kind == "unknown":
            return None
        atoms[name] = _atoms(name, cons, dom, with_blank=True)
    budget = _Budget()

    def walk(index: int, rows: Sequence[Shape]) -> bool | None:
        if not rows:
            return False
        if index == len(names):
            return True
        name = names[index]
        for atom in atoms[name]:
            if not budget.spend():
                return None
            if name in target.constraints and not _admits(target.constraints[name], atom):
                continue
            keep = [r for r in rows if name not in r.constraints or _admits(r.constraints[name], atom)]
            result = walk(index + 1, keep)
            if result is not True:
                return result
        return True

    return walk(0, list(earlier))


def _empty_name(shape: Shape, doms: Mapping[str, Domain]) -> str | None:
    """A constrained name no possible value satisfies (the row can never fire), if any."""
    for name, allowed in shape.constraints.items():
        dom = doms.get(name, UNKNOWN)
        if dom.kind == "unknown":
            continue
        atoms = _atoms(name, [allowed], dom, with_blank=False)
        if not any(_admits(allowed, a) for a in atoms):
            return name
    return None


def _merge_uncovered(pieces: Sequence[Interval], covered: Sequence[bool], dom: Domain) -> list[Interval]:
    """Consecutive uncovered pieces → maximal intervals that contain a possible value, clipped."""
    out: list[Interval] = []
    run: list[Interval] = []
    for piece, cov in [*zip(pieces, covered), (None, True)]:
        if not cov:
            run.append(piece)  # type: ignore[arg-type]
            continue
        if run and any(dom.feasible(p) for p in run):
            joined = Interval(run[0].low, run[0].low_closed, run[-1].high, run[-1].high_closed)
            out.append(dom.clip(joined))
        run = []
    return out


def _describe_region(region: Interval, dom: Domain) -> str:
    if dom.points is not None:
        values = sorted(p for p in dom.points if isinstance(p, Decimal) and region.contains(p))
        shown = ", ".join(_num(v) for v in values[:8]) + (", …" if len(values) > 8 else "")
        return f"{{{shown}}}" if values else region.render()
    if dom.integral:
        whole = region.whole_numbers()
        if whole is not None:
            first, last = whole
            if first is not None and first == last:
                return f"{{{first}}}"
            low = "(-∞" if first is None else f"[{first}"
            high = "∞)" if last is None else f"{last}]"
            return f"{low}, {high} (whole numbers)"
    return region.render()


def _describe_allowed(name: str, allowed: object, dom: Domain) -> str:
    if isinstance(allowed, frozenset):
        values = sorted(allowed, key=_sort_key)
        if len(values) == 1:
            return f"{name} = {_lit(values[0])}"
        return f"{name} in [{', '.join(_lit(v) for v in values)}]"
    pieces = _pieces([allowed])  # type: ignore[list-item]
    inside = [_admits(allowed, p) for p in pieces]
    regions = _merge_uncovered(pieces, [not i for i in inside], dom)
    return f"{name} in " + " ∪ ".join(_describe_region(r, dom) for r in regions) if regions else name


def _sort_key(value: object) -> tuple[str, object]:
    return (type(value).__name__, value if isinstance(value, (Decimal, str, bool)) else repr(value))


def _lit(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _num(value)
    return repr(value)


# =========================================================================== the checker
@dataclass
class _Expr:
    """One parsed expression and where it lives."""

    node: ex.Node
    text: str
    line: int | None
    where: str  # e.g. "rule CG-1a when"
    decision: int | None = None  # index of the decision it belongs to
    assign_index: int | None = None  # compute: position of the assignment it computes
    role: str = "value"  # 'condition' | 'value' | 'required' | 'default'


@dataclass
class _Table:
    decision: DecisionDef
    index: int
    conditions: list[ex.Node | None] = field(default_factory=list)
    broken: bool = False  # a condition failed to parse or type-check: no table claims


class _Checker:
    def __init__(self, definition: RulesetDef) -> None:
        self.d = definition
        self.file = definition.path
        self.problems: list[Problem] = []
        self.inputs = {i.key: i for i in definition.inputs}
        self.params = {p.key: p for p in definition.parameters}
        self.bound: dict[str, object] = {}
        self.used_params: set[str] = set()
        self.exprs: list[_Expr] = []
        self.setters: dict[str, list[int]] = {}  # fact → decisions that set it, in order
        self.types: dict[str, str] = {}
        self.enum_flagged: set[int] = set()  # id() of condition nodes with an enum-value problem
        self.bad_exprs: set[int] = set()  # id() of nodes that did not type-check

    # ------------------------------------------------------------------ plumbing
    def add(self, line: int | None, code: str, message: str, fix: str, severity: str = "error") -> None:
        self.problems.append(Problem(self.file, line, code, message, fix, severity))

    def parse(self, text: object, line: int | None, where: str) -> ex.Node | None:
        try:
            return ex.parse_expression(text if isinstance(text, str) else str(text))
        except ExpressionError as exc:
            message = str(exc)
            pointer = ""
            if exc.position is not None and isinstance(text, str):
                pointer = f" at character {exc.position + 1} of {text!r}"
            code = "unknown-name" if message.startswith("unknown function") else "syntax"
            hint = _hint(message)
            self.add(line, code, f"{where}: {message}{pointer}",
                     hint or "fix the expression (grammar and functions: docs/DESIGN.md 'Expression language')")
            return None

    def run(self) -> list[Problem]:
        self.bind_parameters()
        self.collect_expressions()
        self.compute_types()
        self.check_names_and_order()
        self.check_types()
        self.check_enum_values()
        self.check_outputs()
        self.check_parameters_used()
        self.analyse_tables()
        return self.problems

    # ------------------------------------------------------------------ parameters
    def bind_parameters(self) -> None:
        for param in self.d.parameters:
            if param.default is None:
                continue  # the loader already reports a missing default
            if param.type not in PARAM_KIND:
                continue  # the loader already reports the unknown type
            try:
                self.bound[param.key] = coerce_param(self.d, param.key, param.default)
            except ParameterError as exc:
                self.add(param.line, "type", f"parameter {param.key!r}: default {param.default!r} is not a "
                         f"valid {param.type}: {exc}", f"give a {param.type} default or change its type")
            except (TierError, ArithmeticError, TypeError, ValueError):
                continue  # e.g. a non-numeric min/max, which the loader reports
        for key in self.params:
            if key in self.inputs:
                self.add(self.params[key].line, "name-clash", f"{key!r} is both a parameter and an input",
                         "rename one of them: a name must mean one thing in expressions")

    # ------------------------------------------------------------------ expressions
    def collect_expressions(self) -> None:
        for inp in self.d.inputs:
            if isinstance(inp.required, str):
                node = self.parse(inp.required, inp.line, f"input {inp.key!r} required")
                if node is not None:
                    self.exprs.append(_Expr(node, inp.required, inp.line, f"input {inp.key!r} required",
                                            role="required"))
            if inp.default_expr is not None:
                node = self.parse(inp.default_expr, inp.line, f"input {inp.key!r} default_expr")
                if node is not None:
                    self.exprs.append(_Expr(node, str(inp.default_expr), inp.line,
                                            f"input {inp.key!r} default_expr", role="default"))
            self.check_literal_default(inp)
        for check in self.d.checks:
            if check.fails_when is not None:
                node = self.parse(check.fails_when, check.line, f"check {check.code!r} fails_when")
                if node is not None:
                    self.exprs.append(_Expr(node, str(check.fails_when), check.line,
                                            f"check {check.code!r} fails_when", role="condition"))
        self.tables: list[_Table] = []
        for index, decision in enumerate(self.d.decisions):
            table = _Table(decision, index)
            self.tables.append(table)
            for rule in decision.rules:
                lines = dict(rule.then_lines)
                if rule.when is not None:
                    node = self.parse(rule.when, rule.line, f"rule {rule.id} when")
                    table.conditions.append(node)
                    if node is None:
                        table.broken = True
                    else:
                        self.exprs.append(_Expr(node, rule.when, rule.line, f"rule {rule.id} when", index,
                                                role="condition"))
                else:
                    table.conditions.append(None)
                for position, (key, value) in enumerate(rule.then):
                    self.setters.setdefault(key, [])
                    if index not in self.setters[key]:
                        self.setters[key].append(index)
                    if isinstance(value, (list, dict, set)):
                        self.add(lines.get(key) or rule.line, "type",
                                 f"rule {rule.id}: the value of {key!r} is a {type(value).__name__}, not one value",
                                 "write one literal (text, number, true/false, date) or an expression starting with =")
                    if isinstance(value, str) and value.startswith("="):
                        line = lines.get(key) or rule.line
                        where = f"{'decision' if decision.hit == 'compute' else 'rule'} {rule.id} {key}"
                        node = self.parse(value[1:], line, where)
                        if node is not None:
                            self.exprs.append(_Expr(node, value[1:], line, where, index,
                                                    position if decision.hit == "compute" else None))

    def check_literal_default(self, inp: InputDef) -> None:
        if inp.default is None or inp.type not in FACT_KIND:
            return
        if inp.type == "enum":
            if inp.values and str(inp.default).strip() not in inp.values:
                self.add(inp.line, "enum-value", f"input {inp.key!r}: default {inp.default!r} is not one of its values",
                         _choices_fix(str(inp.default), inp.values))
            return
        if inp.type == "text":
            return
        _value, problem = parse_value(inp.default, inp.type)
        if problem:
            self.add(inp.line, "type", f"input {inp.key!r}: default {inp.default!r} is not a valid {inp.type}",
                     f"write a {inp.type} default (or use default_expr for a computed one)")

    # ------------------------------------------------------------------ types
    def base_types(self) -> dict[str, str]:
        types = {k: FACT_KIND.get(i.type, "text") for k, i in self.inputs.items()}
        for key, param in self.params.items():
            types.setdefault(key, PARAM_KIND.get(param.type, "number"))
        return types

    def compute_types(self) -> None:
        """Kinds of every derived fact (a fixed point, so out-of-order reads still get types)."""
        types = self.base_types()
        facts: dict[str, str] = {}
        for _round in range(3):
            changed = False
            for decision in self.d.decisions:
                for rule in decision.rules:
                    for key, value in rule.then:
                        kind = self.kind_of_value(value, {**types, **facts})
                        if kind is None:
                            continue
                        if decision.hit == "collect" and decision.aggregate in ("sum", "count"):
                            kind = "number"
                        elif decision.hit == "collect" and decision.aggregate == "list":
                            kind = "text"
                        if facts.get(key) in (None, "blank") and kind != facts.get(key):
                            facts[key] = kind
                            changed = True
            if not changed:
                break
        self.fact_kinds = facts
        self.types = {**types, **{k: v for k, v in facts.items() if k not in types}}

    def kind_of_value(self, value: object, types: Mapping[str, str]) -> str | None:
        if isinstance(value, str) and value.startswith("="):
            try:
                node = ex.parse_expression(value[1:])
                if isinstance(node, ex.Literal):
                    return _value_domain(node.value).kind
                return ex.infer_type(node, types)
            except (ExpressionError, RecursionError):
                return None
        try:
            return _value_domain(ex.Literal(value).value).kind
        except ExpressionError:
            return "text"

    # ------------------------------------------------------------------ names and order
    def check_names_and_order(self) -> None:
        known = set(self.inputs) | set(self.params) | set(self.setters)
        edges: dict[int, dict[int, tuple[str, int | None]]] = {}
        for item in self.exprs:
            names = ex.free_names(item.node)
            self.used_params |= names & set(self.params)
            for name in sorted(names):
                if name in self.inputs or name in self.params:
                    continue
                if name not in known:
                    self.unknown_name(item, name, known)
                    continue
                if item.decision is None:  # input/check expressions run before any decision
                    self.add(item.line, "unknown-name",
                             f"{item.where}: {name!r} is derived by a decision, but inputs and checks are "
                             "evaluated before the decisions",
                             "use only inputs and parameters here (or move the logic into a decision)")
                    self.bad_exprs.add(id(item.node))
                    continue
                for setter in self.setters[name]:
                    if setter != item.decision:
                        edges.setdefault(item.decision, {}).setdefault(setter, (name, item.line))
                if item.decision in self.setters[name]:
                    self.self_reference(item, name)
        self.check_order(edges)
        for key, setters in self.setters.items():
            if key in self.inputs:
                self.add(self.d.decisions[setters[0]].line, "name-clash",
                         f"decision {self.d.decisions[setters[0]].id} sets {key!r}, which is an input",
                         "decisions cannot overwrite inputs: give the derived fact its own name")
            elif key in self.params:
                self.add(self.d.decisions[setters[0]].line, "name-clash",
                         f"decision {self.d.decisions[setters[0]].id} sets {key!r}, which is a parameter",
                         "give the derived fact its own name (parameters are constants in expressions)")
            if len(setters) > 1:
                ids = [self.d.decisions[i].id for i in setters]
                self.add(self.d.decisions[setters[1]].line, "redefined",
                         f"fact {key!r} is set by decisions {', '.join(ids)}; each derived fact is computed once",
                         f"set {key!r} in one decision only (rename one of them)")
        for inp in self.d.inputs:
            if inp.blank_note is not None:
                self.check_template(inp.blank_note, inp.line, f"input {inp.key!r} blank_note")
        for decision in self.d.decisions:
            for rule in decision.rules:
                if rule.note is not None:
                    self.check_template(rule.note, rule.line, f"rule {rule.id} note")
        for check in self.d.checks:
            for key in check.all_blank:
                if key not in self.inputs:
                    self.add(check.line, "unknown-name", f"check {check.code!r}: all_blank names {key!r}, "
                             "which is not an input", _name_fix(key, self.inputs))

    def unknown_name(self, item: _Expr, name: str, known: set[str]) -> None:
        self.bad_exprs.add(id(item.node))
        scope = set(self.inputs) | set(self.params)
        if item.decision is not None:
            scope |= {k for k, s in self.setters.items() if min(s) < item.decision}
        self.add(item.line, "unknown-name", f"{item.where}: unknown name {name!r} in {item.text!r}",
                 _name_fix(name, sorted(scope) or sorted(known)))

    def self_reference(self, item: _Expr, name: str) -> None:
        decision = self.d.decisions[item.decision]  # type: ignore[index]
        if decision.hit == "compute":
            keys = [k for k, _v in decision.rules[0].then]
            position = keys.index(name)
            if item.assign_index is not None and position < item.assign_index:
                return  # reads an earlier assignment of the same compute: fine
            if item.assign_index is not None and position > item.assign_index:
                self.add(item.line, "use-before-define",
                         f"{item.where}: reads {name!r}, which this compute sets further down",
                         f"move `{name}` above `{keys[item.assign_index]}` in decision {decision.id}")
                return
        self.bad_exprs.add(id(item.node))
        self.add(item.line, "cycle", f"{item.where}: reads {name!r}, which decision {decision.id} itself sets "
                 f"({decision.id} → {decision.id})",
                 f"compute {name!r} from inputs or earlier facts; a decision cannot read its own result")

    def check_order(self, edges: Mapping[int, Mapping[int, tuple[str, int | None]]]) -> None:
        components = _strongly_connected(len(self.d.decisions), {k: set(v) for k, v in edges.items()})
        component_of = {node: index for index, comp in enumerate(components) for node in comp}
        for comp in components:
            if len(comp) < 2:
                continue
            start = min(comp)
            path = _cycle_path(start, comp, edges)
            ids = " → ".join(self.d.decisions[i].id for i in path)
            reads = "; ".join(f"{self.d.decisions[a].id} reads {edges[a][b][0]!r} set by {self.d.decisions[b].id}"
                              for a, b in itertools.pairwise(path))
            self.add(self.d.decisions[start].line, "cycle",
                     f"decisions depend on each other in a loop: {ids} ({reads})",
                     "break the loop: derive one of these facts from inputs or earlier facts only, "
                     "or merge the decisions into one")
        for reader, targets in sorted(edges.items()):
            for setter, (name, line) in sorted(targets.items()):
                if setter > reader and component_of[setter] != component_of[reader]:
                    first, later = self.d.decisions[reader], self.d.decisions[setter]
                    self.add(line, "use-before-define",
                             f"decision {first.id} reads {name!r}, which decision {later.id} (line {later.line}) "
                             "sets later; decisions run in file order",
                             f"move decision {later.id} above {first.id} (or {first.id} below {later.id})")

    def check_template(self, template: object, line: int | None, where: str) -> None:
        if not isinstance(template, str):
            self.add(line, "type", f"{where} must be text, got {template!r}",
                     "write the note code as text, e.g. 'DEFAULT:x={param}'")
            return
        for name in _PLACEHOLDER.findall(template):
            if name in self.params:
                self.used_params.add(name)
            else:
                self.add(line, "unknown-name", f"{where}: placeholder {{{name}}} names no parameter",
                         _name_fix(name, self.params))

    # ------------------------------------------------------------------ type check
    def check_types(self) -> None:
        for item in self.exprs:
            if id(item.node) in self.bad_exprs or ex.free_names(item.node) - set(self.types):
                continue  # already reported, or reads a fact whose type depends on a loop
            try:
                kind = ex.infer_type(item.node, self.types)
            except ExpressionError as exc:
                self.bad_exprs.add(id(item.node))
                pointer = f" (at character {exc.position + 1})" if exc.position is not None else ""
                self.add(item.line, "type", f"{item.where}: {exc}{pointer} in {item.text!r}",
                         _hint(str(exc)) or _type_fix(str(exc)))
                continue
            if item.role in ("condition", "required") and kind != "boolean":
                self.bad_exprs.add(id(item.node))
                self.add(item.line, "type", f"{item.where}: {item.text!r} is {_article(kind)}, not a condition",
                         "write a comparison that is true or false, e.g. `x > 0`")
        for inp in self.d.inputs:  # a computed default must fit its input
            if inp.default_expr is None:
                continue
            item = next((e for e in self.exprs if e.role == "default" and e.where == f"input {inp.key!r} default_expr"), None)
            if item is None or id(item.node) in self.bad_exprs:
                continue
            try:
                kind = ex.infer_type(item.node, self.types)
            except ExpressionError:
                continue
            want = FACT_KIND.get(inp.type)
            if want and kind != want:
                self.add(inp.line, "type", f"input {inp.key!r} is {_article(want)} but its default_expr is {_article(kind)}",
                         f"make default_expr give {_article(want)}")
        self.check_fact_kinds()

    def check_fact_kinds(self) -> None:
        seen: dict[str, tuple[str, str]] = {}  # fact → (kind, rule id)
        for decision in self.d.decisions:
            if decision.hit == "collect" and decision.aggregate in ("sum", "min", "max"):
                for rule in decision.rules:
                    for key, value in rule.then:
                        kind = self.kind_of_value(value, self.types)
                        if kind not in (None, "blank", "number") and not (decision.aggregate != "sum" and kind == "date"):
                            self.add(dict(rule.then_lines).get(key) or rule.line, "type",
                                     f"rule {rule.id}: aggregate {decision.aggregate} of {key!r} needs numbers, "
                                     f"got {_article(kind)}", "set a number here or use aggregate: list")
                continue
            if decision.hit == "collect":
                continue
            for rule in decision.rules:
                for key, value in rule.then:
                    kind = self.kind_of_value(value, self.types)
                    if kind in (None, "blank"):
                        continue
                    if key in seen and seen[key][0] != kind:
                        self.add(dict(rule.then_lines).get(key) or rule.line, "type",
                                 f"rule {rule.id} sets {key!r} to {_article(kind)}, but rule {seen[key][1]} "
                                 f"sets it to {_article(seen[key][0])}",
                                 f"give {key!r} one type everywhere (quote numbers meant as text)")
                    seen.setdefault(key, (kind, rule.id))
        for out in self.d.outputs:
            kind = seen.get(out.key, (self.fact_kinds.get(out.key), ""))[0]
            want = {"number": "number", "integer": "number", "date": "date", "boolean": "boolean"}.get(out.type)
            if want and kind not in (None, "blank", want):
                self.add(out.line, "type", f"output {out.key!r} is declared {out.type} but is set to {_article(kind)}",
                         f"declare it `type: {'text' if kind == 'text' else kind}` or set {_article(want)}")

    # ------------------------------------------------------------------ enum literals
    def check_enum_values(self) -> None:
        enums = {k: i for k, i in self.inputs.items() if i.type == "enum" and i.values}
        if not enums:
            return
        for item in self.exprs:
            for node, name, literal in _literal_comparisons(item.node):
                if name not in enums or not isinstance(literal.value, str):
                    continue
                if literal.value.strip() not in enums[name].values:
                    self.enum_flagged.add(id(item.node))
                    self.add(item.line, "enum-value",
                             f"{item.where}: {name!r} is never {literal.value!r}; its values are "
                             f"{', '.join(enums[name].values)}", _choices_fix(literal.value, enums[name].values))

    # ------------------------------------------------------------------ outputs, notes, parameters
    def check_outputs(self) -> None:
        for out in self.d.outputs:
            if out.key and out.key not in self.setters and out.key not in self.inputs:
                self.add(out.line, "unknown-output", f"output {out.key!r} is declared but no decision sets it",
                         _name_fix(out.key, self.setters, default="set it in a decision's `then`/`compute`, "
                                   "or remove the output"))
        for decision in self.d.decisions:
            for rule in decision.rules:
                at = rule.note_at
                if at is not None and (not isinstance(at, str) or at not in self.inputs):
                    self.add(rule.line, "unknown-output", f"rule {rule.id}: note_at {at!r} is not an input key",
                             _name_fix(str(at), self.inputs))
        for check in self.d.checks:
            if check.at and check.at not in self.inputs:
                self.add(check.line, "unknown-output", f"check {check.code!r}: at {check.at!r} is not an input key",
                         _name_fix(check.at, self.inputs))

    def check_parameters_used(self) -> None:
        for key, param in self.params.items():
            if key not in self.used_params:
                self.add(param.line, "unused-param", f"parameter {key!r} is never used",
                         "use it in a condition or value, or remove it", severity="warning")

    # ------------------------------------------------------------------ tables
    def domains(self, wide: bool) -> dict[str, Domain]:
        """Domains of inputs, then of every fact in decision order (abstract evaluation).

        Conditions are analysed with parameters at their defaults, but a parameter used as a
        *value* (a weight, a multiplier) can be overridden per call: `wide` lets such
        parameters range over their declared bounds. Unreachable rows are judged on the wide
        domains (so a row that an override can reach is never called dead) and gaps/overlaps on
        the default ones (so a value only an override can produce is never called a gap).
        """
        doms: dict[str, Domain] = {}
        if wide:
            doms.update({key: self.param_domain(param) for key, param in self.params.items()
                         if key not in self.inputs and key not in self.setters})
        for inp in self.d.inputs:
            doms[inp.key] = self.input_domain(inp)
        for inp in self.d.inputs:  # computed defaults may read other inputs
            if inp.default_expr is not None:
                item = next((e for e in self.exprs if e.where == f"input {inp.key!r} default_expr"), None)
                if item is None or id(item.node) in self.bad_exprs:
                    doms[inp.key] = replace(doms[inp.key], points=None, low=None, high=None, integral=False)
                else:
                    extra = _abstract(item.node if wide else self.bind(item.node), doms)
                    doms[inp.key] = replace(_union(doms[inp.key], extra), maybe_blank=doms[inp.key].maybe_blank)
        for table in self.tables:
            decision = table.decision
            if decision.hit == "compute":
                rule = decision.rules[0]
                for key, value in rule.then:
                    doms[key] = self.value_domain(value, doms, wide)
                continue
            per_key: dict[str, list[Domain]] = {}
            setters: dict[str, int] = {}
            for rule in decision.rules:
                for key, value in rule.then:
                    per_key.setdefault(key, []).append(self.value_domain(value, doms, wide))
                    setters[key] = setters.get(key, 0) + 1
            complete = any(c is None or (isinstance(c, ex.Literal) and c.value is True) for c in table.conditions)
            for key, values in per_key.items():
                if decision.hit == "collect":
                    doms[key] = self.aggregate_domain(decision.aggregate, values)
                    continue
                dom = _union_all(values)
                if not complete or setters[key] < len(decision.rules):
                    dom = replace(dom, maybe_blank=True)
                doms[key] = dom
        return doms

    def param_domain(self, param: ParamDef) -> Domain:
        kind = PARAM_KIND.get(param.type, "unknown")
        if kind == "number":
            low, high = _decimal_or_none(param.min), _decimal_or_none(param.max)
            return Domain("number", None, low, high, param.type == "integer", False)
        if kind == "boolean":
            return BOOLEAN
        return Domain(kind, maybe_blank=False)

    def input_domain(self, inp: InputDef) -> Domain:
        never_blank = inp.required is True or inp.default is not None or inp.default_expr is not None
        kind = FACT_KIND.get(inp.type, "unknown")
        if kind == "number":
            low, high = _decimal_or_none(inp.min), _decimal_or_none(inp.max)
            dom = Domain("number", None, low, high, inp.type == "integer", not never_blank)
            if inp.default is not None:
                value, problem = parse_value(inp.default, inp.type)
                if problem or not isinstance(value, Decimal):
                    return replace(dom, low=None, high=None, integral=False)
                dom = replace(_union(dom, _value_domain(value)), maybe_blank=not never_blank)
            return dom
        if kind == "boolean":
            return replace(BOOLEAN, maybe_blank=not never_blank)
        if inp.type == "enum" and inp.values:
            return Domain("text", frozenset(inp.values), maybe_blank=not never_blank)
        return Domain(kind, maybe_blank=not never_blank)

    def value_domain(self, value: object, doms: Mapping[str, Domain], wide: bool) -> Domain:
        if isinstance(value, str) and value.startswith("="):
            try:
                node = ex.parse_expression(value[1:])
            except ExpressionError:
                return UNKNOWN
            if ex.free_names(node) - set(doms) - set(self.bound):
                return UNKNOWN
            return _abstract(node if wide else self.bind(node), doms)
        try:
            return _value_domain(ex.Literal(value).value)
        except ExpressionError:
            return UNKNOWN

    @staticmethod
    def aggregate_domain(how: str | None, values: Sequence[Domain]) -> Domain:
        if how == "count":
            return Domain("number", None, Decimal(0), Decimal(len(values)), True, False)
        if how in ("min", "max"):
            return replace(_union_all(list(values)), maybe_blank=True)
        if how == "sum":
            if values and all(v.kind == "number" for v in values):
                low = sum((min(Decimal(0), v.low) for v in values if v.low is not None), Decimal(0))
                high = sum((max(Decimal(0), v.high) for v in values if v.high is not None), Decimal(0))
                return Domain("number", None, None if any(v.low is None for v in values) else low,
                              None if any(v.high is None for v in values) else high,
                              all(v.integral for v in values), True)
            return Domain("number")
        return Domain("text")

    def bind(self, node: ex.Node) -> ex.Node:
        names = ex.free_names(node)
        values = {k: v for k, v in self.bound.items() if k in names and k not in self.setters}
        return ex.substitute(node, values) if values else node

    def analyse_tables(self) -> None:
        doms, wide = self.domains(wide=False), self.domains(wide=True)
        free = self.free_inputs()
        for table in self.tables:
            decision = table.decision
            if decision.hit == "compute" or table.broken:
                continue
            rules = decision.rules
            shapes: list[Shape | None] = []
            for rule, node in zip(rules, table.conditions):
                if node is not None and id(node) in self.bad_exprs:
                    shapes.append(None)  # already reported; claim nothing about it
                    continue
                shapes.append(_shape(None if node is None else self.bind(node), doms))
            self.unreachable_rows(table, [None if s is None else _shape(self.bind(n) if n is not None else None, wide)
                                          for s, n in zip(shapes, table.conditions)], wide)
            if any(s is None for s in shapes):
                continue
            self.gaps(table, shapes, doms, free)  # type: ignore[arg-type]
            if decision.hit == "unique":
                self.overlaps(table, shapes, doms, free)  # type: ignore[arg-type]

    def free_inputs(self) -> set[str]:
        """Inputs whose values vary independently of each other (no cross-field check ties them)."""
        tied: set[str] = set()
        for item in self.exprs:
            if item.role == "condition" and item.decision is None:
                names = ex.free_names(item.node) & set(self.inputs)
                if len(names) > 1:
                    tied |= names
        return set(self.inputs) - tied

    def unreachable_rows(self, table: _Table, shapes: Sequence[Shape | None], doms: Mapping[str, Domain]) -> None:
        decision = table.decision
        ordered = decision.hit in ("first", "unique")
        for index, (rule, shape) in enumerate(zip(decision.rules, shapes)):
            if shape is None:
                continue
            node = table.conditions[index]
            if node is not None and id(node) in self.enum_flagged:
                continue
            if shape.never:
                self.add(rule.line, "unreachable", f"rule {rule.id} can never fire: its condition is always false",
                         "fix or remove the condition (a literal `false` disables the row)")
                continue
            empty = _empty_name(shape, doms)
            if empty is not None:
                dom = doms.get(empty, UNKNOWN)
                allowed = shape.constraints[empty]
                fix = "fix the bounds (e.g. a swapped < / >) or remove the rule"
                if isinstance(allowed, frozenset) and dom.points:
                    words = [v for v in allowed if isinstance(v, str)]
                    close = difflib.get_close_matches(words[0], [v for v in dom.points if isinstance(v, str)],
                                                      n=1, cutoff=0.3) if words else []
                    fix = (f"did you mean {close[0]!r}? " if close else "") + \
                        f"compare {empty} with a value it can take, or remove the rule"
                self.add(rule.line, "unreachable",
                         f"rule {rule.id} can never fire: no possible value of {empty!r} satisfies "
                         f"{_text(node)!r}{_domain_note(dom)}", fix)
                continue
            if not ordered or index == 0:
                continue
            earlier = [(r, s) for r, s in zip(decision.rules[:index], shapes[:index])
                       if s is not None and s.exact and not s.never]
            always = next((r for r, s in earlier if s.catch_all), None)
            if always is not None:
                self.add(rule.line, "unreachable",
                         f"rule {rule.id} can never fire: earlier rule {always.id} has no condition and always fires "
                         f"(hit: {decision.hit})",
                         f"move rule {always.id} to the end of decision {decision.id}, or give it a condition")
                continue
            if not earlier:
                continue
            if _covered(shape, [s for _r, s in earlier], doms) is True:
                touching = [r.id for r, s in earlier if _intersects(shape, s, doms)]
                self.add(rule.line, "unreachable",
                         f"rule {rule.id} can never fire: earlier rule(s) {', '.join(touching)} already match "
                         f"every value it matches (hit: {decision.hit})",
                         f"narrow the earlier rule(s), move {rule.id} above them, or remove it")

    def gaps(self, table: _Table, shapes: Sequence[Shape], doms: Mapping[str, Domain], free: set[str]) -> None:
        decision = table.decision
        if any(s.catch_all for s in shapes):
            return
        live = [s for s in shapes if not s.never]
        numeric = sorted({n for s in live for n, c in s.constraints.items()
                          if not isinstance(c, frozenset) and doms.get(n, UNKNOWN).kind == "number"})
        severity = "warning" if decision.hit == "collect" else "error"
        for name in numeric:
            dom = doms[name]
            cats = sorted({n for s in live for n, c in s.constraints.items() if isinstance(c, frozenset)})
            split = bool(cats) and name in free and all(c in free for c in cats)
            combos: list[dict[str, object]] = [{}]
            if split:
                atoms = {c: _atoms(c, [s.constraints[c] for s in live if c in s.constraints], doms[c], False)
                         for c in cats}
                count = math.prod(len(a) for a in atoms.values())
                if count <= _MAX_COMBOS:
                    combos = [dict(zip(cats, combo)) for combo in itertools.product(*(atoms[c] for c in cats))]
                else:
                    split = False
            for combo in combos:
                rows = [s for s in live if all(c not in s.constraints or _admits(s.constraints[c], v)
                                               for c, v in combo.items())] if split else live
                sets = [s.constraints.get(name, (FULL,)) for s in rows]
                if any(isinstance(c, frozenset) for c in sets):
                    continue
                pieces = [p for p in _pieces(sets, [e for e in (dom.low, dom.high) if e is not None])]  # type: ignore[arg-type]
                covered = [any(_in_numset(p.sample(), c) for c in sets) for p in pieces]  # type: ignore[arg-type]
                regions = _merge_uncovered(pieces, covered, dom)
                if not regions:
                    continue
                shown = " and ".join(_describe_region(r, dom) for r in regions)
                when = ""
                if split and combo:
                    when = " when " + " and ".join(
                        f"{c} is another value" if v is _OTHER else f"{c} = {_lit(v)}" for c, v in combo.items())
                scope = f" within its domain {_domain_text(dom)}" if (dom.low is not None or dom.high is not None) else ""
                self.add(decision.line, "gap",
                         f"decision {decision.id}: values of {name!r} in {shown}{when} match no row{scope}; "
                         f"its outputs stay blank there",
                         f"add a row covering {name} in {shown}, widen a neighbouring row's bound, or end "
                         f"decision {decision.id} with a catch-all row (no `when`)", severity)

    def overlaps(self, table: _Table, shapes: Sequence[Shape], doms: Mapping[str, Domain], free: set[str]) -> None:
        decision = table.decision
        rules = decision.rules
        for j in range(len(rules)):
            for i in range(j):
                first, second = shapes[i], shapes[j]
                if not (first.exact and second.exact) or first.never or second.never:
                    continue
                shared = _meet(first, second)
                if shared is None:
                    continue
                if len(shared) > 1 and not all(n in free for n in shared):
                    continue  # derived facts may be correlated: the combination might never occur
                if any(doms.get(n, UNKNOWN).kind == "unknown" for n in shared):
                    continue
                if any(not any(_admits(c, a) for a in _atoms(n, [c], doms[n], False)) for n, c in shared.items()):
                    continue
                region = " and ".join(_describe_allowed(n, c, doms[n]) for n, c in sorted(shared.items())) \
                    or "every value"
                self.add(rules[j].line, "overlap",
                         f"decision {decision.id} (hit: unique): rules {rules[i].id} and {rules[j].id} both match "
                         f"when {region}",
                         "make the conditions disjoint (e.g. change one bound from <= to <), or use hit: first "
                         "if the order is meant to decide")
                break  # one overlap per row is enough to act on


# =========================================================================== helpers
def _meet(first: Shape, second: Shape) -> dict[str, object] | None:
    out: dict[str, object] = {}
    for name in set(first.constraints) | set(second.constraints):
        a, b = first.constraints.get(name), second.constraints.get(name)
        if a is None or b is None:
            out[name] = a if b is None else b
        elif isinstance(a, frozenset) and isinstance(b, frozenset):
            out[name] = a & b
        elif not isinstance(a, frozenset) and not isinstance(b, frozenset):
            out[name] = _intersect_sets(a, b)  # type: ignore[arg-type]
        else:
            return None
    return out


def _intersects(first: Shape, second: Shape, doms: Mapping[str, Domain]) -> bool:
    shared = _meet(first, second)
    if shared is None:
        return True
    for name, allowed in shared.items():
        dom = doms.get(name, UNKNOWN)
        if dom.kind == "unknown":
            continue
        if not any(_admits(allowed, a) for a in _atoms(name, [allowed], dom, False)):
            return False
    return True


def _literal_comparisons(node: ex.Node) -> Iterator[tuple[ex.Node, str, ex.Literal]]:
    """(node, name, literal) for every `name = 'lit'` / `name in ['a', 'b']` in a tree."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ex.Compare) and current.op in ("=", "!="):
            if isinstance(current.left, ex.Name) and isinstance(current.right, ex.Literal):
                yield current, current.left.name, current.right
            elif isinstance(current.right, ex.Name) and isinstance(current.left, ex.Literal):
                yield current, current.right.name, current.left
        elif isinstance(current, ex.InList) and isinstance(current.item, ex.Name):
            for option in current.options:
                if isinstance(option, ex.Literal):
                    yield current, current.item.name, option
        stack.extend(_children(current))


def _children(node: ex.Node) -> tuple[ex.Node, ...]:
    if isinstance(node, (ex.Neg, ex.Not)):
        return (node.operand,)
    if isinstance(node, (ex.BinOp, ex.Compare)):
        return (node.left, node.right)
    if isinstance(node, ex.InList):
        return (node.item, *node.options)
    if isinstance(node, ex.InRange):
        return (node.item, node.low, node.high)
    if isinstance(node, (ex.And, ex.Or)):
        return node.items
    if isinstance(node, ex.Call):
        return node.args
    return ()


def _strongly_connected(count: int, edges: Mapping[int, set[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative (a ruleset may have hundreds of decisions)."""
    index_of: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in range(count):
        if root in index_of:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index_of[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                out.append(sorted(comp))
    return out


def _cycle_path(start: int, comp: Sequence[int], edges: Mapping[int, Mapping[int, object]]) -> list[int]:
    """A shortest loop start → … → start inside one strongly connected component."""
    members = set(comp)
    previous: dict[int, int] = {}
    queue = [start]
    seen = {start}
    while queue:
        node = queue.pop(0)
        for child in sorted(edges.get(node, {})):
            if child not in members:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in seen:
                seen.add(child)
                previous[child] = node
                queue.append(child)
    return [start, start]  # pragma: no cover - a component of two or more always has a loop


def _decimal_or_none(value: object) -> Decimal | None:
    """A YAML bound → Decimal; anything else (the loader reports it) → unbounded."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return number if number.is_finite() else None


def _text(node: ex.Node | None) -> str:
    return "" if node is None else ex.to_text(node)


def _domain_text(dom: Domain) -> str:
    low = "(-∞" if dom.low is None else f"[{_num(dom.low)}"
    high = "∞)" if dom.high is None else f"{_num(dom.high)}]"
    return f"{low}, {high}"


def _domain_note(dom: Domain) -> str:
    if dom.points is not None and dom.kind in ("number", "text", "boolean"):
        values = sorted(dom.points, key=_sort_key)
        shown = ", ".join(_lit(v) for v in values[:10]) + (", …" if len(values) > 10 else "")
        return f" (it can only be {shown})"
    if dom.kind == "number" and (dom.low is not None or dom.high is not None):
        return f" (its values lie in {_domain_text(dom)}{', whole numbers' if dom.integral else ''})"
    return ""


def _article(kind: str) -> str:
    return {"number": "a number", "date": "a date", "boolean": "a condition (true/false)", "text": "text",
            "blank": "blank"}.get(kind, kind)


def _hint(message: str) -> str:
    match = re.search(r"Did you mean [^?]*\?", message)
    return match.group(0).replace("Did you mean", "did you mean") if match else ""


def _type_fix(message: str) -> str:
    if "compare" in message:
        return "compare values of the same kind (a date with a date, a number with a number)"
    if "only = and !=" in message:
        return "text and conditions support only = and != (use in [...] for several values)"
    return "make both sides the same kind of value (see docs/DESIGN.md 'Expression language')"


def _name_fix(name: str, choices: Iterable[str], default: str = "") -> str:
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=3)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    if default:
        return default
    shown = ", ".join(options[:12]) + (", …" if len(options) > 12 else "")
    return f"use one of: {shown}" if options else "declare it first"


def _choices_fix(value: str, values: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(values), n=1)
    prefix = f"did you mean {close[0]!r}? " if close else ""
    return f"{prefix}use one of: {', '.join(values)} (or add {value!r} to the input's values)"

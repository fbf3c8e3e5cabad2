"""The rete engine: every decision-table row is a durable-rules rule, and derived facts chain.

This is the only module that imports durable-rules (its C core, `durable_rules_engine`). A
compiled ruleset is translated once into a durable ruleset named by `compiled.digest`:

* each decision is a *stage*; each of its rows is a durable rule whose condition is the row's
  `when`, translated from the expression tree into durable's JSON condition language; a stage
  also has a catch-all rule of the lowest salience ("no row matched": outputs stay blank), so
  every event is handled and the chain never stalls;
* a table row enters stage k as an *event* carrying the facts stage k's conditions read; durable's
  rete matches it and fires the rule's action, which evaluates the assignments
  (`expr.eval_scalar`, exact Decimals), records the rule id and asserts the event of stage k+1 —
  derived facts trigger the next decision's rules (forward chaining);
* first/unique hit: the rules of a stage get increasing salience (`pri`). An event is consumed by
  the first rule that fires on it, and durable always starts the pending action of highest
  salience, so only the first matching row fires (tested, also at 100k rows);
* collect: one stage per row of the table (that rule + a catch-all), so every matching row fires;
  the outputs are aggregated after the last one, as `engine.scalar` does;
* compute decisions are one unconditional rule.

Rows a stage cannot tell apart share one event, and the fired rule is applied to each of them
(`_Batch.events`): for every property the stage's conditions read, both rows are blank or lie in
the same region of the constants the conditions compare it with (below, equal to, between,
above), so every comparison — hence durable's choice of rule — comes out the same. This is exact,
and it is what makes the engine fast: credit's CG-5 reads only `total_score` against three
thresholds, so 1,000 rows send it at most 7 events. Assignments are then evaluated per row, with
the row's own values, by functions compiled once (`expr.compile_scalar`). Every rule has `cap`
set, so one action call takes all its matches of a batch: a few dozen Python callbacks per 1,000
rows.

What durable cannot express natively is computed in Python while a stage's event is built, and
sent as a generated fact: comparisons of two facts (durable reads an uninitialised value when the
right-hand fact is absent — verified: a blank gave random matches), function calls and arithmetic
(`a + b > 10` sends the value of `a + b`; `is_blank(x)` sends only whether x is blank), and a
condition too large for one rule. Comparisons are exact: numbers are sent as strings whose byte
order is their numeric order (`_number_code`) and durable compares strings with `strncmp`
(verified), so `0.70 > 0.70` is false and `10000.01 > 10000` true with no float in between — no
row needs the scalar fall-back. Dates are days since 1970-01-01, booleans JSON booleans, text the
hex of its UTF-8 (no JSON escape can change an equality or an order).

Quirks of durable-rules 2.0.28 absorbed here (/work/shared/spec/DURABLE-NOTES.md; each has a test
in tests/test_rete.py):

* Its Python layer (`durable.engine.Host`) starts two timer threads per host that never stop,
  lets `post_batch` return before other sessions' rules fired, wraps every message of every
  action in a `Content` (a misspelt key gives None), deletes the `run` keys of the caller's
  definitions, refuses to register a name twice, and swallows exceptions raised in actions into
  the session state. On a 9-stage chain of 1,000-row batches it ran at ~7,000 rows/s where the
  same work driven directly ran at ~12,600. So this module drives the C core itself,
  synchronously: assert a batch of events, then start/complete actions in the one session until
  none is left. No thread is started; frames are plain dicts read with `[...]` (a missing key is
  a KeyError, not None); definitions are JSON text built here; exceptions propagate.
* Message ids are 32-bit FNV-1a hashes. Two live messages with colliding ids fail the batch
  ("already observed"), strand the others in the session, and deleting that session afterwards
  aborts the process (verified). Ids come from a pool whose hashes are pairwise distinct
  (`_id_pool`); without an `id`, durable would hash the content, so equal rows would collide.
* Property names are matched by their 32-bit hash as well: generated names are checked distinct.
* One event matching both branches of an `$or` reaches its action twice; it is applied once.
* At most 1,024 sessions per ruleset (the 1,025th raises MemoryError): one session is used and
  deleted after every batch, also when the batch fails.
* A batch where one event matches no rule raises for the whole batch: the catch-all rules make
  that impossible, and it is checked anyway.
* Every call checks an invariant: n rows in, n results out, every row through every stage exactly
  once; anything else is a `TierError`, never a silently missing row.

The C core is not thread-safe: calls are serialised by one module-level lock.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

from engine import expr as ex
from engine.compile import CompiledDecision, CompiledRuleset
from engine.errors import ExpressionError, RuleEngineUnavailable, TierError
from engine.scalar import RowDecision, aggregate

__all__ = ["BATCH_ROWS", "RuleEngineUnavailable", "decide_rows", "rete_available"]

BATCH_ROWS = 1_000  # rows per durable session
_CAP = 65_535  # frames handed to one action call (durable's maximum), so a rule fires once per stage
_MAX_RULESETS = 32  # registered rulesets kept per process; the least recently used is deleted
_SESSION = "tierbook"  # the one durable session (sid), deleted after every batch
_MAX_LEAVES = 48  # comparisons per durable rule; a larger condition is evaluated in Python
_OFFSET = 50_000  # decimal exponents in [-50000, 49999] are encodable (5 digits)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_RESERVED = ("id", "sid", "st", "r")  # event properties that are not facts
_CODES = {1: "an event matched no rule", 2: "an event id was already observed (hash collision)",
          3: "an event was deferred"}

_UNAVAILABLE = ("rete engine unavailable: durable-rules cannot be imported ({reason}); install it with "
                "`pip install durable-rules==2.0.28` (on Windows it needs Microsoft C++ Build Tools; "
                "Python 3.13+ is not supported), or use engine='vector'")

_LOCK = threading.Lock()
_core: ModuleType | None = None
_registry: OrderedDict[str, _Registered] = OrderedDict()


# --------------------------------------------------------------------------- availability
def _load_core() -> ModuleType:
    """Import durable's C core once; raise RuleEngineUnavailable with one clear line if it fails."""
    reason = rete_available()
    if reason is not None or _core is None:
        raise RuleEngineUnavailable(reason or _UNAVAILABLE.format(reason="unknown"))
    return _core


def rete_available() -> str | None:
    """None when the rete engine can run here, else one line saying why not and what to do.

    Importing this module never imports durable-rules, so a machine without it (or on Python 3.13,
    where the 2.0.28 extension fails to load) can still use the other engines.
    """
    global _core
    if _core is not None:
        return None
    try:
        import durable_rules_engine as core  # the C rete core shipped by durable-rules
    except (ImportError, OSError, SystemError) as exc:  # not installed, or a build that cannot load
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, ModuleNotFoundError):
            text = "not installed"
        return _UNAVAILABLE.format(reason=text.splitlines()[0])
    missing = [name for name in ("create_ruleset", "delete_ruleset", "assert_events", "start_action_for_state",
                                 "complete_and_start_action", "abandon_action", "delete_state")
               if not hasattr(core, name)]
    if missing:
        return _UNAVAILABLE.format(reason=f"this durable-rules lacks {', '.join(missing)}; version 2.0.28 "
                                   "is the one supported")
    _core = core
    return None


# --------------------------------------------------------------------------- exact encodings
_COMPLEMENT_DIGITS = str.maketrans("0123456789", "9876543210")


_number_codes: dict[Decimal, str] = {}


def _encode_number(value: Decimal) -> str | None:
    """`_number_code`, remembered: rows repeat the same amounts and thresholds (equal values, equal codes).

    NaN is blank, as eval_scalar reads it (None: the property is left out).
    """
    if value.is_nan():
        return None
    code = _number_codes.get(value)
    if code is None:
        if len(_number_codes) >= 200_000:
            _number_codes.clear()
        code = _number_codes[value] = _number_code(value)
    return code


def _number_code(value: Decimal) -> str:
    """A Decimal as a string whose byte order is its numeric order (equal values, equal strings).

    Layout: a sign class (`A` negative < `B` zero < `C` positive), five digits of the decimal
    exponent (biased; complemented for negatives), then the significant digits without trailing
    zeros (complemented and closed by `~` for negatives, so a longer negative is smaller). A
    shorter positive sorts first because durable compares the closing quote (0x22), lower than any
    digit — the same as Python's "prefix is smaller" rule, which the tests rely on.
    """
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise TierError(f"rete: cannot encode the number {value!r} (not finite)")
    text = "".join(map(str, digits)).rstrip("0")
    if not text:
        return "B"
    magnitude = len(digits) + exponent  # value = 0.d1d2… × 10^magnitude
    if not -_OFFSET <= magnitude < _OFFSET:
        raise TierError(f"rete: the number {value} is too large or too small to compare exactly")
    if sign:
        return f"A{_OFFSET - 1 - magnitude:05d}{text.translate(_COMPLEMENT_DIGITS)}~"
    return f"C{magnitude + _OFFSET:05d}{text}"


def _encode_date(value: dt.date) -> int:
    return value.toordinal() - _EPOCH_ORDINAL


def _encode_text(value: str) -> str:
    return "t" + value.encode("utf-8").hex()


def _encode_boolean(value: bool) -> bool:
    return value


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "number": _encode_number, "date": _encode_date, "text": _encode_text, "boolean": _encode_boolean,
}
_KIND_OF_TYPE = {Decimal: "number", dt.date: "date", str: "text", bool: "boolean"}
_TYPE_OF_KIND: dict[str, type] = {kind: python for python, kind in _KIND_OF_TYPE.items()}


def _value_kind(value: object) -> str | None:
    return _KIND_OF_TYPE.get(type(value))


def _normalise(value: object) -> object:
    """A value in the scalar value model (what eval_scalar would see for a name)."""
    if value is None or type(value) in _KIND_OF_TYPE:
        return value
    return ex.Literal(value).value


def _fnv1a_32(text: str) -> int:
    """durable's `fnv1Hash32` (FNV-1a over the bytes, each as a *signed* char)."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        if byte >= 0x80:
            byte |= 0xFFFFFF00
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


_ids: list[str] = []
_id_hashes: set[int] = {_fnv1a_32(f"sid-{_SESSION}")}  # the session's own state message
_id_next = 0


def _id_pool(count: int) -> list[str]:
    """At least `count` message ids whose durable hashes are pairwise distinct.

    durable indexes a session's messages by the 32-bit hash of their id and rejects the second of
    two colliding ids (and, in a batch, strands the rest). The pool is grown lazily and reused by
    every batch, which is safe because the session is deleted after each one.
    """
    global _id_next
    while len(_ids) < count:
        candidate = format(_id_next, "x")
        _id_next += 1
        digest = _fnv1a_32(candidate)
        if digest not in _id_hashes:
            _id_hashes.add(digest)
            _ids.append(candidate)
    return _ids


# --------------------------------------------------------------------------- translation
class _Constant:
    """A condition known at translation time (a literal, or simplified to one)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_ALWAYS = _Constant("ALWAYS")
_NEVER = _Constant("NEVER")
_OPERATOR = {"=": None, "==": None, "!=": "$neq", "<>": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt",
             ">=": "$gte"}
_NEGATED = {"=": "!=", "==": "!=", "!=": "=", "<>": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_FLIPPED = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _all(parts: Sequence[object]) -> object:
    kept: list[object] = []
    for part in parts:
        if part is _NEVER:
            return _NEVER
        if part is _ALWAYS:
            continue
        if isinstance(part, dict) and list(part) == ["$and"]:
            kept.extend(part["$and"])
        else:
            kept.append(part)
    if not kept:
        return _ALWAYS
    return kept[0] if len(kept) == 1 else {"$and": kept}


def _any(parts: Sequence[object]) -> object:
    kept: list[object] = []
    for part in parts:
        if part is _ALWAYS:
            return _ALWAYS
        if part is _NEVER:
            continue
        if isinstance(part, dict) and list(part) == ["$or"]:
            kept.extend(part["$or"])
        else:
            kept.append(part)
    if not kept:
        return _NEVER
    return kept[0] if len(kept) == 1 else {"$or": kept}


def _leaves(condition: object) -> int:
    if isinstance(condition, dict) and len(condition) == 1:
        (key, value), = condition.items()
        if key in ("$and", "$or"):
            return sum(_leaves(part) for part in value)
    return 1


@dataclass(frozen=True)
class _Field:
    """One property of a stage's event: a fact, a computed value, or a computed yes/no flag."""

    name: str  # durable property name
    source: str | ex.Node  # fact name, or the expression evaluated in Python
    kind: str  # 'number' | 'date' | 'text' | 'boolean' (how the value is encoded)
    flag: bool  # True: the property is `eval_scalar(source) is True`, always present
    presence: bool = False  # True: the property is `true` when the value is not blank, else absent
    # derived, looked up once because they are used for every row:
    fact: bool = dataclasses.field(init=False)  # the source is a fact name
    python_type: type = dataclasses.field(init=False)  # the Python type of the kind's values
    encode: Callable[[Any], Any] = dataclasses.field(init=False, compare=False)
    compute: ex.ScalarFunction | None = dataclasses.field(init=False, compare=False)  # source, compiled

    def __post_init__(self) -> None:
        object.__setattr__(self, "fact", isinstance(self.source, str))
        object.__setattr__(self, "python_type", _TYPE_OF_KIND[self.kind])
        object.__setattr__(self, "encode", _ENCODERS[self.kind])
        object.__setattr__(self, "compute", None if self.fact else ex.compile_scalar(self.source))  # type: ignore[arg-type]


class _Translator:
    """Expression tree → durable JSON condition, for "is True" (positive) and its complement.

    Null semantics mirror `expr.eval_scalar`: a comparison with a blank is false, so a blank fact
    is simply absent from the event (durable then matches no comparison on it) and the complement
    of `x < 5` is `x >= 5 or x absent`; `and`/`or` are two-valued; `not x` is `x is not True`; an
    `in` list or range with a blank item is false even when negated.
    """

    def __init__(self, fact_types: Mapping[str, str]) -> None:
        self.fact_types = dict(fact_types)
        self.fields: dict[tuple[str, object], _Field] = {}
        self.used: dict[str, _Field] = {}
        self.cuts: dict[str, set[object]] = {}  # field name → the constants this stage compares it with
        self._hashes = {_fnv1a_32(name) for name in _RESERVED}
        self._count = 0

    def begin_stage(self) -> None:
        self.used, self.cuts = {}, {}

    def _cut(self, field: _Field, values: Sequence[object]) -> None:
        if field.kind != "boolean":
            self.cuts.setdefault(field.name, set()).update(values)

    # ----- fields
    def _new_name(self) -> str:
        while True:
            name = f"f{self._count}"
            self._count += 1
            digest = _fnv1a_32(name)
            if digest not in self._hashes:  # durable matches property names by hash
                self._hashes.add(digest)
                return name

    def _field(self, key: tuple[str, object], source: str | ex.Node, kind: str, flag: bool,
               presence: bool = False) -> _Field:
        found = self.fields.get(key)
        if found is None:
            found = self.fields[key] = _Field(self._new_name(), source, kind, flag, presence)
        self.used[found.name] = found
        return found

    def _flag(self, node: ex.Node, positive: bool) -> dict:
        field = self._field(("flag", node), node, "boolean", True)
        return {field.name: positive}

    def _operand(self, node: ex.Node, kind: str) -> _Field:
        if isinstance(node, ex.Name):
            return self._field(("fact", node.name), node.name, kind, False)
        return self._field(("value", node), node, kind, False)

    def _kind(self, node: ex.Node) -> str | None:
        if isinstance(node, ex.Name):
            return self.fact_types.get(node.name)
        try:
            return ex.infer_type(node, self.fact_types)
        except ExpressionError:
            return None

    # ----- conditions
    def condition(self, node: ex.Node | None) -> object:
        """A rule's `when` as a durable condition, _ALWAYS or _NEVER (None: no `when`)."""
        if node is None:
            return _ALWAYS
        used = dict(self.used)
        result = self.translate(node, True)
        if isinstance(result, dict) and _leaves(result) > _MAX_LEAVES:
            self.used = used  # the facts of the abandoned translation need not be sent
            return self._flag(node, True)
        return result

    def translate(self, node: ex.Node, positive: bool) -> object:
        node = self._fold(node)
        if isinstance(node, ex.Literal):
            return _ALWAYS if (node.value is True) is positive else _NEVER
        if isinstance(node, ex.And):
            parts = [self.translate(item, positive) for item in node.items]
            return _all(parts) if positive else _any(parts)
        if isinstance(node, ex.Or):
            parts = [self.translate(item, positive) for item in node.items]
            return _any(parts) if positive else _all(parts)
        if isinstance(node, ex.Not):
            return self.translate(node.operand, not positive)
        if isinstance(node, ex.Name) and self.fact_types.get(node.name) == "boolean":
            field = self._operand(node, "boolean")
            return {field.name: True} if positive else _any([{"$nex": {field.name: 1}}, {field.name: False}])
        if isinstance(node, ex.Compare):
            return self._compare(node, positive)
        if isinstance(node, ex.InList):
            return self._in_list(node, positive)
        if isinstance(node, ex.InRange):
            return self._in_range(node, positive)
        if isinstance(node, ex.Call) and node.func in ("is_blank", "present") and len(node.args) == 1:
            # only whether the value is blank is sent, so rows that differ otherwise share an event
            argument = node.args[0]
            source = argument.name if isinstance(argument, ex.Name) else argument
            field = self._field(("presence", source), source, "boolean", False, presence=True)
            absent = (node.func == "is_blank") is positive
            return {"$nex" if absent else "$ex": {field.name: 1}}
        return self._flag(node, positive)  # calls, arithmetic, names of other kinds

    def _comparable(self, item: ex.Node, literals: Sequence[object]) -> str | None:
        """The kind both sides share when durable can compare them natively, else None."""
        kind = self._kind(item)
        if kind not in _ENCODERS:
            return None
        if any(_value_kind(value) != kind for value in literals):
            return None
        return kind

    @staticmethod
    def _test(name: str, op: str, encoded: object) -> dict:
        operator = _OPERATOR[op]
        return {name: encoded} if operator is None else {operator: {name: encoded}}

    @staticmethod
    def _fold(node: ex.Node) -> ex.Node:
        """A sub-expression that reads no fact (`date(2024, 1, 1)`) as the literal it always is."""
        if isinstance(node, ex.Literal) or ex.free_names(node):
            return node
        try:
            return ex.Literal(ex.eval_scalar(node, {}), node.pos)
        except ExpressionError:
            return node  # left to Python at run time, where it fails as eval_scalar would

    def _compare(self, node: ex.Compare, positive: bool) -> object:
        op, left, right = node.op, self._fold(node.left), self._fold(node.right)
        if op not in _OPERATOR:
            return self._flag(node, positive)
        if isinstance(left, ex.Literal) and not isinstance(right, ex.Literal):
            op, left, right = _FLIPPED[op], right, left
        if isinstance(left, ex.Literal) or not isinstance(right, ex.Literal):
            # two literals (folded by eval), or two facts: durable cannot compare a fact with a
            # possibly-absent fact safely, so the comparison is a flag computed in Python.
            return self._flag(node, positive)
        value = right.value
        if value is None:  # a comparison with blank is false
            return _NEVER if positive else _ALWAYS
        kind = self._comparable(left, [value])
        if kind is None or (kind == "boolean" and op not in ("=", "==", "!=", "<>")):
            return self._flag(node, positive)
        field = self._operand(left, kind)
        self._cut(field, [value])
        encoded = _ENCODERS[kind](value)
        if positive:
            return self._test(field.name, op, encoded)
        return _any([{"$nex": {field.name: 1}}, self._test(field.name, _NEGATED[op], encoded)])

    def _in_list(self, node: ex.InList, positive: bool) -> object:
        options = [self._fold(option) for option in node.options]
        if not all(isinstance(option, ex.Literal) for option in options):
            return self._flag(node, positive)
        values = [option.value for option in options if option.value is not None]  # type: ignore[attr-defined]
        kind = self._comparable(node.item, values)
        if kind is None:
            return self._flag(node, positive)
        field = self._operand(node.item, kind)
        self._cut(field, values)
        encoded = [_ENCODERS[kind](value) for value in values]
        member = _any([{field.name: code} for code in encoded])
        outside = _all([{"$neq": {field.name: code}} for code in encoded] or [{"$ex": {field.name: 1}}])
        absent = {"$nex": {field.name: 1}}
        if not node.negated:
            return member if positive else _any([absent, outside])
        return outside if positive else _any([absent, member])

    def _in_range(self, node: ex.InRange, positive: bool) -> object:
        low, high = self._fold(node.low), self._fold(node.high)
        if not isinstance(low, ex.Literal) or not isinstance(high, ex.Literal):
            return self._flag(node, positive)
        if low.value is None or high.value is None:  # blank bound: false, negated or not
            return _NEVER if positive else _ALWAYS
        kind = self._comparable(node.item, [low.value, high.value])
        if kind is None or kind == "boolean":
            return self._flag(node, positive)
        field = self._operand(node.item, kind)
        self._cut(field, [low.value, high.value])
        lo, hi = _ENCODERS[kind](low.value), _ENCODERS[kind](high.value)
        above = self._test(field.name, ">=" if node.low_closed else ">", lo)
        below = self._test(field.name, "<=" if node.high_closed else "<", hi)
        not_above = self._test(field.name, "<" if node.low_closed else "<=", lo)
        not_below = self._test(field.name, ">" if node.high_closed else ">=", hi)
        absent = {"$nex": {field.name: 1}}
        if not node.negated:
            return _all([above, below]) if positive else _any([absent, not_above, not_below])
        return _any([not_above, not_below]) if positive else _any([absent, _all([above, below])])


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Stage:
    """One step of a row's chain: a decision, or one row of a collect decision."""

    decision_index: int
    decision: CompiledDecision
    mode: str  # 'first' (first/unique) | 'compute' | 'collect'
    last: bool  # the decision's last stage: collect aggregates here
    fields: tuple[_Field, ...]
    # per field, the sorted constants the stage's conditions compare it with (None: group by value)
    cuts: tuple[tuple[object, ...] | None, ...]


@dataclass(frozen=True)
class _Action:
    """What firing one durable rule does to each row of its events (precomputed: it runs per row)."""

    stage: int
    rule: int | None  # index into the decision's rules; None: no rule of the stage matched
    mode: str  # the stage's mode
    resets: tuple[str, ...] = ()  # first/unique: the decision's outputs, blank unless assigned
    assignments: tuple[tuple[str, ex.Node], ...] = ()  # evaluated in order (later read earlier)
    trace: tuple[int, int] | None = None  # (decision index, rule index) for the fired-rule trace
    # the assignments compiled once (ex.compile_scalar): they run for every row the rule fires on
    compiled: tuple[tuple[str, ex.ScalarFunction], ...] = dataclasses.field(init=False, compare=False)
    # the names whose values (after the resets) determine every assigned value; None: only literals
    reads: tuple[str, ...] | None = dataclasses.field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", tuple((key, ex.compile_scalar(node)) for key, node in self.assignments))
        reads: dict[str, None] = {}
        assigned: set[str] = set()
        for key, node in self.assignments:
            reads.update((name, None) for name in sorted(ex.free_names(node)) if name not in assigned)
            assigned.add(key)
        computed = any(not isinstance(node, ex.Literal) for _key, node in self.assignments)
        object.__setattr__(self, "reads", tuple(reads) if computed else None)


_ABSENT = object()  # a name missing from a row: evaluating reports it (the key then never matches)


class _Memo:
    """One rule's assigned values by the values they read, within one `decide_rows` call.

    `plan_due_date = add_days(next_quarter_start(as_of_date), 9)` has a handful of distinct
    inputs in a table of 100,000 rows: each is evaluated once. Equal values give equal results
    (the functions are pure; a Decimal's exponent — 1.0 vs 1.00 — can differ, which no output
    shows: numbers leave the engine as floats and text uses normalised digits). A rule whose rows
    rarely repeat (ratios, amounts) stops looking after a trial, so it costs nothing.
    """

    TRIAL = 2_000  # lookups before deciding whether the rule is worth remembering
    MIN_HITS = 0.25  # share of hits it needs to stay on
    MAX_ENTRIES = 100_000

    __slots__ = ("table", "lookups", "hits", "on")

    def __init__(self) -> None:
        self.table: dict[tuple[object, ...], tuple[object, ...]] = {}
        self.lookups = 0
        self.hits = 0
        self.on = True

    def settle(self) -> None:
        if self.lookups >= self.TRIAL and self.hits < self.MIN_HITS * self.lookups:
            self.on, self.table = False, {}
        elif len(self.table) > self.MAX_ENTRIES:
            self.table.clear()


@dataclass(frozen=True)
class _Plan:
    name: str
    definition: str  # durable ruleset JSON
    stages: tuple[_Stage, ...]
    actions: Mapping[str, _Action]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class _Registered:
    digest: str
    plan: _Plan
    handle: int


def _plan(compiled: CompiledRuleset) -> _Plan:
    """Translate a compiled ruleset into durable rules, one stage per decision (collect: per row)."""
    translator = _Translator(compiled.fact_types)
    stages: list[_Stage] = []
    rules: dict[str, dict] = {}
    actions: dict[str, _Action] = {}

    def add_stage(index: int, decision: CompiledDecision, mode: str, last: bool,
                  tests: Sequence[tuple[int, object]]) -> None:
        number = len(stages)
        priority = 0
        for rule_index, condition in tests:
            if condition is _NEVER:
                continue  # a row whose condition can never hold is never a rule
            name = f"s{number}r{rule_index}"
            rules[name] = {"all": [{"m": _all([{"st": number}, condition])}], "pri": priority, "cap": _CAP}
            rule = decision.rules[rule_index] if decision.rules else None
            if mode == "collect" or rule is None:
                actions[name] = _Action(number, rule_index, mode)
            else:
                actions[name] = _Action(number, rule_index, mode,
                                        resets=decision.outputs if mode == "first" else (),
                                        assignments=rule.assignments, trace=(index, rule_index))
            priority += 1
            if condition is _ALWAYS:
                break  # later rows are shadowed, and nothing is left for the catch-all
        else:
            name = f"s{number}z"
            rules[name] = {"all": [{"m": {"st": number}}], "pri": priority, "cap": _CAP}
            actions[name] = _Action(number, None, mode, resets=decision.outputs if mode == "first" else ())
        fields = tuple(translator.used.values())
        if len(fields) + len(_RESERVED) > 250:  # durable: at most 255 properties per message
            raise TierError(f"rete: decision {decision.id} reads {len(fields)} facts; durable-rules "
                            "allows about 250 per event")
        cuts = tuple(tuple(sorted(translator.cuts[f.name])) if translator.cuts.get(f.name) else None  # type: ignore[type-var]
                     for f in fields)
        stages.append(_Stage(index, decision, mode, last, fields, cuts))

    for index, decision in enumerate(compiled.decisions):
        if decision.hit == "compute":
            translator.begin_stage()
            add_stage(index, decision, "compute", True, [(0, _ALWAYS)])
        elif decision.hit == "collect":
            for rule_index, rule in enumerate(decision.rules):
                translator.begin_stage()
                add_stage(index, decision, "collect", rule_index == len(decision.rules) - 1,
                          [(rule_index, translator.condition(rule.condition))])
            if not decision.rules:
                translator.begin_stage()
                add_stage(index, decision, "collect", True, [])
        else:
            translator.begin_stage()
            add_stage(index, decision, "first", True,
                      [(i, translator.condition(rule.condition)) for i, rule in enumerate(decision.rules)])
    if len(rules) > 4_000:
        raise TierError(f"rete: ruleset {compiled.id} needs {len(rules)} durable rules; durable-rules allows 4,096")
    outputs = tuple(dict.fromkeys(key for d in compiled.decisions for key in d.outputs))
    return _Plan(name=f"tierbook_{compiled.id}_{compiled.digest}", definition=json.dumps(rules, ensure_ascii=True),
                 stages=tuple(stages), actions=actions, outputs=outputs)


def _registered(core: ModuleType, compiled: CompiledRuleset) -> _Registered:
    """The ruleset's durable handle, registered on first use and kept (LRU) by digest.

    durable's Python host raises when a name is registered twice; here a digest seen before is
    simply reused, and a changed ruleset or parameter set has a new digest, hence a new ruleset.
    """
    entry = _registry.get(compiled.digest)
    if entry is not None:
        _registry.move_to_end(compiled.digest)
        return entry
    plan = _plan(compiled)
    try:
        handle = core.create_ruleset(plan.name, plan.definition)
    except Exception as exc:  # durable says only "error code: N"
        raise TierError(f"rete: durable-rules rejected the translation of ruleset {compiled.id!r} ({exc}); "
                        "this is a bug in engine/rete.py — use engine='vector' meanwhile") from exc
    entry = _registry[compiled.digest] = _Registered(compiled.digest, plan, handle)
    while len(_registry) > _MAX_RULESETS:
        _digest, old = _registry.popitem(last=False)
        core.delete_ruleset(old.handle)
    return entry


# --------------------------------------------------------------------------- running a batch
_LITERAL = ex.Literal


def _evaluate(node: ex.Node, env: Mapping[str, object]) -> object:
    """eval_scalar, without its set-up cost for the common `then: {grade: A}` literal."""
    if type(node) is _LITERAL:
        return node.value  # type: ignore[attr-defined]
    return ex.eval_scalar(node, env)


class _Batch:
    """The Python side of one durable session: each row's facts, trace and progress.

    Rows a stage cannot tell apart share one event (see `events`): durable matches it once and
    the fired rule is applied to each of those rows.
    """

    def __init__(self, plan: _Plan, rows: Sequence[Mapping[str, object]],
                 memos: dict[str, _Memo] | None = None) -> None:
        self.plan = plan
        self.memos = {} if memos is None else memos  # by action name, shared by the batches of a call
        self.envs = [dict(row) for row in rows]
        self.next_stage = [0] * len(rows)
        self.fired: list[list[tuple[int, int]]] = [[] for _ in rows]
        self.matched: list[list[int]] = [[] for _ in rows]
        self.members: list[list[list[int]]] = [[] for _ in plan.stages]  # stage → event → rows
        self.ids = _id_pool(len(rows) * max(1, len(plan.stages)))

    def events(self, rows: Sequence[int], number: int) -> list[dict[str, object]]:
        """The events that bring `rows` into stage `number`: rows the stage cannot tell apart share one.

        Two rows are alike for a stage when, for every property its conditions read, they are
        both blank or both in the same *region* of the constants the conditions compare that
        property with: below the first, equal to one, between two neighbours, above the last
        (booleans: the same value). Every comparison of the stage then has the same outcome for
        both, so durable would fire the same rule for either: the group sends one event, with the
        values of its first row, and the fired rule is applied to each row of the group with that
        row's own values. CG-5 reads `total_score` against 3 thresholds, so a batch of 1,000 rows
        sends it at most 7 events whatever the scores.
        """
        stage = self.plan.stages[number]
        plan = tuple(zip(stage.fields, stage.cuts))
        envs = self.envs
        groups: dict[tuple[object, ...], list[int]] = {}
        leaders: dict[tuple[object, ...], list[object]] = {}
        for row in rows:
            env = envs[row]
            values: list[object] = []
            regions: list[object] = []
            for field, cuts in plan:
                if field.flag:
                    value = field.compute(env) is True  # type: ignore[misc]
                    values.append(value)
                    regions.append(value)
                    continue
                if field.fact:
                    try:
                        value = env[field.source]  # type: ignore[index]
                    except KeyError:  # eval_scalar would fail the same way
                        raise ExpressionError(f"unknown name {field.source!r} (read by decision "
                                              f"{stage.decision.id})") from None
                else:
                    value = field.compute(env)  # type: ignore[misc]
                if type(value) is Decimal and not value.is_finite():  # type: ignore[union-attr]
                    value = ex.Literal(value).value  # as eval_scalar reads it: NaN is blank, ±Infinity an error
                if value is None:  # blank: absent, so every comparison on it is false
                    values.append(None)
                    regions.append(None)
                    continue
                if field.presence:
                    values.append(True)
                    regions.append(True)
                    continue
                if type(value) is not field.python_type:
                    value = self.checked(value, field, stage)
                values.append(value)
                if cuts is None:
                    regions.append(value)
                else:
                    at = bisect_left(cuts, value)
                    regions.append(2 * at + 1 if at < len(cuts) and cuts[at] == value else 2 * at)
            key = tuple(regions)
            group = groups.get(key)
            if group is None:
                groups[key] = [row]
                leaders[key] = values
            else:
                group.append(row)
        members = self.members[number]
        base = number * len(envs)
        out = []
        for key, group in groups.items():
            index = len(members)
            members.append(group)
            event: dict[str, object] = {"id": self.ids[base + index], "sid": _SESSION, "st": number, "r": index}
            for (field, _cuts), value in zip(plan, leaders[key]):
                if value is not None:
                    event[field.name] = value if field.flag or field.presence else field.encode(value)
            out.append(event)
        return out

    @staticmethod
    def checked(value: object, field: _Field, stage: _Stage) -> object:
        """A value not of its field's Python type: normalised like eval_scalar would, or an error."""
        value = _normalise(value)
        if type(value) is not field.python_type:
            what = field.source if isinstance(field.source, str) else ex.to_text(field.source)
            raise TierError(f"rete: {what} is {_value_kind(value)} ({value!r}) in decision {stage.decision.id} "
                            f"but the ruleset declares it {field.kind}")
        return value

    def fire(self, action: _Action, row: int) -> None:
        """Collect: note a matching row; after the decision's last row, aggregate as engine.scalar does."""
        stage = self.plan.stages[action.stage]
        if action.rule is not None:
            self.matched[row].append(action.rule)
        if not stage.last:
            return
        decision, env = stage.decision, self.envs[row]
        matched, self.matched[row] = self.matched[row], []
        for key in decision.outputs:
            env[key] = None
        for key in decision.outputs:
            values = [_evaluate(node, env) for index in matched
                      for k, node in decision.rules[index].assignments if k == key]
            env[key] = aggregate(decision.aggregate, values)
        self.fired[row].extend((stage.decision_index, index) for index in matched)

    def handle(self, name: str, action: _Action, frames: Sequence[Mapping[str, Any]]) -> list[int]:
        """Apply a fired rule to the rows of its frames; the rows that go on to the next stage."""
        number = action.stage
        members = self.members[number]
        next_stage, envs, fired = self.next_stage, self.envs, self.fired
        collect = action.mode == "collect"
        resets, assignments, trace, reads = action.resets, action.compiled, action.trace, action.reads
        memo = None
        if reads is not None and not collect:
            memo = self.memos.get(name)
            if memo is None:
                memo = self.memos[name] = _Memo()
            if not memo.on:
                memo = None
        done: set[int] = set()
        following: list[int] = []
        for frame in frames:
            index = frame["m"]["r"]
            if index in done:
                continue  # one event matched through two branches of an `$or`: it fires once
            done.add(index)
            rows = members[index]
            for row in rows:
                if next_stage[row] != number:
                    raise TierError(f"rete: row {row} reached stage {number} out of order (expected "
                                    f"{next_stage[row]}): a rule fired twice or a row was lost")
                next_stage[row] = number + 1
                if collect:
                    self.fire(action, row)
                    continue
                env = envs[row]
                for key in resets:
                    env[key] = None
                if memo is None:
                    for key, compute in assignments:
                        env[key] = compute(env)
                else:
                    seen = tuple([env.get(name, _ABSENT) for name in reads])  # type: ignore[union-attr]
                    memo.lookups += 1
                    try:
                        values = memo.table.get(seen)
                    except TypeError:  # an unhashable value (not of the value model): no memo for it
                        seen, values = None, None
                    if values is None:
                        for key, compute in assignments:
                            env[key] = compute(env)
                        if seen is not None:
                            memo.table[seen] = tuple([env[key] for key, _compute in assignments])
                    else:
                        memo.hits += 1
                        for (key, _compute), value in zip(assignments, values):
                            env[key] = value
                if trace is not None:
                    fired[row].append(trace)
            following.extend(rows)
        if memo is not None:
            memo.settle()
        return following

    def results(self) -> list[RowDecision]:
        done = len(self.plan.stages)
        stuck = [row for row, stage in enumerate(self.next_stage) if stage != done]
        if stuck:
            row = stuck[0]
            where = self.plan.stages[self.next_stage[row]].decision.id
            raise TierError(f"rete: {len(stuck)} of {len(self.envs)} rows did not finish their chain (first: row "
                            f"{row} stopped before decision {where}); no result is returned rather than a wrong one")
        by_index = {stage.decision_index: stage.decision for stage in self.plan.stages}
        outputs = self.plan.outputs
        traces: dict[tuple[tuple[int, int], ...], tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {}
        out = []
        for env, fired in zip(self.envs, self.fired):
            fired.sort()  # decision order, then rule order
            steps = tuple(fired)
            trace = traces.get(steps)  # rows of a batch share a few dozen distinct traces
            if trace is None:
                rules = [by_index[d].rules[r] for d, r in steps]
                trace = traces[steps] = (tuple(rule.id for rule in rules),
                                       tuple((rule.note_at or "", rule.note) for rule in rules if rule.note))
            out.append(RowDecision(facts={key: env.get(key) for key in outputs}, fired=trace[0], notes=trace[1]))
        return out


class _Refused(TierError):
    """durable-rules did not take an event batch (the chain cannot be trusted any more)."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"rete: durable-rules refused {what}: {_CODES.get(code, f'code {code}')}")
        self.code = code


def _assert(core: ModuleType, handle: int, events: list[dict[str, object]], what: str) -> int:
    """Assert a list of events into the session; its state offset, or _Refused."""
    code, state = core.assert_events(handle, json.dumps(events, separators=(",", ":")))
    if code != 0:
        raise _Refused(code, what)
    return state


def _run_batch(core: ModuleType, entry: _Registered, rows: Sequence[Mapping[str, object]],
               memos: dict[str, _Memo] | None = None) -> list[RowDecision]:
    """Evaluate ≤ BATCH_ROWS rows in one durable session, synchronously, and clean the session up.

    Assert the first stage's events, then start/complete durable's actions until none is left:
    each action applies its rule to the rows of its events and asserts their next stage's events,
    which is what makes the following decision's rules match.
    """
    plan, handle = entry.plan, entry.handle
    batch = _Batch(plan, rows, memos)
    if not rows or not plan.stages:
        batch.next_stage = [len(plan.stages)] * len(rows)
        return batch.results()
    loads = json.loads
    last_stage = len(plan.stages) - 1
    events = batch.events(range(len(rows)), 0)
    collided = False
    try:
        state = _assert(core, handle, events, "the batch")
        started = core.start_action_for_state(handle, state)
        messages = started[1] if started else None
        while messages is not None:
            try:
                for action_name, frames in loads(messages).items():
                    action = plan.actions[action_name]
                    following = batch.handle(action_name, action, frames)
                    if following and action.stage < last_stage:
                        derived = batch.events(following, action.stage + 1)
                        if _assert(core, handle, derived, "derived facts") != state:
                            raise TierError("rete: durable-rules put derived facts in another session")
            except BaseException:
                core.abandon_action(handle, state)
                raise
            messages = core.complete_and_start_action(handle, state)
    except _Refused as exc:
        collided = exc.code == 2
        raise
    finally:
        if collided:
            # After an id collision, deleting the session aborts the process (verified): leave
            # the session and the ruleset alone and register the ruleset afresh next time.
            _registry.pop(entry.digest, None)
        else:
            try:
                core.delete_state(handle, _SESSION)
            except core.error:
                pass  # no session was created (the first assert failed before storing anything)
    return batch.results()


def decide_rows(compiled: CompiledRuleset, rows: Sequence[Mapping[str, object]]) -> list[RowDecision]:
    """Decide every row (prepared input values, OK rows only) with durable-rules; one result per row.

    Rows are sent in batches of at most BATCH_ROWS, each in a fresh session. Raises
    RuleEngineUnavailable when durable-rules cannot be imported, and TierError when durable did not
    complete every row's chain (never returns a short or partial list).
    """
    core = _load_core()
    rows = list(rows)
    results: list[RowDecision] = []
    with _LOCK:
        entry = _registered(core, compiled)
        memos: dict[str, _Memo] = {}
        for start in range(0, len(rows), BATCH_ROWS):
            results.extend(_run_batch(core, entry, rows[start:start + BATCH_ROWS], memos))
    if len(results) != len(rows):
        raise TierError(f"rete: {len(rows)} rows in but {len(results)} results out")
    return results

"""Fuzzing properties and strategies, shared by the CI tests (`test_fuzz.py`) and the long run
(`fuzz_long.py`, not collected by pytest).

Three targets (PRODUCT §10, issue 9):

* the value parser — `parse_value` never raises for any object, returns a value *or* a reason,
  in the value model of its type; `parse_column` agrees with it row for row;
* the expression parser — any text is an AST or an `ExpressionError`, never anything else
  (no RecursionError, no TypeError), and what parses prints back to the same AST; typed
  expressions evaluate (scalar and vector) without any other exception;
* the ruleset loader — any bytes give `(definition | None, problems)` and never raise;
  `tier check` never raises; a ruleset without problems compiles or raises `RulesetError`,
  and evaluates its example rows or raises `TierError`.

`COUNTS` records how many inputs each target has seen (the long run reports it).
"""
from __future__ import annotations

import collections
import datetime as dt
import enum
import os
import random
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from hypothesis import strategies as st

from engine import expr as ex
from engine.errors import ExpressionError, RulesetError, TierError
from engine.values import TYPES, is_blank, parse_column, parse_value
from tests.test_values import _CELLS, _allowed, _assert_agrees

ROOT = Path(__file__).resolve().parent.parent
COUNTS: collections.Counter[str] = collections.Counter()


# =========================================================================== values
class _Colour(enum.IntEnum):
    RED = 1


class _Text(str):
    pass


class _Float(float):
    pass


_TZ = dt.timezone(dt.timedelta(hours=-5))


def _numpy_scalar(value: Any, kind: type) -> Any:
    with np.errstate(all="ignore"):
        try:
            return kind(value)
        except (OverflowError, ValueError, TypeError):
            return None


# Every kind of object a cell could be, and many it never should be.
ANY_CELL = st.one_of(
    _CELLS,
    st.integers(), st.floats(), st.decimals(), st.fractions(), st.complex_numbers(),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=12),  # surrogates too
    st.binary(max_size=6), st.times(), st.timedeltas(), st.dates(),
    st.datetimes(timezones=st.sampled_from([None, _TZ, dt.UTC])),
    st.tuples(st.integers(-(2**70), 2**70),
              st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64, np.float16, np.float32,
                               np.float64, np.longdouble, np.complex64])).map(lambda t: _numpy_scalar(*t)),
    st.tuples(st.floats(), st.sampled_from([np.float16, np.float32, np.float64, np.longdouble])).map(
        lambda t: _numpy_scalar(*t)),
    st.tuples(st.integers(-(10**12), 10**12), st.sampled_from(["D", "s", "ms", "us", "ns", "Y", "M", "h"])).map(
        lambda t: np.datetime64(*t)),
    st.tuples(st.integers(-(10**12), 10**12), st.sampled_from(["D", "s", "ns", "h"])).map(lambda t: np.timedelta64(*t)),
    st.text(max_size=5).map(np.str_), st.binary(max_size=5).map(np.bytes_), st.booleans().map(np.bool_),
    st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1),
                 timezones=st.sampled_from([None, _TZ])).map(pd.Timestamp),
    st.text(max_size=4).map(_Text), st.floats().map(_Float),
    st.sampled_from([pd.NaT, pd.NA, None, float("nan"), Decimal("sNaN"), Decimal("-NaN"), Decimal("-Infinity"),
                     Decimal("1E+999999"), Decimal("-0E-999999"), _Colour.RED, _Text(" 是 "), _Text(""), object(),
                     [1], {"a": 1}, (1,), {1}, b"1", bytearray(b"1"), pd.Timedelta(1), pd.Period("2024-01"),
                     np.datetime64("NaT", "s"), np.timedelta64("NaT"), np.float64("nan"), np.array(1.0), range(3), Ellipsis, type, print,
                     "\ud800", " \u3000 ", "\u00a0", "#N/A", "１２", "12,000", "75%", "2024-02-30"]),
)
ENUM_VALUES = st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=4), st.integers(), st.floats(allow_nan=False)),
                                            min_size=1, max_size=4))


def check_parse_value(cells: list[Any], values: list[Any] | None) -> None:
    """parse_value: never raises; blank ⇔ (None, None); else a value xor a reason, in the value model."""
    for kind in TYPES:
        allowed = values if kind == "enum" and values else _allowed(kind)
        for raw in cells:
            COUNTS["parse_value"] += 1
            value, problem = parse_value(raw, kind, allowed)
            if is_blank(raw):
                assert (value, problem) == (None, None), (raw, kind)
                continue
            assert (value is None) != (problem is None), (raw, kind, value, problem)
            if problem is not None:
                assert isinstance(problem, str) and problem.strip(), (raw, kind)
            elif kind in ("number", "fraction", "integer"):
                assert type(value) is Decimal and value.is_finite(), (raw, kind, value)
                if kind == "integer":
                    assert value == value.to_integral_value(), (raw, value)
            elif kind == "date":
                assert type(value) is dt.date, (raw, value)
            elif kind == "boolean":
                assert type(value) is bool, (raw, value)
            else:
                assert type(value) is str, (raw, kind, value)


def check_parse_column(cells: list[Any]) -> None:
    """parse_column on a list, an object Series and the dtype pandas infers: row for row parse_value."""
    try:
        inferred = pd.Series(cells, dtype=object).infer_objects()
    except UnicodeError:  # pandas itself cannot make a str column of a lone surrogate
        inferred = pd.Series(cells, dtype=object)
    for kind in TYPES:
        COUNTS["parse_column"] += len(cells)
        allowed = _allowed(kind)
        _assert_agrees(cells, parse_column(cells, kind, allowed), kind)
        _assert_agrees(cells, parse_column(pd.Series(cells, dtype=object), kind, allowed), kind)
        _assert_agrees(inferred.tolist(), parse_column(inferred, kind, allowed), kind)


# =========================================================================== expressions
NAME_KINDS = {"n": "number", "m": "number", "d": "date", "e": "date", "b": "boolean", "t": "text", "u": "text"}
_TOKENS = ["n", "m", "d", "e", "b", "t", "u", "1", "0", "2.5", "-", "+", "*", "/", "(", ")", "[", "]", ",", "..",
           "=", "==", "!=", "<>", "<", "<=", ">", ">=", "and", "or", "not", "in", "true", "false", "blank", "'x'",
           "'2024-01-31'", '"a"', "99999999999999999999", "0.1", "1e5", "__x", ".", "%", "日期", "（", "１", "'", ":",
           *[name + "(" for name in ex.FUNCTIONS]]
_ATOMS = st.sampled_from(["n", "m", "d", "e", "b", "t", "u", "1", "0", "2.5", "0.1", "true", "false", "blank", "'x'",
                          "'2024-01-31'", "99999999999999999999", "-1", "0.3", "12", "3"])


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "=", "!=", "<", "<=", ">", ">=", "and", "or"]),
                  inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda a: f"not {a}"), inner.map(lambda a: f"-{a}"),
        st.tuples(inner, st.sampled_from(["in", "not in"]), st.lists(inner, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]} {t[1]} [{', '.join(t[2])}]"),
        st.tuples(inner, st.sampled_from(["[", "("]), inner, inner, st.sampled_from(["]", ")"])).map(
            lambda t: f"{t[0]} in {t[1]}{t[2]}..{t[3]}{t[4]}"),
        st.tuples(st.sampled_from(sorted(ex.FUNCTIONS)), st.lists(inner, min_size=0, max_size=4)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"),
    )


_DEEP = st.tuples(st.integers(1, 3_000), st.sampled_from(["({})", "not {}", "-{}", "abs({})", "[{}]", "if(true, {}, 1)",
                                                           "{} + 1", "1 * {}"])).map(
    lambda t: _nest(t[1], t[0]))


def _nest(pattern: str, depth: int) -> str:
    text = "n"
    for _ in range(depth):
        text = pattern.format(text)
        if len(text) > 30_000:
            break
    return text


EXPRESSIONS = st.one_of(
    st.lists(st.sampled_from(_TOKENS), max_size=25).map(" ".join),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=60),
    st.recursive(_ATOMS, _extend, max_leaves=12),
    st.recursive(_ATOMS, _extend, max_leaves=12),
    _DEEP,
)
VALUE_STRATEGIES = {
    "number": st.one_of(st.none(), st.integers(-(10**6), 10**6).map(Decimal),
                        st.decimals(min_value=-(10**12), max_value=10**12, allow_nan=False, places=3)),
    "date": st.one_of(st.none(), st.dates()),
    "boolean": st.one_of(st.none(), st.booleans()),
    "text": st.one_of(st.none(), st.text(max_size=5)),
}
_EPOCH = dt.date(1970, 1, 1)


def _vec(kind: str, value: Any) -> ex.Vec:
    if kind == "text":
        return ex.Vec("text", np.array([value], dtype=object))
    if kind == "number":
        if value is None:
            return ex.Vec("number", np.array([np.nan]))
        number = float(value)
        return ex.Vec("number", np.array([number]), np.array([Decimal(repr(number)) != value]))
    if kind == "date":
        return ex.Vec("date", np.array([np.nan if value is None else float((value - _EPOCH).days)]))
    return ex.Vec("boolean", np.array([np.nan if value is None else float(value)]))


SAMPLE_VALUES = {
    "number": [None, Decimal(0), Decimal(1), Decimal(-1), Decimal("0.1"), Decimal("2.5"), Decimal(10**20),
               Decimal("99999999999999999999.99")],
    "date": [None, dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31)],
    "boolean": [None, True, False],
    "text": [None, "", "x", "2024-01-31", "是"],
}


def check_expression(text: str, draw_value: Any) -> None:
    """Text → AST or ExpressionError; the AST prints back to itself; typed ASTs evaluate cleanly.

    `draw_value(kind)` gives a value of a kind ('number', 'date', 'boolean', 'text') or None.
    """
    COUNTS["expression"] += 1
    try:
        node = ex.parse_expression(text)
    except ExpressionError as error:
        assert str(error)
        return
    printed = ex.to_text(node)
    assert ex.to_text(ex.parse_expression(printed)) == printed, (text, printed)
    try:
        ex.infer_type(node, NAME_KINDS)
    except ExpressionError:
        return
    COUNTS["typed expression"] += 1
    env = {name: draw_value(kind) for name, kind in NAME_KINDS.items()}
    try:
        expected: object = repr(ex.eval_scalar(node, env))
    except ExpressionError:
        expected = ExpressionError
    try:  # the row engines' compiled form: the same value (exponent included) or the same error
        compiled: object = repr(ex.compile_scalar(node)(env))
    except ExpressionError:
        compiled = ExpressionError
    assert compiled == expected, (text, env)
    try:
        ex.eval_vector(node, {name: _vec(kind, env[name]) for name, kind in NAME_KINDS.items()}, ex.VectorContext(1))
    except ExpressionError:
        pass


# =========================================================================== ruleset loader
RULESET_FILES = ("credit", "guarantee", "bank_layering", "industry_code", "performance_split", "gov_customer")
_BASE_TEXT = {name: (ROOT / "rulesets" / f"{name}.yaml").read_text(encoding="utf-8") for name in RULESET_FILES}
_BASE_DOCS = {name: yaml.safe_load(text) for name, text in _BASE_TEXT.items()}
_WEIRD = [None, True, False, 0, -1, 1.5, float("inf"), float("nan"), "", " ", "=", "abc", "x > 1", "=1/0",
          "=add_months(as_of_date, 99999999)", [], {}, [1], {"a": 1}, "1e400", 10**30, "__class__", "=blank", "blank",
          "9" * 50, "2024-02-30", "{x}", "{", "=concat()", "=if(true, 1, 'a')", "日期", "=date(0,0,0)", "=round(1, 999)",
          "=round(1, -999)", "=days_between(as_of_date, blank)", ["a", None], "=min(1, as_of_date)",
          "=__import__('os')", "=a.b", "((((((((", dt.date(2024, 1, 1), "=date(9999,12,31) + 1"]
_FIELDS = ["zz", "type", "key", "when", "then", "hit", "compute", "default", "required", "values", "min", "max", "note",
           "note_at", "aggregate", "rules", "at", "fails_when", "all_blank", "decimals", "tier", "default_expr",
           "blank_note", "aliases", "id", "parameters", "inputs", "outputs", "decisions", "checks", "examples"]
_TEXT_BITS = ["", "(", ")", " and ", " or x", "'", "..", ",", "1", "__", ".", "==", " in [1..", "blank", "\n", ": ",
              "- ", "&a ", "*a", "!!python/object/apply:os.system ['true']", "{", "}", "[", "]", "#", "\t", "\x00",
              "\ufeff", "%YAML 1.1\n", "---\n", "? ", "|\n  ", ">-\n  ", "!!binary ", "9" * 30]


def _mutate(obj: Any, rng: random.Random) -> Any:
    if isinstance(obj, dict):
        obj = dict(obj)
        keys = list(obj)
        if keys and rng.random() < 0.3:
            key = rng.choice(keys)
            op = rng.random()
            if op < 0.4:
                obj[key] = rng.choice(_WEIRD)
            elif op < 0.6:
                del obj[key]
            else:
                obj[rng.choice(_FIELDS)] = rng.choice(_WEIRD + keys)
        for key in list(obj):
            if rng.random() < 0.5:
                obj[key] = _mutate(obj[key], rng)
        return obj
    if isinstance(obj, list):
        obj = list(obj)
        if obj and rng.random() < 0.2:
            del obj[rng.randrange(len(obj))]
        if obj and rng.random() < 0.1:
            obj.append(rng.choice(obj))
        return [_mutate(item, rng) if rng.random() < 0.3 else item for item in obj]
    if isinstance(obj, str) and rng.random() < 0.2:
        at = rng.randrange(len(obj) + 1)
        return obj[:at] + rng.choice(_TEXT_BITS[:14]) + obj[at + rng.randrange(3):]
    if rng.random() < 0.05:
        return rng.choice(_WEIRD)
    return obj


def _structured(seed: int) -> bytes:
    """A real ruleset, its parsed structure mutated, dumped back as YAML."""
    rng = random.Random(seed)
    doc = _mutate(_BASE_DOCS[rng.choice(RULESET_FILES)], rng)
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")
    except yaml.YAMLError:
        return b"id: x\n"


def _textual(seed: int) -> bytes:
    """A real ruleset's text with lines dropped, duplicated, swapped and junk inserted."""
    rng = random.Random(seed)
    lines = _BASE_TEXT[rng.choice(RULESET_FILES)].splitlines(keepends=True)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        i = rng.randrange(len(lines))
        if op < 0.25:
            del lines[i]
        elif op < 0.45:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op < 0.6:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            line = lines[i]
            at = rng.randrange(len(line) + 1)
            lines[i] = line[:at] + rng.choice(_TEXT_BITS) + line[at + rng.randrange(4):]
    return "".join(lines).encode("utf-8", errors="surrogatepass")


RULESET_BYTES = st.one_of(
    st.integers(0, 2**32).map(_structured),
    st.integers(0, 2**32).map(_structured),
    st.integers(0, 2**32).map(_textual),
    st.integers(0, 2**32).map(_textual),
    st.binary(max_size=200),
    st.lists(st.sampled_from(_TEXT_BITS + ["id", "inputs", "key", "when", "then", "  ", "- key: a\n", "x"]),
             max_size=40).map(lambda parts: "".join(parts).encode("utf-8", errors="surrogatepass")),
)


def check_ruleset_bytes(data: bytes, engines: tuple[str, ...] = ("vector", "scalar")) -> None:
    """Loader, checker, compiler and engines on arbitrary file content: only their own errors."""
    import engine
    from engine.check import check_ruleset
    from engine.compile import compile_ruleset
    from engine.ruleset import read_ruleset

    COUNTS["ruleset"] += 1
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.yaml"
        path.write_bytes(data)
        definition, problems = read_ruleset(path)
        assert all(p.message for p in problems)
        check_ruleset(path)
        if definition is None or any(p.severity == "error" for p in problems):
            return
        COUNTS["ruleset loaded"] += 1
        try:
            compiled = compile_ruleset(definition)
        except RulesetError:
            return
        COUNTS["ruleset compiled"] += 1
        rows = [dict(example.input) for example in definition.examples][:12] or [{}]
        for name in engines:
            try:
                engine.evaluate(compiled, rows, engine=name, explain=True)
            except TierError:
                pass


def fuzz_env_examples(default: int) -> int:
    return int(os.environ.get("TIERBOOK_FUZZ_EXAMPLES", default))

"""engine.values: every accepted and rejected cell form of RULESETS §0.2, §0.3 and §0.11.

Table-driven cases pin the scalar parser (`parse_value`); each case is also run through the
vector parser (`parse_column`) as a one-row column of several container types, and a hypothesis
property checks that a random mixed column parses row for row exactly like `parse_value`.
Set TIERBOOK_HYPOTHESIS_EXAMPLES to run the property tests longer (default: a quick run).
"""
from __future__ import annotations

import datetime as dt
import math
import os
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import RulesetError
from engine.values import TYPES, ParsedColumn, is_blank, parse_column, parse_value

D = Decimal
INVALID = object()  # expected marker: the cell must be rejected with a reason
BLANK = None  # expected marker: blank → (None, None)
EPOCH = dt.date(1970, 1, 1)

# ---------------------------------------------------------------------------------------- cases

NUMBER_CASES = [
    # Excel numeric cells
    (0, D(0)), (3, D(3)), (-7, D(-7)), (2.5, D("2.5")), (0.7, D("0.7")),
    (0.7000000000000001, D("0.7000000000000001")), (12.0, D("12.0")), (-0.0, D("-0.0")),
    (np.float64(0.1), D("0.1")), (np.int64(42), D(42)), (D("1.50"), D("1.50")),
    (10**20, D(10**20)),
    (True, INVALID), (False, INVALID), (np.bool_(True), INVALID),
    (float("inf"), INVALID), (float("-inf"), INVALID), (D("Infinity"), INVALID),
    (float("nan"), BLANK),
    # text forms
    ("12", D(12)), (" 12 ", D(12)), ("\u300012\u00a0", D(12)), ("\t-3.25\n", D("-3.25")),
    ("12,000", D(12000)), ("12,000.50", D("12000.50")), ("1,234,567", D(1234567)),
    ("-1,000.5", D("-1000.5")), ("007", D(7)), ("-0", D("-0")), ("0.000", D("0.000")),
    ("12345678901234567890.123", D("12345678901234567890.123")),
    ("abc", INVALID), ("2万", INVALID), ("¥100", INVALID), ("$100", INVALID),
    ("８０００", INVALID), ("1,00", INVALID), ("1,000.", INVALID), ("1000.", INVALID),
    (".5", INVALID), ("+5", INVALID), ("1e5", INVALID), ("1E5", INVALID), ("12,0000", INVALID),
    ("1234,567", INVALID), ("- 5", INVALID), ("5-", INVALID), ("--5", INVALID), ("1 000", INVALID),
    ("75%", INVALID), ("0x10", INVALID), ("١٢", INVALID), ("NaN", INVALID), ("inf", INVALID),
    ("无", INVALID), ("-", INVALID), ("N/A", INVALID), ("/", INVALID), ("#N/A", INVALID),
    ("1.2.3", INVALID), ("12,000,5", INVALID),
    (dt.date(2024, 1, 1), INVALID), (dt.datetime(2024, 1, 1), INVALID),
    # blanks
    (None, BLANK), ("", BLANK), ("   ", BLANK), ("\u3000", BLANK), ("\u00a0\t\n", BLANK),
    (pd.NA, BLANK), (pd.NaT, BLANK), (D("NaN"), BLANK),
]

FRACTION_CASES = [
    (0.7, D("0.7")), ("0.70", D("0.70")), (1, D(1)), ("12,000", D(12000)),
    ("75%", D("0.75")), (" 75% ", D("0.75")), ("12.5%", D("0.125")), ("100%", D("1.00")),
    ("0.7%", D("0.007")), ("-5%", D("-0.05")), ("0%", D("0.00")), ("150%", D("1.50")),
    ("1,000%", INVALID), ("75 %", INVALID), ("%75", INVALID), ("75％", INVALID),
    ("75%%", INVALID), (".5%", INVALID), ("abc", INVALID), (True, INVALID), ("", BLANK),
]

INTEGER_CASES = [
    (3, D(3)), ("3", D(3)), (3.0, D(3)), ("3.0", D(3)), ("1,000", D(1000)), ("1,000.00", D(1000)),
    ("-12", D(-12)), (D("4.000"), D(4)), (1e20, D(10**20)), (np.int32(5), D(5)),
    (2.5, INVALID), ("5.5", INVALID), ("3.0000000000000001", INVALID), (D("2.5"), INVALID),
    (0.1, INVALID), ("3%", INVALID), (True, INVALID), ("三", INVALID), ("", BLANK), (None, BLANK),
]

DATE_CASES = [
    ("2024-01-05", dt.date(2024, 1, 5)), ("2024-1-5", dt.date(2024, 1, 5)),
    ("2024/1/5", dt.date(2024, 1, 5)), ("2024/01/05", dt.date(2024, 1, 5)),
    ("2024年1月5日", dt.date(2024, 1, 5)), ("2024年12月31日", dt.date(2024, 12, 31)),
    (" 2024-01-05\u3000", dt.date(2024, 1, 5)), ("2024-02-29", dt.date(2024, 2, 29)),
    ("2000-02-29", dt.date(2000, 2, 29)), ("1900-01-01", dt.date(1900, 1, 1)),
    ("9999-12-31", dt.date(9999, 12, 31)),
    ("2024-01-05 00:00:00", dt.date(2024, 1, 5)), ("2024-01-05 12:30", dt.date(2024, 1, 5)),
    ("2024-01-05T12:30", dt.date(2024, 1, 5)), ("2024-01-05T12:30:00", dt.date(2024, 1, 5)),
    ("2024/1/5 23:59:59.5", dt.date(2024, 1, 5)), ("2024年1月5日 8:05", dt.date(2024, 1, 5)),
    (dt.date(2024, 3, 1), dt.date(2024, 3, 1)), (dt.datetime(2024, 3, 1, 23, 59), dt.date(2024, 3, 1)),
    (pd.Timestamp("2024-03-01 13:00"), dt.date(2024, 3, 1)),
    (pd.Timestamp("2024-03-01 01:00", tz="Asia/Shanghai"), dt.date(2024, 3, 1)),
    (np.datetime64("2024-03-01T18:00"), dt.date(2024, 3, 1)),
    ("2024-02-30", INVALID), ("2023-02-29", INVALID), ("1900-02-29", INVALID), ("2024-13-01", INVALID),
    ("2024-00-10", INVALID), ("2024-01-00", INVALID), ("2024-04-31", INVALID), ("0000-01-01", INVALID),
    ("2024-1/5", INVALID), ("2024年1月5", INVALID), ("24-01-05", INVALID), ("2024-001-05", INVALID),
    ("20240105", INVALID), ("2024.01.05", INVALID), ("05/01/2024", INVALID), ("２０２４-01-05", INVALID),
    ("2024-01-05 25:00", INVALID), ("2024-01-05 12", INVALID), ("2024-01-05Z", INVALID),
    ("2024-01-05 12:30+08:00", INVALID), ("2024-01-05x", INVALID),
    (45292, INVALID), (45292.0, INVALID), ("45292", INVALID), (D(45292), INVALID), (True, INVALID),
    ("无", INVALID), ("-", INVALID), ("N/A", INVALID), ("/", INVALID), ("#N/A", INVALID),
    (None, BLANK), ("  ", BLANK), (float("nan"), BLANK), (pd.NaT, BLANK), (np.datetime64("NaT"), BLANK),
]

BOOLEAN_CASES = [
    (True, True), (False, False), (np.bool_(False), False), (1, True), (0, False), (1.0, True),
    (0.0, False), (-0.0, False), (D("1.0"), True),
    ("是", True), ("否", False), ("Y", True), ("y", True), ("N", False), ("n", False),
    ("YES", True), ("Yes", True), ("yEs", True), ("NO", False), ("no", False),
    ("TRUE", True), ("true", True), ("True", True), ("FALSE", False), ("False", False),
    ("1", True), ("0", False), (" 是 ", True), ("\u3000否\u00a0", False),
    ("不知道", INVALID), ("2", INVALID), (2, INVALID), (0.5, INVALID), ("无", INVALID),
    ("1.0", INVALID), ("yeſ", INVALID), ("ｙｅｓ", INVALID), ("T", INVALID), ("F", INVALID),
    ("对", INVALID), ("-", INVALID), ("N/A", INVALID), ("#N/A", INVALID), ("Y E S", INVALID),
    (dt.date(2024, 1, 1), INVALID), (float("inf"), INVALID),
    (None, BLANK), ("", BLANK), (float("nan"), BLANK),
]

TEXT_CASES = [
    ("abc", "abc"), ("  padded  ", "  padded  "), ("无", "无"), ("-", "-"), ("N/A", "N/A"),
    ("#N/A", "#N/A"), ("/", "/"), ("０１", "０１"), ("a\nb", "a\nb"),
    (12.0, "12"), (0.5, "0.5"), (-0.0, "0"), (1e20, "100000000000000000000"), (1e-07, "0.0000001"),
    (0.1 + 0.2, "0.30000000000000004"), (42, "42"), (np.int64(-3), "-3"), (D("1.50"), "1.50"),
    (D("1E+3"), "1000"), (True, "TRUE"), (False, "FALSE"), (dt.date(2024, 1, 5), "2024-01-05"),
    (dt.datetime(2024, 1, 5, 12, 30), "2024-01-05"), (np.datetime64("2024-01-05"), "2024-01-05"),
    (None, BLANK), ("", BLANK), (" \u3000 ", BLANK), (float("nan"), BLANK),
]

ENUM_ALLOWED = ("国企", "民企", "外资", "1")
ENUM_CASES = [
    ("国企", "国企"), (" 民企 ", "民企"), ("\u3000外资", "外资"), (1, "1"), (1.0, "1"), ("1", "1"),
    ("国企 ", "国企"), ("国 企", INVALID), ("国有企业", INVALID), ("1.0", INVALID), ("无", INVALID),
    (None, BLANK), ("\u00a0", BLANK),
]

CASES = (
    [("number", raw, want) for raw, want in NUMBER_CASES]
    + [("fraction", raw, want) for raw, want in FRACTION_CASES]
    + [("fraction", raw, want) for raw, want in NUMBER_CASES if not (isinstance(raw, str) and raw.endswith("%"))]
    + [("integer", raw, want) for raw, want in INTEGER_CASES]
    + [("date", raw, want) for raw, want in DATE_CASES]
    + [("boolean", raw, want) for raw, want in BOOLEAN_CASES]
    + [("text", raw, want) for raw, want in TEXT_CASES]
    + [("enum", raw, want) for raw, want in ENUM_CASES]
)


def _case_id(case: tuple[str, object, object]) -> str:
    kind, raw, want = case
    shown = "INVALID" if want is INVALID else "BLANK" if want is None else repr(want)
    return f"{kind}:{raw!r}->{shown}"


def _allowed(kind: str) -> tuple[str, ...] | None:
    return ENUM_ALLOWED if kind == "enum" else None


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_parse_value_and_parse_column(case: tuple[str, object, object]) -> None:
    kind, raw, want = case
    value, problem = parse_value(raw, kind, _allowed(kind))
    if want is INVALID:
        assert value is None
        assert isinstance(problem, str) and " / " in problem, problem
    elif want is BLANK:
        assert (value, problem) == (None, None)
    else:
        assert problem is None
        assert value == want
        assert type(value) is type(want)
        if isinstance(want, Decimal) and kind != "integer":
            # The exact decimal, not merely an equal float: '0.70' keeps its digits.
            assert str(value) == str(want)
    # The vector path gives the same answer, in an object column and (for text) a `str` Series.
    column = [raw, "  ", raw]
    _assert_agrees(column, parse_column(column, kind, _allowed(kind)), kind)
    if isinstance(raw, str):
        series = pd.Series(column, dtype="str")
        _assert_agrees(column, parse_column(series, kind, _allowed(kind)), kind)


def test_integer_values_are_integral_decimals() -> None:
    assert str(parse_value("3.00", "integer")[0]) == "3"
    assert str(parse_value(3.0, "integer")[0]) == "3"
    assert str(parse_value("1,000", "integer")[0]) == "1000"


def test_fraction_percent_is_exact() -> None:
    assert str(parse_value("75%", "fraction")[0]) == "0.75"
    assert str(parse_value("12.5%", "fraction")[0]) == "0.125"
    assert parse_value("0.1%", "fraction")[0] == D("0.001")
    assert parse_column(["0.7%"], "fraction").values[0] == 0.007


def test_comparisons_on_parsed_values_are_exact_decimal() -> None:
    """RULESETS §0.3: '0.70 > 0.70' is false, a computed 0.7000000000000001 is above 0.70."""
    assert not parse_value("0.70", "fraction")[0] > D("0.70")
    assert parse_value(0.7000000000000001, "fraction")[0] > D("0.70")
    assert parse_value("10000.01", "number")[0] > D(10000)
    assert parse_value("5,999,999.99", "number")[0] < D(6000000)


def test_reasons_are_bilingual_and_quote_the_cell() -> None:
    assert parse_value("abc", "number")[1] == "'abc' 不是数字 / is not a number"
    assert parse_value(" 2024-02-30 ", "date")[1] == "'2024-02-30' 不是有效日期 / is not a valid date"
    assert "serial" in parse_value(45292, "date")[1]
    assert "fractional" in parse_value("5.5", "integer")[1]
    assert "YES/NO" in parse_value("不知道", "boolean")[1]
    assert "国企" in parse_value("x", "enum", ENUM_ALLOWED)[1]
    assert len(parse_value("x" * 500, "number")[1]) < 120


def test_unknown_type_and_enum_without_values_are_ruleset_errors() -> None:
    with pytest.raises(RulesetError, match="unknown value type"):
        parse_value("1", "money")
    with pytest.raises(RulesetError, match="values"):
        parse_value("A", "enum")
    with pytest.raises(RulesetError, match="values"):
        parse_column(["A"], "enum", [])


def test_enum_values_are_trimmed_and_rendered() -> None:
    assert parse_value("A", "enum", [" A "]) == ("A", None)
    assert parse_value(2, "enum", [2, 3]) == ("2", None)
    assert parse_column(pd.Series([" A", "B"], dtype="str"), "enum", ["A "]).invalid.tolist() == [False, True]


@pytest.mark.parametrize("raw", [None, float("nan"), np.float64("nan"), pd.NA, pd.NaT, np.datetime64("NaT"),
                                 "", " ", "\u3000", "\u00a0", "\t\r\n", "\u2003\u205f", D("NaN")])
def test_is_blank_true(raw: object) -> None:
    assert is_blank(raw)


@pytest.mark.parametrize("raw", ["无", "-", "N/A", "/", "#N/A", "0", 0, 0.0, False, "\u200b", "x ", D(0),
                                 dt.date(2024, 1, 1)])
def test_is_blank_false(raw: object) -> None:
    assert not is_blank(raw)


def test_whitespace_set_is_exactly_what_str_strip_removes() -> None:
    from engine.values import _WHITESPACE

    assert set(_WHITESPACE) == {chr(cp) for cp in range(0x110000) if chr(cp).isspace()}


def test_vector_trims_the_same_unicode_whitespace_as_python() -> None:
    spaces = ["\u3000", "\u00a0", "\u2003", "\u205f", "\x1c", "\x85", "\u2028"]
    cells = [f"{space}12{space}" for space in spaces] + ["\u200b12"]  # zero-width space is not whitespace
    parsed = parse_column(pd.Series(cells, dtype="str"), "number")
    assert parsed.values[:-1].tolist() == [12.0] * len(spaces)
    assert parsed.invalid.tolist() == [False] * len(spaces) + [True]
    blanks = parse_column(pd.Series(spaces, dtype="str"), "number")
    assert blanks.blank.all() and not blanks.invalid.any()


# ---------------------------------------------------------------------------- column containers


def test_float64_column() -> None:
    column = np.array([1.5, np.nan, np.inf, -0.0, 3.0, 0.7])
    parsed = parse_column(column, "number")
    assert parsed.blank.tolist() == [False, True, False, False, False, False]
    assert parsed.invalid.tolist() == [False, False, True, False, False, False]
    assert parsed.inexact is None
    assert parse_column(column, "integer").invalid.tolist() == [True, False, True, False, False, True]
    assert parse_column(column, "date").invalid.tolist() == [True, False, True, True, True, True]
    assert parse_column(column, "text").values.tolist() == ["1.5", None, "inf", "0", "3", "0.7"]
    assert parse_column(pd.Series(column, dtype="float32"), "number").values[0] == 1.5


def test_int64_column_marks_huge_integers_inexact() -> None:
    column = pd.Series([1, 2**53, 2**53 + 1, -(2**60), 0], dtype="int64")
    parsed = parse_column(column, "number")
    assert parsed.inexact is not None
    assert parsed.inexact.tolist() == [False, False, True, True, False]
    assert parse_column(column, "boolean").invalid.tolist() == [False, True, True, True, False]
    assert parse_column(column, "text").values.tolist() == ["1", str(2**53), str(2**53 + 1), str(-(2**60)), "0"]


def test_long_number_text_is_inexact_only_when_float_differs() -> None:
    column = pd.Series(["12345678901234567890", "0.1000000000000000000", "1,234,567,890.12", "0.70000000000000001",
                        "9007199254740993", "1"], dtype="str")
    parsed = parse_column(column, "number")
    assert parsed.inexact is not None
    assert parsed.inexact.tolist() == [True, False, False, True, True, False]
    assert parse_column(pd.Series(["1", "2.5"], dtype="str"), "number").inexact is None


def test_bool_column() -> None:
    column = np.array([True, False])
    assert parse_column(column, "boolean").values.tolist() == [1.0, 0.0]
    assert parse_column(column, "number").invalid.all()
    assert parse_column(column, "text").values.tolist() == ["TRUE", "FALSE"]


def test_datetime64_columns_drop_the_time() -> None:
    naive = pd.Series(pd.to_datetime(["2024-03-01 23:59", None, "1969-12-31 12:00"]))
    parsed = parse_column(naive, "date")
    assert parsed.blank.tolist() == [False, True, False]
    assert parsed.values[0] == (dt.date(2024, 3, 1) - EPOCH).days
    assert parsed.values[2] == -1
    aware = pd.Series(pd.to_datetime(["2024-03-01 01:00"]).tz_localize("Asia/Shanghai"))
    assert parse_column(aware, "date").values[0] == (dt.date(2024, 3, 1) - EPOCH).days
    assert parse_column(naive, "text").values.tolist() == ["2024-03-01", None, "1969-12-31"]
    assert parse_column(naive, "number").invalid.tolist() == [True, False, True]


@pytest.mark.parametrize("make", [
    lambda cells: pd.Series(cells, dtype="str"),
    lambda cells: pd.Series(cells, dtype="string"),
    lambda cells: pd.Series(cells, dtype=pd.StringDtype("python")),
    lambda cells: pd.Series(cells, dtype=pd.ArrowDtype(pa.string())),
    lambda cells: pd.Series(cells, dtype="category"),
    lambda cells: pd.Series(cells, dtype=object),
    lambda cells: pa.chunked_array([cells[:2], cells[2:]], type=pa.string()),
    lambda cells: pd.Index(cells, dtype=object),
    lambda cells: cells,
    lambda cells: tuple(cells),
], ids=["str", "string", "string-python", "arrow", "category", "object", "chunked", "index", "list", "tuple"])
def test_text_containers(make: object) -> None:
    cells = ["12,000.50", None, " 7 ", "x"]
    parsed = parse_column(make(cells), "number")  # type: ignore[operator]
    assert parsed.values[0] == 12000.5 and parsed.values[2] == 7.0
    assert parsed.blank.tolist() == [False, True, False, False]
    assert parsed.invalid.tolist() == [False, False, False, True]


def test_numpy_unicode_array() -> None:
    parsed = parse_column(np.array(["1", " ", "是"]), "boolean")
    assert parsed.values[0] == 1.0 and parsed.blank.tolist() == [False, True, False] and parsed.values[2] == 1.0


def test_nullable_dtypes() -> None:
    ints = pd.Series([1, None, 3], dtype="Int64")
    parsed = parse_column(ints, "integer")
    assert parsed.blank.tolist() == [False, True, False] and parsed.values[2] == 3.0
    flags = pd.Series([True, None], dtype="boolean")
    assert parse_column(flags, "boolean").values[0] == 1.0 and parse_column(flags, "boolean").blank[1]
    floats = pd.Series([0.5, None], dtype="Float64")
    assert parse_column(floats, "fraction").values[0] == 0.5 and parse_column(floats, "fraction").blank[1]


def test_empty_column() -> None:
    for kind in TYPES:
        parsed = parse_column([], kind, _allowed(kind))
        assert len(parsed.values) == len(parsed.blank) == len(parsed.invalid) == 0


def test_parsed_column_is_frozen_with_disjoint_masks() -> None:
    parsed = parse_column(["1", "", "x", None], "number")
    assert isinstance(parsed, ParsedColumn)
    with pytest.raises(AttributeError):
        parsed.values = np.zeros(4)  # type: ignore[misc]
    assert not (parsed.blank & parsed.invalid).any()
    assert parsed.values.dtype == np.float64 and parsed.blank.dtype == bool


# ---------------------------------------------------------------------- scalar ≡ vector property


def _expected_row(raw: object, kind: str, allowed: tuple[str, ...] | None) -> tuple[object, bool, bool, bool]:
    """parse_value of one cell in the vector model: (value, blank, invalid, inexact)."""
    value, problem = parse_value(raw, kind, allowed)
    if value is None:
        empty: object = None if kind in ("text", "enum") else math.nan
        return empty, problem is None, problem is not None, False
    if kind in ("number", "fraction", "integer"):
        number = float(value)  # type: ignore[arg-type]
        return number, False, False, Decimal(repr(number)) != value
    if kind == "date":
        return float((value - EPOCH).days), False, False, False  # type: ignore[operator]
    if kind == "boolean":
        return 1.0 if value else 0.0, False, False, False
    return value, False, False, False


def _assert_agrees(cells: list[object], parsed: ParsedColumn, kind: str) -> None:
    allowed = _allowed(kind)
    assert len(parsed.values) == len(parsed.blank) == len(parsed.invalid) == len(cells)
    for row, raw in enumerate(cells):
        value, blank, invalid, inexact = _expected_row(raw, kind, allowed)
        got = parsed.values[row]
        where = f"row {row} {raw!r} as {kind}"
        assert bool(parsed.blank[row]) == blank, where
        assert bool(parsed.invalid[row]) == invalid, where
        got_inexact = False if parsed.inexact is None else bool(parsed.inexact[row])
        assert got_inexact == inexact, where
        if kind in ("text", "enum"):
            assert got == value and (got is None or type(got) is str), (where, got, value)
        else:
            assert isinstance(got, (float, np.floating)), where
            assert (math.isnan(got) and math.isnan(value)) or got == value, (where, got, value)  # type: ignore[arg-type]
    if parsed.inexact is not None:
        assert parsed.inexact.any()


_SPACE = st.sampled_from(["", "", "", " ", "\u3000", "\u00a0", "\t", "  "])
_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=22)


@st.composite
def _number_text(draw: st.DrawFn) -> str:
    integer = draw(_DIGITS)
    if draw(st.booleans()):
        # thousands separators, sometimes malformed
        groups = [integer[: (len(integer) - 1) % 3 + 1]] + [integer[i: i + 3] for i in range((len(integer) - 1) % 3 + 1, len(integer), 3)]
        integer = ",".join(groups) if draw(st.integers(0, 4)) else ",".join(g + draw(st.sampled_from(["", "0"])) for g in groups)
    text = draw(st.sampled_from(["", "", "-", "+", "--"])) + integer
    if draw(st.booleans()):
        text += "." + draw(st.one_of(_DIGITS, st.just(""), st.text(alphabet="0", min_size=1, max_size=4)))
    text += draw(st.sampled_from(["", "", "", "%", "e5", "万", " %"]))
    return draw(_SPACE) + text + draw(_SPACE)


@st.composite
def _date_text(draw: st.DrawFn) -> str:
    year = draw(st.integers(0, 9999))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    pad = draw(st.sampled_from(["", "0"]))
    form = draw(st.sampled_from(["{y}-{m}-{d}", "{y}/{m}/{d}", "{y}年{m}月{d}日", "{y}-{m}/{d}", "{y}{m}{d}"]))
    text = form.format(y=f"{year:04d}" if draw(st.integers(0, 9)) else str(year),
                       m=(pad + str(month))[-2:] if month < 10 else str(month), d=(pad + str(day)) if day < 10 else str(day))
    text += draw(st.sampled_from(["", "", "", " 00:00:00", " 12:30", "T12:30", "T12:30:00", " 24:00", "T1:2", "Z"]))
    return draw(_SPACE) + text + draw(_SPACE)


@st.composite
def _token_text(draw: st.DrawFn) -> str:
    token = draw(st.sampled_from(["是", "否", "y", "n", "yes", "no", "true", "false", "1", "0", "无", "-", "N/A",
                                  "#N/A", "/", "不知道", "2", "yeſ", "国企", "民企", "外资", "", "TRUE"]))
    token = "".join(ch.upper() if draw(st.booleans()) else ch for ch in token)
    return draw(_SPACE) + token + draw(_SPACE)


_TEXT_CELLS = st.one_of(_number_text(), _date_text(), _token_text(), st.text(max_size=6))
_CELLS = st.one_of(
    _TEXT_CELLS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: float(round(x))),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=50000),
    st.booleans(),
    st.sampled_from([None, pd.NA, pd.NaT, np.datetime64("NaT"), np.float64("nan"), np.float64(1.0), np.int64(0),
                     np.bool_(True), D("NaN"), D("Infinity"), D("-0"), D("1.000")]),
    st.decimals(min_value=-(10**20), max_value=10**20, allow_nan=False),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(dt.timezone(dt.timedelta(hours=8))))),
    st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(pd.Timestamp),
    st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(np.datetime64),
)

_PROPERTY = settings(max_examples=int(os.environ.get("TIERBOOK_HYPOTHESIS_EXAMPLES", "30")), deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(cells=st.lists(_CELLS, max_size=25))
def test_parse_column_of_mixed_cells_equals_parse_value_per_row(cells: list[object]) -> None:
    for kind in TYPES:
        _assert_agrees(cells, parse_column(cells, kind, _allowed(kind)), kind)
        _assert_agrees(cells, parse_column(pd.Series(cells, dtype=object), kind, _allowed(kind)), kind)


@_PROPERTY
@given(cells=st.lists(st.one_of(_TEXT_CELLS, st.none()), max_size=25))
def test_parse_column_of_text_equals_parse_value_per_row(cells: list[object]) -> None:
    series = pd.Series(cells, dtype="str")
    expected = [None if isinstance(c, float) else c for c in series.tolist()]
    for kind in TYPES:
        _assert_agrees(expected, parse_column(series, kind, _allowed(kind)), kind)


@_PROPERTY
@given(numbers=st.lists(st.one_of(st.floats(), st.floats(min_value=-1e4, max_value=1e4).map(round).map(float)),
                        max_size=25))
def test_parse_column_of_float64_equals_parse_value_per_row(numbers: list[float]) -> None:
    column = np.array(numbers, dtype=np.float64)
    for kind in TYPES:
        _assert_agrees(list(column), parse_column(column, kind, _allowed(kind)), kind)


@_PROPERTY
@given(numbers=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=25))
def test_parse_column_of_int64_equals_parse_value_per_row(numbers: list[int]) -> None:
    column = np.array(numbers, dtype=np.int64)
    for kind in TYPES:
        _assert_agrees([int(n) for n in numbers], parse_column(column, kind, _allowed(kind)), kind)

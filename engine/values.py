"""The one parser of cell values: blanks, numbers, fractions, integers, dates, booleans, text, enums.

Implements RULESETS §0.2 (blank), §0.3 (accepted forms per type) and §0.11 (ASCII digits only,
Unicode whitespace, date text forms, Excel floats read as their shortest repr). Two entry points
share every rule:

* `parse_value` — one cell → the scalar value model of DESIGN.md (`Decimal`, `date`, `bool`, `str`)
  plus a bilingual reason when the cell is invalid; used by the reference/rete engines and UDFs.
* `parse_column` — a whole column → numpy arrays (`ParsedColumn`), vectorised so a table parses at
  millions of rows per second: numeric dtypes never touch Python per row, text goes through
  pyarrow compute (RE2) once per column, object columns are split by cell type into those
  paths, and only odd cells (Decimal, numpy scalars other than float64, NaT/NA …) fall back to
  `parse_value` row by row.

The two must agree exactly (blank/invalid masks and values); `tests/test_values.py` checks that
with hypothesis. To keep them in lock-step they share the regex *bodies* below (written in the
common subset of Python `re` and RE2: ASCII classes only, no `\\d`, no case folding) and the same
explicit whitespace set.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import product, repeat
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import RulesetError

__all__ = ["TYPES", "ParsedColumn", "is_blank", "parse_column", "parse_value", "render_text"]

TYPES = ("number", "fraction", "integer", "date", "boolean", "text", "enum")
_NUMBER_KINDS = frozenset({"number", "fraction", "integer"})

# Exactly the characters for which `str.isspace()` is true, i.e. what `str.strip()` removes.
# Spelled out (not derived at import) so the vector path trims the very same set; a test checks
# it against a scan of all code points. It includes U+3000 and U+00A0 (RULESETS §0.11).
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# Regex bodies, anchored differently per engine: Python uses fullmatch, RE2 gets ^(?:…)$ (in RE2
# `$` without multi-line mode matches only at the very end, like Python's fullmatch).
_NUMBER_BODY = r"-?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]+)?"
# The same shapes with a fraction of zeros only: an integral number written as text.
_INTEGRAL_BODY = r"-?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.0+)?"
_PERCENT_BODY = r"-?[0-9]+(?:\.[0-9]+)?%"
_TIME_BODY = r"(?: +|T)(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?"
_DATE_BODY = (
    r"[0-9]{4}(?:-[0-9]{1,2}-[0-9]{1,2}|/[0-9]{1,2}/[0-9]{1,2}|年[0-9]{1,2}月[0-9]{1,2}日)"
    r"(?:" + _TIME_BODY + r")?"
)
# Applied only to text that already matched _DATE_BODY, so the separators are known consistent.
_DATE_PARTS = r"^(?P<year>[0-9]{4})[-/年](?P<month>[0-9]{1,2})[-/月](?P<day>[0-9]{1,2})"

_NUMBER_RE = re.compile(_NUMBER_BODY)
_INTEGRAL_RE = re.compile(_INTEGRAL_BODY)
_PERCENT_RE = re.compile(_PERCENT_BODY)
_DATE_RE = re.compile(_DATE_BODY)
_DATE_PARTS_RE = re.compile(_DATE_PARTS)


def _ascii_case_variants(word: str) -> list[str]:
    """Every upper/lower-case spelling of an ASCII word ('yes' → 'yes', 'yeS', …, 'YES')."""
    options = [(ch.lower(), ch.upper()) if ch.isascii() and ch.isalpha() else (ch,) for ch in word]
    return sorted({"".join(letters) for letters in product(*options)})


# Case-insensitive by enumeration rather than by .upper()/(?i): Unicode case mapping would let
# 'yeſ' (long s) or a Kelvin sign through, and Python and RE2 fold those differently.
_TRUE_TOKENS = frozenset(v for w in ("是", "Y", "YES", "TRUE", "1") for v in _ascii_case_variants(w))
_FALSE_TOKENS = frozenset(v for w in ("否", "N", "NO", "FALSE", "0") for v in _ascii_case_variants(w))

_type_of = type  # the builtin, under a name the public `type=` parameters do not shadow
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# Days since 1970-01-01 of the first and last `datetime.date` (years 1–9999).
_MIN_DAY = dt.date.min.toordinal() - _EPOCH_ORDINAL
_MAX_DAY = dt.date.max.toordinal() - _EPOCH_ORDINAL
# Floats with a magnitude up to 2**53 hold every integer exactly, and their repr is that integer.
_EXACT_INT_LIMIT = 2**53
# A decimal text of at most 15 significant digits round-trips through float64 (DBL_DIG), so only
# longer texts can be inexact; the length of the text is a cheap upper bound on its digit count.
_EXACT_TEXT_LENGTH = 15


@dataclass(frozen=True)
class ParsedColumn:
    """A parsed column in the vector value model of DESIGN.md.

    `values`: float64 for number/fraction/integer (the value), date (days since 1970-01-01) and
    boolean (1.0/0.0), NaN where blank or invalid; an object array of `str`/`None` for text/enum.
    `blank` and `invalid` are disjoint bool masks. `inexact` marks number-kind rows whose float64
    does not stand for the exact decimal (`Decimal(repr(value)) != exact value`: long text, huge
    integers); it is `None` when no row is inexact, always for the non-number types.
    """

    values: np.ndarray
    blank: np.ndarray
    invalid: np.ndarray
    inexact: np.ndarray | None


# ----------------------------------------------------------------------------- scalar path


def is_blank(raw: object) -> bool:
    """True for an empty cell: None, NaN, pandas NA/NaT, '' or a whitespace-only string (§0.2).

    No other token is blank: '无', '-', 'N/A', '#N/A' are values (invalid ones in typed columns).
    """
    if raw is None or raw is pd.NA or raw is pd.NaT:
        return True
    if isinstance(raw, str):
        return not raw.strip()
    if isinstance(raw, (float, np.floating)):
        return math.isnan(raw)
    if isinstance(raw, Decimal):
        return raw.is_nan()
    if isinstance(raw, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(raw))
    return False


def parse_value(  # `type` shadows the builtin: it is the contract's name (DESIGN.md)
    raw: object, type: str, values: Sequence[str] | None = None  # noqa: A002
) -> tuple[object, str | None]:
    """Parse one cell as `type` → `(value, problem)`.

    Blank → `(None, None)`; valid → `(value, None)`; invalid → `(None, reason)` where the reason
    is a short bilingual text ("'abc' 不是数字 / is not a number") for messages. `values` is the
    list of allowed values of an enum (compared after trimming both sides).
    """
    allowed = _allowed_values(type, values)
    if _outside_calendar(raw):  # a Parquet date of year 0 reads as such a Timestamp
        text = f"{raw.year:04d}-{raw.month:02d}-{raw.day:02d}"
        if type == "text":
            return text, None
        return None, f"'{text}' 超出公历年份 1–9999 / is outside years 1-9999"
    if isinstance(raw, (np.timedelta64, dt.timedelta, pd.Timedelta)):
        # a duration is no cell value any ruleset accepts (np.timedelta64 even poses as an integer)
        if is_blank(raw) or (isinstance(raw, np.timedelta64) and np.isnat(raw)):
            return None, None
        if type == "text":
            return render_text(raw), None
        return None, f"{_reason(raw, type, allowed)} ({render_text(raw)!r} 是时长 / is a duration)"
    if is_blank(raw):
        return None, None
    if type in _NUMBER_KINDS:
        number = _to_decimal(raw, percent=type == "fraction")
        if number is not None and type == "integer":
            number = _integral(number)
        if number is None:
            return None, _reason(raw, type)
        return number, None
    if type == "date":
        day = _to_date(raw)
        return (day, None) if day is not None else (None, _reason(raw, type))
    if type == "boolean":
        flag = _to_bool(raw)
        return (flag, None) if flag is not None else (None, _reason(raw, type))
    if type == "text":
        return (str(raw) if isinstance(raw, str) else render_text(raw)), None
    token = (raw if isinstance(raw, str) else render_text(raw)).strip()
    assert allowed is not None  # enum: _allowed_values insists on a list
    if token in allowed:
        return token, None
    return None, _reason(raw, type, allowed)


def _allowed_values(kind: str, values: Sequence[object] | None) -> frozenset[str] | None:
    """Validate the type name; for enum, the set of allowed values (trimmed, rendered as text)."""
    if kind not in TYPES:
        raise RulesetError(f"未知类型 / unknown value type {kind!r}; expected one of {', '.join(TYPES)}")
    if kind != "enum":
        return None
    if not values:
        raise RulesetError("enum 类型需要 values 列表 / an enum input needs a non-empty `values` list")
    return frozenset((v if isinstance(v, str) else render_text(v)).strip() for v in values)


def _outside_calendar(raw: object) -> bool:
    """A pandas Timestamp outside years 1-9999 (Python's date cannot hold it)."""
    return isinstance(raw, pd.Timestamp) and raw is not pd.NaT and not 1 <= raw.year <= 9999


def _to_decimal(raw: object, *, percent: bool) -> Decimal | None:
    """A number cell as its exact decimal, or None if it is not one (bool is not a number)."""
    if isinstance(raw, (np.timedelta64, dt.timedelta)):  # np.timedelta64 poses as an np.integer
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if _NUMBER_RE.fullmatch(text):
            return Decimal(text.replace(",", ""))
        if percent and _PERCENT_RE.fullmatch(text):
            sign, digits, exponent = Decimal(text[:-1]).as_tuple()
            # Shift the exponent instead of dividing: exact whatever the context precision.
            return Decimal((sign, digits, int(exponent) - 2))
        return None
    if isinstance(raw, (bool, np.bool_)):
        return None
    if isinstance(raw, (int, np.integer)):
        return Decimal(int(raw))
    if isinstance(raw, (float, np.floating)):
        number = float(raw)
        # repr of the builtin float: numpy 2 scalars repr as 'np.float64(0.7)'.
        return Decimal(repr(number)) if math.isfinite(number) else None
    if isinstance(raw, Decimal):
        return raw if raw.is_finite() else None
    return None


def _integral(number: Decimal) -> Decimal | None:
    """The number as an integral Decimal (exponent ≥ 0), or None if it has a fraction."""
    if number != number.to_integral_value():
        return None
    exponent = number.as_tuple().exponent
    # int() only for a negative exponent ('3.0' → 3): then the digit count bounds the work,
    # whereas int(Decimal('1E+999999')) would build a huge integer for nothing.
    return number if isinstance(exponent, int) and exponent >= 0 else Decimal(int(number))


def _to_date(raw: object) -> dt.date | None:
    """A date cell (date/datetime/Timestamp/datetime64, or date text) as a date, else None."""
    if isinstance(raw, str):
        text = raw.strip()
        if not _DATE_RE.fullmatch(text):
            return None
        parts = _DATE_PARTS_RE.match(text)
        assert parts is not None  # implied by _DATE_RE
        year, month, day = (int(p) for p in parts.groups())
        try:
            return dt.date(year, month, day)
        except ValueError:
            return None
    if isinstance(raw, dt.datetime):  # pandas Timestamp too; the wall-clock date of aware values
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, np.datetime64):
        day = raw.astype("datetime64[D]").astype(object)
        return day if isinstance(day, dt.date) else None  # outside years 1–9999 numpy gives an int
    return None


def _to_bool(raw: object) -> bool | None:
    """A boolean cell: bool, the numbers 1/0, or a yes/no token; else None."""
    if isinstance(raw, (bool, np.bool_)):
        return bool(raw)
    if isinstance(raw, (int, float, Decimal, np.integer, np.floating)):
        if raw == 1:
            return True
        if raw == 0:
            return False
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if text in _TRUE_TOKENS:
            return True
        if text in _FALSE_TOKENS:
            return False
    return None


def render_text(raw: object) -> str:
    """A non-text cell as the text a user would see: 12.0 → '12', True → 'TRUE', a date → ISO.

    Used for text/enum columns that Excel delivered as numbers, booleans or dates.
    """
    if isinstance(raw, str):
        return str(raw)
    if isinstance(raw, (np.timedelta64, dt.timedelta)):  # before np.integer: timedelta64 subclasses it
        try:
            return str(pd.Timedelta(raw))  # one spelling whichever container the duration came in
        except (OverflowError, ValueError):  # beyond pandas' ±292 years (OutOfBoundsTimedelta)
            return str(raw)
    if isinstance(raw, (bool, np.bool_)):
        return "TRUE" if raw else "FALSE"
    if isinstance(raw, (int, np.integer)):
        return str(int(raw))
    if isinstance(raw, (float, np.floating)):
        return _render_float(float(raw))
    if isinstance(raw, Decimal):
        return format(raw, "f") if raw.is_finite() else str(raw)
    if isinstance(raw, dt.datetime):
        return raw.date().isoformat()
    if isinstance(raw, dt.date):
        return raw.isoformat()
    if isinstance(raw, np.datetime64):
        return str(np.datetime_as_string(raw, unit="D"))
    return str(raw)


def _render_float(number: float) -> str:
    """A float as plain decimal text of its shortest repr: 12.0 → '12', 1e-07 → '0.0000001'."""
    if not math.isfinite(number):
        return repr(number)
    if number == 0:
        return "0"
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_TYPE_NAMES = {
    "number": ("不是数字", "is not a number"),
    "fraction": ("不是数字或百分比", "is not a number or percentage"),
    "integer": ("不是整数", "is not an integer"),
    "date": ("不是有效日期", "is not a valid date"),
    "boolean": ("不是是/否值", "is not a yes/no value"),
    "enum": ("不是允许的值", "is not one of the allowed values"),
}


def _reason(raw: object, kind: str, allowed: frozenset[str] | None = None) -> str:
    """The bilingual reason for an invalid cell, quoting the (trimmed, shortened) cell."""
    shown = (raw if isinstance(raw, str) else render_text(raw)).strip()
    if len(shown) > 40:
        shown = shown[:39] + "…"
    zh, en = _TYPE_NAMES[kind]
    text = f"'{shown}' {zh} / {en}"
    if kind == "date" and _to_decimal(raw, percent=False) is not None:
        text += " (Excel 日期序列号须先转换为日期 / Excel date serials must be converted first)"
    elif kind == "boolean":
        text += " (是/否, Y/N, YES/NO, TRUE/FALSE, 1/0)"
    elif kind == "integer" and _to_decimal(raw, percent=False) is not None:
        text += " (有小数部分 / has a fractional part)"
    elif kind == "enum" and allowed is not None:
        choices = sorted(allowed)
        listed = ", ".join(choices[:12]) + (", …" if len(choices) > 12 else "")
        text += f": {listed}"
    return text


# ----------------------------------------------------------------------------- vector path


def parse_column(raw: Any, type: str, values: Sequence[str] | None = None) -> ParsedColumn:  # noqa: A002
    """Parse a whole column as `type`; row for row the same result as `parse_value`.

    `raw` is a pandas Series/Index, a numpy array, a pyarrow array or a list, of any dtype
    (float64, int64, bool, datetime64, object with mixed cells, pandas `str`/string). Positions,
    not index labels, line up with the result.
    """
    allowed = _allowed_values(type, values)
    return _parse_any(raw, type, allowed)


def _parse_any(raw: Any, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """Dispatch on the container and dtype to the matching vectorised path."""
    if isinstance(raw, (pa.Array, pa.ChunkedArray)):
        if _is_arrow_string(raw.type):
            return _parse_strings(raw, kind, allowed)
        return _parse_any(raw.to_pandas(), kind, allowed)
    if isinstance(raw, (pd.Series, pd.Index)):
        return _parse_pandas(raw, kind, allowed)
    if isinstance(raw, np.ndarray):
        return _parse_numpy(raw, kind, allowed)
    items = list(raw)
    # fromiter, not np.array: keeps each cell as the object it is (no coercion, no nesting).
    return _parse_objects(np.fromiter(items, dtype=object, count=len(items)), kind, allowed)


def _is_arrow_string(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
                or pa.types.is_string_view(arrow_type))


def _parse_pandas(series: pd.Series | pd.Index, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """pandas containers: arrow-backed text, tz-aware datetimes and nullable dtypes first."""
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        text = pa.array(series.array, from_pandas=True)
        return _parse_strings(text.cast(pa.large_string()), kind, allowed)
    if isinstance(dtype, pd.ArrowDtype):
        if _is_arrow_string(dtype.pyarrow_dtype):
            return _parse_strings(pa.array(series.array), kind, allowed)
        return _parse_objects(series.to_numpy(dtype=object, na_value=None), kind, allowed)
    if isinstance(dtype, pd.DatetimeTZDtype):
        # The wall-clock date, as `Timestamp.date()` gives in the scalar path.
        return _parse_numpy(pd.Series(series).dt.tz_localize(None).to_numpy(), kind, allowed)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(dtype, np.dtype):
        missing = np.asarray(series.isna(), dtype=bool)
        if isinstance(dtype, (pd.Int64Dtype, pd.Int32Dtype, pd.Int16Dtype, pd.Int8Dtype,
                              pd.UInt64Dtype, pd.UInt32Dtype, pd.UInt16Dtype, pd.UInt8Dtype,
                              pd.Float64Dtype, pd.Float32Dtype, pd.BooleanDtype)):
            filled = series.to_numpy(dtype=dtype.numpy_dtype, na_value=dtype.numpy_dtype.type(0))
            present = np.flatnonzero(~missing)
            return _merge(len(series), kind, [(present, _parse_numpy(filled[present], kind, allowed))])
        # Categorical and other extension types: the cells as objects.
        return _parse_objects(series.to_numpy(dtype=object), kind, allowed)
    return _parse_numpy(series.to_numpy(), kind, allowed)


def _parse_numpy(array: np.ndarray, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    array = np.ravel(array)
    code = array.dtype.kind
    if code == "f":
        return _parse_floats(array.astype(np.float64, copy=False), kind, allowed)
    if code in "iu":
        return _parse_ints(array, kind, allowed)
    if code == "b":
        return _parse_bools(array, kind, allowed)
    if code == "M":
        return _parse_datetimes(array, kind, allowed)
    if code == "U":
        return _parse_strings(pa.array(array, type=pa.large_string()), kind, allowed)
    if code == "m":  # durations: rare and always invalid (blank when NaT), so row by row is fine
        return _parse_rowwise(list(array), kind, allowed)
    return _parse_objects(array.astype(object, copy=False), kind, allowed)


def _parse_rowwise(cells: list, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """parse_value on every cell, gathered into the vector model (for cell kinds no fast path covers)."""
    n = len(cells)
    values = _full(n, kind)
    blank = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    for index, cell in enumerate(cells):
        value, problem = parse_value(cell, kind, sorted(allowed) if allowed is not None else None)
        if problem:
            invalid[index] = True
        elif value is None:
            blank[index] = True
        elif kind in ("text", "enum"):
            values[index] = value
        elif kind == "date":
            values[index] = float((value - dt.date(1970, 1, 1)).days)
        elif kind == "boolean":
            values[index] = 1.0 if value else 0.0
        else:
            values[index] = float(value)
    return ParsedColumn(values, blank, invalid, None)


def _full(n: int, kind: str) -> np.ndarray:
    """An all-blank values array of the vector model for `kind`."""
    if kind in ("text", "enum"):
        return np.full(n, None, dtype=object)
    return np.full(n, np.nan, dtype=np.float64)


def _result(values: np.ndarray, blank: np.ndarray, invalid: np.ndarray,
            inexact: np.ndarray | None = None) -> ParsedColumn:
    if inexact is not None and not inexact.any():
        inexact = None
    return ParsedColumn(values=values, blank=blank, invalid=invalid, inexact=inexact)


def _merge(n: int, kind: str, parts: list[tuple[np.ndarray, ParsedColumn]]) -> ParsedColumn:
    """Scatter parsed subsets back into one column; rows in no part are blank."""
    values = _full(n, kind)
    blank = np.ones(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    inexact = np.zeros(n, dtype=bool)
    for rows, part in parts:
        values[rows] = part.values
        blank[rows] = part.blank
        invalid[rows] = part.invalid
        if part.inexact is not None:
            inexact[rows] = part.inexact
    return _result(values, blank, invalid, inexact)


def _check_enum(texts: np.ndarray, valid: np.ndarray, allowed: frozenset[str]) -> ParsedColumn:
    """Rendered texts (no surrounding whitespace) of `valid` rows checked against an enum."""
    n = len(texts)
    member = np.zeros(n, dtype=bool)
    if valid.any():
        member[valid] = np.asarray(pc.is_in(pa.array(texts[valid], type=pa.large_string()),
                                            value_set=pa.array(sorted(allowed), type=pa.large_string())))
    values = np.where(member, texts, None).astype(object)
    return _result(values, ~valid, valid & ~member)


def _parse_floats(x: np.ndarray, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """Excel numeric cells: each float stands for the decimal of its shortest repr (§0.11)."""
    n = len(x)
    blank = np.isnan(x)
    finite = np.isfinite(x)
    if kind in _NUMBER_KINDS:
        valid = finite if kind != "integer" else finite & (np.floor(x) == x)
        # A float is exactly its repr's decimal, so float rows are never inexact.
        return _result(np.where(valid, x, np.nan), blank, ~blank & ~valid)
    if kind == "boolean":
        valid = (x == 1) | (x == 0)
        return _result(np.where(valid, (x == 1).astype(np.float64), np.nan), blank, ~blank & ~valid)
    if kind == "date":  # a bare number is an unconverted Excel serial: invalid (§0.11)
        return _result(np.full(n, np.nan), blank, ~blank)
    texts = np.full(n, None, dtype=object)
    integral = finite & (np.floor(x) == x) & (np.abs(x) <= _EXACT_INT_LIMIT)
    if integral.any():
        texts[integral] = _int_texts(x[integral].astype(np.int64))
    rest = np.flatnonzero(~blank & ~integral)
    texts[rest] = [_render_float(float(v)) for v in x[rest]]
    if kind == "text":
        return _result(texts, blank, np.zeros(n, dtype=bool))
    assert allowed is not None
    return _check_enum(texts, ~blank, allowed)


def _int_texts(x: np.ndarray) -> np.ndarray:
    """int64 → object array of decimal text, without a Python loop."""
    return np.asarray(pc.cast(pa.array(x), pa.string()), dtype=object) if len(x) else np.empty(0, object)


def _parse_ints(x: np.ndarray, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """Integer dtypes: exact as decimals; huge ones may not be exact as float64."""
    n = len(x)
    blank = np.zeros(n, dtype=bool)
    if kind in _NUMBER_KINDS:
        values = x.astype(np.float64)
        inexact = np.zeros(n, dtype=bool)
        big = np.flatnonzero((x > _EXACT_INT_LIMIT) | (x < -_EXACT_INT_LIMIT)) if x.dtype.kind == "i" \
            else np.flatnonzero(x > _EXACT_INT_LIMIT)
        for row in big:
            inexact[row] = Decimal(repr(float(values[row]))) != Decimal(int(x[row]))
        return _result(values, blank, np.zeros(n, dtype=bool), inexact)
    if kind == "boolean":
        valid = (x == 1) | (x == 0)
        return _result(np.where(valid, (x == 1).astype(np.float64), np.nan), blank, ~valid)
    if kind == "date":
        return _result(np.full(n, np.nan), blank, np.ones(n, dtype=bool))
    texts = _int_texts(x)
    if kind == "text":
        return _result(texts, blank, np.zeros(n, dtype=bool))
    assert allowed is not None
    return _check_enum(texts, np.ones(n, dtype=bool), allowed)


def _parse_bools(x: np.ndarray, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """Boolean dtype: valid booleans, never numbers or dates."""
    n = len(x)
    blank = np.zeros(n, dtype=bool)
    if kind == "boolean":
        return _result(x.astype(np.float64), blank, np.zeros(n, dtype=bool))
    if kind in _NUMBER_KINDS or kind == "date":
        return _result(np.full(n, np.nan), blank, np.ones(n, dtype=bool))
    texts = np.where(x, "TRUE", "FALSE").astype(object)
    if kind == "text":
        return _result(texts, blank, np.zeros(n, dtype=bool))
    assert allowed is not None
    return _check_enum(texts, np.ones(n, dtype=bool), allowed)


def _parse_datetimes(x: np.ndarray, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """datetime64 of any unit: the calendar day (numpy floors, so the time part is dropped)."""
    n = len(x)
    blank = np.isnat(x)
    days = x.astype("datetime64[D]").astype(np.int64)
    if kind == "date":
        valid = ~blank & (days >= _MIN_DAY) & (days <= _MAX_DAY)
        return _result(np.where(valid, days.astype(np.float64), np.nan), blank, ~blank & ~valid)
    if kind in ("text", "enum"):
        texts = np.full(n, None, dtype=object)
        texts[~blank] = np.datetime_as_string(x[~blank], unit="D").astype(object)
        if kind == "text":
            return _result(texts, blank, np.zeros(n, dtype=bool))
        assert allowed is not None
        return _check_enum(texts, ~blank, allowed)
    return _result(np.full(n, np.nan), blank, ~blank)


# Object cells grouped by exact type (not isinstance: np.str_, IntEnum and other subclasses take
# the slow but certain way through parse_value).
_SLOW, _NONE, _STR, _FLOAT, _BOOL, _INT, _DAY = range(7)
_CELL_GROUPS = {type(None): _NONE, str: _STR, float: _FLOAT, np.float64: _FLOAT, bool: _BOOL, int: _INT,
                dt.date: _DAY, dt.datetime: _DAY, pd.Timestamp: _DAY}


def _parse_objects(items: np.ndarray, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """Object columns (Excel ranges): split by cell type, vectorise each common type.

    str, float, int, bool, None, date, datetime and Timestamp cells go to the typed paths;
    anything else (Decimal, numpy scalars, NaT, NA …) row by row via `parse_value`.
    """
    n = len(items)
    if n == 0:
        return _merge(0, kind, [])
    groups = np.fromiter(map(_CELL_GROUPS.get, map(_type_of, items), repeat(_SLOW)), dtype=np.int8, count=n)
    parts: list[tuple[np.ndarray, ParsedColumn]] = []
    slow = groups == _SLOW

    def take(group: int) -> np.ndarray:
        return np.flatnonzero(groups == group)

    # None cells (_NONE) are in no part: _merge leaves those rows blank.
    rows = take(_STR)
    if len(rows):
        try:
            text = pa.array(items[rows], type=pa.large_string())
        except (pa.ArrowException, UnicodeError):  # e.g. lone surrogates: let Python handle them
            slow[rows] = True
        else:
            parts.append((rows, _parse_strings(text, kind, allowed)))
    rows = take(_FLOAT)
    if len(rows):
        parts.append((rows, _parse_floats(items[rows].astype(np.float64), kind, allowed)))
    rows = take(_BOOL)
    if len(rows):
        parts.append((rows, _parse_bools(items[rows].astype(bool), kind, allowed)))
    rows = take(_INT)
    if len(rows):
        try:
            ints = items[rows].astype(np.int64)
        except OverflowError:  # beyond int64: exact Decimal per row
            slow[rows] = True
        else:
            parts.append((rows, _parse_ints(ints, kind, allowed)))
    rows = take(_DAY)
    if len(rows):
        outside = np.fromiter((_outside_calendar(cell) for cell in items[rows]), dtype=bool, count=len(rows))
        if outside.any():  # pandas Timestamps of year 0 or < 1: parse_value says INVALID
            slow[rows[outside]] = True
            rows = rows[~outside]
    if len(rows):
        # toordinal() is the (wall-clock) calendar day of dates, datetimes and Timestamps alike,
        # and 30x faster than numpy's object → datetime64 conversion.
        ordinals = np.fromiter(map(dt.date.toordinal, items[rows]), dtype=np.int64, count=len(rows))
        days = (ordinals - _EPOCH_ORDINAL).astype("datetime64[D]")
        parts.append((rows, _parse_datetimes(days, kind, allowed)))
    rows = np.flatnonzero(slow)
    if len(rows):
        parts.append((rows, _parse_cells(items[rows], kind, allowed)))
    return _merge(n, kind, parts)


def _parse_cells(items: np.ndarray, kind: str, allowed: frozenset[str] | None) -> ParsedColumn:
    """The row-by-row fall-back: `parse_value`, converted to the vector model."""
    n = len(items)
    values = _full(n, kind)
    blank = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    inexact = np.zeros(n, dtype=bool)
    enum_values = sorted(allowed) if allowed is not None else None
    for row, cell in enumerate(items):
        value, problem = parse_value(cell, kind, enum_values)
        if value is None:
            blank[row] = problem is None
            invalid[row] = problem is not None
        elif kind in _NUMBER_KINDS:
            assert isinstance(value, Decimal)
            number = float(value)
            values[row] = number
            inexact[row] = Decimal(repr(number)) != value
        elif kind == "date":
            assert isinstance(value, dt.date)
            values[row] = value.toordinal() - _EPOCH_ORDINAL
        elif kind == "boolean":
            values[row] = 1.0 if value else 0.0
        else:
            values[row] = value
    return _result(values, blank, invalid, inexact)


def _anchored(body: str) -> str:
    return "^(?:" + body + ")$"


def _to_bool_mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A pyarrow boolean array → numpy bool, nulls as False."""
    return np.asarray(pc.fill_null(array, False), dtype=bool)


def _parse_strings(
    text: pa.Array | pa.ChunkedArray, kind: str, allowed: frozenset[str] | None
) -> ParsedColumn:
    """Text cells, whole column at once with pyarrow compute (RE2), no per-row Python."""
    n = len(text)
    trimmed = pc.utf8_trim(text, characters=_WHITESPACE)
    blank = ~_to_bool_mask(pc.greater(pc.binary_length(trimmed), 0))  # null or empty after trim
    if kind == "text":
        # Text passes through untouched (not trimmed); only whitespace-only cells become blank.
        values = _strings_to_numpy(pc.if_else(pa.array(blank), None, text))
        return _result(values, blank, np.zeros(n, dtype=bool))
    if kind == "enum":
        assert allowed is not None
        member = _to_bool_mask(pc.is_in(trimmed, value_set=pa.array(sorted(allowed), type=pa.large_string())))
        values = _strings_to_numpy(pc.if_else(pa.array(member), trimmed, None))
        return _result(values, blank, ~blank & ~member)
    if kind == "boolean":
        yes = _to_bool_mask(pc.is_in(trimmed, value_set=pa.array(sorted(_TRUE_TOKENS))))
        no = _to_bool_mask(pc.is_in(trimmed, value_set=pa.array(sorted(_FALSE_TOKENS))))
        values = np.where(yes, 1.0, np.where(no, 0.0, np.nan))
        return _result(values, blank, ~blank & ~yes & ~no)
    if kind == "date":
        return _parse_date_strings(trimmed, blank)
    return _parse_number_strings(trimmed, blank, kind)


def _strings_to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow strings → object array of str/None."""
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)


def _parse_number_strings(trimmed: pa.Array | pa.ChunkedArray, blank: np.ndarray, kind: str) -> ParsedColumn:
    """Trimmed number/fraction/integer text → float64, with the exactness mask."""
    body = _INTEGRAL_BODY if kind == "integer" else _NUMBER_BODY
    matched = pc.fill_null(pc.match_substring_regex(trimmed, _anchored(body)), False)
    plain = pc.replace_substring(trimmed, ",", "")
    castable = pc.if_else(matched, plain, None)
    if kind == "fraction":
        percent = pc.fill_null(pc.match_substring_regex(trimmed, _anchored(_PERCENT_BODY)), False)
        if pc.any(percent).as_py():
            # '12.5%' → '12.5e-2': the cast then rounds the exact decimal once, like float(Decimal).
            suffix, separator = pa.scalar("e-2", trimmed.type), pa.scalar("", trimmed.type)
            scaled = pc.binary_join_element_wise(pc.utf8_slice_codeunits(trimmed, 0, -1), suffix, separator)
            castable = pc.if_else(percent, scaled, castable)
            matched = pc.or_(matched, percent)
    # Arrow's string→double cast is correctly rounded and overflows to ±inf like float().
    values = np.asarray(pc.cast(castable, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = _to_bool_mask(matched)
    values = np.where(valid, values, np.nan)
    inexact = np.zeros(len(values), dtype=bool)
    lengths = np.asarray(pc.fill_null(pc.binary_length(castable), 0))
    long_rows = np.flatnonzero(valid & (lengths > _EXACT_TEXT_LENGTH))
    if len(long_rows):
        texts = pc.take(trimmed, pa.array(long_rows)).to_pylist()
        for row, cell in zip(long_rows, texts):
            exact = _to_decimal(cell, percent=kind == "fraction")
            inexact[row] = Decimal(repr(float(values[row]))) != exact
    return _result(values, blank, ~blank & ~valid, inexact)


def _parse_date_strings(trimmed: pa.Array | pa.ChunkedArray, blank: np.ndarray) -> ParsedColumn:
    """Trimmed date text → days since 1970-01-01 (only real calendar dates)."""
    n = len(blank)
    matched = _to_bool_mask(pc.match_substring_regex(trimmed, _anchored(_DATE_BODY)))
    values = np.full(n, np.nan)
    if matched.any():
        rows = np.flatnonzero(matched)
        subset = pc.take(trimmed, pa.array(rows))
        year, month, day = (np.zeros(len(rows), dtype=np.int64) for _ in range(3))
        # A matched text of exactly 10 bytes can only be 'YYYY-MM-DD' or 'YYYY/MM/DD' (a time
        # part or 年月日 make it longer): slice those, extract the rest with a regex (3x slower).
        fixed = np.asarray(pc.equal(pc.binary_length(subset), 10), dtype=bool)
        for mask, fields in ((fixed, None), (~fixed, _DATE_PARTS)):
            if not mask.any():
                continue
            part = subset.filter(pa.array(mask))
            if fields is None:
                pieces = [pc.utf8_slice_codeunits(part, start, stop) for start, stop in ((0, 4), (5, 7), (8, 10))]
            else:
                extracted = pc.extract_regex(part, fields)
                pieces = [pc.struct_field(extracted, [i]) for i in range(3)]
            for target, piece in zip((year, month, day), pieces):
                target[mask] = np.asarray(pc.cast(piece, pa.int64()), dtype=np.int64)
        ok = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= _days_in_month(year, month))
        values[rows[ok]] = _days_from_civil(year[ok], month[ok], day[ok])
    valid = ~np.isnan(values)
    return _result(values, blank, ~blank & ~valid)


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return _MONTH_DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Proleptic Gregorian date → days since 1970-01-01, pure integer arithmetic.

    Howard Hinnant's `days_from_civil` (the year starts in March so the leap day is last).
    """
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return (era * 146097 + day_of_era - 719468).astype(np.float64)

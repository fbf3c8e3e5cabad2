"""Evaluation results → the output table (RULESETS §0.4–§0.6) and its text rendering.

Output columns come after the input columns, unchanged inputs first: `status`, `errors`,
`notes`, the declared outputs in order, then `fired_rules` when asked. An ERROR row has the tier
column `待定` and every other derived output blank. The frame is typed (numbers float64, dates
datetime64, text object, blank = NaN/NaT/None); `render_frame` turns it into the text a CSV shows.
"""
from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from engine.compile import CompiledRuleset

PENDING = "待定"
EPOCH = np.datetime64("1970-01-01", "D")


_CODES_PER_KEY = 16  # codes folded into one integer key: a lookup table of 2**16 entries at most


def join_codes(items: Sequence[tuple[str, np.ndarray]], n: int) -> np.ndarray:
    """`;`-join the codes whose row mask is set, in list order, for every row at once.

    Rows are grouped by which codes they carry (a bit pattern), so the strings are built once
    per distinct combination instead of once per row. Only rows carrying a code are visited
    (errors touch a few percent of a table), and patterns are numbered through a lookup table
    of the bit patterns rather than a sort (`np.unique` was a third of a 1M-row run, issue 8).
    """
    out = np.full(n, "", dtype=object)
    items = [(code, mask) for code, mask in items if mask.any()]
    if not items:
        return out
    hit = items[0][1].copy()
    for _code, mask in items[1:]:
        hit |= mask
    rows = None if hit.all() else np.flatnonzero(hit)
    # combos[i] = the codes of pattern i; pattern[r] = the pattern of (hit) row r
    combos: list[tuple[str, ...]] = [()]
    pattern = np.zeros(n if rows is None else len(rows), dtype=np.int64)
    for start in range(0, len(items), _CODES_PER_KEY):
        chunk = items[start:start + _CODES_PER_KEY]
        key = np.zeros(len(pattern), dtype=np.int32)
        for bit, (_code, mask) in enumerate(chunk):
            part = mask if rows is None else mask[rows]
            key |= part.view(np.int8).astype(np.int32) << bit
        present = np.flatnonzero(np.bincount(key, minlength=1 << len(chunk)))
        local = np.empty(1 << len(chunk), dtype=np.int64)
        local[present] = np.arange(len(present))
        chunk_combos = [tuple(code for bit, (code, _m) in enumerate(chunk) if (int(p) >> bit) & 1) for p in present]
        combined = pattern * len(present) + local[key]
        # renumber the (earlier patterns × this chunk's patterns) pairs that occur, densely
        space = len(combos) * len(present)
        if space <= 4 * len(pattern) + (1 << _CODES_PER_KEY):
            seen = np.flatnonzero(np.bincount(combined, minlength=space))
            dense = np.empty(space, dtype=np.int64)
            dense[seen] = np.arange(len(seen))
            pattern = dense[combined]
        else:  # very many distinct combinations: a sort is cheaper than a table that large
            seen, pattern = np.unique(combined, return_inverse=True)
        combos = [combos[int(s) // len(present)] + chunk_combos[int(s) % len(present)] for s in seen]
    texts = np.array([";".join(codes) for codes in combos], dtype=object)
    if rows is None:
        return texts[pattern]
    out[rows] = texts[pattern]
    return out


def days_to_datetime(values: np.ndarray) -> np.ndarray:
    """float days since 1970-01-01 (NaN = blank) → datetime64[s] (NaT = blank)."""
    present = ~np.isnan(values)
    # whole-column integer arithmetic on seconds, then NaT written into the blanks: a third of
    # the passes of gathering and scattering the present rows (issue 8)
    seconds = np.where(present, values, 0.0).astype(np.int64) * 86_400
    result = seconds.view("datetime64[s]")
    result[~present] = np.datetime64("NaT")
    return result


def scalar_to_column(kind: str, values: Iterable[object], n: int) -> np.ndarray:
    """Scalar-model values (Decimal/date/bool/str/None) → the typed column of the output frame."""
    values = list(values)
    if kind == "number":
        return np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    if kind == "boolean":
        return np.array([math.nan if v is None else float(bool(v)) for v in values], dtype=float)
    if kind == "date":
        # day ordinals in one int64 array, then one conversion (np.datetime64 per cell was ~1 µs each)
        days = np.array([_NAT_DAYS if v is None else v.toordinal() for v in values], dtype=np.int64)  # type: ignore[attr-defined]
        present = days != _NAT_DAYS
        days[present] -= _EPOCH_ORDINAL
        return days.view("datetime64[D]").astype("datetime64[s]")
    return np.array([v if v is None else str(v) for v in values], dtype=object)


_NAT_DAYS = np.iinfo(np.int64).min  # numpy's NaT
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def vec_to_column(kind: str, values: np.ndarray) -> np.ndarray:
    if kind == "date":
        return days_to_datetime(values)
    if kind == "text":
        return values
    return values.astype(float, copy=False)


def blank_column(kind: str, n: int) -> np.ndarray:
    if kind == "date":
        return np.full(n, np.datetime64("NaT"), dtype="datetime64[s]")
    if kind == "text":
        return np.full(n, None, dtype=object)
    return np.full(n, np.nan)


def apply_error_rows(compiled: CompiledRuleset, columns: dict[str, np.ndarray], error: np.ndarray,
                     done: frozenset[str] = frozenset()) -> None:
    """ERROR rows: tier column `待定`, every other output blank, notes blank (RULESETS §0.5).

    `done`: outputs whose ERROR rows the caller already wrote (the vector engine does it for
    coded text while building the column, issue 8).
    """
    if not error.any():
        return
    tier = compiled.definition.tier_output
    for out in compiled.definition.outputs:
        if out.key in done:
            continue
        column = columns[out.key]
        if out.key == tier:
            column = column.astype(object) if column.dtype != object else column
            column[error] = PENDING
            columns[out.key] = column
        elif column.dtype == object:
            column[error] = None
        elif column.dtype.kind == "M":
            column[error] = np.datetime64("NaT")
        else:
            column[error] = np.nan
    columns["notes"][error] = ""


def build_frame(source: pd.DataFrame, compiled: CompiledRuleset, columns: dict[str, np.ndarray],
                explain: bool) -> pd.DataFrame:
    """Input columns unchanged, then status/errors/notes, outputs, [fired_rules]."""
    order = ["status", "errors", "notes", *[o.key for o in compiled.definition.outputs]]
    if explain:
        order.append("fired_rules")
    added = [pd.Series(columns[name], index=source.index, name=name, copy=False,
                       dtype=object if columns[name].dtype == object else None) for name in order]
    if source.columns.is_unique and not set(order) & set(source.columns):
        # Side by side without consolidating blocks: the DataFrame constructor copied every
        # column into 2-D blocks, a tenth of a 1M-row run (issue 8); concat shares them.
        outputs = pd.DataFrame({series.name: series for series in added}, index=source.index, copy=False)
        return pd.concat([source, outputs], axis=1)
    data = {name: source[name] for name in source.columns}
    for series in added:
        data[series.name] = series
    frame = pd.DataFrame(data, index=source.index, columns=[*source.columns, *order])
    return frame


# --------------------------------------------------------------------------- rendering
def _pad(text: str, decimals: int) -> str:
    if decimals <= 0:
        return text
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(decimals, '0')}"


def render_number(value: float, integer: bool = False, decimals: int = 0) -> str:
    """Numbers as an analyst writes them: 100, 1.25, 0.33, 6000000 (no exponent, no stray .0).

    `decimals` pads to a minimum number of decimals (budgets shown as 1.0, 24.0 like the spec).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, Decimal):
        value = float(value)
    if integer:
        return str(int(round(value)))
    if float(value).is_integer():
        return _pad(str(int(value)), decimals)
    # 15 significant digits: a float sum like 1000364.9900999999 shows as the decimal it stands for
    # (1000364.9901), the same text the exact engine prints.
    text = format(Decimal(format(float(value), ".15g")), "f")
    return _pad(text.rstrip("0").rstrip(".") if "." in text else text, decimals)


def render_cell(value: object, kind: str, decimals: int = 0) -> str:
    if value is None or value is pd.NA:  # pd.NA: a blank of a nullable column (Parquet, Arrow)
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp):
        # ISO year-month-day like date.isoformat(); strftime writes year 99 as '99' and fails
        # outright for pandas Timestamps outside years 1-9999 (a Parquet date of year 0)
        if value is pd.NaT:
            return ""
        wall = value.tz_localize(None) if value.tzinfo is not None else value  # the local calendar day
        return str(np.datetime_as_string(wall.to_datetime64().astype("datetime64[D]")))
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return "" if np.isnat(value) else str(value.astype("datetime64[D]"))
    if kind in ("number", "integer") and isinstance(value, (float, int, Decimal, np.floating, np.integer)):
        return render_number(float(value), integer=(kind == "integer"), decimals=decimals)
    if kind == "boolean" and isinstance(value, (float, bool, np.floating, np.bool_)):
        return "TRUE" if bool(value) else "FALSE"
    if isinstance(value, (bool, np.bool_)):
        # a real boolean cell (Excel, Parquet) in any other column: Excel's spelling, as values.render_text
        # writes it, never Python's True/False. Text cells saying 'False' are str and stay as they came.
        return "TRUE" if value else "FALSE"
    return str(value)


def _is_plain_blank(value: object) -> bool:
    """A blank that `render_cell` turns into '' (None, pd.NA, float NaN, NaT)."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _text_cells(values: np.ndarray) -> np.ndarray | None:
    """Object cells that are all str or plain blanks → their text ('' for blanks), else None.

    The common case of text columns; `render_cell` of a str is the str itself. One C pass to
    type the column instead of a Python call per cell (issue 8).
    """
    from pandas.api.types import infer_dtype

    if infer_dtype(values, skipna=True) not in ("string", "empty"):
        return None
    blank = pd.isna(values)
    if not blank.any():
        return values.copy()
    blanks = values[blank]
    others = blanks[~np.equal(blanks, None)]  # None is the usual blank: one C loop (identity compare)
    if not all(_is_plain_blank(v) for v in others):
        return None
    result = values.copy()
    result[blank] = ""
    return result


def _day_texts(values: np.ndarray) -> np.ndarray:
    """datetime64 → 'YYYY-MM-DD' ('' for NaT), as `render_cell` writes each one."""
    days = values.astype("datetime64[D]")
    texts = np.datetime_as_string(days, unit="D").astype(object)
    texts[np.isnat(days)] = ""
    return texts


def _input_texts(series: pd.Series) -> np.ndarray | None:
    """An input column as `render_cell(v, "text")` writes each cell, vectorised, or None."""
    dtype = series.dtype
    if dtype == object or isinstance(dtype, pd.StringDtype):
        return _text_cells(series.to_numpy(dtype=object))
    if not isinstance(dtype, np.dtype):
        return None
    values = series.to_numpy()
    if dtype.kind == "f":
        texts = values.astype(str).astype(object)  # numpy's shortest repr, as str(np.float64) gives
        texts[np.isnan(values)] = ""
        return texts
    if dtype.kind in "iu":
        return values.astype(str).astype(object)
    if dtype.kind == "b":
        return np.where(values, "TRUE", "FALSE").astype(object)
    if dtype.kind == "M":
        return _day_texts(values)
    return None


def render_column(series: pd.Series, kind: str, decimals: int = 0) -> pd.Series:
    """One output column → text, vectorised for the common dtypes."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind == "M":
        return pd.Series(_day_texts(series.to_numpy()), index=series.index, dtype=object)
    if series.dtype.kind == "M":  # timezone-aware: the wall-clock day, cell by cell
        return pd.Series([render_cell(v, kind) for v in series], index=series.index, dtype=object)
    if series.dtype.kind == "f":
        values = series.to_numpy()
        present = ~np.isnan(values)
        result = np.full(len(values), "", dtype=object)
        integral = present & (np.floor(values) == values) & (np.abs(values) < 2**53)
        if kind == "integer":
            integral = present
        if integral.any():
            texts = np.rint(values[integral]).astype(np.int64).astype(str).astype(object)
            if decimals and kind != "integer":
                texts = texts + "." + "0" * decimals
            result[integral] = texts
        other = present & ~integral
        if other.any():
            # each distinct value rendered once: budgets and rates repeat (0.33, 0.17, 1.25)
            codes, distinct = pd.factorize(values[other])
            rendered = np.array([render_number(float(v), decimals=decimals) for v in distinct], dtype=object)
            result[other] = rendered[codes]
        if kind == "boolean":
            result[present] = np.where(values[present] != 0, "TRUE", "FALSE")
        return pd.Series(result, index=series.index, dtype=object)
    if series.dtype == object and kind not in ("number", "integer", "boolean"):
        texts = _text_cells(series.to_numpy(dtype=object))
        if texts is not None:
            return pd.Series(texts, index=series.index, dtype=object)
    return pd.Series([render_cell(v, kind) for v in series.to_numpy()], index=series.index, dtype=object)


def render_frame(frame: pd.DataFrame, compiled: CompiledRuleset) -> pd.DataFrame:
    """The whole result as text (CSV / Excel text view): outputs rendered, input columns as given."""
    kinds = {o.key: o for o in compiled.definition.outputs}
    out = {}
    for name in frame.columns:
        series = frame[name]
        if name in kinds:
            out[name] = render_column(series, kinds[name].type, kinds[name].decimals)
        elif name in ("status", "errors", "notes", "fired_rules"):
            out[name] = series.fillna("").astype(object)
        else:
            texts = _input_texts(series)
            out[name] = (pd.Series(texts, index=series.index, dtype=object) if texts is not None else
                         series.map(lambda v: render_cell(v, "text"), na_action=None).astype(object))
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)

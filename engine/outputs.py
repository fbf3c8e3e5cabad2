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


def join_codes(items: Sequence[tuple[str, np.ndarray]], n: int) -> np.ndarray:
    """`;`-join the codes whose row mask is set, in list order, for every row at once.

    Rows are grouped by which codes they carry (a bit pattern), so the strings are built once
    per distinct combination instead of once per row.
    """
    out = np.full(n, "", dtype=object)
    items = [(code, mask) for code, mask in items if mask.any()]
    if not items:
        return out
    for start in range(0, len(items), 60):
        chunk = items[start:start + 60]
        key = np.zeros(n, dtype=np.int64)
        for bit, (_code, mask) in enumerate(chunk):
            key |= mask.astype(np.int64) << bit
        uniq, inverse = np.unique(key, return_inverse=True)
        texts = np.array([";".join(code for bit, (code, _m) in enumerate(chunk) if (int(u) >> bit) & 1)
                          for u in uniq], dtype=object)
        part = texts[inverse]
        if start == 0:
            out = part
        else:
            both = (out != "") & (part != "")
            out = np.where(both, out + ";" + part, np.where(part != "", part, out))
    return out


def days_to_datetime(values: np.ndarray) -> np.ndarray:
    """float days since 1970-01-01 (NaN = blank) → datetime64[s] (NaT = blank)."""
    result = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[s]")
    present = ~np.isnan(values)
    result[present] = (EPOCH + values[present].astype(np.int64)).astype("datetime64[s]")
    return result


def scalar_to_column(kind: str, values: Iterable[object], n: int) -> np.ndarray:
    """Scalar-model values (Decimal/date/bool/str/None) → the typed column of the output frame."""
    values = list(values)
    if kind == "number":
        return np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    if kind == "boolean":
        return np.array([math.nan if v is None else float(bool(v)) for v in values], dtype=float)
    if kind == "date":
        return np.array([np.datetime64("NaT") if v is None else np.datetime64(v, "D") for v in values],
                        dtype="datetime64[s]")
    return np.array([v if v is None else str(v) for v in values], dtype=object)


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


def apply_error_rows(compiled: CompiledRuleset, columns: dict[str, np.ndarray], error: np.ndarray) -> None:
    """ERROR rows: tier column `待定`, every other output blank, notes blank (RULESETS §0.5)."""
    if not error.any():
        return
    tier = compiled.definition.tier_output
    for out in compiled.definition.outputs:
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
    data = {name: source[name] for name in source.columns}
    for name in order:
        data[name] = pd.Series(columns[name], index=source.index, dtype=object if columns[name].dtype == object else None)
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
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if value is pd.NaT:
        return ""
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return "" if np.isnat(value) else str(value.astype("datetime64[D]"))
    if kind in ("number", "integer") and isinstance(value, (float, int, Decimal, np.floating, np.integer)):
        return render_number(float(value), integer=(kind == "integer"), decimals=decimals)
    if kind == "boolean" and isinstance(value, (float, bool, np.floating, np.bool_)):
        return "TRUE" if bool(value) else "FALSE"
    return str(value)


def render_column(series: pd.Series, kind: str, decimals: int = 0) -> pd.Series:
    """One output column → text, vectorised for the common dtypes."""
    if series.dtype.kind == "M":
        text = series.dt.strftime("%Y-%m-%d")
        return text.where(series.notna(), "").astype(object)
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
            result[other] = [render_number(float(v), decimals=decimals) for v in values[other]]
        if kind == "boolean":
            result[present] = np.where(values[present] != 0, "TRUE", "FALSE")
        return pd.Series(result, index=series.index, dtype=object)
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
            out[name] = series.map(lambda v: render_cell(v, "text"), na_action=None).astype(object)
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)

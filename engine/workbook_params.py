"""A workbook's 参数 / Parameters sheet: parameter overrides, the 规则集 row and a sheet-level as_of_date.

Both ways of grading a workbook read this block — the add-in (its buttons and UDFs, through
xlwings) and `tier fill` (headless, from the file) — so the reading lives here, once, and
`addin/` imports it: data flows one way and `engine/` never imports `addin/` (DESIGN.md). A
workbook graded by the button and by `tier fill` must come out the same.

The block is key/value rows (the sheet's first two used columns; a header row is optional):

* keys are parameter keys or their zh/en labels; `id.key` scopes a row to one ruleset (a sheet
  shared by several tables) and rows scoped to another known ruleset are skipped;
* a `规则集` / `ruleset` row names the workbook's ruleset;
* `as_of_date` (评估基准日, 基准日, … or the ruleset's own as_of_date headers) is no parameter: it
  fills *blank* as_of_date cells for the evaluation only (RULESETS §0.8), never the cells;
* a blank value keeps the default; unknown keys are listed as ignored (or, for an explicit
  `params` argument, rejected with a did-you-mean).

The few Excel cell conventions this needs sit here too, for the same reason: what a blank cell
is as xlwings reports it, the shape of a UDF argument, and Excel's date serials in the 1900 and
1904 date systems (an as_of_date typed without a date format arrives as a bare serial). The
add-in's `excel_values` re-exports them.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ParameterError, RulesetError
from engine.rows import normalize_header
from engine.ruleset import RulesetDef, available_rulesets, resolve_ruleset_path
from engine.values import parse_value

__all__ = [
    "PARAM_SHEETS", "ParamSet", "as_2d", "as_of_value", "excel_serial_to_date", "is_as_of_name", "is_blank_cell",
    "read_params", "resolve_ref", "ruleset_row", "serial_to_date_or_raw",
]

PARAM_SHEETS = ("参数", "Parameters")

_EPOCH_1900 = dt.date(1899, 12, 30)  # serial 61 = 1900-03-01; serials 1..59 are one day later
_EPOCH_1904 = dt.date(1904, 1, 1)
_LOTUS_PHANTOM_SERIAL = 60  # Excel shows it as 1900-02-29, a day that never existed
_MAX_SERIAL_1900 = 2958465  # 9999-12-31
_MAX_SERIAL_1904 = _MAX_SERIAL_1900 - 1462


# --------------------------------------------------------------------------- Excel cells
def is_blank_cell(value: object) -> bool:
    """An empty cell as xlwings reports it: None, '' or whitespace-only text (RULESETS §0.2).

    NaN counts too (a pandas-shaped caller); everything else, '#N/A' included, is a value.
    """
    if value is None:
        return True
    if value.__class__ is str:
        return not value.strip()  # type: ignore[union-attr]
    if value.__class__ is float:
        return math.isnan(value)  # type: ignore[arg-type]
    return False


def as_2d(value: Any) -> list[list[object]]:
    """A UDF argument as a list of rows: scalar → [[v]], 1-D → one row, 2-D → rows.

    A 1-D list is taken as a row because the add-in's functions take header rows and table rows;
    xlwings only produces 1-D lists for single-row or single-column ranges without `ndim=2`.
    Rows of a 2-D list are shared, not copied (callers that pad copy first).
    """
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not value:
            return []
        kinds = set(map(type, value))
        if kinds <= {list}:
            return value if isinstance(value, list) else list(value)
        if kinds <= {list, tuple}:
            return [item if item.__class__ is list else list(item) for item in value]
        if kinds & {list, tuple}:  # mixed: lift the scalars
            return [list(item) if isinstance(item, (list, tuple)) else [item] for item in value]
        return [list(value)]
    return [[value]]


def excel_serial_to_date(serial: float, date1904: bool = False) -> dt.date | None:
    """An Excel date serial → the date Excel displays for it, or None if it is no real date.

    1900 system: serial 1 = 1900-01-01 and Excel (copying Lotus 1-2-3) counts a 1900-02-29, so
    serials up to 59 are one day later than a plain count from 1899-12-30; serial 60 is that
    phantom day (None). 1904 system (old Mac workbooks): serial 0 = 1904-01-01. The time part
    (the fraction) is dropped, as RULESETS §0.3 does for datetime cells.
    """
    if isinstance(serial, bool) or not isinstance(serial, (int, float, Decimal, np.integer, np.floating)):
        return None
    value = float(serial)
    if not math.isfinite(value):
        return None
    day = math.floor(value)
    if date1904:
        if day < 0 or day > _MAX_SERIAL_1904:
            return None
        return _EPOCH_1904 + dt.timedelta(days=day)
    if day < 1 or day > _MAX_SERIAL_1900 or day == _LOTUS_PHANTOM_SERIAL:
        return None
    return _EPOCH_1900 + dt.timedelta(days=day + (1 if day < _LOTUS_PHANTOM_SERIAL else 0))


def serial_to_date_or_raw(cell: object, date1904: bool = False) -> object:
    """A cell of a date column as the engine should see it.

    Numbers are serials → `date`; the phantom 1900-02-29 becomes the text Excel shows for it,
    so the engine rejects it with a message naming that (impossible) date; a number that is no
    serial at all (negative, beyond 9999) stays as it is and the engine says why it is invalid.
    """
    if isinstance(cell, bool) or not isinstance(cell, (int, float, Decimal, np.integer, np.floating)):
        return cell
    day = excel_serial_to_date(cell, date1904)  # type: ignore[arg-type]
    if day is not None:
        return day
    if not date1904 and math.isfinite(float(cell)) and math.floor(float(cell)) == _LOTUS_PHANTOM_SERIAL:
        return "1900-02-29"
    return cell


# --------------------------------------------------------------------------- the ruleset named
def resolve_ref(ref: Any, base_dir: str | os.PathLike | None = None) -> Path:
    """A ruleset argument (id like `credit`, or a .yaml path) → its file.

    A relative path is taken relative to the workbook's folder, never the current directory
    (STYLE §3: the add-in does not guess paths from where Excel happened to start).
    """
    if is_blank_cell(ref):
        raise RulesetError("请指定规则集 / no ruleset given: use an id such as \"credit\" (see =TIER_RULESETS())")
    text = str(ref).strip()
    looks_like_path = text.lower().endswith((".yaml", ".yml")) or "/" in text or "\\" in text
    if looks_like_path and not os.path.isabs(text) and base_dir:
        text = os.path.join(os.fspath(base_dir), text)
    return resolve_ruleset_path(text)


# --------------------------------------------------------------------------- parameters
_HEADER_WORDS = frozenset(normalize_header(w) for w in (
    "参数", "参数名", "参数名称", "名称", "键", "项目", "key", "name", "parameter", "parameters", "setting"))
_RULESET_KEYS = frozenset(normalize_header(w) for w in ("ruleset", "规则集"))
_AS_OF_WORDS = frozenset(normalize_header(w) for w in ("as_of_date", "评估基准日", "基准日", "评估日期", "分类基准日"))


@dataclass(frozen=True)
class ParamSet:
    """Parameter overrides for one ruleset from a key/value block, plus a sheet-level as_of_date."""

    overrides: Mapping[str, object] = field(default_factory=dict)
    as_of_date: object = None  # raw cell value; None = not given
    ignored: tuple[str, ...] = ()  # keys that name nothing in this ruleset (sheet mode only)
    ruleset: str | None = None  # a `规则集`/`ruleset` row (used by the macros)
    # Parameter key (and 'as_of_date') → index of the row it came from in the block read (0-based),
    # so a bad value can be reported at its cell (`tier fill`). After `merged`, the index is in
    # whichever block the value came from.
    rows: Mapping[str, int] = field(default_factory=dict)

    def merged(self, other: ParamSet) -> ParamSet:
        """`other` on top of self (the explicit argument beats the 参数 sheet)."""
        return ParamSet(overrides={**self.overrides, **other.overrides},
                        as_of_date=other.as_of_date if other.as_of_date is not None else self.as_of_date,
                        ignored=self.ignored + other.ignored, ruleset=other.ruleset or self.ruleset,
                        rows={**self.rows, **other.rows})


def _param_lookup(definition: RulesetDef) -> dict[str, str]:
    index: dict[str, str] = {}
    for param in definition.parameters:
        for name in (param.key, param.zh, param.en):
            if name:
                index.setdefault(normalize_header(name), param.key)
    return index


def _as_of_words(definition: RulesetDef) -> set[str]:
    words = set(_AS_OF_WORDS)
    if any(i.key == "as_of_date" for i in definition.inputs):
        words |= {normalize_header(h) for h in definition.input("as_of_date").headers}
    return words


def is_as_of_name(name: object, definition: RulesetDef) -> bool:
    """True when a key names the sheet-level as_of_date (评估基准日, 基准日, … or the ruleset's headers)."""
    return normalize_header(name) in _as_of_words(definition)


def ruleset_row(rows: Any) -> str | None:
    """The value of a `规则集`/`ruleset` row of a 参数 block, if any."""
    for row in as_2d(rows):
        if len(row) >= 2 and not is_blank_cell(row[0]) and normalize_header(row[0]) in _RULESET_KEYS:
            return None if is_blank_cell(row[1]) else str(row[1]).strip()
    return None


def read_params(rows: Any, definition: RulesetDef, strict: bool) -> ParamSet:
    """Key/value rows (a 2-column range; header row optional) → overrides for `definition`.

    Keys are parameter keys or their zh/en labels; `id.key` scopes a row to one ruleset (a 参数
    sheet shared by several tables). `as_of_date` (or 评估基准日/基准日/… and the ruleset's own
    as_of_date headers) is no parameter: it fills blank as_of_date cells. A blank value keeps
    the default. `strict` (an explicit `params` argument) rejects unknown keys with a
    did-you-mean; the 参数 sheet (not strict) lists them in `ignored`.
    """
    lookup = _param_lookup(definition)
    as_of_words = _as_of_words(definition)
    overrides: dict[str, object] = {}
    ignored: list[str] = []
    where: dict[str, int] = {}
    as_of: object = None
    chosen: str | None = None
    table = as_2d(rows)
    for number, row in enumerate(table):
        if len(row) < 2 and (not row or is_blank_cell(row[0])):
            continue
        raw_key = row[0]
        value = row[1] if len(row) > 1 else None
        if is_blank_cell(raw_key):
            continue
        text = str(raw_key).strip()
        if number == 0 and normalize_header(text) in _HEADER_WORDS:
            continue
        if "." in text:
            scope, rest = (part.strip() for part in text.split(".", 1))
            if scope == definition.id:
                text = rest
            elif scope in available_rulesets():
                continue  # a row for another ruleset's table
        name = normalize_header(text)
        if name in _RULESET_KEYS:
            chosen = None if is_blank_cell(value) else str(value).strip()
            continue
        if is_blank_cell(value):
            continue
        if name in as_of_words:
            as_of = value
            where["as_of_date"] = number
            continue
        key = lookup.get(name)
        if key is None:
            if strict:
                from engine.compile import coerce_param

                coerce_param(definition, text, value)  # raises ParameterError with a did-you-mean
            ignored.append(text)
            continue
        overrides[key] = value
        where[key] = number
    return ParamSet(overrides=overrides, as_of_date=as_of, ignored=tuple(ignored), ruleset=chosen, rows=where)


def as_of_value(raw: object, date1904: bool = False) -> dt.date:
    """The sheet-level as_of_date as a date (a date cell, an Excel serial or date text)."""
    value, problem = parse_value(serial_to_date_or_raw(raw, date1904), "date")
    if problem or not isinstance(value, dt.date):
        raise ParameterError(f"参数 as_of_date 的值无效 / parameter as_of_date: {problem or repr(raw)}")
    return value

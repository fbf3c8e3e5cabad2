"""What xlwings hands over → what the engine's one value parser expects, and back.

xlwings delivers a range as Python values: floats for every number (integers too), `datetime`
for date-formatted cells, `None` for empty cells (and for error cells unless `err_to_str` is
set, in which case they arrive as '#N/A'-style strings), text as `str` — numbers stored as
text and Chinese text included — and 2-D lists for multi-cell ranges (1-D for a single row or
column unless `ndim=2`). Tests call the same code with ragged lists.

This module does only what the engine cannot know about Excel (RULESETS §0.11):

* the *shape*: trailing empty rows/columns trimmed, ragged rows padded, 1-D and scalar
  arguments lifted to 2-D, interior empty rows recognised;
* *Excel date serials*: a number in a date column is a serial of the workbook's date system
  (1900 by default, with Lotus 1-2-3's phantom 1900-02-29 = serial 60), converted to a date
  before the engine sees it — the engine rejects bare numbers in date columns on purpose;
* *packing*: a column that holds only floats/blanks (or only dates/blanks) is handed over as a
  float64 / datetime64 array, so the engine's vectorised parser takes its fast path. Values are
  not changed by this, only the container: parsing stays `engine.values`' job.

Error cells ('#N/A', '#VALUE!' …, delivered as text because the UDFs and macros read with
`err_to_str`) are left as they are: to the engine they are values, INVALID in typed columns
(RULESETS §0.2: only empty cells are blank), so a failed lookup never passes for "nothing happened".

And on the way back: engine values → cell values (dates, numbers, text that Excel must not turn
into a formula or a number).
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = [
    "ExcelTable", "as_2d", "as_list", "column_for_engine", "excel_serial_to_date",
    "excel_text", "is_blank_cell", "normalise_table", "row_is_blank", "serial_to_date_or_raw",
]

_EPOCH_1900 = dt.date(1899, 12, 30)  # serial 61 = 1900-03-01; serials 1..59 are one day later
_EPOCH_1904 = dt.date(1904, 1, 1)
_LOTUS_PHANTOM_SERIAL = 60  # Excel shows it as 1900-02-29, a day that never existed
_MAX_SERIAL_1900 = 2958465  # 9999-12-31
_MAX_SERIAL_1904 = _MAX_SERIAL_1900 - 1462
_UNIX_ORDINAL = dt.date(1970, 1, 1).toordinal()
_EXACT_FLOAT_INT = 2**53


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


# --------------------------------------------------------------------------- shape
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


def as_list(value: Any) -> list[object]:
    """A UDF argument meant as a list of items (a row, a column, or a block) → flat list, row-major."""
    return [cell for row in as_2d(value) for cell in row]


@dataclass(frozen=True)
class ExcelTable:
    """A normalised table: the header row and rectangular data rows."""

    header: list[object]
    rows: list[list[object]]

    @property
    def width(self) -> int:
        return len(self.header)


def row_is_blank(row: Sequence[object]) -> bool:
    # The first cell settles almost every row without a generator (10,000-row tables).
    first = row[0] if row else None
    if first is not None and (first.__class__ is not str or first.strip()):  # type: ignore[union-attr]
        if first.__class__ is not float or not math.isnan(first):  # type: ignore[arg-type]
            return False
    return all(is_blank_cell(cell) for cell in row)


def normalise_table(value: Any) -> ExcelTable:
    """2-D cells (header row first) → rectangular `ExcelTable` without trailing empty rows/columns.

    Ragged rows are padded with None; rows and columns that are empty to the end of the range
    (an analyst selected A1:G200 for 150 rows) are dropped. Interior empty rows stay: the
    result has a row for each of them, so a spilled result lines up with its input rows.
    The caller's lists are never modified.
    """
    rows = as_2d(value)
    end = len(rows)
    while end and row_is_blank(rows[end - 1]):
        end -= 1
    if not end:
        return ExcelTable(header=[], rows=[])
    rows = rows[:end]
    widths = set(map(len, rows))
    width = max(widths)
    if len(widths) > 1:
        rows = [row if len(row) == width else list(row) + [None] * (width - len(row)) for row in rows]
    trimmed = width
    while trimmed and all(is_blank_cell(r[trimmed - 1]) for r in rows):
        trimmed -= 1
    if trimmed < width:
        rows = [r[:trimmed] for r in rows]
    return ExcelTable(header=list(rows[0]), rows=rows[1:])


# --------------------------------------------------------------------------- dates
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


_DATE_COLUMN_CELLS = frozenset({dt.datetime, dt.date, type(None), float, int, str})
_FLOAT_CELLS = frozenset({float, type(None)})


def _day_of(cell: object, date1904: bool) -> float | None:
    """Days since 1970-01-01 of a date/datetime/serial cell, NaN for blank, None if not a date."""
    if cell is None:
        return math.nan
    kind = cell.__class__
    if kind is dt.datetime:
        if cell.tzinfo is not None:  # type: ignore[union-attr]
            return None  # aware values: left to the engine's own rule (wall-clock date)
        return float(cell.toordinal() - _UNIX_ORDINAL)  # type: ignore[union-attr]
    if kind is dt.date:
        return float(cell.toordinal() - _UNIX_ORDINAL)  # type: ignore[union-attr]
    if kind is float or kind is int:
        day = excel_serial_to_date(cell, date1904)  # type: ignore[arg-type]
        return None if day is None else float(day.toordinal() - _UNIX_ORDINAL)
    if kind is str and not cell.strip():  # type: ignore[union-attr]
        return math.nan
    return None


def _date_days(cells: Sequence[object], date1904: bool) -> np.ndarray | None:
    """Days since 1970-01-01 (NaN = blank) when every cell is a date, datetime, serial or blank.

    Each distinct cell is converted once: a column of a few hundred distinct dates over 10,000
    rows costs a dictionary lookup per row.
    """
    if not set(map(type, cells)) <= _DATE_COLUMN_CELLS:
        return None  # e.g. a boolean: True == 1.0 would share a dictionary slot with serial 1
    days: dict[object, float] = {}
    for cell in dict.fromkeys(cells):
        day = _day_of(cell, date1904)
        if day is None:
            return None
        days[cell] = day
    return np.fromiter(map(days.__getitem__, cells), dtype=np.float64, count=len(cells))


def _float_values(cells: Sequence[object]) -> np.ndarray | None:
    """float64 (NaN = blank) when every cell is a float, a float-exact int or empty; else None."""
    kinds = set(map(type, cells))
    if kinds <= _FLOAT_CELLS:
        return np.array(cells, dtype=np.float64)  # None → NaN
    if kinds <= _FLOAT_CELLS | {int} and all(
            -_EXACT_FLOAT_INT <= c <= _EXACT_FLOAT_INT for c in cells if c.__class__ is int):  # type: ignore[operator]
        return np.array(cells, dtype=np.float64)
    return None


def column_for_engine(cells: Sequence[object], input_type: str, date1904: bool = False) -> np.ndarray:
    """One input column of raw Excel cells → the array handed to the engine's column parser.

    Date columns get their serials converted (RULESETS §0.11); columns of a single Excel cell
    type travel as typed numpy arrays (the engine parses float64 and datetime64 columns without
    a Python loop); anything mixed stays an object array of the cells themselves.
    """
    n = len(cells)
    if input_type == "date":
        days = _date_days(cells, date1904)
        if days is not None:
            result = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
            present = ~np.isnan(days)
            result[present] = days[present].astype(np.int64).astype("datetime64[D]")
            return result
        converted = [serial_to_date_or_raw(cell, date1904) for cell in cells]
        return np.fromiter(converted, dtype=object, count=n)
    if input_type in ("number", "fraction", "integer"):
        values = _float_values(cells)
        if values is not None:
            return values
    return np.fromiter(cells, dtype=object, count=n)


# --------------------------------------------------------------------------- writing back
# Text Excel would not store as typed: formulas (=, +, -, @ — RULESETS hostile-input case
# `=cmd|...`), and text that looks like a number or date, which Range.Value would convert.
_NEEDS_QUOTE = re.compile(r"^\s*([=+\-@]|[0-9.,]+%?\s*$|[0-9]{1,4}[-/年][0-9])")


def excel_text(text: str) -> str:
    """Text to write into a cell so Excel keeps it as that text (a leading apostrophe if needed)."""
    return "'" + text if _NEEDS_QUOTE.match(text) else text

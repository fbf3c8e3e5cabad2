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
from typing import Any

import numpy as np

# Blank cells, argument shapes and date serials are shared with `tier fill` (it reads the same
# 参数 sheet from the file), so they live in the engine and are re-exported here.
from engine.workbook_params import as_2d, excel_serial_to_date, is_blank_cell, serial_to_date_or_raw

__all__ = [
    "ExcelTable", "as_2d", "as_list", "column_for_engine", "excel_serial_to_date",
    "excel_text", "is_blank_cell", "normalise_table", "row_is_blank", "serial_to_date_or_raw",
]

_UNIX_ORDINAL = dt.date(1970, 1, 1).toordinal()
_EXACT_FLOAT_INT = 2**53


# --------------------------------------------------------------------------- shape
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

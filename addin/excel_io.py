"""The thin layer over xlwings objects: the only code that touches books, sheets and ranges.

Everything above it (`addin.tiering`, `addin.macros`) works on plain lists and numbers, so it is
tested with small fakes of the few xlwings members used here:

    book.sheets (iterate, .active, .add(name, after=)), book.app (.status_bar, .screen_updating,
    .alert, .books.open), book.fullname, book.name, book.api.Date1904 (Windows only, optional)
    sheet.name, sheet.tables (ListObjects: .name, .range, .header_row_range, .data_body_range,
    .resize(range)), sheet.used_range, sheet.range((row, col)[, (row, col)]), sheet.clear_contents()
    range.options(ndim=2, err_to_str=True).value, range.value = ..., range.formula,
    range.number_format = ..., range.row, range.column, range.shape

Cells are addressed by 1-based (row, column) like xlwings. Values are read with `err_to_str`
so an error cell arrives as '#N/A' (an INVALID value to the engine, RULESETS §0.2) instead of
looking blank.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from addin import excel_values as xv
from engine.errors import InputError
from engine.io import find_header_row
from engine.rows import normalize_header
from engine.workbook_params import PARAM_SHEETS  # one list of names for the add-in and `tier fill`

AUDIT_SHEET = "审计"
CHECK_SHEET = "规则检查"


# --------------------------------------------------------------------------- reading
def read_values(rng: Any) -> list[list[object]]:
    """A range's values as rows (2-D even for one cell), error cells as '#N/A'-style text."""
    try:
        view = rng.options(ndim=2, err_to_str=True)
    except TypeError:  # xlwings before err_to_str
        view = rng.options(ndim=2)
    return xv.as_2d(view.value)


def read_formulas(rng: Any) -> list[list[object]]:
    return xv.as_2d(rng.formula)


def find_sheet(book: Any, names: Sequence[str]) -> Any | None:
    wanted = {n.strip().casefold() for n in names}
    for sheet in book.sheets:
        if str(sheet.name).strip().casefold() in wanted:
            return sheet
    return None


def param_block(book: Any) -> list[list[object]]:
    """The key/value rows of the 参数 / Parameters sheet ([] when there is none)."""
    sheet = find_sheet(book, PARAM_SHEETS)
    if sheet is None:
        return []
    return [row[:2] for row in read_values(sheet.used_range)]


def uses_1904_dates(book: Any) -> bool:
    try:
        return bool(book.api.Date1904)
    except Exception:  # noqa: BLE001 — not on Windows / a fake: the 1900 system
        return False


def book_folder(book: Any) -> str | None:
    try:
        full = str(book.fullname)
    except Exception:  # noqa: BLE001
        return None
    return os.path.dirname(full) if os.path.isabs(full) else None


@dataclass(frozen=True)
class WorkbookContext:
    """What a UDF or macro takes from its workbook: the 参数 rows, date system and folder."""

    param_rows: list[list[object]] = field(default_factory=list)
    date1904: bool = False
    folder: str | None = None


def workbook_context(book: Any | None) -> WorkbookContext:
    if book is None:
        return WorkbookContext()
    return WorkbookContext(param_rows=param_block(book), date1904=uses_1904_dates(book), folder=book_folder(book))


class _CallerContexts:
    """The calling workbook's context for UDFs, kept for a moment.

    One recalculation may call `=TIER` thousands of times; reading the 参数 sheet over COM for
    each would dominate. A context is reused for `ttl` seconds per workbook (recalculations
    after editing the 参数 sheet a few seconds later see the edit).
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, WorkbookContext]] = {}

    def get(self) -> WorkbookContext:
        book = caller_book()
        if book is None:
            return WorkbookContext()
        try:
            name = str(book.fullname)
        except Exception:  # noqa: BLE001
            name = ""
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(name)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        context = workbook_context(book)
        with self._lock:
            self._items[name] = (now, context)
        return context

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CALLER_CONTEXTS = _CallerContexts()


def caller_book() -> Any | None:
    """`xw.Book.caller()` or None when not called from Excel (plain Python, tests without a mock)."""
    try:
        import xlwings as xw

        return xw.Book.caller()
    except Exception:  # noqa: BLE001 — outside Excel there is simply no calling workbook
        return None


# --------------------------------------------------------------------------- locating a table
@dataclass
class SheetTable:
    """A table on a sheet: header row, data rows, where they are, and the ListObject if any."""

    sheet: Any
    header_row: int  # sheet row of the header (1-based)
    first_col: int  # sheet column of the first table column (1-based)
    header: list[object]
    rows: list[list[object]]
    list_object: Any | None = None
    inside: int = 0  # columns that belong to the ListObject (the rest of `header` sits right of it)

    @property
    def width(self) -> int:
        return len(self.header)

    @property
    def first_data_row(self) -> int:
        return self.header_row + 1

    @property
    def last_row(self) -> int:
        return self.header_row + len(self.rows)

    @property
    def name(self) -> str:
        if self.list_object is not None:
            return str(self.list_object.name)
        return f"{self.sheet.name}!R{self.header_row}C{self.first_col}"


def _score(header: Sequence[object], known: set[str]) -> int:
    return sum(1 for cell in header if not xv.is_blank_cell(cell) and normalize_header(cell) in known)


def locate_table(sheet: Any, known: set[str]) -> SheetTable:
    """The table on `sheet`: the Excel table (ListObject) naming most known headers, else the
    header row found in the used range (the first row naming ≥ 2 known headers, as `tier fill`)
    and the rows below it down to the first entirely empty row."""
    best: tuple[int, Any] | None = None
    for table in list(getattr(sheet, "tables", []) or []):
        header = read_values(table.header_row_range)[0]
        score = _score(header, known)
        if score and (best is None or score > best[0]):
            best = (score, table)
    if best is not None:
        return _list_object_table(sheet, best[1])
    used = sheet.used_range
    values = read_values(used)
    if not values or all(xv.is_blank_cell(c) for row in values for c in row):
        raise InputError(f"工作表 {sheet.name!r} 为空 / sheet {sheet.name!r} is empty: nothing to fill")
    index = find_header_row([tuple(r) for r in values], known)
    header = list(values[index])
    while header and xv.is_blank_cell(header[-1]):
        header.pop()
    if _score(header, known) == 0:
        raise InputError(f"工作表 {sheet.name!r} 没有可识别的表头 / sheet {sheet.name!r}: no header row names "
                         f"an input of any ruleset; put the Chinese headers (e.g. 评估日期) in one row")
    # The table runs down to the last row with a value in a known input column (as `tier
    # fill` reads it): empty rows inside it are kept (their outputs stay empty), a note
    # written under the table in some other column does not make it longer.
    known_cols = [j for j, cell in enumerate(header) if not xv.is_blank_cell(cell) and normalize_header(cell) in known]
    body = [list(row[:len(header)]) + [None] * max(0, len(header) - len(row)) for row in values[index + 1:]]
    end = len(body)
    while end and all(xv.is_blank_cell(body[end - 1][j]) for j in known_cols):
        end -= 1
    return SheetTable(sheet=sheet, header_row=int(used.row) + index, first_col=int(used.column),
                      header=header, rows=body[:end], inside=len(header))


_RIGHT_SCAN = 64  # header cells looked at right of an Excel table (outputs kept outside it)


def _list_object_table(sheet: Any, table: Any) -> SheetTable:
    """An Excel table plus the header cells contiguous to its right.

    Output columns often sit just right of the table — a spilled `=TIER_TABLE` cannot live inside
    one — so those header cells (up to the first empty one) belong to the table's layout.
    """
    header_range = table.header_row_range
    header = read_values(header_range)[0]
    row, first, inside = int(header_range.row), int(header_range.column), len(header)
    right = read_values(cell_range(sheet, row, first + inside, row, first + inside + _RIGHT_SCAN - 1))[0]
    extra = 0
    while extra < len(right) and not xv.is_blank_cell(right[extra]):
        extra += 1
    header = header + right[:extra]
    body = table.data_body_range
    rows = read_values(body) if body is not None else []
    if rows and extra:
        last = row + len(rows)
        beside = read_values(cell_range(sheet, row + 1, first + inside, last, first + inside + extra - 1))
        rows = [list(r) + list(b) for r, b in zip(rows, beside, strict=True)]
    rows = [list(r) + [None] * (len(header) - len(r)) for r in rows]
    return SheetTable(sheet=sheet, header_row=row, first_col=first, header=header, rows=rows, list_object=table,
                      inside=inside)


# --------------------------------------------------------------------------- writing
def cell_range(sheet: Any, row: int, col: int, last_row: int | None = None, last_col: int | None = None) -> Any:
    if last_row is None and last_col is None:
        return sheet.range((row, col))
    last = (last_row if last_row is not None else row, last_col if last_col is not None else col)
    return sheet.range((row, col), last)


def write_column(sheet: Any, col: int, first_row: int, cells: Sequence[object]) -> None:
    """One column of values in a single range write (one COM call per column)."""
    if not cells:
        return
    cell_range(sheet, first_row, col, first_row + len(cells) - 1, col).value = [[c] for c in cells]


def write_cell(sheet: Any, row: int, col: int, value: object) -> None:
    cell_range(sheet, row, col).value = value


def set_number_format(sheet: Any, col: int, first_row: int, last_row: int, fmt: str) -> None:
    if last_row >= first_row:
        cell_range(sheet, first_row, col, last_row, col).number_format = fmt


def formula_rows(sheet: Any, col: int, first_row: int, last_row: int) -> set[int]:
    """Sheet rows of `col` whose cell holds a formula (`=TIER(...)`) or is part of a spill."""
    if last_row < first_row:
        return set()
    rng = cell_range(sheet, first_row, col, last_row, col)
    formulas = read_formulas(rng)
    rows = {first_row + i for i, row in enumerate(formulas)
            if row and isinstance(row[0], str) and row[0].startswith("=")}
    return rows | _spill_rows(rng, first_row, last_row)


def _spill_rows(rng: Any, first_row: int, last_row: int) -> set[int]:
    """Rows of a dynamic-array spill in a one-column range (Excel's Range.HasSpill: True when every
    cell spills, None when some do). Outside Windows Excel there is no such thing: no rows."""
    try:
        has_spill = rng.api.HasSpill
    except Exception:  # noqa: BLE001 — not Windows Excel (or a fake): no spill information
        return set()
    if has_spill is True:
        return set(range(first_row, last_row + 1))
    if has_spill is None:  # mixed: ask cell by cell (rare: a spill ending inside the table)
        found = set()
        for row in range(first_row, last_row + 1):
            try:
                if rng.sheet.range((row, rng.column)).api.HasSpill:
                    found.add(row)
            except Exception:  # noqa: BLE001
                continue
        return found
    return set()


def write_column_except(sheet: Any, col: int, first_row: int, cells: Sequence[object], keep: set[int]) -> int:
    """Write `cells` down `col` from `first_row`, skipping the rows in `keep`: one write per run."""
    if not keep:
        write_column(sheet, col, first_row, cells)
        return len(cells)
    written = 0
    run_start: int | None = None
    for offset in range(len(cells) + 1):
        row = first_row + offset
        inside = offset < len(cells) and row not in keep
        if inside and run_start is None:
            run_start = offset
        elif not inside and run_start is not None:
            write_column(sheet, col, first_row + run_start, cells[run_start:offset])
            written += offset - run_start
            run_start = None
    return written


def block_is_empty(sheet: Any, first_row: int, first_col: int, last_row: int, last_col: int) -> bool:
    values = read_values(cell_range(sheet, first_row, first_col, last_row, last_col))
    return all(xv.is_blank_cell(c) for row in values for c in row)


def extend_list_object(table: SheetTable, last_col: int) -> bool:
    """Grow the Excel table to take in new output columns (they become table columns).

    Only when the table's outputs are all inside it: output columns kept right of the table (a
    template's spill area) stay outside, and so do the new ones next to them.
    """
    if table.list_object is None or table.inside != table.width:
        return False
    last_row = max(table.last_row, table.header_row + 1)
    table.list_object.resize(cell_range(table.sheet, table.header_row, table.first_col, last_row, last_col))
    return True


def status(book: Any, text: str | bool) -> None:
    try:
        book.app.status_bar = text
    except Exception:  # noqa: BLE001 — the status bar is a courtesy, never a failure
        pass


class screen_updating_off:
    """Context manager: no repaint while many columns are written (restored afterwards)."""

    def __init__(self, book: Any) -> None:
        self.book = book
        self.before: object = True

    def __enter__(self) -> screen_updating_off:
        try:
            self.before = self.book.app.screen_updating
            self.book.app.screen_updating = False
        except Exception:  # noqa: BLE001
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.book.app.screen_updating = self.before
        except Exception:  # noqa: BLE001
            pass


def alert(book: Any, text: str, title: str = "tierbook") -> None:
    """A message box when Excel offers one; the status bar otherwise."""
    try:
        book.app.alert(text, title=title)
    except Exception:  # noqa: BLE001
        status(book, text)


def open_workbook(book: Any, path: Any) -> Any | None:
    """Open a workbook (the report just written) in the same Excel; None when that is not possible."""
    try:
        return book.app.books.open(str(path))
    except Exception:  # noqa: BLE001 — the file is written either way; the status bar says where
        return None


def sheet_named(book: Any, name: str) -> Any:
    """The sheet `name`, added after the last sheet when missing."""
    sheet = find_sheet(book, (name,))
    if sheet is not None:
        return sheet
    sheets = list(book.sheets)
    return book.sheets.add(name, after=sheets[-1] if sheets else None)


def append_row(book: Any, sheet_name: str, header: Sequence[object], row: Sequence[object]) -> int:
    """Append `row` under the last used row of `sheet_name` (header first on an empty sheet); its row number."""
    sheet = sheet_named(book, sheet_name)
    used = sheet.used_range
    values = read_values(used)
    if not values or all(xv.is_blank_cell(c) for r in values for c in r):
        cell_range(sheet, 1, 1, 1, len(header)).value = [list(header)]
        target = 2
    else:
        target = int(used.row) + len(values)
    cell_range(sheet, target, 1, target, len(row)).value = [list(row)]
    return target


def replace_sheet(book: Any, sheet_name: str, rows: Sequence[Sequence[object]]) -> Any:
    """Our own report sheet (规则检查): cleared and rewritten."""
    sheet = sheet_named(book, sheet_name)
    sheet.clear_contents()
    width = max((len(r) for r in rows), default=0)
    if rows and width:
        block = [list(r) + [None] * (width - len(r)) for r in rows]
        cell_range(sheet, 1, 1, len(block), width).value = block
    return sheet

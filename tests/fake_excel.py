"""A small in-memory stand-in for the xlwings objects the add-in touches (no Excel needed).

Only the members `addin/excel_io.py` uses are implemented, with xlwings' shapes: a single cell
reads as a scalar, a single row or column as a 1-D list unless `options(ndim=2)`, error cells
read as None unless `err_to_str=True`. Every write is logged as (sheet, row, column, value) so
tests can assert exactly which cells were written — and that input cells never were.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExcelError:
    """An error cell (#N/A, #VALUE! …) as Excel holds it."""

    text: str = "#N/A"


class FakeBooks:
    def __init__(self) -> None:
        self.opened: list[str] = []

    def open(self, path: str) -> str:
        self.opened.append(path)
        return path


class FakeApp:
    def __init__(self) -> None:
        self.status_history: list[object] = []
        self.alerts: list[str] = []
        self.screen_updating = True
        self.books = FakeBooks()

    @property
    def status_bar(self) -> object:
        return self.status_history[-1] if self.status_history else False

    @status_bar.setter
    def status_bar(self, value: object) -> None:
        self.status_history.append(value)

    def alert(self, prompt: str, title: str | None = None, **_kw: Any) -> None:
        self.alerts.append(prompt)


class FakeRange:
    def __init__(self, sheet: FakeSheet, r1: int, c1: int, r2: int, c2: int, opts: dict | None = None) -> None:
        self.sheet, self.r1, self.c1, self.r2, self.c2 = sheet, r1, c1, max(r1, r2), max(c1, c2)
        self.opts = opts or {}

    # geometry
    @property
    def row(self) -> int:
        return self.r1

    @property
    def column(self) -> int:
        return self.c1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r2 - self.r1 + 1, self.c2 - self.c1 + 1)

    def options(self, **kw: Any) -> FakeRange:
        return FakeRange(self.sheet, self.r1, self.c1, self.r2, self.c2, {**self.opts, **kw})

    def _shape_out(self, grid: list[list[object]]) -> object:
        if self.opts.get("ndim") == 2:
            return grid
        rows, cols = self.shape
        if rows == 1 and cols == 1:
            return grid[0][0]
        if rows == 1:
            return grid[0]
        if cols == 1:
            return [r[0] for r in grid]
        return grid

    @property
    def value(self) -> object:
        grid = []
        for r in range(self.r1, self.r2 + 1):
            row = []
            for c in range(self.c1, self.c2 + 1):
                cell = self.sheet.cells.get((r, c))
                if isinstance(cell, ExcelError):
                    cell = cell.text if self.opts.get("err_to_str") else None
                row.append(cell)
            grid.append(row)
        return self._shape_out(grid)

    @value.setter
    def value(self, data: object) -> None:
        if isinstance(data, (list, tuple)) and data and isinstance(data[0], (list, tuple)):
            for i, row in enumerate(data):
                for j, cell in enumerate(row):
                    self.sheet.set(self.r1 + i, self.c1 + j, cell)
        elif isinstance(data, (list, tuple)):
            for j, cell in enumerate(data):
                self.sheet.set(self.r1, self.c1 + j, cell)
        else:
            for r in range(self.r1, self.r2 + 1):
                for c in range(self.c1, self.c2 + 1):
                    self.sheet.set(r, c, data)

    @property
    def formula(self) -> object:
        grid = [[self.sheet.formulas.get((r, c), "" if self.sheet.cells.get((r, c)) is None
                                        else str(self.sheet.cells[(r, c)]))
                 for c in range(self.c1, self.c2 + 1)] for r in range(self.r1, self.r2 + 1)]
        rows, cols = self.shape
        return grid[0][0] if rows == cols == 1 else tuple(tuple(r) for r in grid)

    @property
    def number_format(self) -> str:
        return self.sheet.formats.get((self.r1, self.c1), "General")

    @number_format.setter
    def number_format(self, fmt: str) -> None:
        for r in range(self.r1, self.r2 + 1):
            for c in range(self.c1, self.c2 + 1):
                self.sheet.formats[(r, c)] = fmt
                self.sheet.format_writes.append((r, c, fmt))


class FakeTable:
    """A ListObject: header row + body between rows r1..r2 and columns c1..c2."""

    def __init__(self, sheet: FakeSheet, name: str, r1: int, c1: int, r2: int, c2: int) -> None:
        self.sheet, self.name = sheet, name
        self.r1, self.c1, self.r2, self.c2 = r1, c1, r2, c2
        self.resizes: list[tuple[int, int, int, int]] = []

    @property
    def range(self) -> FakeRange:
        return FakeRange(self.sheet, self.r1, self.c1, self.r2, self.c2)

    @property
    def header_row_range(self) -> FakeRange:
        return FakeRange(self.sheet, self.r1, self.c1, self.r1, self.c2)

    @property
    def data_body_range(self) -> FakeRange | None:
        if self.r2 <= self.r1:
            return None
        return FakeRange(self.sheet, self.r1 + 1, self.c1, self.r2, self.c2)

    def resize(self, rng: FakeRange) -> None:
        self.r1, self.c1, self.r2, self.c2 = rng.r1, rng.c1, rng.r2, rng.c2
        self.resizes.append((rng.r1, rng.c1, rng.r2, rng.c2))


class FakeSheet:
    def __init__(self, book: FakeBook, name: str) -> None:
        self.book, self.name = book, name
        self.cells: dict[tuple[int, int], object] = {}
        self.formulas: dict[tuple[int, int], str] = {}
        self.formats: dict[tuple[int, int], str] = {}
        self.writes: list[tuple[int, int, object]] = []
        self.format_writes: list[tuple[int, int, str]] = []
        self.tables: list[FakeTable] = []
        self.cleared = 0

    def set(self, row: int, col: int, value: object) -> None:
        self.writes.append((row, col, value))
        self.formulas.pop((row, col), None)
        if value is None or value == "":
            self.cells.pop((row, col), None)
        else:
            self.cells[(row, col)] = value

    def put(self, top: int, left: int, rows: list[list[object]]) -> None:
        """Test set-up: place values without logging them as writes."""
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                if cell is not None:
                    self.cells[(top + i, left + j)] = cell

    def range(self, first: tuple[int, int], last: tuple[int, int] | None = None) -> FakeRange:
        last = last or first
        return FakeRange(self, first[0], first[1], last[0], last[1])

    @property
    def used_range(self) -> FakeRange:
        keys = list(self.cells) + list(self.formulas)
        if not keys:
            return FakeRange(self, 1, 1, 1, 1)
        rows = [k[0] for k in keys]
        cols = [k[1] for k in keys]
        return FakeRange(self, min(rows), min(cols), max(rows), max(cols))

    def clear_contents(self) -> None:
        self.cleared += 1
        self.cells.clear()
        self.formulas.clear()

    def add_table(self, name: str, top: int, left: int, rows: list[list[object]]) -> FakeTable:
        self.put(top, left, rows)
        table = FakeTable(self, name, top, left, top + len(rows) - 1, left + len(rows[0]) - 1)
        self.tables.append(table)
        return table

    def written_cells(self) -> set[tuple[int, int]]:
        return {(r, c) for r, c, _v in self.writes}


class FakeSheets:
    def __init__(self, book: FakeBook) -> None:
        self.book = book
        self.items: list[FakeSheet] = []
        self.active_index = 0

    def __iter__(self):  # noqa: ANN204
        return iter(list(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | str) -> FakeSheet:
        if isinstance(key, int):
            return self.items[key]
        for sheet in self.items:
            if sheet.name == key:
                return sheet
        raise KeyError(key)

    @property
    def active(self) -> FakeSheet:
        return self.items[self.active_index]

    def add(self, name: str | None = None, before: FakeSheet | None = None,
            after: FakeSheet | None = None) -> FakeSheet:
        sheet = FakeSheet(self.book, name or f"Sheet{len(self.items) + 1}")
        position = self.items.index(after) + 1 if after in self.items else len(self.items)
        self.items.insert(position, sheet)
        return sheet


@dataclass
class _Api:
    Date1904: bool = False  # noqa: N815 — the COM property name


@dataclass
class FakeBook:
    fullname: str = "/data/review.xlsx"
    app: FakeApp = field(default_factory=FakeApp)
    api: _Api = field(default_factory=_Api)

    def __post_init__(self) -> None:
        self.sheets = FakeSheets(self)

    @property
    def name(self) -> str:
        return self.fullname.rsplit("/", 1)[-1]

    def sheet(self, name: str) -> FakeSheet:
        return self.sheets[name]


def book_with(*sheet_names: str) -> FakeBook:
    book = FakeBook()
    for name in sheet_names:
        book.sheets.add(name)
    return book

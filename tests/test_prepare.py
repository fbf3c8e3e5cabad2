"""`prepare_rows` (a table, column by column, repeated cells parsed once) is `prepare_row` per row.

The row engines (scalar, rete) prepare whole tables with `prepare_rows`; the add-in prepares
single rows with `prepare_row`. Both must give the same values — digits and exponent included —
codes, reasons and notes, whatever the cells: the per-column memo must never hand one cell the
parse of another cell that merely compares equal (0.0 and -0.0, Decimal 1.0 and 1.00, equal
instants in two time zones, True and 1).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from engine import api
from engine.prepare import PreparedRow, prepare_row, prepare_rows
from engine.ruleset import available_rulesets
from tests.rowgen import random_rows

RULESETS = sorted(available_rulesets())


def _shown(row: PreparedRow) -> tuple:
    """Everything of a prepared row, values as repr (Decimal('0.70') is not Decimal('0.7'))."""
    return ({key: (type(value).__name__, repr(value)) for key, value in row.values.items()},
            row.errors, row.notes, row.reasons)


def _assert_rows_equal_row(compiled, rows: list[dict[str, object]]) -> None:
    keys = [inp.key for inp in compiled.inputs]
    columns = {key: np.array([row.get(key) for row in rows], dtype=object) for key in keys}
    batch = prepare_rows(compiled, columns, len(rows))
    assert len(batch) == len(rows)
    for index, (got, row) in enumerate(zip(batch, rows)):
        assert _shown(got) == _shown(prepare_row(compiled, row)), f"row {index}: {row!r}"


@pytest.mark.parametrize("rid", RULESETS)
def test_random_messy_rows(rid: str) -> None:
    compiled = api.compile(rid)
    _assert_rows_equal_row(compiled, random_rows(compiled, 400, seed=7))


LOOK_ALIKES = [
    0.0, -0.0, 0.0, np.float64(-0.0), np.float64(0.0), Decimal("1.0"), Decimal("1.00"), Decimal("1"), 1, 1.0,
    True, np.True_, np.int64(1), np.float64(1.0), "1", " 1 ", "1.0", float("nan"), np.float64("nan"), None, "",
    pd.NA, pd.NaT, Decimal("NaN"), 1e300, -1e-300, "是", "否", "Y", False, 0, np.bool_(False),
    pd.Timestamp("2024-03-31 23:30", tz="Asia/Shanghai"), pd.Timestamp("2024-03-31 15:30", tz="UTC"),
    pd.Timestamp("2024-03-31 23:30"), dt.datetime(2024, 3, 31, 23, 30), dt.date(2024, 3, 31),
    np.datetime64("2024-03-31"), np.datetime64("2024-03-31T23:30"), np.datetime64("NaT"), "2024-03-31", "2024/3/31",
    "2024-02-30", dt.timedelta(days=3), np.timedelta64(3, "D"), "abc", "abc", 1_000_000_000_000_000_000_000,
]


@pytest.mark.parametrize("rid", ["credit", "guarantee", "bank_layering"])
def test_look_alike_cells_in_every_column(rid: str) -> None:
    """Each look-alike cell in every input column, many times over, next to its look-alikes."""
    compiled = api.compile(rid)
    base = random_rows(compiled, 1, seed=1)[0]
    rows = []
    for key in (inp.key for inp in compiled.inputs):
        for cell in LOOK_ALIKES + LOOK_ALIKES[::-1]:
            rows.append({**base, key: cell})
    _assert_rows_equal_row(compiled, rows)


def test_missing_column_is_blank_in_every_row() -> None:
    compiled = api.compile("guarantee")
    rows = random_rows(compiled, 50, seed=3)
    dropped = compiled.inputs[1].key
    columns = {inp.key: [row.get(inp.key) for row in rows] for inp in compiled.inputs if inp.key != dropped}
    batch = prepare_rows(compiled, columns, len(rows))
    for got, row in zip(batch, rows):
        assert _shown(got) == _shown(prepare_row(compiled, {k: v for k, v in row.items() if k != dropped}))


@pytest.mark.parametrize("rid", ["credit", "guarantee", "bank_layering"])
def test_typed_numpy_columns(rid: str) -> None:
    """pandas' own dtypes (float64 with NaN and -0.0, datetime64 with NaT, int64, bool): the memo keys
    of a typed column are its plain values, and must still give each cell its own parse."""
    from engine.api import _cells
    from engine.bench import generate_table

    compiled = api.compile(rid)
    table = generate_table(compiled, 3000, seed=5)
    for column in table.columns:
        if table[column].dtype.kind == "f":
            values = table[column].to_numpy().copy()
            values[::7] = -0.0
            values[1::7] = 0.0
            values[2::11] = np.nan
            table[column] = values
    cells = {inp.key: _cells(table[inp.key]) for inp in compiled.inputs if inp.key in table}
    assert any(c.dtype.kind == "M" for c in cells.values()) and any(c.dtype.kind == "f" for c in cells.values())
    extra = {"whole": np.array([0, 1, 2, 1, 0] * 600, dtype=np.int64), "flag": np.array([True, False] * 1500)}
    for key, column in extra.items():  # an int64 and a bool column in place of the first number input
        target = next(inp.key for inp in compiled.inputs if inp.type in ("number", "integer"))
        cells = {**cells, target: column}
        batch = prepare_rows(compiled, cells, len(table))
        for index in range(len(table)):
            alone = prepare_row(compiled, {k: c[index] for k, c in cells.items()})
            assert _shown(batch[index]) == _shown(alone), f"{key} row {index}"


def test_row_engine_date_outputs_convert_every_day_of_the_calendar() -> None:
    """scalar_to_column turns the row engines' dates into datetime64[s] in one pass: the same days
    as a per-cell np.datetime64, from 0001-01-01 to 9999-12-31 and around the epoch, blanks NaT."""
    from engine.outputs import scalar_to_column

    days = [None, dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1), dt.date(1969, 12, 31),
            dt.date(2024, 2, 29), None] + [dt.date(1, 1, 1) + dt.timedelta(days=d) for d in range(0, 3_652_059, 997)]
    column = scalar_to_column("date", days, len(days))
    assert column.dtype == np.dtype("datetime64[s]")
    assert [None if np.isnat(v) else v.astype("datetime64[D]").item() for v in column] == days

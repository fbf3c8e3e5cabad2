"""Property tests (hypothesis) on the value parser, the expression parser and the ruleset loader.

The properties live in `tests/fuzzing.py`; here they run with the `ci` profile's small budget
(tests/conftest.py; `HYPOTHESIS_PROFILE=dev` for more). `tests/fuzz_long.py` runs the same
properties for minutes — README "Reliability" has its figures. Below them: the crashes fuzzing
found, pinned as plain regression tests.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ExpressionError
from engine.values import TYPES, parse_column, parse_value
from tests import fuzzing


@given(cells=st.lists(fuzzing.ANY_CELL, max_size=12), values=fuzzing.ENUM_VALUES)
def test_parse_value_never_raises(cells: list[Any], values: list[Any] | None) -> None:
    fuzzing.check_parse_value(cells, values)


@given(cells=st.lists(fuzzing.ANY_CELL, max_size=12))
def test_parse_column_equals_parse_value(cells: list[Any]) -> None:
    fuzzing.check_parse_column(cells)


@given(text=fuzzing.EXPRESSIONS, data=st.data())
def test_expression_parser_only_raises_expression_error(text: str, data: st.DataObject) -> None:
    fuzzing.check_expression(text, lambda kind: data.draw(fuzzing.VALUE_STRATEGIES[kind]))


@given(data=fuzzing.RULESET_BYTES)
def test_ruleset_loader_never_raises(data: bytes) -> None:
    fuzzing.check_ruleset_bytes(data)


# --------------------------------------------------------------------------- regressions found by fuzzing
@pytest.mark.parametrize("text", ["(" * 5_000 + "1" + ")" * 5_000, "not " * 2_400 + "b", "-" * 9_000 + "1",
                                  "abs(" * 1_500 + "1" + ")" * 1_500])
def test_deep_expressions_are_expression_errors(text: str) -> None:
    with pytest.raises(ExpressionError):
        fuzzing.ex.parse_expression(text)


def test_timedelta_cells_regression() -> None:
    """Found by fuzzing: np.timedelta64 is an np.integer subclass, so `parse_value` raised TypeError
    (`Decimal(int(raw))`, and `render_text` for text columns), and read 0 days as a valid "no".
    A duration is no cell value the rulesets accept: INVALID (NaT: blank), and `parse_column`
    must say the same for a timedelta column."""
    failures = []
    for cell in (np.timedelta64(0, "D"), np.timedelta64(3, "h"), np.timedelta64("NaT")):
        for kind in TYPES:
            allowed = ["1", "x"] if kind == "enum" else None
            try:
                value, problem = parse_value(cell, kind, allowed)
                blank = bool(np.isnat(cell))
                if blank:
                    assert (value, problem) == (None, None)
                elif kind != "text":
                    assert value is None and problem, (value, problem)
                column = parse_column(pd.Series([cell, cell]), kind, allowed)
                assert list(column.invalid) == [problem is not None] * 2
                assert list(column.blank) == [blank] * 2
            except Exception as exc:  # noqa: BLE001 — every combination is reported at once
                failures.append(f"{cell!r} as {kind}: {type(exc).__name__}: {exc}")
    assert failures == []


def test_timedelta_text_regression() -> None:
    """Found by fuzzing (after the crash above was fixed): in a text column a timedelta64 column
    renders as '0 seconds' but the same cell alone as '0 days 00:00:00' — parse_column must
    give what parse_value gives, row for row."""
    for cell in (pd.Timedelta(0), pd.Timedelta(hours=3)):
        column = parse_column(pd.Series([cell]), "text")
        assert column.values[0] == parse_value(cell, "text")[0]


def test_huge_duration_regression() -> None:
    """Found by fuzzing (after 4c94af5): a `datetime.timedelta` beyond pandas' ±292 years made
    `render_text` raise OutOfBoundsTimedelta (`pd.Timedelta(raw)`), so every type crashed on it
    while quoting the cell in the reason."""
    import datetime as _dt

    failures = []
    for cell in (_dt.timedelta(days=106_751_992), _dt.timedelta.max, _dt.timedelta.min):
        for kind in TYPES:
            try:
                value, problem = parse_value(cell, kind, ["x"] if kind == "enum" else None)
                assert (value is None) != (problem is None)
                parse_column([cell], kind, ["x"] if kind == "enum" else None)
            except Exception as exc:  # noqa: BLE001 — every combination is reported at once
                failures.append(f"{cell!r} as {kind}: {type(exc).__name__}")
    assert failures == []


def test_out_of_range_timestamp_regression() -> None:
    """Found by fuzzing: pandas 3 Timestamps may lie outside years 1–9999 (a Parquet date column of
    year 0 reads as one); `parse_value` raised NotImplementedError on them (`Timestamp.date()`) and
    the vector path read the object cell as a valid date. They are INVALID dates, like the numpy
    datetime64 of the same day."""
    failures = []
    for cell in (pd.Timestamp("0000-12-31"), pd.Timestamp(np.datetime64("-0001-01-01", "s"))):
        for kind in TYPES:
            allowed = ["x"] if kind == "enum" else None
            try:
                value, problem = parse_value(cell, kind, allowed)
                if kind != "text":
                    assert value is None and problem, (value, problem)
                column = parse_column(pd.Series([cell], dtype=object), kind, allowed)
                assert list(column.invalid) == [problem is not None]
            except Exception as exc:  # noqa: BLE001 — every combination is reported at once
                failures.append(f"{cell!r} as {kind}: {type(exc).__name__}: {str(exc)[:80]}")
    assert failures == []


# (section, YAML lines added to it) — each used to raise TypeError/ValueError/InvalidOperation
# out of the loader, `tier check` or `compile` instead of reporting a problem.
RULESET_REGRESSIONS = {
    "param-min-text": ("parameters", "  p: {type: number, default: 1, min: abc}"),
    "param-type-unknown": ("parameters", "  p: {type: money, default: 1}"),
    "note-at-number": ("decisions", "  - id: D\n    rules:\n      - {id: R, then: {g: a}, note: N, note_at: 1.5}"),
    "note-at-mapping": ("decisions", "  - id: D\n    rules:\n      - {id: R, then: {g: a}, note: N, note_at: {a: 1}}"),
    "values-int": ("inputs", "  - {key: a, type: enum, values: 5}"),
    "all-blank-float": ("checks", "  - {code: X, at: as_of_date, all_blank: 1.5}"),
    "aliases-map": ("inputs", "  - {key: a, type: text, aliases: {x: 1}}"),
    "then-list": ("decisions", "  - id: D\n    rules:\n      - {id: R, then: {g: [1, 2]}}"),
    "compute-map": ("decisions", "  - id: D\n    compute: {g: {a: 1}}"),
    "huge-int": ("version", "9" * 5_000),
    "blank-note-list": ("inputs", "  - {key: a, type: number, blank_note: [x]}"),
    "default-map": ("inputs", "  - {key: a, type: number, default: {x: 1}}"),
}
_REGRESSION_BASE = {
    "version": "'1'",
    "inputs": "  - {key: as_of_date, type: date, required: true}",
    "decisions": "  - id: T\n    rules:\n      - {id: T1, then: {grade: A}}",
    "outputs": "  - {key: grade, tier: true}",
}


@pytest.mark.parametrize("name", sorted(RULESET_REGRESSIONS))
def test_ruleset_fields_of_the_wrong_shape(tmp_path: Path, name: str) -> None:
    section, lines = RULESET_REGRESSIONS[name]
    parts = dict(_REGRESSION_BASE)
    if section == "version":
        parts["version"] = lines
    else:
        parts[section] = (parts[section] + "\n" if section in parts else "") + lines
    text = "id: fuzz\ntitle: t\n" + "".join(
        f"{key}: {value}\n" if key == "version" else f"{key}:\n{value}\n" for key, value in parts.items())
    fuzzing.check_ruleset_bytes(text.encode("utf-8"))
    from engine.ruleset import read_ruleset

    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    _definition, problems = read_ruleset(path)
    assert any(p.severity == "error" for p in problems), name


def test_fuzz_counts_are_recorded() -> None:
    before = fuzzing.COUNTS["parse_value"]
    fuzzing.check_parse_value(["1", dt.date(2024, 1, 1)], None)
    assert fuzzing.COUNTS["parse_value"] == before + 2 * len(TYPES)

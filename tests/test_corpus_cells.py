"""Every messy cell kind through the real pipeline: exact error codes, reasons, and no collateral damage.

The corpus is `tests/corpus/cells.yaml` (RULESETS §0.2, §0.3, §0.11; PRODUCT §10). Each case puts
its cells into a known-good row of a core ruleset and is evaluated

* between two good rows, on every engine: the case row gets exactly its `errors` string (and on
  ERROR: tier 待定, every other output blank) and the good rows come out exactly as they do alone;
* by `prepare_row`: the same codes, each with its short reason text, and the parsed values;
* as a column made only of that cell (so pandas gives it its natural dtype: float64, int64, bool,
  datetime64, str) — the vectorised parser's typed paths must agree with the object path;
* all together: every case of a ruleset in one table (mixed-type columns, as Excel ranges come).
"""
from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from engine import api
from engine import outputs as out
from engine.compile import CompiledRuleset
from engine.prepare import prepare_row
from engine.rows import map_headers

CORPUS = yaml.safe_load((Path(__file__).parent / "corpus" / "cells.yaml").read_text(encoding="utf-8"))
BASE: dict[str, dict[str, Any]] = CORPUS["base"]
CASES: list[dict[str, Any]] = CORPUS["cases"]


def _engines() -> list[str]:
    engines = ["vector", "scalar"]
    try:
        from engine.rete import rete_available
    except ImportError:  # the durable-rules wrapper is not part of this checkout
        return engines
    return engines + (["rete"] if rete_available() is None else [])


ENGINES = _engines()


def raw(value: Any) -> Any:
    """A corpus cell → the Python object a workbook reader would hand the engine."""
    if isinstance(value, dict):
        ((kind, payload),) = value.items()
        return {"timestamp": pd.Timestamp, "np_float": np.float64, "decimal": Decimal}[kind](payload)
    return value


def row_of(case: dict[str, Any]) -> dict[str, Any]:
    row = dict(BASE[case["ruleset"]])
    row.update({header: raw(cell) for header, cell in case["cells"].items()})
    return row


@functools.cache
def compiled_of(ruleset: str) -> CompiledRuleset:
    """Compiled once per run: `api.compile` by id re-reads the YAML file each call (~0.1 s)."""
    return api.compile(ruleset)


def rendered(ruleset: str, rows: list[dict[str, Any]], engine: str) -> pd.DataFrame:
    compiled = compiled_of(ruleset)
    frame = api.evaluate(compiled, pd.DataFrame(rows, dtype=object), engine=engine, explain=True)
    return out.render_frame(frame, compiled)


def keyed(ruleset: str, row: dict[str, Any]) -> dict[str, Any]:
    """Header → cell becomes input key → cell, through the same header mapping as a file."""
    definition = compiled_of(ruleset).definition
    found = map_headers(row, definition)
    assert len(found) == len(row), f"a corpus header names no input of {ruleset}: {set(row) - set(found.values())}"
    return {key: row[header] for key, header in found.items()}


def expected_value(value: Any) -> Any:
    """Corpus notation of a parsed value → the scalar value model (Decimal, date, bool, str, None)."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value)
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit():
        return dt.date.fromisoformat(text)
    try:
        return Decimal(text)
    except ArithmeticError:
        return text


def _outputs(ruleset: str) -> tuple[str, list[str]]:
    definition = compiled_of(ruleset).definition
    return definition.tier_output, [o.key for o in definition.outputs]


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [f"{c['ruleset']}-{c['id']}" for c in cases]


def test_corpus_is_well_formed() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for case in CASES:
        assert case["ruleset"] in BASE, case["id"]
        codes = [c for c in case["errors"].split(";") if c]
        assert set(case.get("reasons", {})) == set(codes), f"{case['id']}: one reason per code"
        assert (case["errors"] == "") == ("values" in case), f"{case['id']}: OK rows state values, ERROR rows reasons"


@pytest.mark.parametrize("ruleset", sorted(BASE))
@pytest.mark.parametrize("engine", ENGINES)
def test_base_rows_are_ok(ruleset: str, engine: str) -> None:
    text = rendered(ruleset, [BASE[ruleset]], engine)
    assert (text.loc[0, "status"], text.loc[0, "errors"]) == ("OK", "")


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
@pytest.mark.parametrize("engine", ENGINES)
def test_case_row_between_good_rows(case: dict[str, Any], engine: str) -> None:
    ruleset = case["ruleset"]
    base = BASE[ruleset]
    text = rendered(ruleset, [base, row_of(case), base], engine)
    alone = rendered(ruleset, [base], engine)
    bad = text.iloc[1]
    assert bad["errors"] == case["errors"]
    assert bad["status"] == ("OK" if case["errors"] == "" else "ERROR")
    tier, outputs = _outputs(ruleset)
    if case["errors"]:
        assert bad[tier] == out.PENDING
        assert all(bad[key] == "" for key in outputs if key != tier), "ERROR rows leave every other output blank"
        assert bad["notes"] == "" and bad["fired_rules"] == ""
    else:
        assert bad[tier] not in ("", out.PENDING)
        if "notes" in case:
            assert bad["notes"] == case["notes"]
    for index in (0, 2):  # the neighbours are graded exactly as on their own
        assert text.iloc[index].to_dict() == alone.iloc[0].to_dict()
    for header, cell in case["cells"].items():  # input columns are never altered
        assert text.columns[list(text.columns).index(header)] == header
        if isinstance(cell, str):
            assert bad[header] == cell


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_case_reasons_and_values(case: dict[str, Any]) -> None:
    compiled = compiled_of(case["ruleset"])
    row = prepare_row(compiled, keyed(case["ruleset"], row_of(case)))
    assert ";".join(code for _position, code in row.errors) == case["errors"]
    assert {code: row.reasons[code] for _position, code in row.errors} == case.get("reasons", {})
    for key, value in case.get("values", {}).items():
        got = row.values[key]
        want = expected_value(value) if key not in {i.key for i in compiled.inputs if i.type == "text"} else value
        assert got == want and type(got) is type(want), f"{key}: {got!r} != {want!r}"
        if isinstance(want, Decimal):  # the exact decimal, digits and all (0.70 stays 0.70)
            assert str(got) == str(want)


SINGLE = [c for c in CASES if len(c["cells"]) == 1]


@pytest.mark.parametrize("case", SINGLE, ids=_ids(SINGLE))
@pytest.mark.parametrize("engine", ["vector", "scalar"])
def test_column_of_only_this_cell(case: dict[str, Any], engine: str) -> None:
    """pandas infers the column's own dtype: the typed parse paths must give the same codes."""
    ((header, cell),) = case["cells"].items()
    rows = [dict(BASE[case["ruleset"]]) for _ in range(3)]
    frame = pd.DataFrame(rows, dtype=object)
    frame[header] = pd.Series([raw(cell)] * 3).infer_objects()
    compiled = compiled_of(case["ruleset"])
    text = out.render_frame(api.evaluate(compiled, frame, engine=engine), compiled)
    assert list(text["errors"]) == [case["errors"]] * 3


@pytest.mark.parametrize("ruleset", sorted(BASE))
@pytest.mark.parametrize("engine", ENGINES)
def test_all_cases_in_one_table(ruleset: str, engine: str) -> None:
    cases = [c for c in CASES if c["ruleset"] == ruleset]
    rows: list[dict[str, Any]] = []
    expected: list[str] = []
    for case in cases:
        rows += [BASE[ruleset], row_of(case)]
        expected += ["", case["errors"]]
    text = rendered(ruleset, rows, engine)
    alone = rendered(ruleset, [BASE[ruleset]], engine).iloc[0].to_dict()
    assert list(text["errors"]) == expected
    for index in range(0, len(rows), 2):
        assert text.iloc[index].to_dict() == alone

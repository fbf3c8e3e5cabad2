"""Run a ruleset's embedded examples (`tier test`, and the golden test of the suite).

An example's input is a row as a CSV would hold it; its expectation is the text the output CSV
shows, compared as exact text.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from engine import api
from engine import outputs as out
from engine.compile import CompiledRuleset
from engine.ruleset import ExampleDef, RulesetDef


@dataclass(frozen=True)
class ExampleResult:
    ruleset: str
    index: int
    name: str
    engine: str
    mismatches: tuple[tuple[str, str, str], ...]  # (column, expected, got)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        head = f"{self.ruleset}#{self.index + 1} [{self.engine}] {self.name}"
        if self.ok:
            return f"PASS {head}"
        diffs = "; ".join(f"{col}: expected {exp!r}, got {got!r}" for col, exp, got in self.mismatches)
        return f"FAIL {head}: {diffs}"


def expected_text(value: Any) -> str:
    """YAML values of an expectation → the text a CSV cell would show."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _input_cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def same(expected: str, got: str) -> bool:
    """Exact text: the examples state what the CSV cell shows (`1.0` is not `1`)."""
    return expected == got


def run_example(definition: RulesetDef, index: int, example: ExampleDef, engine: str) -> ExampleResult:
    compiled: CompiledRuleset = api.compile(definition, example.params or None)
    row = {key: _input_cell(value) for key, value in example.input.items()}
    frame = api.evaluate(compiled, [row], engine=engine, explain=True)
    text = out.render_frame(frame, compiled)
    mismatches = []
    for column, value in example.expect.items():
        want = expected_text(value)
        got = str(text.loc[0, column]) if column in text.columns else "<no such column>"
        if not same(want, got):
            mismatches.append((column, want, got))
    return ExampleResult(definition.id, index, example.name, engine, tuple(mismatches))


def run_examples(definition: RulesetDef, engines: tuple[str, ...] = ("vector",)) -> list[ExampleResult]:
    return [run_example(definition, index, example, engine)
            for index, example in enumerate(definition.examples) for engine in engines]

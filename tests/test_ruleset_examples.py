"""Every example embedded in every shipped ruleset, on every engine: one test id per case.

The examples are hand-computed from RULESETS.md (the independent oracle), so a failure here is a
bug in an engine or a ruleset file, never something to re-baseline.
"""
from __future__ import annotations

import pytest

from engine import api
from engine.examples import run_example
from engine.ruleset import available_rulesets

ENGINES = ("vector", "rete", "scalar")


def _cases():
    for rid, path in sorted(available_rulesets().items()):
        definition = api.load_ruleset(path)
        for index, example in enumerate(definition.examples):
            for engine in ENGINES:
                yield pytest.param(rid, index, engine, id=f"{rid}.yaml#{index + 1}-{engine}")


@pytest.mark.parametrize(("rid", "index", "engine"), list(_cases()))
def test_example(rid: str, index: int, engine: str) -> None:
    definition = api.load_ruleset(rid)
    result = run_example(definition, index, definition.examples[index], engine)
    assert result.ok, result.describe()


def test_every_core_ruleset_ships_examples() -> None:
    for rid in ("credit", "guarantee", "bank_layering"):
        assert len(api.load_ruleset(rid).examples) >= 20, rid

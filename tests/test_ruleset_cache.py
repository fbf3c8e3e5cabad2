"""Loading a ruleset by id on every call reuses the parsed definition until the file changes."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import engine
from engine.errors import RulesetError
from engine.ruleset import available_rulesets, load_ruleset


def test_same_file_same_definition_object() -> None:
    assert load_ruleset("credit") is load_ruleset("credit")


def test_an_edited_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "credit.yaml"
    shutil.copy(available_rulesets()["credit"], path)
    monkeypatch.setenv("TIERBOOK_RULESETS", str(tmp_path))
    rows = [{"as_of_date": "2024-06-30", "monthly_avg_sales": "25000", "avg_collection_days": 20}]
    before = engine.evaluate("credit", rows).loc[0, "grade"]
    first = load_ruleset("credit")
    text = path.read_text(encoding="utf-8")
    assert "version:" in text
    edited = text.replace(f'version: "{first.version}"', 'version: "9.9.9"', 1)
    assert edited != text
    path.write_text(edited, encoding="utf-8")
    second = load_ruleset("credit")
    assert second is not first and second.version == "9.9.9"
    assert engine.evaluate("credit", rows).loc[0, "grade"] == before
    path.write_text(text.replace("decisions:", "decisions: [\n", 1), encoding="utf-8")  # now broken YAML
    with pytest.raises(RulesetError):
        load_ruleset("credit")
    path.write_text(text, encoding="utf-8")  # back to the first bytes: the first definition again
    assert load_ruleset("credit") is first

"""Table headers → input keys (RULESETS §0.1, §0.11 "Header aliases").

A header names an input when, after trimming and removing one trailing bracketed part — `(元)`,
`（天）` — on both sides, it equals the input key or one of its declared aliases (Chinese header,
English header, extra aliases). Headers that name no input pass through untouched.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from engine.errors import InputError
from engine.ruleset import RulesetDef

_TRAILING_BRACKET = re.compile(r"\s*(\([^()]*\)|（[^（）]*）)\s*$")


def normalize_header(header: object) -> str:
    """`' 月均销售额(元) '` → `'月均销售额'`; ASCII case folded so `Customer ID` = `customer id`."""
    text = "" if header is None else str(header).strip()
    text = _TRAILING_BRACKET.sub("", text, count=1).strip()
    return text.casefold()


def alias_index(definition: RulesetDef) -> dict[str, list[str]]:
    """normalized header → input keys it may name."""
    index: dict[str, list[str]] = {}
    for inp in definition.inputs:
        for name in inp.headers:
            keys = index.setdefault(normalize_header(name), [])
            if inp.key not in keys:
                keys.append(inp.key)
    return index


def map_headers(headers: Iterable[object], definition: RulesetDef, sheet: str = "") -> dict[str, object]:
    """input key → the header (column label) that holds it. Ambiguity is an error naming both."""
    where = f"工作表 {sheet!r} / sheet {sheet!r}: " if sheet else ""
    index = alias_index(definition)
    found: dict[str, object] = {}
    for header in headers:
        keys = index.get(normalize_header(header), [])
        if len(keys) > 1:
            raise InputError(f"{where}表头 {header!r} 同时匹配多个输入 / header {header!r} matches several inputs "
                             f"({', '.join(keys)}); rename the column to one of their keys")
        if not keys:
            continue
        key = keys[0]
        if key in found:
            raise InputError(f"{where}输入 {key!r} 出现在两列 / input {key!r} appears in two columns: "
                             f"{found[key]!r} and {header!r}; delete or rename one of them")
        found[key] = header
    return found


def missing_required_columns(found: Mapping[str, object], definition: RulesetDef) -> list[str]:
    """Inputs marked `required: true` with no column at all (every row would be MISSING)."""
    return [i.key for i in definition.inputs if i.required is True and i.key not in found]

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


def location(source: str = "", sheet: str = "") -> str:
    """The prefix naming where a table came from, as the file readers write it: `book.xlsx [客户]: `."""
    if source:
        return f"{source} [{sheet}]: " if sheet else f"{source}: "
    return f"工作表 {sheet!r} / sheet {sheet!r}: " if sheet else ""


class HeaderError(InputError):
    """A table's headers cannot be mapped to inputs (one input in two columns, one header for several).

    The table itself rarely knows its file (`engine.evaluate` sees a DataFrame), so `detail` keeps
    the reason without a location and `located` restates it for a caller that knows the file.
    """

    def __init__(self, detail: str, sheet: str = "", source: str = "") -> None:
        self.detail, self.sheet, self.source = detail, sheet, source
        super().__init__(location(source, sheet) + detail)

    def located(self, source: str) -> HeaderError:
        return HeaderError(self.detail, sheet=self.sheet, source=source)

    def __reduce__(self):  # pickles across processes (Dask workers) with its parts, not its text
        return (HeaderError, (self.detail, self.sheet, self.source))


def map_headers(headers: Iterable[object], definition: RulesetDef, sheet: str = "",
                source: str = "") -> dict[str, object]:
    """input key → the header (column label) that holds it. Ambiguity is an error naming both.

    `source` (the file name) and `sheet` locate the table in the error message.
    """
    index = alias_index(definition)
    found: dict[str, object] = {}
    for header in headers:
        keys = index.get(normalize_header(header), [])
        if len(keys) > 1:
            raise HeaderError(f"表头 {header!r} 同时匹配多个输入 / header {header!r} matches several inputs "
                              f"({', '.join(keys)}); rename the column to one of their keys", sheet, source)
        if not keys:
            continue
        key = keys[0]
        if key in found:
            raise HeaderError(f"输入 {key!r} 出现在两列 / input {key!r} appears in two columns: "
                              f"{found[key]!r} and {header!r}; delete or rename one of them", sheet, source)
        found[key] = header
    return found


def missing_required_columns(found: Mapping[str, object], definition: RulesetDef) -> list[str]:
    """Inputs marked `required: true` with no column at all (every row would be MISSING)."""
    return [i.key for i in definition.inputs if i.required is True and i.key not in found]

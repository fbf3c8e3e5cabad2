"""`tier fill`: write a ruleset's output columns into the table of an existing .xlsx/.xlsm, headless.

Why not openpyxl load → save: openpyxl silently drops charts, images, pivot tables, form controls
and parts it does not model, and rewrites every part it does. A workbook an analyst relies on must
come back with all of that intact. So this module edits the package surgically:

* the workbook is a zip of XML parts; every part except the target sheet is copied unchanged
  (same bytes once inflated, same order, same timestamps). The exceptions are the parts that
  *must* follow the sheet: the table part (ListObject) when output columns are added to it, and
  `calcChain.xml` (dropped, with its relationship and content type) when `--values` replaces
  formulas — Excel rebuilds it;
* inside the sheet XML only the `<row>` elements of the table's header and data rows, the
  `<dimension>` and (for added columns) `<cols>` are re-spliced as text; everything else — data
  validation, conditional formats, drawings, extensions, namespace prefixes — keeps its bytes;
* output cells are written as values: numbers as numbers, text as inline strings (an inline
  string is never a formula, so `=cmd|...` stays text — OWASP formula injection), dates as date
  serials when the cell carries a date format, else as `YYYY-MM-DD` text;
* input cells are never touched; output cells that hold formulas (a template's `=TIER_TABLE`
  spill or `=TIER` calls) are kept unless `values=True`;
* the result goes to a temporary file beside the target and replaces it only when complete
  (`engine.io.atomic_path`); when the new sheet equals the old one nothing is written at all, so
  a second fill is a byte-identical no-op.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import html
import math
import posixpath
import re
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd

from engine import api
from engine import io as tio
from engine.compile import CompiledRuleset, coerce_param, render_param
from engine.errors import InputError, ParameterError, RulesetError, TierError
from engine.rows import alias_index, map_headers, normalize_header
from engine.ruleset import RulesetDef
from engine.workbook_params import (
    PARAM_SHEETS,
    ParamSet,
    as_of_value,
    is_as_of_name,
    read_params,
    resolve_ref,
    ruleset_row,
)

__all__ = ["IMPLICIT_OUTPUTS", "FillReport", "ParamsApplied", "fill_workbook"]

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
STRICT_NS = "http://purl.oclc.org/ooxml/spreadsheetml/main"
REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
DOC_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
STRICT_DOC_REL_NS = "http://purl.oclc.org/ooxml/officeDocument/relationships"

# status/errors/notes are outputs of every ruleset (RULESETS §0.4–§0.6) with these zh headers.
IMPLICIT_OUTPUTS: tuple[tuple[str, str, str], ...] = (
    ("status", "状态", "Status"), ("errors", "错误", "Errors"), ("notes", "备注", "Notes"))

# Built-in number formats that are dates: the Western ones and the CJK locale ones
# (27–36, 50–58, e.g. 31 = yyyy"年"m"月"d"日" in zh-CN Excel).
_BUILTIN_DATE_FORMATS = frozenset([*range(14, 23), *range(27, 37), 45, 46, 47, *range(50, 59)])
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_EXCEL_EPOCH_1904 = dt.datetime(1904, 1, 1)

_ROW_RE = re.compile(r"<(?P<p>(?:[A-Za-z_][\w.-]*:)?)row\b(?P<attrs>[^>]*?)(?:/>|>(?P<body>.*?)</(?P=p)row>)", re.S)
_CELL_RE = re.compile(r"<(?P<p>(?:[A-Za-z_][\w.-]*:)?)c\b(?P<attrs>[^>]*?)(?:/>|>(?P<body>.*?)</(?P=p)c>)", re.S)
_ATTR_RE = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_REF_RE = re.compile(r"^\$?([A-Z]{1,3})\$?(\d+)$")
_ESCAPED_CHAR_RE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_ILLEGAL_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)")


@dataclass(frozen=True)
class ParamsApplied:
    """Where a fill's ruleset, parameters and as_of_date came from: the 参数 sheet or the caller.

    The summary line says it, so an analyst can see that the workbook's own settings were used
    (the add-in's button records the same in its 审计 row).
    """

    ruleset: str = ""
    ruleset_from_sheet: bool = False  # no --ruleset: the 参数 sheet's 规则集 row named it
    ruleset_conflict: str | None = None  # the 规则集 row's text when --ruleset named another ruleset
    sheet: str | None = None  # the 参数 / Parameters sheet read (None: the workbook has none)
    from_sheet: tuple[str, ...] = ()  # 'key=value' the sheet changed (not beaten by --param)
    at_default: int = 0  # sheet rows whose value is the default anyway
    from_caller: tuple[str, ...] = ()  # 'key=value' from --param
    beaten: tuple[str, ...] = ()  # keys the sheet set and --param overrode
    ignored: tuple[str, ...] = ()  # sheet keys that name no parameter of the ruleset
    as_of_date: str | None = None  # the sheet-level as_of_date (YYYY-MM-DD)
    as_of_from_caller: bool = False
    as_of_filled: int = 0  # blank as_of_date cells graded with it (the cells stay blank)

    def parts(self) -> list[str]:
        found: list[str] = []
        if self.ruleset_from_sheet:
            found.append(f"规则集 {self.ruleset} 取自参数表 / ruleset {self.ruleset} from the {self.sheet} sheet")
        if self.ruleset_conflict is not None:
            found.append(f"参数表的规则集行为 {self.ruleset_conflict!r}, 已按 --ruleset 使用 {self.ruleset} / the "
                         f"{self.sheet} sheet's 规则集 row names {self.ruleset_conflict!r}; --ruleset {self.ruleset} used")
        if self.sheet is not None and (self.from_sheet or self.at_default or self.beaten):
            changed = ", ".join(self.from_sheet) if self.from_sheet else "无 / none changed"
            same = f" (另 {self.at_default} 项同默认值 / {self.at_default} more at their defaults)" \
                if self.at_default else ""
            found.append(f"参数表 {self.sheet} / parameters from sheet {self.sheet!r}: {changed}{same}")
        if self.from_caller:
            over = f" (覆盖参数表 / over the sheet: {', '.join(self.beaten)})" if self.beaten else ""
            found.append(f"命令行参数 / parameters from --param: {', '.join(self.from_caller)}{over}")
        if self.as_of_date is not None:
            where = "--param" if self.as_of_from_caller else f"参数表 / sheet {self.sheet!r}"
            found.append(f"基准日 / as_of_date {self.as_of_date} ({where}): 用于 {self.as_of_filled} 个空白单元格, "
                         f"不写入 / graded {self.as_of_filled} blank cell(s), left blank")
        if self.ignored:
            found.append(f"已忽略 / ignored (no parameter of {self.ruleset}): {', '.join(self.ignored)}")
        return found


@dataclass(frozen=True)
class FillReport:
    """What a fill did: where, how many rows, which cells, what it refused to overwrite."""

    path: Path
    sheet: str
    header_row: int
    rows: int
    ok: int
    error: int
    cells_written: int
    columns_added: tuple[str, ...]
    formula_columns_kept: tuple[str, ...]
    changed: bool
    params: ParamsApplied = field(default_factory=ParamsApplied)

    def summary(self) -> str:
        parts = [f"{self.rows} rows on {self.sheet!r} → {self.path}: OK {self.ok}, ERROR {self.error}",
                 f"{self.cells_written} cells written" if self.changed else "unchanged (already filled)"]
        if self.columns_added:
            parts.append(f"columns added: {', '.join(self.columns_added)}")
        if self.formula_columns_kept:
            parts.append("公式列保留 / formula columns kept (use --values to overwrite): "
                         + ", ".join(self.formula_columns_kept))
        parts += self.params.parts()
        return "; ".join(parts)


# --------------------------------------------------------------------------- cell references
def column_letter(index: int) -> str:
    """1 → A, 27 → AA."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def column_index(letters: str) -> int:
    value = 0
    for char in letters:
        value = value * 26 + ord(char) - 64
    return value


def split_ref(ref: str) -> tuple[int, int]:
    """'B12' → (row 12, column 2)."""
    match = _REF_RE.match(ref.strip())
    if not match:
        raise InputError(f"无效的单元格地址 / invalid cell reference {ref!r}")
    return int(match.group(2)), column_index(match.group(1))


def split_range(ref: str) -> tuple[int, int, int, int]:
    """'A3:M30' → (first row, first col, last row, last col)."""
    first, _, last = ref.partition(":")
    r1, c1 = split_ref(first)
    r2, c2 = split_ref(last or first)
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


# --------------------------------------------------------------------------- XML text helpers
def _attrs(text: str) -> dict[str, str]:
    return {m.group(1): html.unescape(m.group(2) if m.group(2) is not None else m.group(3))
            for m in _ATTR_RE.finditer(text)}


def _unescape_ooxml(text: str) -> str:
    """XML entities, then the OOXML `_xHHHH_` escapes of characters XML cannot carry."""
    return _ESCAPED_CHAR_RE.sub(lambda m: chr(int(m.group(1), 16)), html.unescape(text))


def escape_text(text: str) -> str:
    """Text → XML character data with OOXML `_xHHHH_` escapes for control characters."""
    text = _ILLEGAL_XML_RE.sub(lambda m: f"_x{ord(m.group(0)):04X}_", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # a raw CR would be read back as LF (XML end-of-line normalisation): keep it as a reference
    return text.replace("\r", "&#13;")


def _escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text_of(element: ET.Element) -> str:
    """The text of a shared/inline string: plain `<t>` or rich-text runs, phonetic runs skipped."""
    parts: list[str] = []
    for child in element:
        name = _local(child.tag)
        if name == "t":
            parts.append(child.text or "")
        elif name == "r":
            for sub in child:
                if _local(sub.tag) == "t":
                    parts.append(sub.text or "")
    return _ESCAPED_CHAR_RE.sub(lambda m: chr(int(m.group(1), 16)), "".join(parts))


def _inline_text(body: str) -> str:
    """Text of an `<is>` body, parsed as text (it may carry a namespace prefix)."""
    inner = re.search(r"<(?:[\w.-]+:)?is\b[^>]*>(.*?)</(?:[\w.-]+:)?is>", body, re.S)
    if not inner:
        return ""
    content = re.sub(r"<(?:[\w.-]+:)?rPh\b.*?</(?:[\w.-]+:)?rPh>", "", inner.group(1), flags=re.S)
    return "".join(_unescape_ooxml(m.group(1)) for m in
                   re.finditer(r"<(?:[\w.-]+:)?t\b[^>]*?>(.*?)</(?:[\w.-]+:)?t>", content, re.S))


# --------------------------------------------------------------------------- the package
@dataclass
class _Styles:
    date_xfs: frozenset[int]
    plain_date_xf: int | None  # a date style with default font/fill/border, for new date cells


@dataclass
class _Cell:
    row: int
    col: int
    start: int  # offsets in the row body text
    end: int
    xml: str
    attrs: dict[str, str]
    explicit_ref: bool
    formula: str | None  # the <f> element text (None = no formula)
    value: Any


@dataclass
class _Row:
    index: int
    start: int  # offsets in the sheet text
    end: int
    open_tag: str  # '<row ...>' (a self-closing row is normalised when rebuilt)
    prefix: str
    cells: list[_Cell] = field(default_factory=list)


@dataclass
class _Table:
    part: str
    name: str
    ref: tuple[int, int, int, int]
    header_rows: int
    totals_rows: int


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    """One zip member, inflated in chunks with a running cap: a member whose header lies about its
    size (a zip bomb check_zip cannot see) is refused once it passes the cap, not after."""
    chunks, total = [], 0
    with archive.open(info) as handle:
        while True:
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > tio.MAX_XLSX_UNCOMPRESSED:
                raise InputError(f"{path.name}: {info.filename} 解压后过大 / inflates past "
                                 f"{tio.MAX_XLSX_UNCOMPRESSED:,} bytes; refused as a possible zip bomb")
            chunks.append(chunk)
    return b"".join(chunks)


class _Package:
    """Read-only view of the workbook zip: sheets, shared strings, styles, tables."""

    def __init__(self, path: Path) -> None:
        tio.check_zip(path)
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                self.infos = archive.infolist()
                self.names = {info.filename for info in self.infos}
                self.parts = {info.filename: _read_member(archive, info, path) for info in self.infos}
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise InputError(f"{path.name}: 文件已损坏 / cannot open the workbook: a part is damaged "
                             f"({type(exc).__name__}: {exc}); restore it from a backup or re-save it in Excel") from exc
        self.workbook = self._xml("xl/workbook.xml")
        self.date1904 = any(_local(e.tag) == "workbookPr" and e.get("date1904") in ("1", "true")
                            for e in self.workbook)
        self.sheets = self._sheet_parts()
        self.shared = self._shared_strings()
        self.styles = self._styles()

    def _xml(self, name: str) -> ET.Element:
        try:
            return ET.fromstring(self.parts[name])
        except KeyError as exc:
            raise InputError(f"{self.path.name}: 缺少部件 {name} / the workbook has no {name}") from exc
        except ET.ParseError as exc:
            raise InputError(f"{self.path.name}: {name} 不是有效的 XML / {name} is not valid XML: {exc}") from exc

    def rels(self, part: str) -> dict[str, tuple[str, str]]:
        """Relationship id → (type, absolute part name) for `part`."""
        folder, name = posixpath.split(part)
        rel_name = posixpath.join(folder, "_rels", name + ".rels")
        if rel_name not in self.parts:
            return {}
        found = {}
        for rel in self._xml(rel_name):
            target = rel.get("Target", "")
            if rel.get("TargetMode") == "External":
                continue
            absolute = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
            found[rel.get("Id", "")] = (rel.get("Type", ""), absolute)
        return found

    def _sheet_parts(self) -> list[tuple[str, str]]:
        rels = self.rels("xl/workbook.xml")
        sheets = []
        for element in self.workbook.iter():
            if _local(element.tag) != "sheet":
                continue
            rid = element.get(f"{{{DOC_REL_NS}}}id") or element.get(f"{{{STRICT_DOC_REL_NS}}}id") or ""
            kind, part = rels.get(rid, ("", ""))
            if kind.endswith("/worksheet") and part in self.parts:
                sheets.append((element.get("name", ""), part))
        return sheets

    def _shared_strings(self) -> list[str]:
        name = next((part for kind, part in self.rels("xl/workbook.xml").values() if kind.endswith("/sharedStrings")), None)
        if not name or name not in self.parts:
            return []
        return [_text_of(si) for si in self._xml(name) if _local(si.tag) == "si"]

    def _styles(self) -> _Styles:
        name = next((part for kind, part in self.rels("xl/workbook.xml").values() if kind.endswith("/styles")), None)
        if not name or name not in self.parts:
            return _Styles(frozenset(), None)
        from openpyxl.styles.numbers import is_date_format

        root = self._xml(name)
        custom = {}
        cell_xfs: list[ET.Element] = []
        for element in root:
            if _local(element.tag) == "numFmts":
                custom = {int(f.get("numFmtId", "0")): f.get("formatCode", "") for f in element}
            elif _local(element.tag) == "cellXfs":
                cell_xfs = list(element)
        dates, plain = set(), None
        for index, xf in enumerate(cell_xfs):
            fmt = int(xf.get("numFmtId", "0"))
            is_date = fmt in _BUILTIN_DATE_FORMATS or (fmt in custom and is_date_format(custom[fmt]))
            if not is_date:
                continue
            dates.add(index)
            if plain is None and all(xf.get(k, "0") == "0" for k in ("fontId", "fillId", "borderId")):
                plain = index
        return _Styles(frozenset(dates), plain)

    def tables(self, sheet_part: str) -> list[_Table]:
        found = []
        for kind, part in self.rels(sheet_part).values():
            if not kind.endswith("/table") or part not in self.parts:
                continue
            root = self._xml(part)
            found.append(_Table(part, root.get("displayName") or root.get("name") or "", split_range(root.get("ref", "A1")),
                                int(root.get("headerRowCount", "1")), int(root.get("totalsRowCount", "0"))))
        return found


# --------------------------------------------------------------------------- the sheet
class _Sheet:
    """The sheet XML as text, with its rows and cells located (not re-serialised)."""

    def __init__(self, package: _Package, name: str, part: str) -> None:
        self.package = package
        self.name = name
        self.part = part
        raw = package.parts[part]
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(f"{package.path.name} [{name}]: UTF-16 工作表不受支持 / UTF-16 sheet XML is not supported; "
                             f"re-save the workbook in Excel")
        try:  # the cells are edited as text below; first make sure the sheet is well-formed XML
            ET.fromstring(raw)
            self.text = raw.decode("utf-8")
        except (ET.ParseError, UnicodeDecodeError) as exc:
            raise InputError(f"{package.path.name} [{name}]: 工作表已损坏 / cannot read the sheet: "
                             f"{type(exc).__name__}: {exc}; re-save the workbook in Excel") from exc
        open_tag = re.search(r"<((?:[\w.-]+:)?)sheetData\b[^>]*?(/?)>", self.text)
        if not open_tag:
            raise InputError(f"{package.path.name} [{name}]: 工作表没有 sheetData / the sheet has no cell data")
        self.prefix = open_tag.group(1)
        if open_tag.group(2):
            self.data_start = self.data_end = open_tag.end()
            self.empty_data_tag = (open_tag.start(), open_tag.end())
        else:
            self.empty_data_tag = None
            self.data_start = open_tag.end()
            close = self.text.find(f"</{self.prefix}sheetData>", self.data_start)
            self.data_end = close
        self.rows: dict[int, _Row] = {}
        self._parse_rows()
        self.array_ranges = self._array_ranges()

    def _parse_rows(self) -> None:
        body = self.text[self.data_start:self.data_end]
        implied_row = 0
        for match in _ROW_RE.finditer(body):
            attrs = _attrs(match.group("attrs"))
            index = int(attrs["r"]) if "r" in attrs else implied_row + 1
            implied_row = index
            start, end = self.data_start + match.start(), self.data_start + match.end()
            open_tag = self.text[start:start + len(match.group(0))].split(">", 1)[0]
            open_tag = open_tag[:-1] + ">" if open_tag.endswith("/") else open_tag + ">"
            row = _Row(index, start, end, open_tag, match.group("p"))
            row_body = match.group("body") or ""
            body_offset = match.start("body") if match.group("body") is not None else 0
            implied_col = 0
            for cell in _CELL_RE.finditer(row_body):
                cell_attrs = _attrs(cell.group("attrs"))
                if "r" in cell_attrs:
                    _r, col = split_ref(cell_attrs["r"])
                else:
                    col = implied_col + 1
                implied_col = col
                inner = cell.group("body") or ""
                formula = re.search(r"<(?:[\w.-]+:)?f\b[^>]*?(?:/>|>.*?</(?:[\w.-]+:)?f>)", inner, re.S)
                row.cells.append(_Cell(index, col, body_offset + cell.start(), body_offset + cell.end(), cell.group(0),
                                       cell_attrs, "r" in cell_attrs, formula.group(0) if formula else None,
                                       self._value(cell_attrs, inner)))
            self.rows[index] = row

    def _value(self, attrs: Mapping[str, str], inner: str) -> Any:
        """The cell's value as openpyxl would give it with data_only=True."""
        kind = attrs.get("t", "n")
        if kind == "inlineStr":
            return _inline_text(inner)
        raw = re.search(r"<(?:[\w.-]+:)?v\b[^>]*>(.*?)</(?:[\w.-]+:)?v>", inner, re.S)
        if raw is None:
            return None
        text = _unescape_ooxml(raw.group(1))
        if kind == "s":
            try:
                return self.package.shared[int(text)]
            except (ValueError, IndexError):
                return None
        if kind in ("str", "e"):
            return text
        if kind == "b":
            return text.strip() in ("1", "true")
        if kind == "d":
            try:
                return dt.datetime.fromisoformat(text.strip().rstrip("Z"))
            except ValueError:
                return text
        try:
            number: float | int = int(text) if re.fullmatch(r"-?\d+", text.strip()) else float(text)
        except ValueError:
            return text
        if int(attrs.get("s", "0") or 0) in self.package.styles.date_xfs and math.isfinite(float(number)):
            epoch = _EXCEL_EPOCH_1904 if self.package.date1904 else _EXCEL_EPOCH
            try:
                return epoch + dt.timedelta(days=float(number))
            except OverflowError:
                return number
        return number

    def _array_ranges(self) -> list[tuple[tuple[int, int, int, int], tuple[int, int]]]:
        """(range, anchor) of every array / spilled formula: its cells belong to the formula."""
        found = []
        for row in self.rows.values():
            for cell in row.cells:
                if cell.formula and re.search(r"\bt\s*=\s*[\"']array[\"']", cell.formula):
                    ref = _attrs(cell.formula.split(">", 1)[0]).get("ref")
                    if ref:
                        found.append((split_range(ref), (cell.row, cell.col)))
        return found

    def cell(self, row: int, col: int) -> _Cell | None:
        found = self.rows.get(row)
        if found is None:
            return None
        return next((c for c in found.cells if c.col == col), None)

    def value(self, row: int, col: int) -> Any:
        cell = self.cell(row, col)
        return None if cell is None else cell.value

    def owned_by_array(self, row: int, col: int) -> tuple[int, int] | None:
        for (r1, c1, r2, c2), anchor in self.array_ranges:
            if r1 <= row <= r2 and c1 <= col <= c2:
                return anchor
        return None


# --------------------------------------------------------------------------- locating the table
@dataclass
class _Layout:
    header_row: int
    first_row: int
    last_row: int
    headers: dict[int, str]  # column → header text (the contiguous header block)
    inputs: dict[str, int]  # input key → column
    outputs: dict[str, int]  # output key → column (existing)
    table: _Table | None


def _header_block(sheet: _Sheet, row: int, start_col: int) -> dict[int, str]:
    headers: dict[int, str] = {}
    col = start_col
    while True:
        value = sheet.value(row, col)
        if value is None or str(value).strip() == "":
            break
        headers[col] = str(value).strip()
        col += 1
    return headers


def _locate(sheet: _Sheet, definition: Any) -> _Layout | None:
    known = set(alias_index(definition))
    candidates: list[tuple[int, int, int | None, _Table | None]] = []  # header row, first col, last row, table
    for table in sheet.package.tables(sheet.part):
        if table.header_rows:
            r1, c1, r2, _c2 = table.ref
            candidates.append((r1, c1, r2 - table.totals_rows, table))
    for index in sorted(sheet.rows)[:50]:
        hits = [c for c in sheet.rows[index].cells if c.value not in (None, "") and normalize_header(c.value) in known]
        if len(hits) >= 2:
            first_col = hits[0].col
            while first_col > 1 and not _blank(sheet.value(index, first_col - 1)):
                first_col -= 1
            candidates.append((index, first_col, None, None))
    for header_row, first_col, last_row, table in candidates:
        headers = _header_block(sheet, header_row, first_col)
        inputs_by_header = map_headers(headers.values(), definition, sheet=sheet.name,
                                       source=sheet.package.path.name)
        if len(inputs_by_header) < 2:
            continue
        column_of = {text: col for col, text in headers.items()}
        inputs = {key: column_of[str(header)] for key, header in inputs_by_header.items()}
        if last_row is None:
            last_row = header_row
            for index in sorted(r for r in sheet.rows if r > header_row):
                if any(sheet.value(index, col) not in (None, "") for col in inputs.values()):
                    last_row = index
        outputs = _match_outputs(headers, inputs, definition)
        return _Layout(header_row, header_row + 1, last_row, headers, inputs, outputs, table)
    return None


def output_specs(definition: Any) -> list[tuple[str, str, str, str]]:
    """(key, zh header, en header, type) of every filled column, in output order."""
    specs = [(key, zh, en, "text") for key, zh, en in IMPLICIT_OUTPUTS]
    specs += [(o.key, o.zh or o.key, o.en, o.type) for o in definition.outputs]
    return specs


def _match_outputs(headers: Mapping[int, str], inputs: Mapping[str, int], definition: Any) -> dict[str, int]:
    taken = set(inputs.values())
    names: dict[str, str] = {}
    for key, zh, en, _kind in output_specs(definition):
        for name in (key, zh, en):
            if name:
                names.setdefault(normalize_header(name), key)
    found: dict[str, int] = {}
    for col, text in headers.items():
        key = names.get(normalize_header(text))
        if key and col not in taken and key not in found:
            found[key] = col
    return found


# --------------------------------------------------------------------------- cell XML
def _number_text(value: float) -> str:
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _cell_xml(prefix: str, ref: str, style: str | None, kind: str, payload: str | None,
              keep_attrs: Mapping[str, str] | None = None) -> str:
    """One `<c>` element. kind: 'n' number, 'b' boolean, 'inlineStr', or '' for a blank cell."""
    attrs = [f'r="{ref}"']
    if style not in (None, "", "0"):
        attrs.append(f's="{style}"')
    for name, value in (keep_attrs or {}).items():
        if name not in ("r", "s", "t", "cm", "vm"):
            attrs.append(f'{name}="{_escape_attr(value)}"')
    if kind == "inlineStr":
        attrs.append('t="inlineStr"')
        space = ' xml:space="preserve"' if payload != payload.strip() or "\n" in payload else ""
        return f"<{prefix}c {' '.join(attrs)}><{prefix}is><{prefix}t{space}>{escape_text(payload)}</{prefix}t></{prefix}is></{prefix}c>"
    if kind == "b":
        attrs.append('t="b"')
    if kind in ("n", "b") and payload is not None:
        return f"<{prefix}c {' '.join(attrs)}><{prefix}v>{payload}</{prefix}v></{prefix}c>"
    return f"<{prefix}c {' '.join(attrs)}/>"


def _to_serial(value: Any, date1904: bool) -> float:
    stamp = pd.Timestamp(value).to_pydatetime().replace(tzinfo=None)
    epoch = _EXCEL_EPOCH_1904 if date1904 else _EXCEL_EPOCH
    return (stamp - epoch).total_seconds() / 86400


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, np.datetime64) and np.isnat(value):
        return True
    return isinstance(value, str) and value == ""


# --------------------------------------------------------------------------- the 参数 sheet
@dataclass(frozen=True)
class _ParamBlock:
    """The key/value rows of the 参数 / Parameters sheet and where they sit (for messages)."""

    sheet: str
    first_row: int  # sheet row of rows[0]
    first_col: int  # sheet column of the keys; values are one to the right
    rows: list[list[Any]]

    def cell(self, index: int) -> str:
        """A1 reference of the value cell of block row `index`."""
        return f"{column_letter(self.first_col + 1)}{self.first_row + index}"


def _param_block(package: _Package) -> _ParamBlock | None:
    """The first two columns of the 参数 sheet's used range, as the add-in reads them through xlwings.

    The used range starts at the first row and column holding any cell (formatted empty cells
    included, as Excel counts them); its first row may be a header row, which `read_params` skips.
    """
    wanted = {name.strip().casefold() for name in PARAM_SHEETS}
    for name, part in package.sheets:
        if name.strip().casefold() not in wanted:
            continue
        sheet = _Sheet(package, name, part)
        cells = [cell for row in sheet.rows.values() for cell in row.cells]
        if not cells:
            return _ParamBlock(name, 1, 1, [])
        first_row, last_row = min(c.row for c in cells), max(c.row for c in cells)
        first_col = min(c.col for c in cells)
        rows = [[sheet.value(r, first_col), sheet.value(r, first_col + 1)] for r in range(first_row, last_row + 1)]
        return _ParamBlock(name, first_row, first_col, rows)
    return None


def _same_ruleset(text: str, definition: RulesetDef, folder: Path) -> bool:
    if text == definition.id:
        return True
    try:
        named = resolve_ref(text, folder)
    except RulesetError:
        return False
    return definition.path is not None and Path(named).resolve() == Path(definition.path).resolve()


def _settings(package: _Package, block: _ParamBlock | None, explicit: RulesetDef | None, ruleset: Any,
              params: Mapping[str, Any]) -> tuple[CompiledRuleset, dt.date | None, ParamsApplied]:
    """The compiled ruleset, the sheet-level as_of_date and what came from where.

    Lowest to highest: the ruleset's defaults, the 参数 sheet, `params` (the command line) — the
    add-in's order with `params` in the place of a UDF's explicit params range.
    """
    name = package.path.name
    rows = block.rows if block is not None else []
    named = ruleset_row(rows)
    if explicit is not None:
        definition = explicit
    elif named:
        definition = api.load_ruleset(resolve_ref(named, package.path.parent))
    else:
        where = f"参数表 {block.sheet!r} 没有规则集行 / the {block.sheet!r} sheet has no 规则集 row" if block else \
            "工作簿没有参数表 / the workbook has no 参数 sheet"
        raise InputError(f"{name}: 未指定规则集 / no ruleset given: use --ruleset, or add a row 规则集 | <id> to the "
                         f"参数 sheet ({where})")
    sheet = read_params(rows, definition, strict=False) if block is not None else ParamSet()

    def at(key: str) -> str:
        """Where the sheet's value for `key` sits: `book.xlsx [参数] 第 5 行 / row 5 (B5)`."""
        assert block is not None  # only keys read from a block have a row
        index = sheet.rows.get(key, 0)
        row = block.first_row + index
        return f"{name} [{block.sheet}] 第 {row} 行 / row {row} ({block.cell(index)})"

    # A compiled ruleset passed in keeps its own overrides: they are the caller's, like `params`.
    given = dict(ruleset.overridden) if isinstance(ruleset, CompiledRuleset) else {}
    given.update(params)
    caller = {str(k): v for k, v in given.items() if not is_as_of_name(k, definition)}
    caller_as_of = next((v for k, v in given.items() if is_as_of_name(k, definition)), None)
    kept = {k: v for k, v in sheet.overrides.items() if k not in caller}
    for key, raw in kept.items():  # a bad cell is named where it is, not as a bare parameter
        try:
            coerce_param(definition, key, raw)
        except ParameterError as exc:
            raise ParameterError(f"{at(key)}: {exc}") from exc
    compiled = api.compile(definition, {**kept, **caller})

    as_of: dt.date | None = None
    has_as_of = any(i.key == "as_of_date" for i in definition.inputs)
    raw_as_of = caller_as_of if caller_as_of is not None else sheet.as_of_date
    if has_as_of and raw_as_of is not None:
        try:
            as_of = as_of_value(raw_as_of, package.date1904)
        except ParameterError as exc:
            where = "--param as_of_date" if caller_as_of is not None else at("as_of_date")
            raise ParameterError(f"{where}: {exc}") from exc

    conflict = named if explicit is not None and named and not _same_ruleset(named, definition,
                                                                            package.path.parent) else None
    from_sheet = tuple(f"{k}={render_param(compiled.params[k])}" for k in kept if k in compiled.overridden)
    applied = ParamsApplied(
        ruleset=definition.id, ruleset_from_sheet=explicit is None, ruleset_conflict=conflict,
        sheet=block.sheet if block is not None else None, from_sheet=from_sheet,
        at_default=sum(1 for k in kept if k not in compiled.overridden),
        from_caller=tuple(f"{k}={render_param(compiled.params[k])}" for k in caller if k in compiled.params),
        beaten=tuple(k for k in sheet.overrides if k in caller), ignored=sheet.ignored,
        as_of_date=as_of.isoformat() if as_of is not None else None, as_of_from_caller=caller_as_of is not None)
    return compiled, as_of, applied


def _fill_as_of(frame: pd.DataFrame, layout: _Layout, present: np.ndarray, as_of: dt.date) -> int:
    """Blank as_of_date cells of the frame (or a whole column when the table has none) → `as_of`.

    Only the frame the engine sees changes; the workbook's cells stay blank (the add-in does the
    same). Returns how many cells of graded rows were filled.
    """
    if "as_of_date" not in layout.inputs:
        frame["as_of_date"] = pd.Series([as_of] * len(frame), index=frame.index, dtype=object)
        return int(present.sum())
    header = layout.headers[layout.inputs["as_of_date"]]
    blank = np.array([_blank(v) for v in frame[header].tolist()], dtype=bool)
    if blank.any():
        column = frame[header].to_numpy(dtype=object, copy=True)
        column[blank] = as_of
        frame[header] = pd.Series(column, index=frame.index, dtype=object)
    return int((blank & present).sum())


# --------------------------------------------------------------------------- the fill
def fill_workbook(path: str | Path, ruleset: Any = None, sheet: str | None = None, output: str | Path | None = None,
                  params: Mapping[str, Any] | None = None, values: bool = False,
                  engine: str = "vector", sheet_params: bool = True) -> FillReport:
    """Fill the output columns of the ruleset's table on a sheet; keep everything else byte-identical.

    `output` writes a new file and leaves `path` untouched; otherwise `path` is replaced atomically
    (and not written at all when nothing changes). `values=True` replaces output formulas by values.

    The workbook's 参数 / Parameters sheet is honoured as the add-in's fill button honours it
    (`engine.workbook_params`; `sheet_params=False` ignores it): its parameter rows override the
    defaults, its 规则集 row names the ruleset when `ruleset` is None, and its as_of_date fills
    blank as_of_date cells for the evaluation only. `params` beat the sheet; an `as_of_date`
    entry (or 评估基准日 …) there replaces the sheet's as_of_date.
    """
    source = Path(path)
    if source.suffix.lower() not in (".xlsx", ".xlsm"):
        raise InputError(f"tier fill 只支持 .xlsx/.xlsm / tier fill needs an .xlsx or .xlsm workbook, got {source.name!r}")
    if not source.is_file():
        raise InputError(f"工作簿不存在 / workbook not found: {source}")
    target = Path(output) if output is not None else source
    if target.suffix.lower() != source.suffix.lower():
        raise InputError(f"输出须与输入同类型 / -o must keep the workbook type ({source.suffix}), got {target.name!r}")
    explicit = api.load_ruleset(ruleset.definition if isinstance(ruleset, CompiledRuleset) else ruleset) \
        if ruleset is not None else None  # an unknown --ruleset fails before the workbook is read
    package = _Package(source)
    block = _param_block(package) if sheet_params else None
    compiled, as_of, applied = _settings(package, block, explicit, ruleset, params or {})
    definition = compiled.definition
    work, layout = _choose_sheet(package, definition, sheet, as_of_given=as_of is not None)

    # ---- evaluate the data rows (blank rows are skipped: nothing to grade)
    data_rows = list(range(layout.first_row, layout.last_row + 1))
    frame = pd.DataFrame({layout.headers[col]: [work.value(r, col) for r in data_rows]
                          for _key, col in layout.inputs.items()}, dtype=object)
    present = np.array([any(not _blank(work.value(r, col)) for col in layout.inputs.values()) for r in data_rows],
                       dtype=bool)
    if as_of is not None:  # for the evaluation only: the frame, never the cells
        filled = _fill_as_of(frame, layout, present, as_of)
        applied = dataclasses.replace(applied, as_of_filled=filled)
    result = api.evaluate(compiled, frame[present].reset_index(drop=True), engine=engine, sheet=work.name) \
        if present.any() else None

    # ---- plan columns: existing output columns, then missing ones after the header block
    specs = output_specs(definition)
    columns = dict(layout.outputs)
    added: list[str] = []
    next_col = max(layout.headers) + 1
    for key, zh, _en, _kind in specs:
        if key not in columns:
            columns[key] = next_col
            added.append(zh)
            next_col += 1
    new_cols = [columns[k] for k, *_ in specs if k not in layout.outputs]
    for col in new_cols:
        for r in range(layout.header_row, layout.last_row + 1):
            cell = work.cell(r, col)
            if cell is not None and (cell.formula or not _blank(cell.value)):
                raise InputError(
                    f"{source.name} [{work.name}]: 单元格 {column_letter(col)}{r} 已有内容,无法在此添加输出列 / "
                    f"cell {column_letter(col)}{r} is not empty, so the output columns cannot be added there; "
                    f"move that content or add the output headers yourself")

    # ---- the new value of every output cell
    planned: dict[tuple[int, int], tuple[str, str | None]] = {}  # (row, col) → (kind, payload)
    kinds = {key: kind for key, _zh, _en, kind in specs}
    ok_count = err_count = 0
    if result is not None:
        ok_count = int((result["status"] == "OK").sum())
        err_count = int((result["status"] == "ERROR").sum())
    result_index = np.cumsum(present) - 1
    for position, r in enumerate(data_rows):
        for key, col in columns.items():
            if not present[position]:
                planned[(r, col)] = ("", None)
                continue
            value = result[key].iloc[int(result_index[position])]
            planned[(r, col)] = _payload(value, kinds[key], work, r, col, package)

    # ---- apply: header cells of added columns, then data cells (formulas kept unless values=True)
    header_style = _style_of(work.cell(layout.header_row, max(layout.headers)))
    new_cells: dict[int, dict[int, str]] = {}
    kept: set[tuple[int, str]] = set()
    removed_formula = False
    key_of_col = {col: key for key, col in columns.items()}
    for key, zh, _en, _kind in specs:
        if key in layout.outputs:
            continue
        ref = f"{column_letter(columns[key])}{layout.header_row}"
        new_cells.setdefault(layout.header_row, {})[columns[key]] = _cell_xml(work.prefix, ref, header_style, "inlineStr", zh)
    shared_users = _shared_formula_users(work)
    for (r, col), (kind, payload) in planned.items():
        cell = work.cell(r, col)
        anchor = work.owned_by_array(r, col)
        if (cell is not None and cell.formula) or anchor:
            if not values:
                kept.add((col, layout.headers.get(col, key_of_col[col])))
                continue
            if anchor and not _array_within(work, anchor, set(columns.values()), layout):
                kept.add((col, layout.headers.get(col, key_of_col[col])))
                continue
            if cell is not None and cell.formula and not _shared_master_free(cell, shared_users, planned):
                kept.add((col, layout.headers.get(col, key_of_col[col])))
                continue
            removed_formula = True
        style = _style_of(cell)
        if kind == "date":
            style = style if style is not None else str(package.styles.plain_date_xf)
            kind = "n"
        keep = cell.attrs if cell is not None else None
        new_cells.setdefault(r, {})[col] = _cell_xml(work.prefix, f"{column_letter(col)}{r}", style, kind, payload, keep)

    new_text, written = _rebuild_sheet(work, new_cells, new_cols)
    table_part = _expanded_table(package, layout, new_cols, [zh for key, zh, *_ in specs if key not in layout.outputs])
    changed_parts: dict[str, bytes] = {}
    if new_text != work.text:
        changed_parts[work.part] = new_text.encode("utf-8")
    if table_part is not None:
        changed_parts[table_part[0]] = table_part[1]
    dropped: set[str] = set()
    if removed_formula and changed_parts:
        dropped, patched = _drop_calc_chain(package)
        changed_parts.update(patched)
    report = FillReport(target, work.name, layout.header_row, int(present.sum()), ok_count, err_count, written,
                        tuple(added), tuple(header for _col, header in sorted(kept)),
                        bool(changed_parts), applied)
    if not changed_parts:
        if target.resolve() != source.resolve():
            with tio.atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        return report
    _write_package(package, target, changed_parts, dropped)
    return report


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _style_of(cell: _Cell | None) -> str | None:
    if cell is None:
        return None
    return cell.attrs.get("s")


def _payload(value: Any, kind: str, sheet: _Sheet, row: int, col: int, package: _Package) -> tuple[str, str | None]:
    if _is_missing(value):
        return ("", None)
    if kind == "date" or isinstance(value, (pd.Timestamp, dt.date, np.datetime64)):
        cell = sheet.cell(row, col)
        style = _style_of(cell)
        date_styled = (style is not None and int(style or 0) in package.styles.date_xfs) or \
            (style is None and package.styles.plain_date_xf is not None)
        if date_styled:
            return ("date", _number_text(_to_serial(value, package.date1904)))
        return ("inlineStr", pd.Timestamp(value).strftime("%Y-%m-%d"))
    if kind == "boolean":
        return ("b", "1" if bool(value) else "0")
    if kind in ("number", "integer") and isinstance(value, (int, float, np.integer, np.floating)):
        return ("n", _number_text(float(value)))
    return ("inlineStr", str(value))


def _choose_sheet(package: _Package, definition: Any, sheet: str | None,
                  as_of_given: bool = False) -> tuple[_Sheet, _Layout]:
    names = [name for name, _part in package.sheets]
    if sheet is not None and sheet not in names:
        raise InputError(f"{package.path.name}: 没有工作表 {sheet!r} / no worksheet {sheet!r}; sheets: {', '.join(names)}")
    for name, part in package.sheets:
        if sheet is not None and name != sheet:
            continue
        work = _Sheet(package, name, part)
        layout = _locate(work, definition)
        if layout is None:
            continue
        # a sheet-level as_of_date stands in for a missing as_of_date column, as in the add-in
        missing = [key for key in (i.key for i in definition.inputs if i.required is True)
                   if key not in layout.inputs and not (as_of_given and key == "as_of_date")]
        if missing:
            labels = ", ".join(f"{definition.input(k).zh or k} ({k})" for k in missing)
            raise InputError(f"{package.path.name} [{name}]: 缺少必填列 / required input columns are missing: {labels}")
        return work, layout
    where = f"工作表 {sheet!r}" if sheet else "任何工作表"
    expected = ", ".join(i.zh or i.key for i in definition.inputs)
    raise InputError(f"{package.path.name}: {where}中没有 {definition.id} 的输入表 / no table with the inputs of "
                     f"{definition.id!r} found (a header row naming at least two of: {expected})")


def _shared_formula_users(sheet: _Sheet) -> dict[str, list[tuple[int, int]]]:
    users: dict[str, list[tuple[int, int]]] = {}
    for row in sheet.rows.values():
        for cell in row.cells:
            if cell.formula and re.search(r"\bt\s*=\s*[\"']shared[\"']", cell.formula):
                si = _attrs(cell.formula.split(">", 1)[0]).get("si")
                if si is not None:
                    users.setdefault(si, []).append((cell.row, cell.col))
    return users


def _shared_master_free(cell: _Cell, users: Mapping[str, list[tuple[int, int]]],
                        planned: Mapping[tuple[int, int], Any]) -> bool:
    """A shared-formula master may only go when every cell that borrows its formula goes too."""
    head = cell.formula.split(">", 1)[0] if cell.formula else ""
    attrs = _attrs(head)
    if attrs.get("t") != "shared" or "ref" not in attrs:
        return True
    return all(pos in planned for pos in users.get(attrs.get("si", ""), []))


def _array_within(sheet: _Sheet, anchor: tuple[int, int], output_cols: set[int], layout: _Layout) -> bool:
    for (r1, c1, r2, c2), where in sheet.array_ranges:
        if where == anchor:
            return all(c in output_cols for c in range(c1, c2 + 1)) and r1 >= layout.first_row
    return False


def _rebuild_sheet(sheet: _Sheet, new_cells: Mapping[int, Mapping[int, str]],
                   new_cols: Sequence[int]) -> tuple[str, int]:
    """Splice the changed rows (and dimension/cols) into the sheet text; everything else keeps its bytes."""
    text = sheet.text
    edits: list[tuple[int, int, str]] = []
    count = 0
    for index, cells in new_cells.items():
        row = sheet.rows.get(index)
        if row is None:
            if any(not _droppable(xml) for xml in cells.values()):
                # Cannot happen: a row with outputs has inputs, so its <row> element exists.
                raise TierError(f"internal: row {index} has outputs but no <row> element")
            continue
        xml, changed = _row_xml(row, cells, text)
        if changed:
            edits.append((row.start, row.end, xml))
            count += changed
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    if new_cols:
        text = _widen_dimension(text, max(new_cols))
        text = _add_col_widths(text, sheet.prefix, new_cols)
    return text, count


def _row_xml(row: _Row, cells: Mapping[int, str], text: str) -> tuple[str, int]:
    """The row with `cells` put in column order, and how many cells really changed."""
    existing = {c.col: c for c in row.cells}
    changed = 0
    for col, xml in cells.items():
        if col in existing:
            changed += existing[col].xml != xml
        elif not _droppable(xml):
            changed += 1
    if not changed:
        return text[row.start:row.end], 0
    explicit = all(c.explicit_ref for c in row.cells)
    parts: list[tuple[int, str]] = []
    for col in sorted(set(existing) | set(cells)):
        if col in cells:
            xml = cells[col]
            if col not in existing and _droppable(xml):
                continue
            parts.append((col, xml))
        else:
            xml = existing[col].xml
            if not explicit and not existing[col].explicit_ref:
                xml = re.sub(r"^<((?:[\w.-]+:)?)c\b", lambda m: f'<{m.group(1)}c r="{column_letter(col)}{row.index}"', xml)
            parts.append((col, xml))
    open_tag = row.open_tag
    spans = re.search(r'\bspans="(\d+):(\d+)"', open_tag)
    if spans and parts:
        low, high = int(spans.group(1)), int(spans.group(2))
        low, high = min(low, parts[0][0]), max(high, parts[-1][0])
        open_tag = open_tag[:spans.start()] + f'spans="{low}:{high}"' + open_tag[spans.end():]
    return f"{open_tag}{''.join(xml for _c, xml in parts)}</{row.prefix}row>", changed


def _droppable(xml: str) -> bool:
    """A blank, unstyled cell adds nothing: it is not written at all."""
    return xml.endswith("/>") and ' s="' not in xml


def _widen_dimension(text: str, last_col: int) -> str:
    match = re.search(r'(<(?:[\w.-]+:)?dimension\b[^>]*\bref=")([^"]+)(")', text)
    if not match:
        return text
    try:
        r1, c1, r2, c2 = split_range(match.group(2))
    except InputError:
        return text
    if last_col <= c2:
        return text
    ref = f"{column_letter(c1)}{r1}:{column_letter(last_col)}{r2}"
    return text[:match.start(2)] + ref + text[match.end(2):]


def _add_col_widths(text: str, prefix: str, new_cols: Sequence[int]) -> str:
    """Give added columns a readable width unless a <col> already covers them."""
    cols = re.search(rf"<{re.escape(prefix)}cols>(.*?)</{re.escape(prefix)}cols>", text, re.S)
    covered: set[int] = set()
    entries: list[tuple[int, str]] = []
    if cols:
        for element in re.finditer(rf"<{re.escape(prefix)}col\b[^>]*/>", cols.group(1)):
            attrs = _attrs(element.group(0))
            low, high = int(attrs.get("min", "0")), int(attrs.get("max", "0"))
            covered.update(range(low, min(high, 16384) + 1))
            entries.append((low, element.group(0)))
    wanted = [c for c in new_cols if c not in covered]
    if not wanted:
        return text
    for col in wanted:
        entries.append((col, f'<{prefix}col min="{col}" max="{col}" width="14.7109375" customWidth="1"/>'))
    body = "".join(xml for _low, xml in sorted(entries, key=lambda item: item[0]))
    if cols:
        return text[:cols.start(1)] + body + text[cols.end(1):]
    anchor = re.search(rf"<{re.escape(prefix)}sheetData\b", text)
    if anchor is None:
        return text
    return text[:anchor.start()] + f"<{prefix}cols>{body}</{prefix}cols>" + text[anchor.start():]


def _expanded_table(package: _Package, layout: _Layout, new_cols: Sequence[int],
                    headers: Sequence[str]) -> tuple[str, bytes] | None:
    """Grow the ListObject over added columns that start right after its last column."""
    table = layout.table
    if table is None or not new_cols or min(new_cols) != table.ref[3] + 1:
        return None
    text = package.parts[table.part].decode("utf-8")
    r1, c1, r2, _c2 = table.ref
    last = max(new_cols)
    ref = f"{column_letter(c1)}{r1}:{column_letter(last)}{r2}"
    text = re.sub(r'(<(?:[\w.-]+:)?table\b[^>]*?\bref=")[^"]+(")', lambda m: m.group(1) + ref + m.group(2), text, count=1)
    auto = re.search(r'(<(?:[\w.-]+:)?autoFilter\b[^>]*?\bref=")([^"]+)(")', text)
    if auto:
        fr1, fc1, fr2, _fc2 = split_range(auto.group(2))
        text = text[:auto.start(2)] + f"{column_letter(fc1)}{fr1}:{column_letter(last)}{fr2}" + text[auto.end(2):]
    columns = re.search(r'<((?:[\w.-]+:)?)tableColumns\b([^>]*)>(.*?)</(?:[\w.-]+:)?tableColumns>', text, re.S)
    if columns is None:
        return None
    prefix = columns.group(1)
    ids = [int(i) for i in re.findall(r'<(?:[\w.-]+:)?tableColumn\b[^>]*?\bid="(\d+)"', columns.group(3))]
    next_id = max(ids, default=0) + 1
    extra = "".join(f'<{prefix}tableColumn id="{next_id + i}" name="{_escape_attr(name)}"/>' for i, name in enumerate(headers))
    count = len(ids) + len(headers)
    head = re.sub(r'\bcount="\d+"', f'count="{count}"', columns.group(2))
    replacement = f"<{prefix}tableColumns{head}>{columns.group(3)}{extra}</{prefix}tableColumns>"
    text = text[:columns.start()] + replacement + text[columns.end():]
    return table.part, text.encode("utf-8")


def _drop_calc_chain(package: _Package) -> tuple[set[str], dict[str, bytes]]:
    """calcChain lists formula cells; after replacing formulas by values Excel must rebuild it."""
    chain = next((part for kind, part in package.rels("xl/workbook.xml").values() if kind.endswith("/calcChain")), None)
    if chain is None:
        return set(), {}
    patched: dict[str, bytes] = {}
    rels_name = "xl/_rels/workbook.xml.rels"
    rels = package.parts[rels_name].decode("utf-8")
    rels = re.sub(r'<Relationship\b[^>]*?Type="[^"]*/calcChain"[^>]*/>', "", rels)
    patched[rels_name] = rels.encode("utf-8")
    types = package.parts["[Content_Types].xml"].decode("utf-8")
    types = re.sub(rf'<Override\b[^>]*?PartName="/{re.escape(chain)}"[^>]*/>', "", types)
    patched["[Content_Types].xml"] = types.encode("utf-8")
    return {chain}, patched


def _write_package(package: _Package, target: Path, changed: Mapping[str, bytes], dropped: Iterable[str]) -> None:
    """Every part in its original order; unchanged ones with their bytes, changed ones replaced."""
    dropped = set(dropped)
    try:
        with tio.atomic_path(target) as tmp:
            with zipfile.ZipFile(tmp, "w", allowZip64=True) as archive:
                for info in package.infos:
                    if info.filename in dropped:
                        continue
                    data = changed.get(info.filename, package.parts[info.filename])
                    clone = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    clone.compress_type = info.compress_type
                    clone.external_attr = info.external_attr
                    clone.create_system = info.create_system
                    clone.comment = info.comment
                    archive.writestr(clone, data)
    except PermissionError as exc:
        raise InputError(f"无法写入 {target.name}(是否在 Excel 中打开?)/ cannot replace {target.name}: is it open "
                         f"in Excel? Close it or write to another file with -o: {exc}") from exc

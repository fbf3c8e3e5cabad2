"""Macros for buttons and the ribbon (xlwings RunPython): fill tiers, check rules.

Assign a button to a VBA macro such as::

    Sub FillTiers()
        RunPython "import addin.macros; addin.macros.fill_tiers()"
    End Sub

`fill_tiers` fills the table on the active sheet: it finds the Excel table (ListObject) or the
header row, maps headers through the ruleset's aliases, evaluates every row with the vector
engine, and writes the output columns — status/errors/notes, the declared outputs, 错误说明 —
creating the missing ones after the table's last column (header cells right next to an Excel
table count as its output columns: templates keep a spilled `=TIER_TABLE` there). It writes
nothing else: input cells and other columns are never touched, and a new column is only created
where the cells are empty. Formula cells in the output columns (a template's `=TIER_TABLE` spill,
`=TIER` calls) are replaced by the values — the button's purpose in the templates, and a spill
cannot coexist with values written under it; `keep_formulas=True` leaves them instead, as
`tier fill` does by default. It appends an audit row (ruleset, version, digest, changed
parameters, time, row counts, formulas replaced or kept) to the `审计` sheet and shows progress in
the status bar. Running it twice gives the same table.

`check_rules` runs the static checks (`tier check`) and lists the problems on `规则检查`.
`build_report` writes the quarterly tier report (engine/report.py) for the table on the active
sheet — with last quarter's table from a `上季` / `Previous` sheet when there is one — next to
the workbook and opens it.

Excel I/O goes through `addin.excel_io`; every failure ends as one readable message (status
bar and message box), never a traceback.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from addin import excel_io as xio
from addin import tiering as tg
from engine import api
from engine.compile import CompiledRuleset
from engine.errors import InputError, RulesetError
from engine.rows import alias_index, normalize_header
from engine.ruleset import RulesetDef, available_rulesets, read_ruleset

AUDIT_HEADER = ("时间", "工作表", "表格", "规则集", "版本", "摘要(digest)", "参数(非默认)", "基准日(参数表)", "行数",
                "OK", "ERROR", "空行", "写入列", "新建列", "保留的公式", "替换的公式", "忽略的参数")
CHECK_HEADER = ("规则集", "文件", "行", "级别", "代码", "问题", "修改建议")
PREVIOUS_SHEETS = ("上季", "上季度", "Previous", "Previous quarter")
_PREVIOUS_KEYS = ("上季工作表", "previous_sheet")
DATE_FORMAT = "yyyy-mm-dd"


@dataclass(frozen=True)
class FillSummary:
    """What `fill_tiers` did (returned for tests and scripts; RunPython ignores it)."""

    sheet: str
    table: str
    ruleset: str
    version: str
    digest: str
    rows: int
    ok: int
    error: int
    blank: int
    written: tuple[str, ...]
    created: tuple[str, ...]
    kept: tuple[str, ...]  # output columns whose formula cells were left alone ("header×n")
    replaced: tuple[str, ...]  # output columns whose formula cells now hold values ("header×n")
    params: str
    seconds: float

    def text(self) -> str:
        parts = [f"tierbook: {self.sheet} 已分级 {self.rows} 行 (OK {self.ok}, ERROR {self.error})",
                 f"规则集 {self.ruleset} {self.version}", f"参数: {self.params}"]
        if self.created:
            parts.append(f"新建列: {', '.join(self.created)}")
        if self.kept:
            parts.append(f"含公式的单元格未覆盖: {', '.join(self.kept)}")
        if self.replaced:
            parts.append(f"公式已替换为数值: {', '.join(self.replaced)}")
        return "; ".join(parts) + f" ({self.seconds:.1f}s)"


# --------------------------------------------------------------------------- choosing the ruleset
def _definitions() -> dict[str, RulesetDef]:
    found = {}
    for rid, path in available_rulesets().items():
        definition, _problems = read_ruleset(path)
        if definition is not None:
            found[rid] = definition
    return found


def _known_headers(definitions: Sequence[RulesetDef]) -> set[str]:
    known: set[str] = set()
    for definition in definitions:
        known |= set(alias_index(definition))
    return known


def _match_score(definition: RulesetDef, header: Sequence[object]) -> tuple[int, float]:
    index = alias_index(definition)
    keys = {k for cell in header if cell is not None for k in index.get(normalize_header(cell), [])}
    return len(keys), len(keys) / max(1, len(definition.inputs))


def choose_ruleset(header: Sequence[object], explicit: str | None, from_params: str | None,
                   table_name: str | None, definitions: dict[str, RulesetDef]) -> str:
    """explicit argument > the 参数 sheet's 规则集 row > the Excel table's name > best header match."""
    for choice in (explicit, from_params):
        if choice:
            return choice
    if table_name:
        lowered = table_name.casefold()
        named = sorted((rid for rid in definitions if rid in lowered), key=len, reverse=True)
        if named:
            return named[0]
    scored = sorted(((_match_score(d, header), rid) for rid, d in definitions.items()), reverse=True)
    if not scored or scored[0][0][0] == 0:
        raise InputError("表头不属于任何规则集 / the headers match no ruleset; add a 规则集 row to the 参数 sheet")
    if len(scored) > 1 and scored[1][0] == scored[0][0]:
        raise InputError(f"无法判断规则集 / the headers fit {scored[0][1]!r} and {scored[1][1]!r} equally; "
                         f"add a row 规则集 | <id> to the 参数 sheet")
    return scored[0][1]


# --------------------------------------------------------------------------- fill
def _plan_columns(table: xio.SheetTable, view: list[tg.Column], inputs: set[int]) -> tuple[dict[int, tg.Column],
                                                                                            list[tg.Column]]:
    """Existing output columns (by position in the table) and the view columns still missing."""
    names: dict[str, tg.Column] = {}
    for column in view:
        for name in (column.key, column.zh, column.en):
            if name:
                names.setdefault(normalize_header(name), column)
    existing: dict[int, tg.Column] = {}
    taken: set[str] = set()
    for position, cell in enumerate(table.header):
        if position in inputs or cell is None:
            continue  # an input column is never an output column, whatever its header says
        column = names.get(normalize_header(cell))
        if column is not None and column.key not in taken:
            existing[position] = column
            taken.add(column.key)
    missing = [c for c in view if c.key not in taken]
    return existing, missing


def fill_tiers(ruleset: str | None = None, book: Any = None, keep_formulas: bool = False) -> FillSummary | None:
    """Fill the output columns of the table on the active sheet (see the module docstring)."""
    book = book if book is not None else xio.caller_book()
    if book is None:
        raise InputError("fill_tiers 需要从 Excel 调用 / call fill_tiers from Excel (RunPython) or pass book=")
    try:
        summary = _fill(book, ruleset, keep_formulas)
    except Exception as exc:  # noqa: BLE001 — one readable message, never a traceback
        text = tg.failure_text(exc)
        xio.status(book, text)
        xio.alert(book, text)
        return None
    xio.status(book, summary.text())
    return summary


def _table_and_ruleset(book: Any, ruleset: str | None, context: xio.WorkbookContext
                       ) -> tuple[xio.SheetTable, CompiledRuleset, tg.ParamSet]:
    """The active sheet's table, the ruleset for it (compiled with the 参数 sheet) and its parameters."""
    sheet = book.sheets.active
    definitions = _definitions()
    if ruleset:
        known = _known_headers([api.load_ruleset(tg.resolve_ref(ruleset, context.folder))])
    else:
        known = _known_headers(list(definitions.values()))
    table = xio.locate_table(sheet, known)
    rid = choose_ruleset(table.header, ruleset, tg.ruleset_row(context.param_rows),
                         table.name if table.list_object is not None else None, definitions)
    base = tg.CACHE.get(rid, None, context.folder)
    params = tg.read_params(context.param_rows, base.definition, strict=False)
    compiled = tg.CACHE.get(rid, params.overrides, context.folder) if params.overrides else base
    return table, compiled, params


def _fill(book: Any, ruleset: str | None, keep_formulas: bool) -> FillSummary:
    started = time.perf_counter()
    xio.status(book, "tierbook: 读取表格… / reading the table…")
    context = xio.workbook_context(book)
    table, compiled, params = _table_and_ruleset(book, ruleset, context)
    sheet = table.sheet

    found = tg.match_inputs(compiled, table.header, sheet=str(sheet.name))
    view = tg.default_view(compiled)
    if any(normalize_header(c) in (normalize_header(tg.FIRED.zh), tg.FIRED.key) for c in table.header if c):
        view.append(tg.FIRED)  # the trace column is filled only where the analyst added it
    existing, missing = _plan_columns(table, view, set(found.values()))

    xio.status(book, f"tierbook: 计算 {len(table.rows)} 行… / evaluating {len(table.rows)} rows…")
    run = tg.evaluate_cells(compiled, table.header, table.rows, params, context.date1904,
                            explain=any(c.key == "fired_rules" for c in view), sheet=str(sheet.name))

    first_row, last_row = table.first_data_row, table.last_row
    new_first = table.first_col + table.width
    new_last = new_first + len(missing) - 1
    if missing and not xio.block_is_empty(sheet, table.header_row, new_first, max(last_row, table.header_row),
                                          new_last):
        raise InputError(
            f"表格右侧需新建 {len(missing)} 列输出, 但那里已有内容 / {len(missing)} output columns must be added "
            f"right of the table, but those cells are not empty; clear them or add the headers "
            f"({', '.join(c.header for c in missing)}) to the table yourself")

    targets: list[tuple[int, tg.Column, bool]] = [(table.first_col + p, c, False) for p, c in sorted(existing.items())]
    targets += [(new_first + j, c, True) for j, c in enumerate(missing)]
    written: list[str] = []
    kept: list[str] = []  # columns with formula cells left as they are (header×count)
    replaced: list[str] = []
    with xio.screen_updating_off(book):
        for number, (col, column, created) in enumerate(targets, start=1):
            xio.status(book, f"tierbook: 写入 {column.header} ({number}/{len(targets)}) / writing outputs…")
            formulas = set() if created else xio.formula_rows(sheet, col, first_row, last_row)
            keep = formulas if keep_formulas else set()
            if formulas and not keep_formulas:
                replaced.append(f"{column.header}×{len(formulas)}")
            if created:
                xio.write_cell(sheet, table.header_row, col, column.header)
            count = xio.write_column_except(sheet, col, first_row, tg.column_cells(run, column, for_write=True), keep)
            if created and column.kind == "date":
                xio.set_number_format(sheet, col, first_row, last_row, DATE_FORMAT)
            elif created and column.decimals:  # budgets shown as 1.0, 24.0 like the spec
                xio.set_number_format(sheet, col, first_row, last_row, "0." + "0" * column.decimals + "####")
            if keep:
                kept.append(f"{column.header}×{len(keep)}")
            if count or created:
                written.append(column.header)
        if missing:
            xio.extend_list_object(table, new_last)

    counts = run.counts()
    summary = FillSummary(
        sheet=str(sheet.name), table=table.name, ruleset=compiled.id, version=compiled.version,
        digest=compiled.digest, rows=counts["rows"], ok=counts["OK"], error=counts["ERROR"], blank=counts["blank"],
        written=tuple(written), created=tuple(c.header for c in missing), kept=tuple(kept), replaced=tuple(replaced),
        params=tg.changed_params_text(compiled), seconds=time.perf_counter() - started)
    _audit(book, summary, params, compiled, context.date1904)
    return summary


def _audit(book: Any, summary: FillSummary, params: tg.ParamSet, compiled: CompiledRuleset,
           date1904: bool = False) -> None:
    """One row on the 审计 sheet: enough to reproduce the run (ruleset content digest + parameters).

    The as-of date is converted with the workbook's date system, as the grading did (a serial in
    a 1904 workbook is four years and a day later than the same serial in a 1900 one)."""
    as_of = "" if params.as_of_date is None else tg.as_of_value(params.as_of_date, date1904).isoformat()
    row = [dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), summary.sheet, summary.table, compiled.id,
           compiled.version, compiled.digest, summary.params, as_of, summary.rows, summary.ok, summary.error,
           summary.blank, ", ".join(summary.written), ", ".join(summary.created), ", ".join(summary.kept),
           ", ".join(summary.replaced), ", ".join(params.ignored)]
    xio.append_row(book, xio.AUDIT_SHEET, AUDIT_HEADER, row)


# --------------------------------------------------------------------------- quarterly report
def build_report(ruleset: str | None = None, book: Any = None, previous_sheet: str | None = None,
                 output: str | None = None) -> Path | None:
    """The quarterly tier report of the active sheet's table, written beside the workbook and opened.

    Last quarter's table comes from `previous_sheet`, a `上季工作表` row of the 参数 sheet, or a sheet
    named 上季 / Previous; without one the report has no migration matrix. The tables are read as
    they are (already filled tables are reported as reviewed; raw ones are evaluated), with date
    serials converted and the sheet-level as_of_date applied, like `fill_tiers`.
    """
    book = book if book is not None else xio.caller_book()
    if book is None:
        raise InputError("build_report 需要从 Excel 调用 / call build_report from Excel (RunPython) or pass book=")
    try:
        path = _report(book, ruleset, previous_sheet, output)
    except Exception as exc:  # noqa: BLE001 — one readable message, never a traceback
        text = tg.failure_text(exc)
        xio.status(book, text)
        xio.alert(book, text)
        return None
    xio.status(book, f"tierbook: 报告已生成 / report written: {path}")
    return path


def _report(book: Any, ruleset: str | None, previous_sheet: str | None, output: str | None) -> Path:
    try:
        from engine import report as quarterly
    except ImportError as exc:  # the report module is optional in a partial install
        raise InputError(f"报告模块不可用 / the report module is not available: {exc}") from exc
    xio.status(book, "tierbook: 读取表格… / reading the table…")
    context = xio.workbook_context(book)
    table, compiled, params = _table_and_ruleset(book, ruleset, context)
    current = _report_frame(compiled, table, params, context.date1904)
    wanted = previous_sheet or next((str(row[1]).strip() for row in context.param_rows
                                     if len(row) > 1 and row[0] is not None and row[1] is not None
                                     and normalize_header(row[0]) in _PREVIOUS_KEYS), None)
    other = xio.find_sheet(book, (wanted,)) if wanted else xio.find_sheet(book, PREVIOUS_SHEETS)
    if wanted and other is None:
        raise InputError(f"没有工作表 {wanted!r} / no sheet {wanted!r} for last quarter's table")
    previous = None
    if other is not None and other.name != table.sheet.name:
        known = _known_headers([compiled.definition])
        previous = _report_frame(compiled, xio.locate_table(other, known), params, context.date1904)
    target = Path(output) if output else _report_path(book, compiled)
    xio.status(book, f"tierbook: 生成报告… / building the report ({len(table.rows)} rows)…")
    quarterly.build_report_from_frames(compiled, current, previous, target)
    xio.open_workbook(book, target)
    return target


def _report_frame(compiled: CompiledRuleset, table: xio.SheetTable, params: tg.ParamSet, date1904: bool) -> Any:
    """A sheet table as the report reads it: named columns, date serials converted, as_of filled in."""
    import pandas as pd

    from addin import excel_values as xv

    types = {i.key: i.type for i in compiled.definition.inputs}
    found = tg.match_inputs(compiled, table.header)
    date_cols = {index for key, index in found.items() if types[key] == "date"}
    as_of_col = found.get("as_of_date")
    as_of = tg.as_of_value(params.as_of_date, date1904) if params.as_of_date is not None else None
    columns: dict[str, list[object]] = {}
    for index, header in enumerate(table.header):
        if xv.is_blank_cell(header) or str(header).strip() in columns:
            continue
        cells = [row[index] for row in table.rows]
        if index in date_cols:
            cells = [xv.serial_to_date_or_raw(c, date1904) for c in cells]
        if index == as_of_col and as_of is not None:
            cells = [as_of if xv.is_blank_cell(c) else c for c in cells]
        columns[str(header).strip()] = cells
    if as_of is not None and as_of_col is None:
        columns["as_of_date"] = [as_of] * len(table.rows)
    present = [not all(xv.is_blank_cell(row[i]) for i in found.values()) for row in table.rows]
    frame = pd.DataFrame(columns, dtype=object)
    frame = frame[present].reset_index(drop=True) if len(frame) else frame
    frame.attrs["sheet"] = str(table.sheet.name)
    return frame


def _report_path(book: Any, compiled: CompiledRuleset) -> Path:
    folder = xio.book_folder(book) or str(Path.home())
    stem = Path(str(getattr(book, "name", "") or "tierbook")).stem or "tierbook"
    return Path(folder) / f"{stem}_分级报告_{compiled.id}_{dt.date.today().isoformat()}.xlsx"


# --------------------------------------------------------------------------- check rules
def check_rules(ruleset: str | None = None, book: Any = None) -> list[list[object]] | None:
    """Static checks of the workbook's ruleset (or of every ruleset) → the 规则检查 sheet."""
    book = book if book is not None else xio.caller_book()
    if book is None:
        raise InputError("check_rules 需要从 Excel 调用 / call check_rules from Excel (RunPython) or pass book=")
    try:
        context = xio.workbook_context(book)
        chosen = ruleset or tg.ruleset_row(context.param_rows)
        ids = [chosen] if chosen else sorted(available_rulesets())
        rows: list[list[object]] = [list(CHECK_HEADER)]
        errors = warnings = 0
        for rid in ids:
            xio.status(book, f"tierbook: 检查 {rid}… / checking {rid}…")
            try:
                path = tg.resolve_ref(rid, context.folder)
                problems = api.check_ruleset(path)
            except (RulesetError, ImportError) as exc:
                rows.append([rid, "", "", "error", "unusable", tg.failure_text(exc), ""])
                errors += 1
                continue
            if not problems:
                rows.append([rid, str(path), "", "ok", "", "没有发现问题 / no problems", ""])
            for problem in problems:
                rows.append([rid, problem.file, problem.line or "", problem.severity, problem.code, problem.message,
                             problem.fix])
                errors += problem.severity == "error"
                warnings += problem.severity != "error"
        xio.replace_sheet(book, xio.CHECK_SHEET, rows)
        xio.status(book, f"tierbook: 规则检查完成: {errors} 个错误, {warnings} 个警告 / {errors} error(s), "
                         f"{warnings} warning(s) — see sheet {xio.CHECK_SHEET}")
        return rows
    except Exception as exc:  # noqa: BLE001
        text = tg.failure_text(exc)
        xio.status(book, text)
        xio.alert(book, text)
        return None


__all__ = ["FillSummary", "build_report", "check_rules", "choose_ruleset", "fill_tiers"]

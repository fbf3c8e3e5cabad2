"""Worksheet functions (classic xlwings UDFs): =TIER, =TIER_TABLE, =TIER_WHY, =TIER_RULESETS, =TIER_PARAMS.

Import them in Excel with xlwings' "Import Functions" (UDF Modules = `addin.udfs`; see
docs/INSTALL-EXCEL.md). The decorators only *record* metadata for the function wizard — on
Linux they are plain no-ops — so every conversion happens in our own code (`addin.excel_values`,
`addin.tiering`), and the functions are ordinary Python callables the tests call directly.

Each Excel function is a thin wrapper over a typed Python function (`tier_table`, `tier`, …)
and is guarded: any failure becomes a short `#ERR …` text in the cell, never a traceback
(PRODUCT §5). The Excel-facing wrappers carry no type annotations on purpose: xlwings reads
argument annotations as *converters* (`get_type_hints` → `options["convert"]`), and `Any` there
would break every call.

Parameters come from, lowest to highest: the ruleset's defaults, the workbook's `参数` /
`Parameters` sheet (through `xw.Book.caller()`), the function's own `params` range. Excel only
recalculates a function when its arguments change: pass the 参数 range as `params` to have
edits there recalculate at once; otherwise they apply at the next full recalculation
(Ctrl+Alt+F9).
"""
from __future__ import annotations

from typing import Any

import xlwings as xw

from addin import excel_io
from addin import excel_values as xv
from addin import tiering as tg
from addin.explain import explain_row
from engine.compile import CompiledRuleset
from engine.errors import InputError

_RULESET_DOC = "规则集 id (如 \"credit\"、\"guarantee\") 或 .yaml 文件路径 / ruleset id or .yaml file path"
_PARAMS_DOC = ("可选: 两列参数区域 (参数名, 值), 覆盖默认值和「参数」工作表 / optional 2-column key/value "
               "range overriding the defaults and the 参数 sheet")
_TABLE_DOC = "含表头行的数据区域 (中文列名或输入键) / the table including its header row"
_HEADERS_DOC = "表头行 (中文列名或输入键) / the header row"
_ROW_DOC = "一行数据, 与表头对齐 / one data row aligned with the headers"


# --------------------------------------------------------------------------- typed implementations
def compiled_for(ruleset: Any, params: Any = None) -> tuple[CompiledRuleset, tg.ParamSet, bool]:
    """The ruleset compiled with the 参数 sheet and the `params` argument applied (cached)."""
    context = excel_io.CALLER_CONTEXTS.get()
    base = tg.CACHE.get(ruleset, None, context.folder)
    from_sheet = tg.read_params(context.param_rows, base.definition, strict=False)
    explicit = tg.read_params(params, base.definition, strict=True) if params is not None else tg.ParamSet()
    merged = from_sheet.merged(explicit)
    compiled = tg.CACHE.get(ruleset, merged.overrides, context.folder) if merged.overrides else base
    return compiled, merged, context.date1904


def _single_row(headers: Any, row: Any) -> tuple[list[object], list[list[object]]]:
    header = xv.as_list(headers)
    cells = xv.as_2d(row)
    values = list(cells[0]) if cells else []
    width = max(len(header), len(values))
    return header + [None] * (width - len(header)), [values + [None] * (width - len(values))]


def tier_table(ruleset: Any, table: Any, outputs: Any = None, params: Any = None) -> list[list[object]]:
    """One row per data row of the requested outputs; with `outputs` omitted, a header row first.

    Omitted `outputs` = every column (状态, 错误, 备注, the outputs, 错误说明) under a header row, so
    the spill names its columns. Named `outputs` are usually the header cells right above the
    formula (the templates: `=TIER_TABLE("credit", 表[#All], H3:Q3, 参数!A:B)`), so the spill is
    the data rows only and lines up with the table's rows.
    """
    compiled, merged, date1904 = compiled_for(ruleset, params)
    with tg.gc_paused:
        normalised = xv.normalise_table(table)
    if not normalised.header:
        raise InputError("表格为空 / the table is empty: select the header row and the data rows")
    view = tg.parse_view(compiled, outputs)
    with tg.gc_paused:
        run = tg.evaluate_cells(compiled, normalised.header, normalised.rows, merged, date1904,
                                explain=any(c.key == "fired_rules" for c in view))
        rows = tg.view_cells(run, view)
        return [tg.view_header(view), *rows] if tg.is_default_request(outputs) else rows


def tier(ruleset: Any, headers: Any, row: Any, output: Any = None, params: Any = None) -> object:
    """One value of one row: the tier column unless `output` names another column."""
    compiled, merged, date1904 = compiled_for(ruleset, params)
    header, rows = _single_row(headers, row)
    if not xv.as_list(output) or all(xv.is_blank_cell(v) for v in xv.as_list(output)):
        tier_key = compiled.definition.tier_output
        view = [c for c in tg.output_columns(compiled) if c.key == tier_key]
    else:
        view = tg.parse_view(compiled, output)[:1]
    run = tg.evaluate_cells(compiled, header, rows, merged, date1904, explain=view[0].key == "fired_rules")
    return tg.view_cells(run, view)[0][0]


def tier_why(ruleset: Any, headers: Any, row: Any, params: Any = None) -> str:
    """The fired rules of one row in Chinese words (see addin.explain)."""
    compiled, merged, date1904 = compiled_for(ruleset, params)
    header, rows = _single_row(headers, row)
    run = tg.evaluate_cells(compiled, header, rows, merged, date1904)
    return explain_row(compiled, run.raw_row(0), str(run.error_text[0]))


def tier_params(ruleset: Any, params: Any = None) -> list[list[object]]:
    compiled, _merged, _date1904 = compiled_for(ruleset, params)
    return tg.param_rows(compiled)


_tier_table = tg.guarded(tier_table, shape="array")
_tier = tg.guarded(tier)
_tier_why = tg.guarded(tier_why)
_tier_rulesets = tg.guarded(tg.ruleset_rows, shape="array")
_tier_params = tg.guarded(tier_params, shape="array")


# --------------------------------------------------------------------------- Excel functions
@xw.func(category="tierbook")
@xw.arg("ruleset", doc=_RULESET_DOC)
@xw.arg("table", ndim=2, err_to_str=True, doc=_TABLE_DOC)
@xw.arg("outputs", ndim=1, doc="可选: 输出列 (列名区域或逗号分隔文字), 默认全部 / optional output names, default all")
@xw.arg("params", ndim=2, doc=_PARAMS_DOC)
def TIER_TABLE(ruleset, table, outputs=None, params=None):  # noqa: N802, ANN001, ANN201 — see module doc
    """按规则集为整张表分级, 每行一行 (未指定输出列时先给表头) / Grade a table: a row per data row."""
    return _tier_table(ruleset, table, outputs, params)


@xw.func(category="tierbook")
@xw.arg("ruleset", doc=_RULESET_DOC)
@xw.arg("headers", ndim=1, doc=_HEADERS_DOC)
@xw.arg("row", ndim=1, err_to_str=True, doc=_ROW_DOC)
@xw.arg("output", doc="可选: 输出列名 (键或中文名), 默认分级列 / optional output name, default the tier")
@xw.arg("params", ndim=2, doc=_PARAMS_DOC)
def TIER(ruleset, headers, row, output=None, params=None):  # noqa: N802, ANN001, ANN201
    """按规则集为一行分级, 返回一个值 / Grade one row: one value (default the tier column)."""
    return _tier(ruleset, headers, row, output, params)


@xw.func(category="tierbook")
@xw.arg("ruleset", doc=_RULESET_DOC)
@xw.arg("headers", ndim=1, doc=_HEADERS_DOC)
@xw.arg("row", ndim=1, err_to_str=True, doc=_ROW_DOC)
@xw.arg("params", ndim=2, doc=_PARAMS_DOC)
def TIER_WHY(ruleset, headers, row, params=None):  # noqa: N802, ANN001, ANN201
    """用中文说明触发了哪些规则及原因 / Why: the fired rules of one row in words."""
    return _tier_why(ruleset, headers, row, params)


@xw.func(category="tierbook")
def TIER_RULESETS():  # noqa: N802, ANN201
    """可用的规则集: id, 版本, 名称 / The available rulesets: id, version, title."""
    return _tier_rulesets()


@xw.func(category="tierbook")
@xw.arg("ruleset", doc=_RULESET_DOC)
@xw.arg("params", ndim=2, doc=_PARAMS_DOC)
def TIER_PARAMS(ruleset, params=None):  # noqa: N802, ANN001, ANN201
    """规则集参数: 当前值, 默认值, 说明 / The ruleset's parameters: value, default, label."""
    return _tier_params(ruleset, params)


__all__ = ["TIER", "TIER_PARAMS", "TIER_RULESETS", "TIER_TABLE", "TIER_WHY", "compiled_for", "tier",
           "tier_params", "tier_table", "tier_why"]

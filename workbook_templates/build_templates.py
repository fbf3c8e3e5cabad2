"""Build the analyst templates (PRODUCT §6) from the rulesets, deterministically.

    python -m workbook_templates.build_templates          # writes workbook_templates/*.xlsm

Each template is generated from its ruleset, so a changed header, parameter or output shows up
after a rebuild, and `tests/test_templates.py` checks the files against the rulesets:

* the main sheet holds an Excel table (ListObject) of the ruleset's inputs, headers = the inputs'
  Chinese headers in order, with data validation (是/否 and enum drop-downs, and an input message
  giving type, unit and whether the column is required on every input column);
* the outputs sit right of the table: one `=TIER_TABLE(ruleset, table[#All], output headers,
  '参数'!A:B)` dynamic-array formula spills a row per data row. It lives *outside* the table because
  Excel does not allow spilled formulas inside a table. The cached values are the engine's own
  results, so LibreOffice, a viewer or `tier eval` see real numbers before Excel recalculates;
* the guarantee template adds 回访计划表, a row per loan computed by `=TIER(..., headers, row,
  output)` per cell (the single-value UDF with the matching row of the main sheet);
* conditional colours per tier value, ERROR rows and overdue visits; a 参数 sheet whose first two
  columns are the key/value block the UDFs read (`取值` starts at the default); a 使用说明 sheet;
* a "填充分级" button running `FillTiers` from a VBA project built by `vba_project.py`
  (it calls the add-in's `addin.macros.fill_tiers` through the xlwings add-in).

Fixed document properties and XlsxWriter's fixed zip timestamps make rebuilds byte-identical.
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from engine import api
from engine.errors import TierError
from engine.ruleset import InputDef, RulesetDef
from workbook_templates import make_examples
from workbook_templates.vba_project import build_vba_project

HERE = Path(__file__).resolve().parent
FIXED_TIME = dt.datetime(2024, 7, 1, 9, 0, 0)
HEADER_ROW = 2  # 0-based: title, hint, then the header row (Excel row 3)
FORMULA_ROWS = 2000  # validation and colours reach this far below the header
PLAN_EXTRA_ROWS = 100  # 回访计划表 rows prepared beyond the sample rows
SAMPLE_ROWS = 12
MACRO = "FillTiers"

TYPE_ZH = {"number": "数字", "fraction": "比例(0.7 或 70%)", "integer": "整数", "date": "日期(YYYY-MM-DD)",
           "boolean": "是/否", "text": "文本", "enum": "选项"}

# (match, value, fill colour, font colour); match: 'equal' or 'begins'
GREEN, LIGHT_GREEN, YELLOW, ORANGE, RED, GREY = "#63BE7B", "#C6EFCE", "#FFEB9C", "#FFC7CE", "#FF7C80", "#D9D9D9"


@dataclass(frozen=True)
class TierColour:
    match: str
    value: str
    fill: str
    font: str = "#000000"


@dataclass(frozen=True)
class TemplateSpec:
    """One template: which ruleset, file, sheet and table names, sample data, tier colours."""

    ruleset: str
    stem: str
    sheet: str
    table: str
    title: str
    example: str
    colours: tuple[TierColour, ...]
    plan_sheet: str | None = None


PENDING = TierColour("equal", "待定", GREY, "#9C0006")
TEMPLATES: tuple[TemplateSpec, ...] = (
    TemplateSpec("credit", "credit_grading", "客户信用分级表", "信用分级", "客户信用分级表(100分制)", "credit_customers",
                 (TierColour("equal", "A", GREEN), TierColour("equal", "B", YELLOW), TierColour("equal", "C", ORANGE),
                  PENDING)),
    TemplateSpec("guarantee", "guarantee_review", "在保客户风险分类表", "在保客户", "在保客户风险分类表(保后管理)",
                 "guarantee_loans",
                 (TierColour("equal", "良好", GREEN), TierColour("equal", "正常", LIGHT_GREEN),
                  TierColour("equal", "关注", YELLOW), TierColour("equal", "风险", RED, "#FFFFFF"), PENDING),
                 plan_sheet="回访计划表"),
    TemplateSpec("bank_layering", "bank_layering", "客户分层表", "客户分层", "商业银行零售客户分层分级表",
                 "bank_customers",
                 (TierColour("begins", "高价值", GREEN), TierColour("begins", "中价值", YELLOW),
                  TierColour("begins", "低价值", GREY), PENDING)),
)

# 回访计划表: (output key or None for a manual column, header)
PLAN_COLUMNS: tuple[tuple[str | None, str], ...] = (
    ("=guarantee_id", "担保业务编号"), ("=customer_name", "被担保人名称"), ("risk_class", "风险分类"),
    ("visit_type", "回访类型"), ("visit_frequency", "回访频率"), ("next_visit_date", "下次回访日期"),
    ("visit_status", "回访状态"), ("owner_role", "主责人"), ("support_roles", "协同人"),
    ("plan_due_date", "回访计划报送截止日"), (None, "计划回访人"), (None, "实际回访日期"), (None, "回访记录"),
)


# --------------------------------------------------------------------------- helpers
def output_headers(definition: RulesetDef) -> list[tuple[str, str, str]]:
    """(key, header, type) of the spilled output columns: status/errors/notes, then the outputs."""
    return [("status", "状态", "text"), ("errors", "错误", "text"), ("notes", "备注", "text"),
            *[(o.key, o.zh or o.key, o.type) for o in definition.outputs]]


def input_hint(item: InputDef) -> str:
    """The input message of a column: type, unit, range, required."""
    parts = [f"类型:{TYPE_ZH.get(item.type, item.type)}"]
    if item.unit:
        parts.append(f"单位:{item.unit}")
    if item.values:
        parts.append("可选:" + "/".join(item.values))
    if item.min is not None or item.max is not None:
        low = "" if item.min is None else f"≥{item.min}"
        high = "" if item.max is None else f"≤{item.max}"
        parts.append("范围:" + " ".join(p for p in (low, high) if p))
    if item.required is True:
        parts.append("必填")
    elif isinstance(item.required, str):
        parts.append(f"条件必填:{item.required}")
    else:
        parts.append("可空")
    return ";".join(parts)[:255]


def display_width(text: object) -> float:
    """Column width units a text needs: CJK characters take two."""
    return sum(2.0 if ord(ch) > 0x2E80 else 1.1 for ch in str(text))


def sample_frame(spec: TemplateSpec, definition: RulesetDef) -> pd.DataFrame:
    """The first rows of the example data, with the ruleset's own zh headers (inputs only)."""
    example = next(e for e in make_examples.examples() if e.stem == spec.example)
    from engine.rows import map_headers

    found = map_headers(example.headers, definition)
    columns = {}
    for item in definition.inputs:
        header = found.get(item.key)
        index = example.headers.index(header) if header is not None else None
        columns[item.zh or item.key] = [None if index is None else _tidy(row[index], item)
                                        for row in example.rows[:SAMPLE_ROWS]]
    return pd.DataFrame(columns, dtype=object)


def _tidy(raw: Any, item: InputDef) -> Any:
    """A sample cell as an analyst's clean sheet holds it: typed when it parses, else kept as typed.

    The example data is deliberately messy; a template shows tidy rows plus the bad ones, which
    stay raw so the template also shows what an ERROR row looks like.
    """
    from decimal import Decimal

    from engine.values import parse_value

    value, problem = parse_value(raw, item.type, item.values or None)
    if problem or value is None:
        return raw
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def param_rows(definition: RulesetDef) -> list[tuple[str, Any, str, Any, str, str]]:
    """(key, value, 中文名, default, range, note) rows of the 参数 sheet, after 规则集 and as_of_date."""
    compiled = api.compile(definition)
    rows: list[tuple[str, Any, str, Any, str, str]] = [
        ("规则集", definition.id, "规则集(勿改)", definition.id, "", "本工作簿使用的规则集 id / ruleset id"),
        ("as_of_date", None, "评估基准日", None, "日期",
         "留空:用每行自己的日期;填写:空白的基准日单元格用此日期 / fills blank as_of_date cells"),
    ]
    for param in definition.parameters:
        value = compiled.params[param.key]
        bounds = []
        if param.min is not None:
            bounds.append(f"≥{param.min}")
        if param.max is not None:
            bounds.append(f"≤{param.max}")
        rows.append((param.key, _param_cell(value), param.zh, _param_cell(value), " ".join(bounds), param.en))
    return rows


def _param_cell(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


# --------------------------------------------------------------------------- writing cells
class _Formats:
    def __init__(self, book: xlsxwriter.Workbook) -> None:
        base = {"font_name": "等线", "font_size": 10, "valign": "vcenter"}
        self.title = book.add_format({**base, "bold": True, "font_size": 16, "font_color": "#1F3864"})
        self.hint = book.add_format({**base, "italic": True, "font_color": "#595959", "text_wrap": False})
        self.input_header = book.add_format({**base, "bold": True, "bg_color": "#1F4E78", "font_color": "#FFFFFF",
                                             "border": 1, "border_color": "#8EA9DB", "text_wrap": True,
                                             "align": "center"})
        self.output_header = book.add_format({**base, "bold": True, "bg_color": "#375623", "font_color": "#FFFFFF",
                                              "border": 1, "border_color": "#A9D08E", "text_wrap": True,
                                              "align": "center"})
        self.manual_header = book.add_format({**base, "bold": True, "bg_color": "#7F6000", "font_color": "#FFFFFF",
                                              "border": 1, "text_wrap": True, "align": "center"})
        self.cell = book.add_format({**base, "border": 1, "border_color": "#D9D9D9"})
        self.date = book.add_format({**base, "border": 1, "border_color": "#D9D9D9", "num_format": "yyyy-mm-dd"})
        self.number = book.add_format({**base, "border": 1, "border_color": "#D9D9D9", "num_format": "#,##0.##"})
        self.out_cell = book.add_format({**base, "border": 1, "border_color": "#D9D9D9", "bg_color": "#F2F8EE"})
        self.out_date = book.add_format({**base, "border": 1, "border_color": "#D9D9D9", "bg_color": "#F2F8EE",
                                         "num_format": "yyyy-mm-dd"})
        self.out_number = book.add_format({**base, "border": 1, "border_color": "#D9D9D9", "bg_color": "#F2F8EE",
                                           "num_format": "0.##"})
        self.plain = book.add_format(base)
        self.plain_date = book.add_format({**base, "num_format": "yyyy-mm-dd"})
        self.wrap = book.add_format({**base, "text_wrap": True, "valign": "top"})
        self.section = book.add_format({**base, "bold": True, "font_size": 12, "font_color": "#1F3864"})
        self.table_header = book.add_format({**base, "bold": True, "bg_color": "#D9E1F2", "border": 1})
        self.table_cell = book.add_format({**base, "border": 1, "text_wrap": True, "valign": "top"})
        self.error_font = book.add_format({"font_color": "#C00000", "bold": True})
        self.overdue = book.add_format({"font_color": "#C00000"})
        self.tiers: dict[tuple[str, str], Any] = {}
        self.book = book

    def tier(self, colour: TierColour) -> Any:
        key = (colour.fill, colour.font)
        if key not in self.tiers:
            self.tiers[key] = self.book.add_format({"bg_color": colour.fill, "font_color": colour.font, "bold": True})
        return self.tiers[key]


def _write_input(sheet: Any, row: int, col: int, value: Any, kind: str, fmt: _Formats) -> None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        sheet.write_blank(row, col, None, fmt.date if kind == "date" else fmt.cell)
    elif isinstance(value, dt.date):
        sheet.write_datetime(row, col, dt.datetime.combine(value, dt.time()), fmt.date)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        sheet.write_number(row, col, value, fmt.number if abs(value) >= 1000 else fmt.cell)
    else:
        sheet.write_string(row, col, str(value), fmt.date if kind == "date" else fmt.cell)


def _cached(value: Any, kind: str) -> tuple[str, Any]:
    """An engine result → (write kind, value) for a cached formula / spill cell."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return ("blank", None)
    if isinstance(value, (pd.Timestamp, np.datetime64, dt.date)):
        return ("date", pd.Timestamp(value).to_pydatetime())
    if kind in ("number", "integer") and isinstance(value, (int, float, np.floating, np.integer)):
        return ("number", float(value))
    text = str(value)
    return ("blank", None) if text == "" else ("string", text)


def _write_cached(sheet: Any, row: int, col: int, value: Any, kind: str, fmt: _Formats) -> None:
    what, payload = _cached(value, kind)
    if what == "date":
        sheet.write_datetime(row, col, payload, fmt.out_date)
    elif what == "number":
        sheet.write_number(row, col, payload, fmt.out_number)
    elif what == "string":
        sheet.write_string(row, col, payload, fmt.out_cell)
    else:
        sheet.write_blank(row, col, None, fmt.out_date if kind == "date" else fmt.out_cell)


def _quote(sheet: str) -> str:
    return "'" + sheet.replace("'", "''") + "'"


# --------------------------------------------------------------------------- sheets
def write_main_sheet(book: Any, spec: TemplateSpec, definition: RulesetDef, samples: pd.DataFrame,
                     result: pd.DataFrame, params_ref: str, fmt: _Formats) -> dict[str, Any]:
    """The input table, the TIER_TABLE spill, validation, colours, page setup. Returns layout facts."""
    sheet = book.add_worksheet(spec.sheet)
    inputs = list(definition.inputs)
    outputs = output_headers(definition)
    n_in, n_out, n_rows = len(inputs), len(outputs), len(samples)
    first_data = HEADER_ROW + 1
    last_data = HEADER_ROW + n_rows
    last_col = n_in + n_out - 1
    sheet.set_row(0, 28)
    sheet.set_row(HEADER_ROW, 36)
    sheet.write_string(0, 0, f"{spec.title} — 规则集 {definition.id} v{definition.version}", fmt.title)
    sheet.write_string(1, 0, "蓝色表格填写或粘贴数据(表头勿改);绿色列由 =TIER_TABLE 公式计算,或点击右上角按钮 / "
                             "运行 tier fill 直接填值。详见「使用说明」。", fmt.hint)
    for c, item in enumerate(inputs):
        for r in range(n_rows):
            _write_input(sheet, first_data + r, c, samples.iloc[r, c], item.type, fmt)
    sheet.add_table(HEADER_ROW, 0, last_data, n_in - 1, {
        "name": spec.table, "style": "Table Style Light 9", "autofilter": True,
        "columns": [{"header": item.zh or item.key, "header_format": fmt.input_header} for item in inputs]})
    # outputs: header cells, then one dynamic array formula whose cached values are the engine's results
    for j, (_key, header, _kind) in enumerate(outputs):
        sheet.write_string(HEADER_ROW, n_in + j, header, fmt.output_header)
    headers_ref = f"${xl_col_to_name(n_in)}${HEADER_ROW + 1}:${xl_col_to_name(last_col)}${HEADER_ROW + 1}"
    formula = f'=TIER_TABLE("{definition.id}",{spec.table}[#All],{headers_ref},{params_ref})'
    first_value = _cached(result.iloc[0][outputs[0][0]], outputs[0][2])[1] if n_rows else ""
    sheet.write_dynamic_array_formula(first_data, n_in, last_data, last_col, formula, fmt.out_cell, first_value or "")
    for r in range(n_rows):
        for j, (key, _header, kind) in enumerate(outputs):
            if r == 0 and j == 0:
                continue
            _write_cached(sheet, first_data + r, n_in + j, result.iloc[r][key], kind, fmt)
    # validation: drop-downs for booleans/enums, an input message on every input column
    for c, item in enumerate(inputs):
        options: dict[str, Any] = {"input_title": (item.zh or item.key)[:32], "input_message": input_hint(item)}
        if item.type == "boolean":
            options.update({"validate": "list", "source": ["是", "否"],
                            "error_title": "只能填 是 或 否", "error_message": "请从下拉列表选择 是 / 否(或留空)。"})
        elif item.type == "enum" and item.values:
            options.update({"validate": "list", "source": list(item.values),
                            "error_title": "无效选项", "error_message": "请从下拉列表选择。"})
        else:
            options.update({"validate": "any"})
        sheet.data_validation(first_data, c, HEADER_ROW + FORMULA_ROWS, c, options)
    # colours: tier values, ERROR status, overdue visits
    keys = [key for key, _h, _k in outputs]
    tier_col = n_in + keys.index(definition.tier_output)
    for colour in spec.colours:
        if colour.match == "begins":
            rule = {"type": "text", "criteria": "begins with", "value": colour.value, "format": fmt.tier(colour)}
        else:
            rule = {"type": "cell", "criteria": "==", "value": f'"{colour.value}"', "format": fmt.tier(colour)}
        sheet.conditional_format(first_data, tier_col, HEADER_ROW + FORMULA_ROWS, tier_col, rule)
    status_col = n_in + keys.index("status")
    sheet.conditional_format(first_data, status_col, HEADER_ROW + FORMULA_ROWS, status_col + 1,
                             {"type": "formula", "criteria": f'=${xl_col_to_name(status_col)}{first_data + 1}="ERROR"',
                              "format": fmt.error_font})
    for j, key in enumerate(keys):
        if key.endswith("_status"):
            sheet.conditional_format(first_data, n_in + j, HEADER_ROW + FORMULA_ROWS, n_in + j,
                                     {"type": "cell", "criteria": "==", "value": '"逾期"', "format": fmt.overdue})
    # widths, number formats for rows added later, panes, printing
    for c, item in enumerate(inputs):
        longest = max([display_width(item.zh or item.key)] + [display_width(v) for v in samples.iloc[:, c]
                                                              if isinstance(v, str)])
        width = max(10, min(30, longest + 2))
        sheet.set_column(c, c, width, fmt.plain_date if item.type == "date" else None)
    for j, (key, header, kind) in enumerate(outputs):
        width = {"errors": 24, "notes": 24}.get(key, max(9, min(22, len(header) * 1.9 + 2)))
        sheet.set_column(n_in + j, n_in + j, width, fmt.plain_date if kind == "date" else None)
    sheet.insert_button(0, n_in, {"macro": MACRO, "caption": "填充分级 Fill tiers", "width": 150, "height": 34,
                                  "x_offset": 4, "y_offset": 4})
    sheet.freeze_panes(first_data, 2)
    sheet.set_landscape()
    sheet.set_paper(8)  # A3: two dozen columns stay legible on one page width
    sheet.set_margins(left=0.3, right=0.3, top=0.4, bottom=0.4)
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(HEADER_ROW)
    sheet.activate()
    return {"first_data": first_data, "n_in": n_in, "last_col": last_col}


def write_plan_sheet(book: Any, spec: TemplateSpec, definition: RulesetDef, samples: pd.DataFrame,
                     result: pd.DataFrame, params_ref: str, fmt: _Formats) -> None:
    """回访计划表: each row reads the same row of the main sheet through =TIER(…, output)."""
    sheet = book.add_worksheet(spec.plan_sheet or "回访计划表")
    main = _quote(spec.sheet)
    n_in = len(definition.inputs)
    last_in = xl_col_to_name(n_in - 1)
    kinds = {o.key: o.type for o in definition.outputs}
    sheet.set_row(0, 28)
    sheet.set_row(HEADER_ROW, 36)
    sheet.write_string(0, 0, "下季度回访计划表(按在保客户风险分类自动生成)", fmt.title)
    sheet.write_string(1, 0, f"每行对应「{spec.sheet}」同一行;浅绿列为 =TIER 公式,棕色列由项目经理手工填写。逾期回访以红字显示,"
                             "请在回访计划报送截止日前报送。", fmt.hint)
    for c, (key, header) in enumerate(PLAN_COLUMNS):
        sheet.write_string(HEADER_ROW, c, header, fmt.output_header if key else fmt.manual_header)
    n_rows = len(samples)
    headers_abs = f"{main}!$A${HEADER_ROW + 1}:${last_in}${HEADER_ROW + 1}"
    for r in range(n_rows + PLAN_EXTRA_ROWS):
        excel_row = HEADER_ROW + 1 + r + 1
        row_ref = f"{main}!$A{excel_row}:${last_in}{excel_row}"
        guard = f"COUNTA({row_ref})=0"
        for c, (key, _header) in enumerate(PLAN_COLUMNS):
            target = HEADER_ROW + 1 + r
            if key is None:
                sheet.write_blank(target, c, None, fmt.date if _header.endswith("日期") else fmt.cell)
                continue
            if key.startswith("="):
                col = [i.key for i in definition.inputs].index(key[1:])
                source = f"{main}!${xl_col_to_name(col)}{excel_row}"
                formula = f'=IF({source}="","",{source})'
                cached = samples.iloc[r, col] if r < n_rows else None
                sheet.write_formula(target, c, formula, fmt.out_cell, "" if cached is None else str(cached))
                continue
            formula = f'=IF({guard},"",TIER("{definition.id}",{headers_abs},{row_ref},"{key}",{params_ref}))'
            kind = kinds.get(key, "text")
            what, payload = _cached(result.iloc[r][key], kind) if r < n_rows else ("blank", None)
            cell_fmt = fmt.out_date if kind == "date" else fmt.out_cell
            if what == "date":
                sheet.write_formula(target, c, formula, cell_fmt,
                                    (payload - dt.datetime(1899, 12, 30)).days)
            elif what == "number":
                sheet.write_formula(target, c, formula, fmt.out_number, payload)
            else:
                sheet.write_formula(target, c, formula, cell_fmt, payload or "")
    last_row = HEADER_ROW + n_rows + PLAN_EXTRA_ROWS
    risk_col = [k for k, _h in PLAN_COLUMNS].index("risk_class")
    for colour in spec.colours:
        sheet.conditional_format(HEADER_ROW + 1, risk_col, last_row, risk_col,
                                 {"type": "cell", "criteria": "==", "value": f'"{colour.value}"',
                                  "format": fmt.tier(colour)})
    status_col = [k for k, _h in PLAN_COLUMNS].index("visit_status")
    sheet.conditional_format(HEADER_ROW + 1, status_col, last_row, status_col,
                             {"type": "cell", "criteria": "==", "value": '"逾期"', "format": fmt.error_font})
    wide = {"=customer_name": 30, "support_roles": 26, None: 14}
    for c, (key, header) in enumerate(PLAN_COLUMNS):
        kind = kinds.get(key or "", "text")
        width = max(wide.get(key, 0), 10, min(26, display_width(header) + 2))
        sheet.set_column(c, c, width, fmt.plain_date if kind == "date" else None)
    sheet.autofilter(HEADER_ROW, 0, last_row, len(PLAN_COLUMNS) - 1)
    sheet.freeze_panes(HEADER_ROW + 1, 2)
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.set_margins(left=0.3, right=0.3, top=0.4, bottom=0.4)
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(HEADER_ROW)
    sheet.print_area(0, 0, HEADER_ROW + n_rows, len(PLAN_COLUMNS) - 1)


def write_params_sheet(book: Any, definition: RulesetDef, fmt: _Formats) -> str:
    """参数: key | 取值 | 中文名 | 默认值 | 范围 | 说明. Returns the A:B range the UDFs read."""
    sheet = book.add_worksheet("参数")
    headers = ["参数", "取值", "中文名", "默认值", "范围", "说明 / Description"]
    for c, header in enumerate(headers):
        sheet.write_string(0, c, header, fmt.input_header)
    rows = param_rows(definition)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            if value is None:
                sheet.write_blank(r, c, None, fmt.table_cell)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                sheet.write_number(r, c, value, fmt.table_cell)
            else:
                sheet.write_string(r, c, str(value), fmt.table_cell)
    sheet.data_validation(2, 1, 2, 1, {"validate": "any", "input_title": "评估基准日",
                                       "input_message": "可留空。填写日期后,空白的评估日期/分类基准日单元格使用此日期。"})
    for c, width in enumerate((34, 12, 40, 10, 8, 60)):
        sheet.set_column(c, c, width)
    sheet.freeze_panes(1, 1)
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)
    sheet.write_string(len(rows) + 2, 0, "修改「取值」列即可覆盖默认值;公式 =TIER/=TIER_TABLE 读取 A:B 两列。"
                                         "清空取值 = 使用默认值。", fmt.hint)
    return f"{_quote('参数')}!$A$1:$B${len(rows) + 1}"


def write_guide_sheet(book: Any, spec: TemplateSpec, definition: RulesetDef, fmt: _Formats) -> None:
    """使用说明 in Chinese: what the sheet does, the steps, the columns, the colours, the errors."""
    sheet = book.add_worksheet("使用说明")
    sheet.set_column(0, 0, 26)
    sheet.set_column(1, 1, 16)
    sheet.set_column(2, 2, 12)
    sheet.set_column(3, 3, 70)
    row = 0

    def line(text: str, style: Any = None) -> None:
        nonlocal row
        sheet.merge_range(row, 0, row, 3, text, style or fmt.wrap)
        lines = int(display_width(text) // 118) + 1
        if style is None and lines > 1:
            sheet.set_row(row, 14 * lines)
        row += 1

    line(f"{definition.title.zh} — 使用说明", fmt.title)
    line(definition.description.zh or definition.title.zh)
    line(f"规则集:{definition.id} v{definition.version};生效日期 {definition.effective_date};依据:{definition.source}")
    row += 1
    line("一、怎么用", fmt.section)
    steps = [
        f"1. 在「{spec.sheet}」的蓝色表格中填写或粘贴数据,每行一个客户/项目。表头不要改名(可在后面加单位括号,如 月均销售额(元))。",
        "2. 是/否 列有下拉框;日期写成 2024-06-30、2024/6/30 或 2024年6月30日;金额可写 12,000,比例可写 0.7 或 70%。",
        f"3. 绿色列由公式 =TIER_TABLE(\"{definition.id}\", {spec.table}[#All], 输出表头, 参数!A:B) 自动计算,"
        "表格增加行时结果自动扩展(需要 Excel 365 动态数组 + xlwings 加载项)。",
        f"4. 不想用公式时,点击右上角「填充分级」按钮(宏 {MACRO},调用 addin.macros.fill_tiers),结果以数值写入。",
        f"5. 没有 Excel(服务器上):tier fill 本文件.xlsm --ruleset {definition.id} --values "
        "(--values 表示用数值替换公式;其余工作表、格式、宏均原样保留)。",
        "6. 需要调整阈值或频率时修改「参数」表的「取值」列;清空即恢复默认值。",
    ]
    if spec.plan_sheet:
        steps.append(f"7. 「{spec.plan_sheet}」每行对应主表同一行,由 =TIER(…, \"next_visit_date\") 等公式生成;"
                     "行数不够时把最后一行公式向下填充。棕色列由项目经理手工填写。")
    for text in steps:
        line(text)
    row += 1
    line("二、安装(每台电脑一次)", fmt.section)
    for text in ["pip install xlwings,然后 xlwings addin install;在 Excel 的 xlwings 选项卡中把 UDF Modules 设为 addin.udfs,"
                 "并确保 Python 能 import tierbook(engine、addin 两个包)。",
                 "点击 xlwings 选项卡的 Import Functions 导入 TIER / TIER_TABLE 等函数。",
                 "打开本文件时请「启用宏」,按钮才能使用;公式与按钮都不会修改蓝色输入列。"]:
        line(text)
    row += 1
    line("三、输入列", fmt.section)
    for c, header in enumerate(("表头", "类型", "必填", "说明")):
        sheet.write_string(row, c, header, fmt.table_header)
    row += 1
    for item in definition.inputs:
        required = "是" if item.required is True else ("条件" if isinstance(item.required, str) else "否")
        values = (item.zh or item.key, TYPE_ZH.get(item.type, item.type) + (f"({item.unit})" if item.unit else ""),
                  required, input_hint(item))
        for c, value in enumerate(values):
            sheet.write_string(row, c, value, fmt.table_cell)
        row += 1
    row += 1
    line("四、输出列与颜色", fmt.section)
    line("状态 OK/ERROR;错误 = 错误代码(用 ; 分隔);备注 = 提示代码(如使用了默认值)。其余列见规则集说明。")
    for colour in spec.colours:
        match = "等于" if colour.match == "equal" else "以此开头"
        sheet.write_string(row, 0, colour.value, fmt.tier(colour))
        sheet.write_string(row, 1, f"{definition.tier_output} {match}", fmt.table_cell)
        row += 1
    row += 1
    line("五、错误代码", fmt.section)
    for code, meaning in (("MISSING:<列>", "必填列为空"), ("INVALID:<列>", "无法识别或超出范围(如 abc、负数、未来日期、到期日早于起始日)"),
                          ("INCONSISTENT:<列>", "与其他列矛盾(如近90天交易笔数与最近交易日期不符)"),
                          ("待定", "有错误的行,分级列显示 待定,其余输出为空;改正输入后重新计算即可")):
        sheet.write_string(row, 0, code, fmt.table_cell)
        sheet.merge_range(row, 1, row, 3, meaning, fmt.table_cell)
        row += 1
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)


# --------------------------------------------------------------------------- the workbook
def build_template(spec: TemplateSpec, folder: Path = HERE) -> Path:
    """Write one template; returns its path."""
    definition = api.load_ruleset(spec.ruleset)
    samples = sample_frame(spec, definition)
    result = api.evaluate(definition, samples)
    path = folder / f"{spec.stem}.xlsm"
    folder.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False,
                                           "strings_to_urls": False})
    book.set_properties({"title": spec.title, "subject": f"tierbook 模板 / ruleset {definition.id}",
                         "author": "tierbook", "company": "tierbook", "created": FIXED_TIME,
                         "comments": "Generated by workbook_templates/build_templates.py — regenerate, do not edit."})
    fmt = _Formats(book)
    params_ref = f"{_quote('参数')}!$A$1:$B${len(param_rows(definition)) + 1}"
    write_main_sheet(book, spec, definition, samples, result, params_ref, fmt)
    if spec.plan_sheet:
        write_plan_sheet(book, spec, definition, samples, result, params_ref, fmt)
    written_ref = write_params_sheet(book, definition, fmt)
    if written_ref != params_ref:  # the formulas must point at what was written
        raise TierError(f"internal: 参数 range {written_ref} != {params_ref}")
    write_guide_sheet(book, spec, definition, fmt)
    book.define_name("tier_ruleset", f'="{definition.id}"')
    book.define_name("tier_params", "=" + params_ref)
    with tempfile.TemporaryDirectory(prefix="tier-vba-") as scratch:
        vba = build_vba_project(Path(scratch) / "vbaProject.bin", sheet_count=len(book.worksheets()))
        book.add_vba_project(str(vba))
        book.set_vba_name("ThisWorkbook")
        book.close()
    _mark_empty_text_results(path)
    return path


def _mark_empty_text_results(path: Path) -> None:
    """Formula cells cached as "" get t="str", as Excel writes them.

    XlsxWriter leaves the type off an empty cached result on purpose ("force recalc in some third
    party apps"); a reader then takes `<v></v>` for a broken number. Rewritten in place, in the
    same part order, so the build stays deterministic.
    """
    import re
    import zipfile

    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        parts = {info.filename: archive.read(info) for info in infos}
    for name in parts:
        if name.startswith("xl/worksheets/sheet"):
            parts[name] = re.sub(rb'<c (r="[A-Z]+\d+"(?: s="\d+")?)>(<f>(?:(?!</f>).)*</f>)<v></v></c>',
                                 rb'<c \1 t="str">\2<v></v></c>', parts[name], flags=re.S)
    with zipfile.ZipFile(path, "w") as archive:
        for info in infos:
            archive.writestr(info, parts[info.filename])


def build_all(folder: Path = HERE) -> list[Path]:
    return [build_template(spec, folder) for spec in TEMPLATES]


def render_docs(folder: Path = HERE.parent / "docs" / "templates", dpi: int = 120) -> list[Path]:
    """PNG pages of each template and of a filled example, for people to look at (needs LibreOffice)."""
    import shutil

    from engine.fill import fill_workbook
    from engine.render import render_workbook

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="tier-docs-") as scratch:
        for spec in TEMPLATES:
            written += render_workbook(HERE / f"{spec.stem}.xlsm", folder, dpi=dpi)
        filled = Path(scratch) / "credit_customers_filled.xlsx"
        shutil.copy(make_examples.EXAMPLES / "credit_customers.xlsx", filled)
        fill_workbook(filled, "credit")
        written += render_workbook(filled, folder, dpi=dpi, first_page=1, last_page=1)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate the workbook templates")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--docs", action="store_true", help="also render PNGs into docs/templates (LibreOffice)")
    args = parser.parse_args(argv)
    for path in build_all(args.out):
        print(path)
    if args.docs:
        for path in render_docs():
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The shipped templates match their rulesets and stay what the builder makes (issue 6, PRODUCT §6).

Checked by opening the files with openpyxl: headers = the ruleset's input zh headers in order,
validation lists on boolean/enum columns, the 参数 sheet lists every parameter with its default,
the UDF formulas reference the right ranges, tier colours exist, the VBA project carries the fill
macro, and `tier fill` treats a template correctly (formulas kept; `--values` writes values).
"""
from __future__ import annotations

import re
import shutil
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.worksheet.formula import ArrayFormula

from engine import api
from engine.fill import fill_workbook
from workbook_templates import build_templates as bt
from workbook_templates.vba_project import compress, decompress, read_cfb_streams

HERE = Path(bt.__file__).resolve().parent
SPECS = {spec.ruleset: spec for spec in bt.TEMPLATES}
IDS = list(SPECS)


def template_path(spec: bt.TemplateSpec) -> Path:
    return HERE / f"{spec.stem}.xlsm"


@pytest.fixture(scope="module", params=IDS)
def opened(request):
    spec = SPECS[request.param]
    book = openpyxl.load_workbook(template_path(spec), keep_vba=True)
    yield spec, api.load_ruleset(spec.ruleset), book
    book.close()


def test_every_core_ruleset_has_a_template() -> None:
    assert set(IDS) == {"credit", "guarantee", "bank_layering"}
    for spec in SPECS.values():
        assert template_path(spec).is_file(), f"run python -m workbook_templates.build_templates ({spec.stem})"


def test_sheets_and_headers(opened) -> None:
    spec, definition, book = opened
    expected_sheets = [spec.sheet] + ([spec.plan_sheet] if spec.plan_sheet else []) + ["参数", "使用说明"]
    assert book.sheetnames == expected_sheets
    sheet = book[spec.sheet]
    assert list(sheet.tables) == [spec.table]
    table = sheet.tables[spec.table]
    first, last = table.ref.split(":")
    assert first == "A3"
    headers = [c.value for c in sheet[3][:len(definition.inputs)]]
    assert headers == [i.zh for i in definition.inputs], "table headers = input zh headers, in order"
    assert [col.name for col in table.tableColumns] == headers
    outputs = [c.value for c in sheet[3][len(definition.inputs):]]
    assert outputs == ["状态", "错误", "备注", *[o.zh for o in definition.outputs]]
    headers_by_key = api.evaluate(definition, [{i.zh: None for i in definition.inputs}]).columns
    assert set(o.key for o in definition.outputs) <= set(headers_by_key)


def test_validation_lists_on_boolean_and_enum_columns(opened) -> None:
    spec, definition, book = opened
    sheet = book[spec.sheet]
    by_column: dict[str, object] = {}
    for validation in sheet.data_validations.dataValidation:
        for cell_range in validation.sqref.ranges:
            by_column[re.sub(r"\d", "", cell_range.coord.split(":")[0])] = validation
    listed = 0
    for index, item in enumerate(definition.inputs, start=1):
        letter = openpyxl.utils.get_column_letter(index)
        validation = by_column.get(letter)
        assert validation is not None, f"column {letter} ({item.zh}) has an input message / validation"
        (cell_range,) = list(validation.sqref.ranges)
        assert cell_range.min_row == 4 and cell_range.max_row >= 1000
        assert validation.prompt, "every input column explains its type"
        if item.type == "boolean":
            assert validation.type == "list" and validation.formula1 == '"是,否"', item.key
            listed += 1
        elif item.type == "enum":
            assert validation.type == "list" and validation.formula1 == '"' + ",".join(item.values) + '"'
            listed += 1
    if spec.ruleset in ("credit", "guarantee"):
        assert listed >= 1


def test_parameter_sheet_lists_every_parameter_with_its_default(opened) -> None:
    _spec, definition, book = opened
    sheet = book["参数"]
    rows = {row[0]: row for row in sheet.iter_rows(min_row=2, values_only=True) if row[0]}
    assert rows["规则集"][1] == definition.id
    compiled = api.compile(definition)
    for param in definition.parameters:
        assert param.key in rows, f"参数 lists {param.key}"
        key, value, zh, default = rows[param.key][:4]
        expected = compiled.params[param.key]
        assert Decimal(str(value)) == Decimal(str(expected)), param.key
        assert Decimal(str(default)) == Decimal(str(expected))
        assert zh == param.zh
    # the key/value block is what the UDFs read; the defaults must compile back unchanged
    overrides = {key: rows[key][1] for key in (p.key for p in definition.parameters)}
    assert api.compile(definition, overrides).params == compiled.params


def test_tier_table_formula_references_the_right_ranges(opened) -> None:
    spec, definition, book = opened
    sheet = book[spec.sheet]
    n_in, n_out = len(definition.inputs), len(definition.outputs) + 3
    first_out = openpyxl.utils.get_column_letter(n_in + 1)
    last_out = openpyxl.utils.get_column_letter(n_in + n_out)
    anchor = sheet[f"{first_out}4"].value
    assert isinstance(anchor, ArrayFormula)
    n_rows = sheet.tables[spec.table].ref.split(":")[1]
    last_row = int(re.sub(r"\D", "", n_rows))
    assert anchor.ref == f"{first_out}4:{last_out}{last_row}", "the spill covers every output column and data row"
    params = len(definition.parameters) + 3
    assert anchor.text == (f'=TIER_TABLE("{definition.id}",{spec.table}[#All],${first_out}$3:${last_out}$3,'
                           f"'参数'!$A$1:$B${params})")
    assert book["参数"][f"A{params}"].value == definition.parameters[-1].key, "the params range ends on the last one"


def test_cached_results_are_the_engines(opened) -> None:
    """The template carries the engine's results as cached values (what LibreOffice/viewers show)."""
    spec, definition, book = opened
    sheet = book[spec.sheet]
    n_in = len(definition.inputs)
    rows = list(sheet.iter_rows(min_row=4, max_row=3 + bt.SAMPLE_ROWS, values_only=True))
    frame = [{i.zh: row[c] for c, i in enumerate(definition.inputs)} for row in rows]
    expected = api.evaluate(definition, frame)
    tier_col = n_in + 3 + [o.key for o in definition.outputs].index(definition.tier_output)
    assert [row[tier_col] for row in rows] == list(expected[definition.tier_output])
    assert "ERROR" in [row[n_in] for row in rows[1:]], "the samples show an ERROR row too"


def test_tier_colours(opened) -> None:
    spec, definition, book = opened
    sheet = book[spec.sheet]
    tier_col = openpyxl.utils.get_column_letter(
        len(definition.inputs) + 4 + [o.key for o in definition.outputs].index(definition.tier_output))
    rules = [rule for cf in sheet.conditional_formatting for rule in cf.rules
             if str(cf.sqref).startswith(f"{tier_col}4")]
    texts = " ".join(" ".join(rule.formula or []) + " " + str(rule.text or "") for rule in rules)
    for colour in spec.colours:
        assert colour.value in texts, f"{colour.value} is coloured"
    assert all(rule.dxf is not None and rule.dxf.fill is not None for rule in rules)


def test_guarantee_plan_sheet_uses_tier_per_row() -> None:
    spec = SPECS["guarantee"]
    definition = api.load_ruleset("guarantee")
    book = openpyxl.load_workbook(template_path(spec), keep_vba=True)
    try:
        plan = book[spec.plan_sheet]
        headers = [c.value for c in plan[3]]
        assert headers == [h for _k, h in bt.PLAN_COLUMNS]
        last = openpyxl.utils.get_column_letter(len(definition.inputs))
        for row in (4, 9, 4 + bt.SAMPLE_ROWS + 5):
            formula = plan[f"F{row}"].value
            assert (f"TIER(\"guarantee\",'在保客户风险分类表'!$A$3:${last}$3,"
                    f"'在保客户风险分类表'!$A{row}:${last}{row},\"next_visit_date\"") in formula
        assert plan["C4"].value.count('"risk_class"') == 1
    finally:
        book.close()


def test_vba_project_carries_the_fill_macro() -> None:
    for spec in SPECS.values():
        with zipfile.ZipFile(template_path(spec)) as archive:
            names = archive.namelist()
            streams = read_cfb_streams(archive.read("xl/vbaProject.bin"))
            vml = b"".join(archive.read(n) for n in names if n.endswith(".vml"))
            workbook = archive.read("xl/workbook.xml").decode()
        source = decompress(streams["VBA/tierbook"]).decode("cp1252")
        assert "Public Sub FillTiers()" in source and "addin.macros.fill_tiers()" in source
        assert {f"VBA/Sheet{i}" for i in range(1, 5 if spec.plan_sheet else 4)} <= set(streams)
        assert streams["VBA/_VBA_PROJECT"][:4] == b"\xcc\x61\xff\xff", "source-only project: Office compiles it"
        assert b"FillTiers" in vml, "the button runs FillTiers"
        assert 'codeName="ThisWorkbook"' in workbook


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=9000) | st.text(alphabet="Sub End abc\r\n'\"()", max_size=9000).map(str.encode))
def test_ovba_compression_round_trips(data: bytes) -> None:
    assert decompress(compress(data)) == data


def test_templates_are_regenerated_byte_identically(tmp_path: Path) -> None:
    """The committed files are exactly what the builder makes (deterministic, and up to date)."""
    built = bt.build_all(tmp_path)
    for path in built:
        assert path.read_bytes() == (HERE / path.name).read_bytes(), \
            f"{path.name} is stale: run python -m workbook_templates.build_templates"


def test_fill_keeps_template_formulas_and_values_replaces_them(tmp_path: Path) -> None:
    spec = SPECS["credit"]
    definition = api.load_ruleset("credit")
    copy = tmp_path / "t.xlsm"
    shutil.copy(template_path(spec), copy)
    report = fill_workbook(copy, "credit")
    assert not report.changed and "客户等级" in report.formula_columns_kept
    assert copy.read_bytes() == template_path(spec).read_bytes()
    report = fill_workbook(copy, "credit", values=True)
    assert report.changed and report.formula_columns_kept == ()
    book = openpyxl.load_workbook(copy, keep_vba=True)
    try:
        sheet = book[spec.sheet]
        anchor = sheet.cell(4, len(definition.inputs) + 1).value
        assert anchor in ("OK", "ERROR"), "the TIER_TABLE formula was replaced by its value"
    finally:
        book.close()
    with zipfile.ZipFile(template_path(spec)) as before, zipfile.ZipFile(copy) as after:
        changed = {n for n in before.namelist() if before.read(n) != after.read(n)}
    assert changed == {"xl/worksheets/sheet1.xml"}
    assert fill_workbook(copy, "credit", values=True).changed is False

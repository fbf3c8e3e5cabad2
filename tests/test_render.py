"""`tier render`: workbook → PNG through LibreOffice and pdftoppm (skipped where they are absent)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import xlsxwriter

from engine.errors import InputError, TierError
from engine.render import _cached_values_copy, ppm_to_png, render_available, render_workbook

REPO = Path(__file__).resolve().parent.parent
needs_tools = pytest.mark.skipif(bool(render_available()), reason=render_available() or "render tools present")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _png_pixels(data: bytes) -> bytes:
    """Raw RGB pixels of a PNG written by ppm_to_png (filter 0 rows)."""
    width, height = _png_size(data)
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4:idat + 4 + length])
    return b"".join(raw[y * (width * 3 + 1) + 1:(y + 1) * (width * 3 + 1)] for y in range(height))


def test_ppm_to_png_trims_white_margins() -> None:
    width, height = 40, 30
    pixels = bytearray(b"\xff" * width * height * 3)
    for y in range(10, 15):
        for x in range(5, 25):
            pixels[(y * width + x) * 3:(y * width + x) * 3 + 3] = b"\x10\x20\x30"
    ppm = b"P6\n# made by a test\n%d %d\n255\n" % (width, height) + bytes(pixels)
    png = ppm_to_png(ppm, trim=True, margin=2)
    assert _png_size(png) == (20 + 4, 5 + 4)
    body = _png_pixels(png)
    assert body[(2 * 24 + 2) * 3:(2 * 24 + 2) * 3 + 3] == b"\x10\x20\x30"
    assert _png_size(ppm_to_png(ppm, trim=False)) == (width, height)


def test_ppm_to_png_rejects_other_formats() -> None:
    with pytest.raises(TierError):
        ppm_to_png(b"P5\n2 2\n255\n\x00\x00\x00\x00")


def test_cached_values_copy_drops_formulas_and_recalc(tmp_path: Path) -> None:
    source = tmp_path / "f.xlsx"
    book = xlsxwriter.Workbook(str(source))
    sheet = book.add_worksheet()
    sheet.write_formula(0, 0, '=TIER("credit",A2:B2,A3:B3)', None, "A")
    book.close()
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copy = _cached_values_copy(source, copy_dir)
    import zipfile

    with zipfile.ZipFile(copy) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
        workbook_xml = archive.read("xl/workbook.xml").decode()
    assert "<f>" not in sheet_xml and "<v>A</v>" in sheet_xml
    assert "fullCalcOnLoad" not in workbook_xml
    with zipfile.ZipFile(source) as archive:
        assert "<f>" in archive.read("xl/worksheets/sheet1.xml").decode(), "the original keeps its formulas"


def test_missing_workbook_is_refused(tmp_path: Path) -> None:
    with pytest.raises((InputError, TierError)):
        render_workbook(tmp_path / "nope.xlsx", tmp_path / "out")


@needs_tools
def test_render_a_template_to_png(tmp_path: Path) -> None:
    pages = render_workbook(REPO / "workbook_templates" / "credit_grading.xlsm", tmp_path, dpi=60)
    assert len(pages) >= 3, "main sheet, 参数 and 使用说明 each print at least one page"
    width, height = _png_size(pages[0].read_bytes())
    assert width > 300 and height > 50
    assert any(px != 0xFF for px in _png_pixels(pages[0].read_bytes())[:width * 3 * 20]), "content, not a blank page"


@needs_tools
def test_cli_render(tmp_path: Path, capsys) -> None:
    from engine.cli import main

    source = tmp_path / "small.xlsx"
    book = xlsxwriter.Workbook(str(source))
    book.add_worksheet("数据").write_row(0, 0, ["评估日期", "月均销售额"])
    book.close()
    assert main(["render", str(source), "-o", str(tmp_path / "png"), "--dpi", "50"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all(Path(p).is_file() and p.endswith(".png") for p in printed)

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


# --------------------------------------------------------------------------- atomic pages
def _ppm(shade: int) -> bytes:
    width, height = 12, 6
    pixels = bytearray(b"\xff" * width * height * 3)
    pixels[(2 * width + 3) * 3:(2 * width + 9) * 3] = bytes([shade]) * 18
    return b"P6\n%d %d\n255\n" % (width, height) + bytes(pixels)


@pytest.fixture()
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """LibreOffice and pdftoppm replaced: `pages` PPM pages per render, whatever is installed."""
    import subprocess

    from engine import render

    state = {"pages": 2, "shade": 0x10}

    def fake_pdf(workbook, out_dir):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        pdf = Path(out_dir) / (Path(workbook).stem + ".pdf")
        pdf.write_bytes(b"%PDF-1.4 fake")
        return pdf

    def fake_pdftoppm(command, **_kwargs):
        prefix = Path(command[-1])
        for page in range(1, state["pages"] + 1):
            Path(f"{prefix}-{page}.ppm").write_bytes(_ppm(state["shade"] + page))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(render, "render_available", lambda: "")
    monkeypatch.setattr(render, "to_pdf", fake_pdf)
    monkeypatch.setattr(render.subprocess, "run", fake_pdftoppm)
    source = tmp_path / "book.xlsx"
    book = xlsxwriter.Workbook(str(source))
    book.add_worksheet().write_string(0, 0, "x")
    book.close()
    return source, state


def _folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_conversion_failing_midway_leaves_the_previous_pages_intact(tmp_path: Path, fake_tools, monkeypatch) -> None:
    from engine import render

    source, state = fake_tools
    out = tmp_path / "png"
    first = render_workbook(source, out)
    assert [p.name for p in first] == ["book-1.png", "book-2.png"]
    before = _folder(out)
    state["shade"] = 0x40  # the next render would draw different pages
    real = render.ppm_to_png
    calls = []

    def failing(ppm: bytes, trim: bool = True, margin: int = 16) -> bytes:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while converting page 2")
        return real(ppm, trim=trim, margin=margin)

    monkeypatch.setattr(render, "ppm_to_png", failing)
    with pytest.raises(KeyboardInterrupt):
        render_workbook(source, out)
    assert _folder(out) == before, "the previous PNGs byte-identical, nothing added (no .part either)"


def test_a_page_write_failing_midway_never_leaves_a_truncated_png(tmp_path: Path, fake_tools, monkeypatch) -> None:
    import shutil

    from engine import render

    source, state = fake_tools
    out = tmp_path / "png"
    render_workbook(source, out)
    before = _folder(out)
    state["shade"] = 0x40
    real_copy = shutil.copyfile

    def half_then_disk_full(src, dst, *args, **kwargs):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[:len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render.shutil, "copyfile", half_then_disk_full)
    with pytest.raises(OSError):
        render_workbook(source, out)
    assert _folder(out) == before
    monkeypatch.setattr(render.shutil, "copyfile", real_copy)
    pages = render_workbook(source, out)
    assert all(p.read_bytes() != before[p.name] for p in pages), "the next render replaces them"


def test_pages_a_workbook_no_longer_has_are_removed_and_nothing_else(tmp_path: Path, fake_tools) -> None:
    source, state = fake_tools
    out = tmp_path / "png"
    state["pages"] = 3
    render_workbook(source, out)
    others = {"book-b-1.png": b"another workbook's page", "book-cover.png": b"not a page", "book-1.txt": b"notes"}
    for name, data in others.items():
        (out / name).write_bytes(data)
    state["pages"] = 1
    pages = render_workbook(source, out)
    assert [p.name for p in pages] == ["book-1.png"]
    assert sorted(_folder(out)) == sorted(["book-1.png", *others])
    assert all((out / name).read_bytes() == data for name, data in others.items())

"""`tier render`: a workbook → PNG pages, through LibreOffice (→ PDF) and poppler's `pdftoppm` (→ PNG).

Why: templates and filled workbooks are reviewed by people, and a reviewer (or a CI job) without
Excel still wants to *see* them. Both tools are optional system dependencies (`apt-get install
libreoffice-calc poppler-utils`); without them `render_workbook` raises a `TierError` saying what
to install, and the tests that need them are skipped.

LibreOffice runs with a private, throw-away user profile so that concurrent renders (or an
analyst's open LibreOffice) never share a profile lock, and it never runs the workbook's macros
in headless conversion. LibreOffice cannot call the Python UDFs (`=TIER_TABLE`), so the render is
made from a scratch copy without formulas: it shows the cached values the file carries, i.e. what
Excel displayed after its last calculation (for the templates: the engine's results, written by
the template builder).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from glob import escape as glob_escape
from pathlib import Path

from engine.errors import InputError, TierError
from engine.io import atomic_path

__all__ = ["render_available", "render_workbook", "to_pdf"]

SOFFICE_NAMES = ("soffice", "libreoffice")
TIMEOUT_SECONDS = 180
# Never recalculate on load: LibreOffice cannot call the Python UDFs, so a recalculation would
# replace every cached =TIER/=TIER_TABLE result by #NAME?. Show what the file holds instead.
_PROFILE_SETTINGS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>1</value></prop></item>
</oor:items>
"""


def _soffice() -> str | None:
    for name in SOFFICE_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def render_available() -> str:
    """'' when rendering works here, else the reason (what to install)."""
    missing = []
    if _soffice() is None:
        missing.append("LibreOffice (soffice; apt-get install libreoffice-calc)")
    if shutil.which("pdftoppm") is None:
        missing.append("pdftoppm (apt-get install poppler-utils)")
    return "缺少 / missing: " + ", ".join(missing) if missing else ""


def to_pdf(workbook: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a workbook to PDF in out_dir with LibreOffice headless; returns the PDF path."""
    source = Path(workbook)
    if not source.is_file():
        raise InputError(f"工作簿不存在 / workbook not found: {source}")
    soffice = _soffice()
    if soffice is None:
        raise TierError(render_available())
    target_dir = Path(out_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tier-render-") as profile:
        (Path(profile) / "user").mkdir()
        (Path(profile) / "user" / "registrymodifications.xcu").write_text(_PROFILE_SETTINGS, encoding="utf-8")
        command = [soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
                   "--convert-to", "pdf", "--outdir", str(target_dir), str(source)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                                  env={**os.environ, "HOME": profile})
        except subprocess.TimeoutExpired as exc:
            raise TierError(f"LibreOffice 转换超时 / LibreOffice did not finish converting {source.name} "
                            f"within {TIMEOUT_SECONDS}s") from exc
    pdf = target_dir / (source.stem + ".pdf")
    if done.returncode != 0 or not pdf.is_file():
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise TierError(f"LibreOffice 无法转换 / LibreOffice could not convert {source.name}: "
                        f"{detail[-1] if detail else 'exit status ' + str(done.returncode)}")
    return pdf


def _cached_values_copy(source: Path, folder: Path) -> Path:
    """A copy that shows the values the file carries, as Excel displays them after its last calculation.

    LibreOffice cannot call the Python UDFs: it recalculates array formulas (and anything under
    `fullCalcOnLoad`) on load and would show #NAME? for every =TIER_TABLE result. So the copy
    keeps every cell's cached value and drops the formulas; the original is never touched.
    """
    import zipfile

    target = folder / source.name
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "xl/workbook.xml":
                data = re.sub(rb'\sfullCalcOnLoad="(1|true)"', b"", data)
            elif re.fullmatch(r"xl/worksheets/[^/]+\.xml", info.filename):
                data = re.sub(rb"<(\w+:)?f\b[^>]*/>|<(\w+:)?f\b[^>]*>.*?</(\w+:)?f>", b"", data, flags=re.S)
                data = re.sub(rb'(<(?:\w+:)?c\b[^>]*?)\scm="\d+"', rb"\1", data)
            new.writestr(info, data)
    return target


def render_workbook(workbook: str | os.PathLike, out_dir: str | os.PathLike, dpi: int = 110,
                    first_page: int | None = None, last_page: int | None = None, trim: bool = True) -> list[Path]:
    """Workbook → `<stem>-<page>.png` files in out_dir (every printed page of every sheet), margins trimmed.

    Pages are all converted first, then each replaces its file atomically (`engine.io.atomic_path`);
    pages of an earlier render that this one no longer has are removed last. So a failed or
    killed render leaves whole PNGs only, and a conversion error leaves the earlier render as it was.
    """
    reason = render_available()
    if reason:
        raise TierError(reason)
    source = Path(workbook)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tier-pdf-") as scratch:
        if not source.is_file():
            raise InputError(f"工作簿不存在 / workbook not found: {source}")
        copy = _cached_values_copy(source, Path(scratch)) if source.suffix.lower() in (".xlsx", ".xlsm") else source
        pdf = to_pdf(copy, Path(scratch) / "pdf")
        command = ["pdftoppm", "-r", str(dpi)]  # PPM out: trimmed and encoded as PNG below
        if first_page:
            command += ["-f", str(first_page)]
        if last_page:
            command += ["-l", str(last_page)]
        pages = Path(scratch) / "pages"
        pages.mkdir()
        done = subprocess.run([*command, str(pdf), str(pages / source.stem)], capture_output=True, text=True,
                              timeout=TIMEOUT_SECONDS)
        if done.returncode != 0:
            raise TierError(f"pdftoppm 失败 / pdftoppm failed on {pdf.name}: {done.stderr.strip()}")
        # Every page is encoded before any file in out_dir is touched: a conversion that fails
        # (or is interrupted) midway leaves the previous render as it was.
        encoded = []
        for ppm in sorted(pages.glob("*.ppm"), key=lambda p: (len(p.name), p.name)):
            png = ppm.with_suffix(".png")
            png.write_bytes(ppm_to_png(ppm.read_bytes(), trim=trim))
            ppm.unlink()
            encoded.append(png)
        written = []
        for png in encoded:
            page = target / png.name
            with atomic_path(page) as tmp:  # never a truncated PNG at the target, even if killed
                shutil.copyfile(png, tmp)
            written.append(page)
        page_name = re.compile(re.escape(source.stem) + r"-\d+\.png")
        for old in target.glob(f"{glob_escape(source.stem)}-*.png"):
            if page_name.fullmatch(old.name) and old not in written:  # a page the workbook no longer has
                old.unlink()
    return written


def ppm_to_png(ppm: bytes, trim: bool = True, margin: int = 16) -> bytes:
    """A binary PPM (P6) page → PNG bytes, white page margins trimmed (no imaging library needed)."""
    import struct
    import zlib

    fields: list[bytes] = []
    position = 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' comments allowed between them
        while ppm[position:position + 1].isspace():
            position += 1
        if ppm[position:position + 1] == b"#":
            position = ppm.index(b"\n", position) + 1
            continue
        end = position
        while not ppm[end:end + 1].isspace():
            end += 1
        fields.append(ppm[position:end])
        position = end
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise TierError("pdftoppm 输出格式异常 / unexpected pdftoppm output (not an 8-bit P6 image)")
    width, height = int(fields[1]), int(fields[2])
    pixels = ppm[position + 1:position + 1 + width * height * 3]
    stride = width * 3
    rows = [pixels[y * stride:(y + 1) * stride] for y in range(height)]
    left, right, top, bottom = 0, width, 0, height
    if trim:
        white = b"\xff" * stride
        inked = [y for y, row in enumerate(rows) if row != white]
        if inked:
            top, bottom = max(inked[0] - margin, 0), min(inked[-1] + 1 + margin, height)
            first = min(len(row) - len(row.lstrip(b"\xff")) for row in rows[top:bottom]) // 3
            last = (max(len(row.rstrip(b"\xff")) for row in rows[top:bottom]) + 2) // 3
            left, right = max(first - margin, 0), min(last + margin, width)
    raw = b"".join(b"\x00" + row[left * 3:right * 3] for row in rows[top:bottom])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", right - left, bottom - top, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")

"""`tier render`: a workbook → PNG pages, through LibreOffice (→ PDF) and poppler's `pdftoppm` (→ PNG).

Why: templates and filled workbooks are reviewed by people, and a reviewer (or a CI job) without
Excel still wants to *see* them. Both tools are optional system dependencies (`apt-get install
libreoffice-calc poppler-utils`); without them `render_workbook` raises a `TierError` saying what
to install, and the tests that need them are skipped.

LibreOffice runs with a private, throw-away user profile so that concurrent renders (or an
analyst's open LibreOffice) never share a profile lock, and it never runs the workbook's macros
in headless conversion. What LibreOffice shows for a UDF (`=TIER_TABLE`) is the cached value the
file carries — it cannot call the Python UDFs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from engine.errors import InputError, TierError

__all__ = ["render_available", "render_workbook", "to_pdf"]

SOFFICE_NAMES = ("soffice", "libreoffice")
TIMEOUT_SECONDS = 180


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


def render_workbook(workbook: str | os.PathLike, out_dir: str | os.PathLike, dpi: int = 110,
                    first_page: int | None = None, last_page: int | None = None) -> list[Path]:
    """Workbook → `<stem>-<page>.png` files in out_dir (every printed page of every sheet)."""
    reason = render_available()
    if reason:
        raise TierError(reason)
    source = Path(workbook)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tier-pdf-") as scratch:
        pdf = to_pdf(source, scratch)
        for old in target.glob(f"{source.stem}-*.png"):
            old.unlink()
        command = ["pdftoppm", "-png", "-r", str(dpi)]
        if first_page:
            command += ["-f", str(first_page)]
        if last_page:
            command += ["-l", str(last_page)]
        done = subprocess.run([*command, str(pdf), str(target / source.stem)], capture_output=True, text=True,
                              timeout=TIMEOUT_SECONDS)
        if done.returncode != 0:
            raise TierError(f"pdftoppm 失败 / pdftoppm failed on {pdf.name}: {done.stderr.strip()}")
    return sorted(target.glob(f"{source.stem}-*.png"), key=lambda p: (len(p.name), p.name))

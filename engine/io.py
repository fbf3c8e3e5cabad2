"""Files in and out: CSV (UTF-8 with or without BOM, GBK/GB18030), .xlsx/.xlsm and Parquet.

Reading keeps every cell as the user wrote it (CSV cells stay text, so `0012` and `12,000` reach
the value parser untouched). Writing is atomic — a temporary file in the target's folder,
replaced only when complete — so a crash never leaves half a file. Text that a spreadsheet would
run as a formula is neutralised (OWASP CSV injection guidance).
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import os
import re
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from engine.errors import InputError

CSV_ENCODINGS = ("utf-8-sig", "gb18030")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_XLSX_UNCOMPRESSED = 1_000_000_000  # refuse zip bombs before inflating
MAX_XLSX_RATIO = 200
# Input size limits (PRODUCT §10 "huge inputs get a clear error"): a CSV file's bytes or a Parquet
# file's uncompressed data, and columns in any table. Generous for real sheets (a 1,000,000-row
# table of the core rulesets is ~150 MB of CSV); the environment variables lower or raise them.
MAX_INPUT_BYTES = 2_000_000_000
MAX_COLUMNS = 16_384  # Excel's own column limit: a wider table did not come from a spreadsheet
SUFFIXES = (".csv", ".xlsx", ".xlsm", ".parquet")
OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")  # encrypted (password-protected) OOXML and legacy .xls
# Test hook: seconds to sleep in `atomic_path` just before the replace, so a test can kill a
# writing process at the worst moment and check that the target is intact. Never set in use.
PAUSE_ENV = "TIERBOOK_TEST_PAUSE_BEFORE_REPLACE"
PART_SUFFIX = ".part"
# A temporary file of a write untouched this long is a killed writer's leftover (a live writer
# writes it, then replaces the target with it, within seconds of its last write).
STALE_PART_SECONDS = 3600


def _limit(name: str, default: int) -> int:
    """A size limit, overridable by an environment variable of that name (TIERBOOK_MAX_…)."""
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise InputError(f"环境变量 {name} 不是整数 / {name} must be a whole number, got {raw!r}") from None


def max_input_bytes() -> int:
    return _limit("TIERBOOK_MAX_INPUT_BYTES", MAX_INPUT_BYTES)


def max_columns() -> int:
    return _limit("TIERBOOK_MAX_COLUMNS", MAX_COLUMNS)


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"不支持的文件类型 / unsupported file type {suffix or '(none)'!r} for {path.name}; "
                         f"use .csv, .xlsx, .xlsm or .parquet")
    return suffix


# --------------------------------------------------------------------------- reading
def decode_csv_bytes(data: bytes, name: str = "") -> str:
    """UTF-8 (with or without BOM) first, then GB18030 (a superset of GBK, what Chinese Excel saves)."""
    for encoding in CSV_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InputError(f"{name}: 无法识别文件编码 / cannot decode the CSV as UTF-8 or GBK/GB18030; "
                     f"save it as 'CSV UTF-8' from Excel")


def read_csv(path: Path) -> pd.DataFrame:
    size, limit = path.stat().st_size, max_input_bytes()
    if size > limit:
        raise InputError(f"{path.name}: 文件过大 / the CSV is {size:,} bytes, over the limit of {limit:,} "
                         f"(TIERBOOK_MAX_INPUT_BYTES); split it or convert it to Parquet")
    text = decode_csv_bytes(path.read_bytes(), path.name)
    if not text.strip():
        raise InputError(f"{path.name}: 文件为空 / the CSV file is empty (no header row)")
    check_csv_width(text, path.name)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=object, keep_default_na=False, na_filter=False,
                            skip_blank_lines=True)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise InputError(f"{path.name}: CSV 格式错误 / malformed CSV: {exc}") from exc
    _check_headers(frame.columns, path.name)
    return frame


def check_csv_width(text: str, name: str) -> None:
    """Count the header's columns before pandas builds them (a 10-million-column line is a hang).

    `text` is the file's text or just its start; only the first line is looked at.
    """
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    _check_width(len(next(csv.reader(io.StringIO(first_line)), [])), name)


def _check_width(count: int, where: str) -> None:
    limit = max_columns()
    if count > limit:
        raise InputError(f"{where}: 列数过多 / {count:,} columns, over the limit of {limit:,} "
                         f"(TIERBOOK_MAX_COLUMNS); is the delimiter right?")


def _check_headers(columns, where: str) -> None:
    seen: set[str] = set()
    for column in columns:
        label = str(column)
        if label.startswith("Unnamed: "):
            continue
        if label in seen or "." in label and label.rsplit(".", 1)[0] in seen and label.rsplit(".", 1)[1].isdigit():
            base = label.rsplit(".", 1)[0] if label not in seen else label
            raise InputError(f"{where}: 表头重复 / duplicated header {base!r}; every column needs its own header")
        seen.add(label)


def _not_a_zip(path: Path) -> InputError:
    """Why a file with an .xlsx name is not a zip: empty, encrypted/legacy, truncated or something else."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        return InputError(f"{path.name}: 文件为空 / the workbook file is empty (0 bytes)")
    if head == OLE2_MAGIC:
        return InputError(f"{path.name}: 工作簿有密码保护或是旧版 .xls / the workbook is password-protected "
                          f"(encrypted) or an old .xls; remove the password and save it as .xlsx")
    if head.startswith(b"PK"):
        return InputError(f"{path.name}: 文件已损坏 / the workbook is damaged (truncated zip); "
                          f"save it again from Excel or copy it again")
    return InputError(f"{path.name}: 不是有效的 Excel 文件 / not a valid .xlsx (not a zip archive); "
                      f"save it from Excel as .xlsx")


def check_zip(path: Path) -> None:
    """Refuse what is not a real xlsx, or would inflate absurdly (zip bomb), before openpyxl sees it.

    The sizes come from the zip's central directory. A member that lies about its size cannot
    get past this either: Python's zipfile (which openpyxl reads through) stops inflating at the
    declared size and then fails its CRC check.
    """
    if not zipfile.is_zipfile(path):
        raise _not_a_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            total = sum(i.file_size for i in infos)
            packed = sum(i.compress_size for i in infos) or 1
            if total > MAX_XLSX_UNCOMPRESSED or (total > 50_000_000 and total / packed > MAX_XLSX_RATIO):
                raise InputError(f"{path.name}: 解压后过大 / the workbook would inflate to {total:,} bytes "
                                 f"(ratio {total / packed:.0f}:1); refused as a possible zip bomb")
            if "xl/workbook.xml" not in {i.filename for i in infos}:
                raise InputError(f"{path.name}: 缺少 xl/workbook.xml / not an Excel workbook")
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path.name}: 文件已损坏 / the workbook is damaged (truncated zip): {exc}") from exc


def find_header_row(rows: list[tuple], known: set[str] | None = None) -> int:
    """Index of the header row: the first row naming ≥2 known headers, else the first non-empty row."""
    from engine.rows import normalize_header

    first = None
    for index, row in enumerate(rows[:30]):
        cells = [c for c in row if c not in (None, "")]
        if not cells:
            continue
        if first is None:
            first = index
        if known and sum(normalize_header(c) in known for c in cells) >= 2:
            return index
    if first is None:
        raise InputError("工作表为空 / the sheet is empty (no header row)")
    return first


def read_xlsx(path: Path, sheet: str | None = None, known_headers: set[str] | None = None) -> pd.DataFrame:
    check_zip(path)
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise InputError(f"{path.name}: 无法打开工作簿 / cannot open the workbook: {exc}") from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise InputError(f"{path.name}: 没有工作表 {sheet!r} / no sheet {sheet!r}; sheets: {', '.join(book.sheetnames)}")
        if not book.worksheets:
            raise InputError(f"{path.name}: 工作簿没有工作表 / the workbook has no worksheet")
        worksheet = book[sheet] if sheet is not None else book.worksheets[0]
        # read-only mode parses the sheet XML only here, so damage inside it surfaces here
        rows = [tuple(r) for r in worksheet.iter_rows(values_only=True)]
    except InputError:
        raise
    except Exception as exc:  # broken XML, CRC errors, openpyxl's many value errors
        raise InputError(f"{path.name}: 工作表已损坏 / cannot read the sheet: {type(exc).__name__}: "
                         f"{str(exc)[:200]}") from exc
    finally:
        book.close()
    start = find_header_row(rows, known_headers)
    header = [("" if c is None else str(c)).strip() for c in rows[start]]
    while header and header[-1] == "":
        header.pop()
    _check_width(len(header), f"{path.name} [{worksheet.title}]")
    data = [list(r[:len(header)]) + [None] * (len(header) - len(r)) for r in rows[start + 1:]]
    while data and all(c in (None, "") for c in data[-1]):
        data.pop()
    names = [h or f"column_{i + 1}" for i, h in enumerate(header)]
    _check_headers(names, f"{path.name} [{worksheet.title}]")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{path.name} [{worksheet.title}]: 表头重复 / duplicated header {dup!r}")
    frame = pd.DataFrame(data, columns=names, dtype=object)
    frame.attrs["sheet"] = worksheet.title
    frame.attrs["header_row"] = start + 1
    return frame


def read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        _check_width(meta.num_columns, path.name)
        limit = max_input_bytes()
        if inflated > limit:
            raise InputError(f"{path.name}: 文件过大 / the Parquet data is {inflated:,} bytes uncompressed, over the "
                             f"limit of {limit:,} (TIERBOOK_MAX_INPUT_BYTES)")
        return pd.read_parquet(path)
    except InputError:
        raise
    except Exception as exc:  # pyarrow's errors are many and specific
        raise InputError(f"{path.name}: 无法读取 Parquet / cannot read Parquet: {exc}") from exc


def read_table(path: str | os.PathLike, sheet: str | None = None, known_headers: set[str] | None = None) -> pd.DataFrame:
    """Any supported input file → DataFrame of raw cells (header row from the file)."""
    file = Path(path)
    kind = _kind(file)
    if not file.is_file():
        raise InputError(f"输入文件不存在 / input file not found: {file}")
    if kind == ".csv":
        return read_csv(file)
    if kind in (".xlsx", ".xlsm"):
        return read_xlsx(file, sheet, known_headers)
    return read_parquet(file)


# --------------------------------------------------------------------------- writing
def neutralise_formula(text: str) -> str:
    """OWASP CSV-injection guard: text a spreadsheet would run as a formula gets a leading quote.

    Negative numbers like `-5` or `-0.3` stay as they are: they are data, not formulas.
    """
    if not text or not text.startswith(FORMULA_PREFIXES):
        return text
    if text[0] in "+-":
        body = text[1:].replace(",", "")
        with contextlib.suppress(ValueError):
            float(body)
            if body.strip() == body and body:
                return text
    return "'" + text


def refuse_overwriting_input(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Raise InputError if `output` is one of the input files (same file: links and `./` included).

    Writing results over the workbook they were read from would replace the analyst's sheet —
    its formatting, other sheets and formulas — by a plain result table (PRODUCT §10: never lose
    data). `tier fill` is the command that writes into a workbook, and it keeps everything else.
    """
    target = Path(output)
    if not target.exists():
        return
    for source in inputs:
        if source is None or not Path(source).exists():
            continue
        if os.path.samefile(target, source):
            raise InputError(f"输出文件就是输入文件 / -o {target.name} is the input file {Path(source).name}; "
                             f"write the results to a new file (use `tier fill` to fill a workbook in place)")


def _part_pattern(target: Path) -> re.Pattern[str]:
    """The names `atomic_path` gives its temporary files for `target`, and nothing else.

    `tempfile.mkstemp` puts exactly 8 characters of `[a-z0-9_]` between prefix and suffix; the
    fixed length keeps `.a.csv.x.csv.abcdefgh.part` (a temp file of `a.csv.x.csv`) out of `a.csv`'s.
    """
    return re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}" + re.escape(PART_SUFFIX))


def remove_stale_parts(target: Path, max_age: float = STALE_PART_SECONDS) -> list[Path]:
    """Delete the temporary files a killed writer of `target` left beside it; → the paths removed.

    A SIGKILL (or power loss) between writing the temporary file and `os.replace` leaves a hidden
    `.NAME.xxxxxxxx.part` that nothing else would ever remove. Only regular files of exactly
    that pattern, for this target name, untouched for `max_age` seconds are removed: a live writer
    keeps its file's mtime fresh (it writes, then replaces within seconds), so age alone tells a
    leftover from a file in use. Cleaning up is best effort and never fails the write itself.
    """
    pattern = _part_pattern(target)
    cutoff = time.time() - max_age
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):  # gone already (another writer cleaned it), no permission
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside target, moved over it only if the block completes.

    Temporary files of the same target that a killed writer left behind are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PART_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        pause = os.environ.get(PAUSE_ENV)
        if pause:
            print(f"{PAUSE_ENV}: {tmp_path.name} complete, pausing before replacing {target.name}",
                  file=sys.stderr, flush=True)
            time.sleep(float(pause))
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_csv(text_frame: pd.DataFrame, path: Path) -> None:
    """Text frame → CSV, UTF-8 with BOM (Excel then shows Chinese correctly)."""
    safe = text_frame.map(lambda v: neutralise_formula(v) if isinstance(v, str) else v)
    with atomic_path(path) as tmp:
        safe.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\r\n")


def _excel_date(value: object) -> dt.datetime | None:
    """A date Excel can hold as a date cell (1900-01-01 onwards), else None: it is written as text."""
    try:
        stamp = pd.Timestamp(value).to_pydatetime().replace(tzinfo=None)
    except (ValueError, OverflowError):  # year 0, out-of-range datetimes
        return None
    return stamp if stamp.year >= 1900 else None


def write_xlsx(frame: pd.DataFrame, text_frame: pd.DataFrame, path: Path, sheet: str = "结果") -> None:
    """Typed values as Excel cells: numbers as numbers, dates as dates, text never as a formula."""
    import xlsxwriter

    with atomic_path(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False})
        sheet_obj = book.add_worksheet(sheet[:31])
        bold = book.add_format({"bold": True})
        date_fmt = book.add_format({"num_format": "yyyy-mm-dd"})
        for col, name in enumerate(frame.columns):
            sheet_obj.write_string(0, col, str(name), bold)
            values = frame[name].to_numpy()
            texts = text_frame[name].to_numpy()
            for row, (value, text) in enumerate(zip(values, texts), start=1):
                if text == "" or text is None:
                    continue
                if isinstance(value, (bool, np.bool_)):
                    sheet_obj.write_boolean(row, col, bool(value))
                elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                    sheet_obj.write_number(row, col, float(value))
                elif isinstance(value, (pd.Timestamp, dt.datetime, dt.date, np.datetime64)) and _excel_date(value):
                    sheet_obj.write_datetime(row, col, _excel_date(value), date_fmt)
                else:
                    sheet_obj.write_string(row, col, str(text))
            sheet_obj.set_column(col, col, max(10, min(40, len(str(name)) * 2)))
        sheet_obj.freeze_panes(1, 0)
        info = frame.attrs.get("tierbook")
        if info:  # every figure explainable: which ruleset, version, parameters produced it
            meta = book.add_worksheet("运行信息")
            meta.write_row(0, 0, ["项目 / item", "值 / value"], bold)
            rows = [("规则集 / ruleset", info["ruleset"]), ("版本 / version", info["version"]),
                    ("摘要 / digest", info["digest"]), ("引擎 / engine", info["engine"])]
            rows += [(f"参数 / parameter {k}" + (" (已修改 / changed)" if k in info["parameters_changed"] else ""), v)
                     for k, v in info["parameters"].items()]
            for index, (item, value) in enumerate(rows, start=1):
                meta.write_string(index, 0, str(item))
                meta.write_string(index, 1, str(value))
            meta.set_column(0, 0, 48)
            meta.set_column(1, 1, 30)
        book.close()


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    clean = frame.copy()
    for name in clean.columns:
        if clean[name].dtype == object:
            clean[name] = clean[name].map(lambda v: None if v is None else (v if isinstance(v, str) else str(v)))
    with atomic_path(path) as tmp:
        clean.to_parquet(tmp, index=False)


def write_table(frame: pd.DataFrame, text_frame: pd.DataFrame, path: str | os.PathLike) -> None:
    file = Path(path)
    kind = _kind(file)
    if kind == ".csv":
        write_csv(text_frame, file)
    elif kind in (".xlsx", ".xlsm"):
        if kind == ".xlsm":
            raise InputError("结果不能写成 .xlsm / write results to .xlsx, .csv or .parquet "
                             "(use `tier fill` to fill a macro workbook in place)")
        write_xlsx(frame, text_frame, file)
    else:
        write_parquet(frame, file)

"""Builders of bad and hostile input files, made at test time (nothing large is checked in).

Each builder writes one file into a folder and returns its path. They are small and fast: the zip
bombs are assembled from one repeated deflate block, so a member that inflates to more than a
gigabyte costs a few kilobytes and a fraction of a second to make, and is never inflated here.
"""
from __future__ import annotations

import datetime as dt
import io
import struct
import zipfile
import zlib
from pathlib import Path

CREDIT_HEADER = ["客户编号", "客户名称", "评估日期", "月均销售额(元)", "平均回款天数", "是否新客户", "最近拜访日期"]
CREDIT_ROWS = [
    ["C1", "甲公司", "2024-06-30", "25,000", "20", "否", "2024/5/31"],
    ["C2", "乙公司", "2024-06-30", "abc", "", "x", ""],
    ["C3", "丙公司", "2024-06-30", "10000", "", "是", "2023-12-31"],
]
OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    import csv

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode(encoding)


def credit_csv(folder: Path, name: str = "credit.csv", encoding: str = "utf-8",
               header: list[str] | None = None, rows: list[list[str]] | None = None) -> Path:
    path = folder / name
    path.write_bytes(csv_bytes([header or CREDIT_HEADER, *(CREDIT_ROWS if rows is None else rows)], encoding))
    return path


def credit_xlsx(folder: Path, name: str = "credit.xlsx") -> Path:
    """A small, valid credit workbook (the base of the damaged variants)."""
    import xlsxwriter

    path = folder / name
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("数据")
    for row, values in enumerate([CREDIT_HEADER, *CREDIT_ROWS]):
        sheet.write_row(row, 0, values)
    book.close()
    return path


def messy_cells_xlsx(folder: Path, name: str = "messy.xlsx") -> Path:
    """Real Excel cell types: error values (t="e"), date serials with and without a date format,
    booleans, numbers, percent-formatted fractions."""
    import xlsxwriter

    path = folder / name
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("数据")
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, CREDIT_HEADER)
    # row 2: a date cell, a #N/A error in a number column
    sheet.write_row(1, 0, ["C1", "甲"])
    sheet.write_datetime(1, 2, dt.datetime(2024, 6, 30), date_format)
    sheet.write_formula(1, 3, "=NA()", None, "#N/A")
    sheet.write_number(1, 4, 30)
    sheet.write_boolean(1, 5, False)
    # row 3: the same date as a bare serial (no date format) → INVALID (the Excel side converts)
    sheet.write_row(2, 0, ["C2", "乙"])
    sheet.write_number(2, 2, 45473)
    sheet.write_number(2, 3, 25000)
    sheet.write_number(2, 4, 30)
    sheet.write_string(2, 5, "否")
    # row 4: all good, numeric cells, a boolean cell, a date-time cell (time dropped)
    sheet.write_row(3, 0, ["C3", "丙"])
    sheet.write_datetime(3, 2, dt.datetime(2024, 6, 30, 17, 45), date_format)
    sheet.write_number(3, 3, 25000.0)
    sheet.write_number(3, 4, 20)
    sheet.write_boolean(3, 5, False)
    sheet.write_datetime(3, 6, dt.datetime(2024, 5, 31), date_format)
    # row 5: #VALUE! in a boolean column, #DIV/0! in a number column
    sheet.write_row(4, 0, ["C4", "丁"])
    sheet.write_datetime(4, 2, dt.datetime(2024, 6, 30), date_format)
    sheet.write_formula(4, 3, "=1/0", None, "#DIV/0!")
    sheet.write_number(4, 4, 20)
    sheet.write_formula(4, 5, "=A1+1", None, "#VALUE!")
    book.close()
    return path


def _parts(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def rezip(source: Path, target: Path, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A copy of an xlsx with some parts replaced or dropped."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _parts(source):
            if name not in drop:
                archive.writestr(name, (replace or {}).get(name, data))
    return target


def sheet_part(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return next(n for n in archive.namelist() if n.startswith("xl/worksheets/sheet"))


def truncated(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def corrupted_member(source: Path, target: Path) -> Path:
    """Flip bytes inside the compressed sheet: inflating it fails (or fails its CRC)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo(sheet_part(source))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    for offset in range(start + 8, start + min(info.compress_size, 64)):
        data[offset] ^= 0x5A
    target.write_bytes(bytes(data))
    return target


def encrypted_like(target: Path) -> Path:
    """What Excel saves with a password: an OLE2 compound file (as is an old .xls)."""
    header = bytearray(512)
    header[:8] = OLE2_MAGIC
    header[0x18:0x1C] = bytes.fromhex("3E000300")  # minor/major version 3
    header[0x1C:0x1E] = bytes.fromhex("FEFF")      # little-endian byte order mark
    header[0x1E:0x20] = bytes.fromhex("0900")      # 512-byte sectors
    body = "EncryptionInfo".encode("utf-16-le") + b"\0" * 1024
    target.write_bytes(bytes(header) + body)
    return target


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY a "lol">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + ']><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">'
    '<si><t>&j;</t></si></sst>'
).encode()

XXE = (
    b'<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">'
    b'<si><t>&x;</t></si></sst>'
)


def shared_strings_replaced(source: Path, target: Path, xml: bytes) -> Path:
    with zipfile.ZipFile(source) as archive:
        name = next(n for n in archive.namelist() if n.endswith("sharedStrings.xml"))
    return rezip(source, target, {name: xml})


# --------------------------------------------------------------------------- zip bombs
def _zero_stream(megabytes: int) -> tuple[bytes, int]:
    """A raw deflate stream of `megabytes` MiB of zeros, and their CRC-32, without building them.

    After a full flush the compressor starts afresh, so every 1 MiB block compresses to the same
    ~1 KB; the stream is that block repeated, then the final (empty) block.
    """
    block = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(block, crc)
    return piece * megabytes + compressor.flush(), crc


def _write_zip(target: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip from (name, deflated data, crc, compressed size, declared uncompressed size)."""
    out = bytearray()
    central = bytearray()
    for name, data, crc, packed, size in members:
        encoded = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, packed, size, len(encoded), 0)
        out += encoded + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, packed, size,
                               len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    start = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0)
    target.write_bytes(bytes(out))
    return target


def _small(name: str, text: str) -> tuple[str, bytes, int, int, int]:
    raw = text.encode()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(raw) + compressor.flush()
    return name, data, zlib.crc32(raw), len(data), len(raw)


_WORKBOOK_PARTS = [
    ("[Content_Types].xml", (
     '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
     '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
     '<Default Extension="xml" ContentType="application/xml"/>'
     '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
     'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType='
     '"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')),
    ("_rels/.rels", (
     '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
     '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
     'officeDocument" Target="xl/workbook.xml"/></Relationships>')),
    ("xl/workbook.xml", (
     '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
     'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
     '<sheet name="数据" sheetId="1" r:id="rId1"/></sheets></workbook>')),
    ("xl/_rels/workbook.xml.rels", (
     '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
     '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
     'worksheet" Target="worksheets/sheet1.xml"/></Relationships>')),
]


def zip_bomb(target: Path, megabytes: int = 1100) -> Path:
    """An .xlsx whose sheet inflates to `megabytes` MiB (default: more than 1 GB) from a few KB."""
    data, crc = _zero_stream(megabytes)
    sheet = ("xl/worksheets/sheet1.xml", data, crc, len(data), megabytes << 20)
    return _write_zip(target, [_small(n, t) for n, t in _WORKBOOK_PARTS] + [sheet])


def lying_zip_bomb(target: Path, megabytes: int = 64) -> Path:
    """A sheet that inflates to `megabytes` MiB but whose headers claim 2 KB (sizes are not trusted)."""
    data, crc = _zero_stream(megabytes)
    sheet = ("xl/worksheets/sheet1.xml", data, crc, len(data), 2048)
    return _write_zip(target, [_small(n, t) for n, t in _WORKBOOK_PARTS] + [sheet])


def wide_xlsx(target: Path, columns: int) -> Path:
    """A workbook whose header row has `columns` cells (written as raw XML: xlsxwriter stops at 16,384)."""
    def col(index: int) -> str:
        letters = ""
        index += 1
        while index:
            index, rest = divmod(index - 1, 26)
            letters = chr(65 + rest) + letters
        return letters

    cells = "".join(f'<c r="{col(i)}1" t="inlineStr"><is><t>h{i}</t></is></c>' for i in range(columns))
    sheet = ('<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             f'<sheetData><row r="1">{cells}</row></sheetData></worksheet>')
    return _write_zip(target, [_small(n, t) for n, t in _WORKBOOK_PARTS] + [_small("xl/worksheets/sheet1.xml", sheet)])

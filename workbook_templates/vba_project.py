"""Build a `vbaProject.bin` from VBA source text, so the templates can carry a "填充分级" button.

Why build it: XlsxWriter can only embed an existing binary VBA project, Excel is not available
here to make one, and a binary copied from elsewhere could not carry our macro. The format is
public ([MS-OVBA] inside an [MS-CFB] compound file) and a project may be stored *source only*:
`_VBA_PROJECT` with version 0xFFFF and no performance cache tells Office to compile the module
source on open (MS-OVBA 2.3.4.1: the version "MUST be 0xFFFF on write"); LibreOffice writes
its VBA export the same way. What this module writes:

    Root Entry
    ├── VBA/_VBA_PROJECT   7 bytes, no p-code cache
    ├── VBA/dir            compressed project information and module records (MS-OVBA 2.3.4.2)
    ├── VBA/<module>       compressed source per module (offset 0: no p-code before it)
    ├── PROJECT            project properties text, with the protection fields encrypted (2.4.3)
    └── PROJECTwm          module name → Unicode name map

The macro source is kept ASCII (the MBCS code page is 1252), so no code-page guess can garble it.
`tests/test_templates.py` checks the result by reading it back with our own reader.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["FILL_MACRO", "Module", "build_vba_project", "compress", "decompress", "read_cfb_streams", "vba_project_bytes"]

CODE_PAGE = 1252
PROJECT_ID = "{6F3C6A4E-2B1D-4C55-9E47-7469657262EB}"  # fixed: the build is deterministic
WORKBOOK_BASE = "0{00020819-0000-0000-C000-000000000046}"
WORKSHEET_BASE = "0{00020820-0000-0000-C000-000000000046}"

# The button's macro: run the add-in's fill macro through the xlwings add-in, late bound (no
# project reference to xlwings.xlam is needed, so the workbook opens cleanly without it).
FILL_MACRO = """Option Explicit

' tierbook: fill the tier columns of the table on the active sheet.
' Needs the xlwings add-in (xlwings addin install) and Python with tierbook installed.
Public Sub FillTiers()
    On Error GoTo NoXlwings
    Application.Run "'xlwings.xlam'!RunPython", "import addin.macros; addin.macros.fill_tiers()"
    Exit Sub
NoXlwings:
    MsgBox "tierbook needs the xlwings add-in: run 'xlwings addin install' and restart Excel." & vbCrLf & _
           "Without Excel: tier fill <workbook> --ruleset <id> --values", vbExclamation, "tierbook"
End Sub
"""


@dataclass(frozen=True)
class Module:
    """One VBA module: a standard module (`procedural`) or a document module (workbook/sheet)."""

    name: str
    source: str = ""
    kind: str = "procedural"  # procedural | workbook | worksheet

    def text(self) -> bytes:
        if self.kind == "procedural":
            head = [f'Attribute VB_Name = "{self.name}"']
        else:
            base = WORKBOOK_BASE if self.kind == "workbook" else WORKSHEET_BASE
            head = [f'Attribute VB_Name = "{self.name}"', f'Attribute VB_Base = "{base}"',
                    "Attribute VB_GlobalNameSpace = False", "Attribute VB_Creatable = False",
                    "Attribute VB_PredeclaredId = True", "Attribute VB_Exposed = True",
                    "Attribute VB_TemplateDerived = False", "Attribute VB_Customizable = True"]
        body = self.source.replace("\r\n", "\n").rstrip("\n")
        lines = head + (body.split("\n") if body else [])
        return ("\r\n".join(lines) + "\r\n").encode("cp1252")


# --------------------------------------------------------------------------- MS-OVBA compression
def _copy_token_help(difference: int) -> tuple[int, int]:
    bit_count = max((difference - 1).bit_length(), 4)
    return bit_count, (0xFFFF >> bit_count) + 3


def _compress_chunk(data: bytes) -> bytes:
    out = bytearray()
    current = 0
    end = len(data)
    while current < end:
        flag_at = len(out)
        out.append(0)
        flags = 0
        for bit in range(8):
            if current >= end:
                break
            bit_count, max_length = _copy_token_help(current)
            best_length, best_offset = 0, 0
            candidate = current - 1
            while candidate >= 0:
                length = 0
                while (current + length < end and length < max_length
                       and data[candidate + length] == data[current + length]):
                    length += 1
                if length > best_length:
                    best_length, best_offset = length, current - candidate
                candidate -= 1
            if best_length >= 3:
                token = ((best_offset - 1) << (16 - bit_count)) | (best_length - 3)
                out += struct.pack("<H", token)
                flags |= 1 << bit
                current += best_length
            else:
                out.append(data[current])
                current += 1
        out[flag_at] = flags
    if len(out) > 4096:  # incompressible: a raw chunk of exactly 4096 bytes
        return struct.pack("<H", 0x3000 | 4095) + data.ljust(4096, b"\x00")
    return struct.pack("<H", 0x8000 | 0x3000 | (len(out) + 2 - 3)) + bytes(out)


def compress(data: bytes) -> bytes:
    """MS-OVBA 2.4.1 CompressedContainer."""
    out = bytearray(b"\x01")
    for start in range(0, len(data), 4096):
        out += _compress_chunk(data[start:start + 4096])
    return bytes(out)


def decompress(container: bytes) -> bytes:
    """The inverse of `compress` (any valid container), used to check what we write."""
    if not container or container[0] != 1:
        raise ValueError("not a compressed container")
    out = bytearray()
    pos = 1
    while pos < len(container):
        header = struct.unpack_from("<H", container, pos)[0]
        size = (header & 0x0FFF) + 3
        chunk_end = pos + size
        pos += 2
        chunk_start = len(out)
        if not header & 0x8000:
            out += container[pos:pos + 4096]
            pos += 4096
            continue
        while pos < chunk_end:
            flags = container[pos]
            pos += 1
            for bit in range(8):
                if pos >= chunk_end:
                    break
                if flags & (1 << bit):
                    token = struct.unpack_from("<H", container, pos)[0]
                    pos += 2
                    bit_count, _max = _copy_token_help(len(out) - chunk_start)
                    length = (token & (0xFFFF >> bit_count)) + 3
                    offset = (token >> (16 - bit_count)) + 1
                    for _ in range(length):
                        out.append(out[-offset])
                else:
                    out.append(container[pos])
                    pos += 1
    return bytes(out)


# --------------------------------------------------------------------------- MS-OVBA 2.4.3 encryption
def _encrypt(data: bytes, seed: int = 0x07) -> str:
    """Data Encryption of the PROJECT stream's CMG/DPB/GC values (hex text)."""
    project_key = sum(PROJECT_ID.encode("ascii")) & 0xFF
    version = 2
    version_enc, key_enc = seed ^ version, seed ^ project_key
    out = [seed, version_enc, key_enc]
    unencrypted1, encrypted1, encrypted2 = project_key, key_enc, version_enc
    plain = [0] * ((seed & 6) // 2) + list(struct.pack("<I", len(data))) + list(data)
    for byte in plain:
        encrypted = byte ^ ((encrypted2 + unencrypted1) & 0xFF)
        out.append(encrypted)
        encrypted2, encrypted1, unencrypted1 = encrypted1, encrypted, byte
    return bytes(out).hex().upper()


# --------------------------------------------------------------------------- streams
def _record(record_id: int, data: bytes) -> bytes:
    return struct.pack("<HI", record_id, len(data)) + data


def _dir_stream(modules: Sequence[Module]) -> bytes:
    name = b"VBAProject"
    info = b"".join([
        _record(0x0001, struct.pack("<I", 1)),  # SYSKIND: Win32
        _record(0x0002, struct.pack("<I", 0x0409)),  # LCID
        _record(0x0014, struct.pack("<I", 0x0409)),  # LCIDINVOKE
        _record(0x0003, struct.pack("<H", CODE_PAGE)),
        _record(0x0004, name),
        _record(0x0005, b"") + _record(0x0040, b""),  # DOCSTRING (+ Unicode)
        _record(0x0006, b"") + _record(0x003D, b""),  # HELPFILEPATH 1 and 2
        _record(0x0007, struct.pack("<I", 0)),  # HELPCONTEXT
        _record(0x0008, struct.pack("<I", 0)),  # LIBFLAGS
        struct.pack("<HIIH", 0x0009, 4, 1, 0),  # VERSION (reserved size 4, major, minor)
        _record(0x000C, b"") + _record(0x003C, b""),  # CONSTANTS (+ Unicode)
    ])
    parts = [info, _record(0x000F, struct.pack("<H", len(modules))), _record(0x0013, struct.pack("<H", 0xFFFF))]
    for module in modules:
        mbcs, wide = module.name.encode("cp1252"), module.name.encode("utf-16-le")
        parts += [
            _record(0x0019, mbcs), _record(0x0047, wide),
            _record(0x001A, mbcs), _record(0x0032, wide),
            _record(0x001C, b"") + _record(0x0048, b""),
            _record(0x0031, struct.pack("<I", 0)),  # source starts at offset 0: no p-code
            _record(0x001E, struct.pack("<I", 0)),
            _record(0x002C, struct.pack("<H", 0xFFFF)),
            _record(0x0021 if module.kind == "procedural" else 0x0022, b""),
            _record(0x002B, b""),
        ]
    parts.append(_record(0x0010, b""))
    return b"".join(parts)


def _project_stream(modules: Sequence[Module]) -> bytes:
    lines = [f'ID="{PROJECT_ID}"']
    for module in modules:
        lines.append(f"Module={module.name}" if module.kind == "procedural" else f"Document={module.name}/&H00000000")
    protection = _encrypt(struct.pack("<I", 0))  # not protected
    password = _encrypt(bytes([0]))  # no password
    visibility = _encrypt(bytes([0xFF]))  # visible
    lines += ['Name="VBAProject"', 'HelpContextID="0"', 'VersionCompatible32="393222000"',
              f'CMG="{protection}"', f'DPB="{password}"', f'GC="{visibility}"',
              "", "[Host Extender Info]", "&H00000001={3832D640-CF90-11CF-8E43-00A0C911005A};VBE;&H00000000",
              "", "[Workspace]"]
    lines += [f"{module.name}=0, 0, 0, 0, C" for module in modules]
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def _project_wm(modules: Sequence[Module]) -> bytes:
    return b"".join(m.name.encode("cp1252") + b"\x00" + m.name.encode("utf-16-le") + b"\x00\x00" for m in modules) + b"\x00\x00"


# --------------------------------------------------------------------------- MS-CFB writer
_FREE, _END, _FATSECT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
_NOSTREAM = 0xFFFFFFFF


@dataclass
class _Entry:
    name: str
    kind: int  # 1 storage, 2 stream, 5 root
    data: bytes = b""
    children: list["_Entry"] | None = None
    start: int = _END
    left: int = _NOSTREAM
    right: int = _NOSTREAM
    child: int = _NOSTREAM
    color: int = 1  # black
    index: int = 0


def _cfb_key(entry: _Entry) -> tuple[int, str]:
    return len(entry.name), entry.name.upper()


def _build_tree(nodes: list[_Entry], depth: int, depths: dict[int, int]) -> int:
    if not nodes:
        return _NOSTREAM
    middle = len(nodes) // 2
    node = nodes[middle]
    depths[id(node)] = depth
    node.left = _build_tree(nodes[:middle], depth + 1, depths)
    node.right = _build_tree(nodes[middle + 1:], depth + 1, depths)
    return node.index


def _cfb(root_children: list[_Entry]) -> bytes:
    """A version-3 compound file (512-byte sectors); streams < 4096 bytes live in the mini stream."""
    root = _Entry("Root Entry", 5, children=root_children)
    entries: list[_Entry] = []

    def number(entry: _Entry) -> None:
        entry.index = len(entries)
        entries.append(entry)
        for child in sorted(entry.children or [], key=_cfb_key):
            number(child)

    number(root)
    for entry in entries:
        if entry.children:
            ordered = sorted(entry.children, key=_cfb_key)
            depths: dict[int, int] = {}
            entry.child = _build_tree(ordered, 0, depths)
            deepest = max(depths.values())
            full = len(ordered) == 2 ** (deepest + 1) - 1
            for child in ordered:  # a median-split tree is red-black if its incomplete last level is red
                child.color = 0 if (not full and depths[id(child)] == deepest and deepest > 0) else 1

    mini = bytearray()
    mini_fat: list[int] = []
    for entry in entries:
        if entry.kind == 2 and entry.data:
            if len(entry.data) >= 4096:
                raise ValueError("streams of 4096 bytes or more are not needed here")
            first = len(mini) // 64
            count = (len(entry.data) + 63) // 64
            entry.start = first
            mini_fat += [first + i + 1 for i in range(count - 1)] + [_END]
            mini += entry.data.ljust(count * 64, b"\x00")
        elif entry.kind == 2:
            entry.start = _END
    sector = 512
    dir_sectors = (len(entries) * 128 + sector - 1) // sector
    minifat_sectors = (len(mini_fat) * 4 + sector - 1) // sector
    ministream_sectors = (len(mini) + sector - 1) // sector
    fat_sectors = 1
    while True:
        total = fat_sectors + dir_sectors + minifat_sectors + ministream_sectors
        if (total + sector // 4 - 1) // (sector // 4) <= fat_sectors:
            break
        fat_sectors += 1
    fat: list[int] = [_FATSECT] * fat_sectors
    position = fat_sectors

    def chain(count: int) -> int:
        nonlocal position
        if count == 0:
            return _END
        first = position
        fat.extend(first + i + 1 for i in range(count - 1))
        fat.append(_END)
        position += count
        return first

    dir_start = chain(dir_sectors)
    minifat_start = chain(minifat_sectors)
    root.start = chain(ministream_sectors)
    root.data = bytes(mini)
    fat += [_FREE] * (fat_sectors * (sector // 4) - len(fat))

    def entry_bytes(entry: _Entry) -> bytes:
        name = entry.name.encode("utf-16-le") + b"\x00\x00"
        size = len(entry.data) if entry.kind in (2, 5) else 0
        return (name.ljust(64, b"\x00") + struct.pack("<HBBIII", len(name), entry.kind, entry.color, entry.left,
                                                      entry.right, entry.child)
                + b"\x00" * 16 + struct.pack("<I", 0) + b"\x00" * 16
                + struct.pack("<III", entry.start if entry.kind != 1 else 0, size, 0))

    directory = b"".join(entry_bytes(e) for e in entries)
    empty = b"\x00" * 64 + struct.pack("<HBBIII", 0, 0, 0, _NOSTREAM, _NOSTREAM, _NOSTREAM) + b"\x00" * 48
    directory += empty * (dir_sectors * 4 - len(entries))
    difat = [i for i in range(fat_sectors)] + [_FREE] * (109 - fat_sectors)
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16
              + struct.pack("<HHHHH", 0x003E, 0x0003, 0xFFFE, 9, 6) + b"\x00" * 6
              + struct.pack("<IIIIIIIII", 0, fat_sectors, dir_start, 0, 4096,
                            minifat_start if minifat_sectors else _END, minifat_sectors, _END, 0)
              + struct.pack("<109I", *difat))
    body = struct.pack(f"<{len(fat)}I", *fat) + directory
    body += struct.pack(f"<{len(mini_fat)}I", *mini_fat).ljust(minifat_sectors * sector, b"\xff")
    body += bytes(mini).ljust(ministream_sectors * sector, b"\x00")
    return header + body


def read_cfb_streams(blob: bytes) -> dict[str, bytes]:
    """path → data of every stream of a compound file (a small reader to check what we write)."""
    (sector_shift, mini_shift) = struct.unpack_from("<HH", blob, 30)
    fat_count, dir_start, _sig, cutoff, minifat_start, minifat_count = struct.unpack_from("<IIIIII", blob, 44)[:6]
    size = 1 << sector_shift
    difat = struct.unpack_from("<109I", blob, 76)[:fat_count]

    def sector(i: int) -> bytes:
        return blob[512 + i * size: 512 + (i + 1) * size]

    fat = [v for s in difat for v in struct.unpack(f"<{size // 4}I", sector(s))]

    def follow(start: int) -> bytes:
        out, seen = bytearray(), set()
        while start not in (_END, _FREE) and start not in seen:
            seen.add(start)
            out += sector(start)
            start = fat[start]
        return bytes(out)

    directory = follow(dir_start)
    entries = [directory[i:i + 128] for i in range(0, len(directory), 128)]
    minifat_raw = follow(minifat_start) if minifat_count else b""
    mini_fat = list(struct.unpack(f"<{len(minifat_raw) // 4}I", minifat_raw))
    root_start, root_size = struct.unpack_from("<II", entries[0], 116)
    mini_stream = follow(root_start)[:root_size]
    found: dict[str, bytes] = {}

    def read(entry: bytes) -> bytes:
        start, length = struct.unpack_from("<II", entry, 116)
        if length < cutoff:
            out, at = bytearray(), start
            while at not in (_END, _FREE):
                out += mini_stream[at << mini_shift:(at + 1) << mini_shift]
                at = mini_fat[at]
            return bytes(out[:length])
        return follow(start)[:length]

    def walk(index: int, prefix: str) -> None:
        if index == _NOSTREAM:
            return
        entry = entries[index]
        name_len = struct.unpack_from("<H", entry, 64)[0]
        name = entry[:max(name_len - 2, 0)].decode("utf-16-le")
        kind = entry[66]
        left, right, child = struct.unpack_from("<III", entry, 68)
        walk(left, prefix)
        walk(right, prefix)
        if kind == 2:
            found[prefix + name] = read(entry)
        elif kind == 1:
            walk(child, prefix + name + "/")

    walk(struct.unpack_from("<I", entries[0], 76)[0], "")
    return found


# --------------------------------------------------------------------------- the project
def vba_project_bytes(modules: Sequence[Module]) -> bytes:
    """The compound file for these modules (ThisWorkbook and sheet modules included by the caller)."""
    vba = _Entry("VBA", 1, children=[
        _Entry("_VBA_PROJECT", 2, struct.pack("<HHBH", 0x61CC, 0xFFFF, 0x00, 0x0000)),
        _Entry("dir", 2, compress(_dir_stream(modules))),
        *[_Entry(m.name, 2, compress(m.text())) for m in modules],
    ])
    return _cfb([vba, _Entry("PROJECT", 2, _project_stream(modules)), _Entry("PROJECTwm", 2, _project_wm(modules))])


def default_modules(sheet_count: int, macro_module: str | None = "tierbook") -> list[Module]:
    """ThisWorkbook, Sheet1..SheetN (XlsxWriter's default code names) and the fill macro module."""
    modules = [Module("ThisWorkbook", kind="workbook")]
    modules += [Module(f"Sheet{i}", kind="worksheet") for i in range(1, sheet_count + 1)]
    if macro_module:
        modules.append(Module(macro_module, FILL_MACRO))
    return modules


def build_vba_project(path: str | Path, sheet_count: int = 4, macro_module: str | None = "tierbook") -> Path:
    """Write a vbaProject.bin for a workbook of `sheet_count` sheets; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(vba_project_bytes(default_modules(sheet_count, macro_module)))
    return target

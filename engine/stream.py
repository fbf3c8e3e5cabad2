"""Chunked evaluation of large CSV and Parquet files: memory stays flat as the file grows.

`tier eval` reads a Parquet file batch by batch (pyarrow `iter_batches`) and a large CSV file
chunk by chunk (the same pandas parser and options as `engine.io.read_csv`, so every cell still
arrives as the text the user wrote), evaluates each chunk with the chosen engine and appends it
to the output: a `ParquetWriter` or a CSV file opened once. The output is written to a temporary
file beside the target and moved over it only when the last chunk is in (`io.atomic_path`), so
a failed run never leaves half a file. Rows are independent (RULESETS §0.1), so chunking
changes nothing in the results; only the peak memory, which is about one chunk's worth.

Parquet input columns are copied to Parquet output from the Arrow batches unchanged (types
included); only the output columns are converted.
"""
from __future__ import annotations

import codecs
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine import api
from engine import io as tio
from engine import outputs as out
from engine.compile import CompiledRuleset
from engine.errors import InputError

DEFAULT_CHUNK_ROWS = 200_000
# CSV files smaller than this are read whole (the non-streamed path is simpler and as fast);
# Parquet files are always read batch by batch.
CSV_STREAM_MIN_BYTES = 32 * 1024 * 1024
STREAMABLE = (".csv", ".parquet")
_PROGRESS_AFTER_S = 2.0


@dataclass(frozen=True)
class StreamReport:
    """What a chunked run did: rows per status, chunks, seconds."""

    rows: int
    ok: int
    error: int
    chunks: int
    seconds: float


def should_stream(input_path: str | os.PathLike, output_path: str | os.PathLike,
                  chunk_rows: int | None = None) -> bool:
    """Whether `tier eval` takes the chunked path for these files.

    Input and output must both be .csv or .parquet (an .xlsx is read and written whole). Parquet
    input always streams; CSV input when `--chunk-rows` is given or the file is large.
    """
    source, target = Path(input_path), Path(output_path)
    if source.suffix.lower() not in STREAMABLE or target.suffix.lower() not in STREAMABLE:
        return False
    if source.suffix.lower() == ".parquet" or chunk_rows is not None:
        return True
    try:
        return source.stat().st_size >= CSV_STREAM_MIN_BYTES
    except OSError:
        return False  # the normal path reports the missing file


# --------------------------------------------------------------------------- reading
@dataclass
class Chunk:
    frame: pd.DataFrame            # raw cells, as engine.io would have read them
    arrow: pa.Table | None         # the same columns as Arrow (Parquet input), written back as-is


def _csv_encoding(path: Path) -> str:
    """UTF-8 (BOM or not) or GB18030, as `io.decode_csv_bytes` decides, read in blocks."""
    for encoding in tio.CSV_ENCODINGS:
        decoder = codecs.getincrementaldecoder(encoding)()
        seen_text = False
        try:
            with open(path, "rb") as handle:
                while block := handle.read(1 << 20):
                    text = decoder.decode(block)
                    seen_text = seen_text or bool(text.strip())
                seen_text = bool(decoder.decode(b"", final=True).strip()) or seen_text
        except UnicodeDecodeError:
            continue
        if not seen_text:
            raise InputError(f"{path.name}: 文件为空 / the CSV file is empty (no header row)")
        return encoding
    raise InputError(f"{path.name}: 无法识别文件编码 / cannot decode the CSV as UTF-8 or GBK/GB18030; "
                     f"save it as 'CSV UTF-8' from Excel")


def _header_width(path: Path, encoding: str) -> int:
    """Columns of the header line, counted before pandas builds them (a huge line would hang it)."""
    import csv

    with open(path, encoding=encoding, newline="") as handle:
        head = handle.read(1_000_000).lstrip("\r\n")
    return len(next(csv.reader([head.split("\n", 1)[0]]), []))


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    encoding = _csv_encoding(path)
    tio._check_width(_header_width(path, encoding), path.name)  # the limit engine.io applies
    try:
        reader = pd.read_csv(path, encoding=encoding, dtype=object, keep_default_na=False, na_filter=False,
                             skip_blank_lines=True, chunksize=chunk_rows)
        with reader:
            first = True
            for frame in reader:
                if first:
                    tio._check_headers(frame.columns, path.name)
                    first = False
                yield Chunk(frame, None)
        if first:  # a header row and no data: one empty chunk, so the output has its header
            header = pd.read_csv(path, encoding=encoding, dtype=object, keep_default_na=False, na_filter=False,
                                 nrows=0)
            tio._check_headers(header.columns, path.name)
            yield Chunk(header, None)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: CSV 格式错误 / malformed CSV: {exc}") from exc


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    try:
        # pre_buffer=False: with it, the reader keeps every row group's raw bytes it has read
        # until the end (+30 MB per million rows here): memory would grow with the file.
        parquet = pq.ParquetFile(path, pre_buffer=False)
    except Exception as exc:  # pyarrow's errors are many and specific
        raise InputError(f"{path.name}: 无法读取 Parquet / cannot read Parquet: {exc}") from exc
    schema = parquet.schema_arrow
    tio._check_width(len(schema), path.name)  # the column limit engine.io applies; no size limit: this streams
    float_columns = _integer_columns_with_nulls(parquet)
    try:
        batches = parquet.iter_batches(batch_size=chunk_rows)
        empty = True
        for batch in batches:
            empty = False
            table = pa.Table.from_batches([batch])
            # pandas makes an integer column with nulls float64; a batch that happens to have no
            # null would come out int64. Cast those columns up front so every chunk reads like the
            # whole file does (same cells, same dtypes) as pd.read_parquet would give them.
            converted = table
            for name in float_columns:
                index = converted.schema.get_field_index(name)
                converted = converted.set_column(index, name, converted.column(index).cast(pa.float64()))
            yield Chunk(converted.to_pandas(), table)
        if empty:
            yield Chunk(schema.empty_table().to_pandas(), schema.empty_table())
    except OSError as exc:
        raise InputError(f"{path.name}: 无法读取 Parquet / cannot read Parquet: {exc}") from exc


def _integer_columns_with_nulls(parquet: pq.ParquetFile) -> list[str]:
    """Integer columns that hold a null somewhere (from the row-group statistics, no data read)."""
    meta = parquet.metadata
    leaf = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    found = []
    for field in parquet.schema_arrow:
        if not pa.types.is_integer(field.type) or field.name not in leaf:
            continue
        index = leaf[field.name]
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(index).statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                found.append(field.name)
                break
    return found


# --------------------------------------------------------------------------- writing
def _text_column(values: np.ndarray) -> pa.Array:
    """Object column → Arrow strings, as `io.write_parquet` writes them (str(v) for non-text)."""
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else (v if isinstance(v, str) else str(v)) for v in values],
                        type=pa.string())


def _output_table(result: pd.DataFrame, names: list[str]) -> pa.Table:
    arrays = []
    for name in names:
        series = result[name]
        if series.dtype == object:
            arrays.append(_text_column(series.to_numpy()))
        else:
            arrays.append(pa.array(series.to_numpy(), from_pandas=True))
    return pa.Table.from_arrays(arrays, names=names)


def _input_table(chunk: Chunk) -> pa.Table:
    if chunk.arrow is not None:
        return chunk.arrow
    arrays = []
    for name in chunk.frame.columns:
        column = chunk.frame[name]
        if column.dtype == object:  # CSV cells (text), or mixed cells: as io.write_parquet writes them
            arrays.append(_text_column(column.to_numpy(dtype=object)))
        else:
            arrays.append(pa.Array.from_pandas(column))
    return pa.Table.from_arrays(arrays, names=[str(name) for name in chunk.frame.columns])


_FORMULA_START = "^[" + "".join("\\" + ch if ch in "-\\]^" else ch for ch in tio.FORMULA_PREFIXES) + "]"


def _rendered_safe(compiled: CompiledRuleset) -> frozenset[str]:
    """Output columns rendered from numbers, dates or booleans: their text never starts like a
    formula (a leading '-' is a negative number, which the guard leaves as it is)."""
    return frozenset(o.key for o in compiled.definition.outputs if o.type in ("number", "integer", "date", "boolean")
                     and o.key != compiled.definition.tier_output)


def _neutralised(text: pd.DataFrame, safe_columns: frozenset[str] = frozenset()) -> pd.DataFrame:
    """`io.write_csv`'s formula guard, applied only to the cells that start like a formula.

    Finding those cells is one Arrow regex pass per column instead of a Python call per cell
    (20M calls for a 1M-row table).
    """
    import pyarrow.compute as pc

    safe = {}
    for name in text.columns:
        values = text[name].to_numpy(dtype=object)
        if name in safe_columns:
            safe[name] = pd.Series(values, index=text.index, dtype=object)
            continue
        try:
            strings = pa.array(values, type=pa.large_string(), from_pandas=True)
            risky = np.asarray(pc.fill_null(pc.match_substring_regex(strings, _FORMULA_START), False), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: look at every cell
            risky = np.ones(len(values), bool)
        if risky.any():
            values = values.copy()
            rows = np.flatnonzero(risky)
            values[rows] = [tio.neutralise_formula(v) if isinstance(v, str) else v for v in values[rows]]
        safe[name] = pd.Series(values, index=text.index, dtype=object)
    return pd.DataFrame(safe, index=text.index, columns=text.columns)


class _Progress:
    """One status line on stderr for long runs (rows done, share, rows/s); none for short ones."""

    def __init__(self, total: int | None, enabled: bool, label: str) -> None:
        self.total, self.enabled, self.label = total, enabled, label
        self.started = time.perf_counter()
        self.shown = False
        self.tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        elapsed = time.perf_counter() - self.started
        if not self.enabled or elapsed < _PROGRESS_AFTER_S:
            return
        share = f" ({done / self.total:.0%})" if self.total else ""
        width = 24
        bar = ""
        if self.total:
            filled = int(width * min(done / self.total, 1.0))
            bar = "[" + "#" * filled + "." * (width - filled) + "] "
        line = f"{self.label}: {bar}{done:,}{'/' + format(self.total, ',') if self.total else ''} rows{share}, " \
               f"{done / elapsed:,.0f} rows/s"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty:
            print(file=sys.stderr)


def evaluate_file(ruleset: Any, input_path: str | os.PathLike, output_path: str | os.PathLike,
                  params: Mapping[str, Any] | None = None, engine: str = "vector", explain: bool = False,
                  chunk_rows: int | None = None, progress: bool = False,
                  on_chunk: Callable[[int], None] | None = None) -> StreamReport:
    """Evaluate a .csv/.parquet file chunk by chunk into a .csv/.parquet file.

    The results equal `engine.evaluate` on the whole table, row for row; the output file appears
    only when complete. `on_chunk(rows_done)` is called after each chunk (tests, progress bars).
    """
    started = time.perf_counter()
    compiled: CompiledRuleset = api.compile(ruleset, params)
    source, target = Path(input_path), Path(output_path)
    kind_in, kind_out = source.suffix.lower(), target.suffix.lower()
    if kind_in not in STREAMABLE or kind_out not in STREAMABLE:
        raise InputError(f"分块处理只支持 .csv/.parquet / chunked evaluation reads and writes .csv or .parquet, "
                         f"not {source.name} → {target.name}")
    if not source.is_file():
        raise InputError(f"输入文件不存在 / input file not found: {source}")
    size = DEFAULT_CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
    if size <= 0:
        raise InputError(f"--chunk-rows 必须为正数 / --chunk-rows must be positive, got {chunk_rows}")
    total = None
    if kind_in == ".parquet":
        try:
            total = pq.ParquetFile(source).metadata.num_rows
        except Exception as exc:  # pyarrow's errors are many and specific
            raise InputError(f"{source.name}: 无法读取 Parquet / cannot read Parquet: {exc}") from exc
        chunks = _parquet_chunks(source, size)
    else:
        chunks = _csv_chunks(source, size)
    meter = _Progress(total, progress, f"tier eval {compiled.id}")

    def results() -> Iterator[tuple[Chunk, pd.DataFrame]]:
        for chunk in chunks:
            yield chunk, api.evaluate(compiled, chunk.frame, engine=engine, explain=explain)

    try:
        rows, ok, count = write_results(compiled, results(), target, meter=meter, on_chunk=on_chunk)
    finally:
        meter.close()
    return StreamReport(rows=rows, ok=ok, error=rows - ok, chunks=count, seconds=time.perf_counter() - started)


def write_results(compiled: CompiledRuleset, results: Iterable[tuple[Chunk, pd.DataFrame]], target: Path,
                  meter: _Progress | None = None,
                  on_chunk: Callable[[int], None] | None = None) -> tuple[int, int, int]:
    """Append evaluated chunks, in order, to one .csv or .parquet file; atomic. → (rows, ok, chunks)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    kind_out = target.suffix.lower()
    rows = ok = count = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    # Parquet encoding and compression run in C++ without the GIL: one background thread writes
    # chunk k while the next chunk is read and evaluated (one chunk in flight, order kept).
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tier-parquet-writer")
    pending: Future | None = None
    with tio.atomic_path(target) as tmp, contextlib.ExitStack() as files:
        # closed (and the Parquet footer written) before atomic_path moves the file into place
        handle = files.enter_context(open(tmp, "w", encoding="utf-8-sig", newline="")) if kind_out == ".csv" else None
        try:
            for chunk, result in results:
                added = [name for name in result.columns[len(chunk.frame.columns):]]
                if kind_out == ".csv":
                    text = _neutralised(out.render_frame(result, compiled), _rendered_safe(compiled))
                    text.to_csv(handle, index=False, header=count == 0, lineterminator="\r\n")
                else:
                    table = _combined(chunk, result, added)
                    if writer is None:
                        schema = _schema(table, result.attrs)
                        writer = pq.ParquetWriter(tmp, schema)
                    if pending is not None:
                        pending.result()  # the previous chunk is on disk (or its error is raised here)
                    pending = background.submit(writer.write_table, table.cast(schema))
                count += 1
                rows += len(result)
                ok += int((result["status"] == "OK").sum())
                if meter is not None:
                    meter.update(rows)
                if on_chunk is not None:
                    on_chunk(rows)
            if pending is not None:
                pending.result()
        finally:
            background.shutdown(wait=True)
            if writer is not None:
                writer.close()
    return rows, ok, count


def _combined(chunk: Chunk, result: pd.DataFrame, added: list[str]) -> pa.Table:
    inputs = _input_table(chunk)
    clash = set(inputs.column_names) & set(added)
    if clash:
        raise InputError(f"输入列与输出列同名 / input column(s) {', '.join(sorted(clash))} have the name of an "
                         f"output column; rename them in the input file")
    outputs = _output_table(result, added)
    return pa.Table.from_arrays([*inputs.columns, *outputs.columns], names=[*inputs.column_names, *added])


def _schema(table: pa.Table, attrs: Mapping[str, Any]) -> pa.Schema:
    """The file's schema from the first chunk: all-blank text columns typed as strings."""
    import json

    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f.remove_metadata()
              for f in table.schema]
    metadata = {"PANDAS_ATTRS": json.dumps(dict(attrs), ensure_ascii=False, default=str)} if attrs else None
    return pa.schema(fields, metadata=metadata)

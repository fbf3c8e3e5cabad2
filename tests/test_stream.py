"""Chunked `tier eval` (engine/stream.py, issue 8): same results as the whole-table path, atomic.

Rows are independent, so evaluating a file in chunks must give exactly what reading it whole
gives: byte for byte for CSV output, cell for cell for Parquet. These tests use chunks of a few
hundred rows so that a file of a few thousand rows crosses many chunk borders.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import api, bench, cli, stream
from engine import io as tio
from engine import outputs as out
from tests.rowgen import random_rows


def _messy_csv(tmp_path: Path, rid: str, rows: int = 2_500, encoding: str = "utf-8-sig") -> Path:
    """Raw cells a workbook would hold (bad values, blanks, 12,000, dates in three forms) as CSV."""
    frame = pd.DataFrame(random_rows(api.compile(rid), rows, seed=17), dtype=object)
    path = tmp_path / f"{rid}.csv"
    frame.map(lambda v: "" if v is None else str(v)).to_csv(path, index=False, encoding=encoding)
    return path


def _whole(rid: str, source: Path, target: Path, explain: bool = False) -> None:
    """The non-chunked `tier eval` path: read whole, evaluate, write."""
    compiled = api.compile(rid)
    result = api.evaluate(compiled, tio.read_table(source), explain=explain)
    tio.write_table(result, out.render_frame(result, compiled), target)


@pytest.mark.parametrize("rid", bench.CORE)
def test_csv_in_chunks_is_byte_identical(tmp_path: Path, rid: str) -> None:
    source = _messy_csv(tmp_path, rid)
    _whole(rid, source, tmp_path / "whole.csv", explain=True)
    report = stream.evaluate_file(rid, source, tmp_path / "chunked.csv", explain=True, chunk_rows=300)
    assert report.chunks == 9 and report.rows == 2_500
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_gb18030_csv_in_chunks(tmp_path: Path) -> None:
    source = _messy_csv(tmp_path, "credit", rows=800, encoding="gb18030")
    _whole("credit", source, tmp_path / "whole.csv")
    stream.evaluate_file("credit", source, tmp_path / "chunked.csv", chunk_rows=128)
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


@pytest.mark.parametrize("rid", bench.CORE)
def test_csv_to_parquet_in_chunks_equals_whole(tmp_path: Path, rid: str) -> None:
    source = _messy_csv(tmp_path, rid, rows=1_500)
    _whole(rid, source, tmp_path / "whole.parquet")
    stream.evaluate_file(rid, source, tmp_path / "chunked.parquet", chunk_rows=200)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chunked.parquet"),
                                  pd.read_parquet(tmp_path / "whole.parquet"))


@pytest.mark.parametrize("rid", bench.CORE)
def test_typed_parquet_in_batches_equals_evaluate(tmp_path: Path, rid: str) -> None:
    """Typed Parquet (floats, timestamps, nullable booleans): outputs equal, inputs kept as stored."""
    compiled = api.compile(rid)
    source = tmp_path / "in.parquet"
    bench.write_parquet_table(compiled, 6_000, str(source), seed=2, block=2_500)
    stream.evaluate_file(rid, source, tmp_path / "out.parquet", chunk_rows=700)
    expected = api.evaluate(compiled, pd.read_parquet(source))
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert list(got.columns) == list(expected.columns)
    for name in expected.columns[-len(compiled.definition.outputs):]:
        pd.testing.assert_series_equal(got[name].astype(object).where(got[name].notna(), None),
                                       expected[name].astype(object).where(expected[name].notna(), None),
                                       check_names=False, check_index=False)
    stored = pq.read_table(source)
    written = pq.read_table(tmp_path / "out.parquet")
    for name in stored.column_names:  # inputs unchanged, types included
        assert written.column(name).equals(stored.column(name).cast(written.schema.field(name).type))
        assert written.schema.field(name).type == stored.schema.field(name).type
    assert b"PANDAS_ATTRS" in (written.schema.metadata or {})  # the run info travels with the file


def test_parquet_to_csv_in_batches_is_byte_identical(tmp_path: Path) -> None:
    compiled = api.compile("guarantee")
    source = tmp_path / "in.parquet"
    bench.write_parquet_table(compiled, 3_000, str(source), seed=9, block=1_000)
    stream.evaluate_file("guarantee", source, tmp_path / "chunked.csv", chunk_rows=450)
    whole = api.evaluate(compiled, pd.read_parquet(source))
    tio.write_table(whole, out.render_frame(whole, compiled), tmp_path / "whole.csv")
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_integer_column_with_nulls_reads_alike_in_every_batch(tmp_path: Path) -> None:
    """pandas makes an int column with a null float64; a null-free batch must not turn int64."""
    counts = pa.array([5, 3, None, 0] + [2] * 996, type=pa.int64())
    table = pa.table({"客户号": pa.array([f"P{i}" for i in range(1000)]),
                      "评估日期": pa.array(["2024-06-30"] * 1000), "存款月日均余额": pa.array([1000.5] * 1000),
                      "近90天客户主动交易笔数": counts})
    source = tmp_path / "ints.parquet"
    pq.write_table(table, source, row_group_size=250)
    stream.evaluate_file("bank_layering", source, tmp_path / "chunked.csv", chunk_rows=100)
    whole = api.evaluate("bank_layering", pd.read_parquet(source))
    tio.write_table(whole, out.render_frame(whole, api.compile("bank_layering")), tmp_path / "whole.csv")
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_header_only_csv_gives_header_only_output(tmp_path: Path) -> None:
    source = tmp_path / "empty.csv"
    source.write_text("评估日期,月均销售额,平均回款天数\n", encoding="utf-8")
    _whole("credit", source, tmp_path / "whole.csv")
    stream.evaluate_file("credit", source, tmp_path / "chunked.csv", chunk_rows=10)
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_failed_run_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _messy_csv(tmp_path, "credit", rows=1_000)
    target = tmp_path / "out" / "graded.parquet"
    real = api.evaluate
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("simulated failure in the third chunk")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "evaluate", failing)
    with pytest.raises(MemoryError):
        stream.evaluate_file("credit", source, target, chunk_rows=200)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no half-written temporary file either


def test_should_stream() -> None:
    assert stream.should_stream("a.parquet", "b.csv")
    assert stream.should_stream("a.csv", "b.parquet", chunk_rows=1000)
    assert not stream.should_stream("missing.csv", "b.csv")  # small (or absent) CSV: whole
    assert not stream.should_stream("a.xlsx", "b.csv", chunk_rows=1000)
    assert not stream.should_stream("a.parquet", "b.xlsx")


def test_cli_eval_streams_with_chunk_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _messy_csv(tmp_path, "bank_layering", rows=1_200)
    assert cli.main(["eval", "bank_layering", str(source), "-o", str(tmp_path / "chunked.csv"),
                     "--chunk-rows", "500"]) == 0
    assert "3 chunk(s)" in capsys.readouterr().err
    assert cli.main(["eval", "bank_layering", str(source), "-o", str(tmp_path / "whole.csv")]) == 0
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_cli_rejects_bad_chunk_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _messy_csv(tmp_path, "credit", rows=10)
    assert cli.main(["eval", "credit", str(source), "-o", str(tmp_path / "o.csv"), "--chunk-rows", "0"]) == 2
    assert "chunk-rows" in capsys.readouterr().err


def test_progress_line_on_long_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(stream, "_PROGRESS_AFTER_S", 0.0)
    compiled = api.compile("credit")
    source = tmp_path / "in.parquet"
    bench.write_parquet_table(compiled, 1_000, str(source))
    stream.evaluate_file("credit", source, tmp_path / "out.parquet", chunk_rows=250, progress=True)
    err = capsys.readouterr().err
    assert "1,000/1,000 rows (100%)" in err
    assert err.count("rows/s") == 4


def test_memory_is_bounded_by_the_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each evaluate call sees at most chunk_rows rows: the whole file is never in one frame."""
    compiled = api.compile("bank_layering")
    source = tmp_path / "in.parquet"
    bench.write_parquet_table(compiled, 5_000, str(source), block=5_000)
    sizes: list[int] = []
    real = api.evaluate

    def spy(ruleset, table, *args, **kwargs):
        sizes.append(len(table))
        return real(ruleset, table, *args, **kwargs)

    monkeypatch.setattr(api, "evaluate", spy)
    stream.evaluate_file("bank_layering", source, tmp_path / "out.parquet", chunk_rows=600)
    assert max(sizes) <= 600 and sum(sizes) == 5_000
    assert np.array_equal(pd.read_parquet(tmp_path / "out.parquet")["customer_id"].to_numpy(dtype=object),
                          pd.read_parquet(source)["customer_id"].to_numpy(dtype=object))


def test_column_limit_applies_to_streamed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The same TIERBOOK_MAX_COLUMNS limit as engine.io, for CSV and Parquet read in chunks."""
    monkeypatch.setenv("TIERBOOK_MAX_COLUMNS", "5")
    wide = pd.DataFrame({f"c{i}": ["1"] for i in range(8)})
    wide.to_csv(tmp_path / "wide.csv", index=False)
    wide.to_parquet(tmp_path / "wide.parquet")
    for name in ("wide.csv", "wide.parquet"):
        assert cli.main(["eval", "credit", str(tmp_path / name), "-o", str(tmp_path / "o.csv"),
                         "--chunk-rows", "10"]) == 2
        assert "8 columns" in capsys.readouterr().err


def _per_cell(frame: pd.DataFrame, compiled) -> pd.DataFrame:
    """render_frame as it was written first: one render_cell call per cell (the reference)."""
    kinds = {o.key: o for o in compiled.definition.outputs}
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if name in kinds and series.dtype.kind not in "fM":
            columns[name] = pd.Series([out.render_cell(v, kinds[name].type) for v in series.to_numpy()],
                                      index=frame.index, dtype=object)
        elif name in kinds:
            columns[name] = out.render_column(series, kinds[name].type, kinds[name].decimals)
        elif name in ("status", "errors", "notes", "fired_rules"):
            columns[name] = series.fillna("").astype(object)
        else:
            columns[name] = series.map(lambda v: out.render_cell(v, "text"), na_action=None).astype(object)
    return pd.DataFrame(columns, index=frame.index, columns=frame.columns)


def test_vectorised_rendering_equals_per_cell_rendering() -> None:
    """The CSV text of every input dtype and output kind is what render_cell gives cell by cell."""
    import datetime as dt

    compiled = api.compile("bank_layering")
    rng = np.random.default_rng(4)
    n = 3_000
    table = bench.generate_table(compiled, n, seed=4)
    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 17, n)
    floats[::7] = np.nan
    extra = pd.DataFrame({
        "f": floats, "i": rng.integers(-5, 5, n), "b": rng.random(n) < 0.5,
        "nb": pd.array(np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.5), dtype="boolean"),
        "o": np.array(["x", None, 3.5, dt.date(2024, 1, 2), "", float("nan"), pd.NA, True] * (n // 8), dtype=object),
        "s": pd.Series(np.where(rng.random(n) < 0.2, None, "文本"), dtype="str"),
        "ts": pd.Series(np.array(["2024-06-30T13:45", "NaT", "1999-01-01"] * (n // 3), dtype="datetime64[s]")),
        "old": pd.Series(np.array(["0099-01-01", "NaT"] * (n // 2), dtype="datetime64[s]")),
        "tz": pd.Series(pd.date_range("2024-01-01", periods=n, freq="h", tz="Asia/Shanghai")),
    })
    frame = pd.concat([table, extra], axis=1)
    result = api.evaluate(compiled, frame, explain=True)
    pd.testing.assert_frame_equal(out.render_frame(result, compiled), _per_cell(result, compiled))

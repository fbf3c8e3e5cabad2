"""The distributed path gives what the vector engine gives (PRODUCT §9, issue 8).

Dask (a test dependency) runs on a local threaded scheduler over 100,000 boundary-rich rows per
core ruleset, split into several partitions; the frames must be equal cell for cell, dtypes
included. Spark runs only where pyspark and a Java runtime are installed (`pip install
"tierbook[scale]"`; not in CI, whose machines lack the 400 MB wheel); it starts a local[2]
session, which takes 10-20 s.
"""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest

from engine import api, bench, cli, distributed
from engine import outputs as out
from tests.rowgen import random_rows

dd = pytest.importorskip("dask.dataframe")


@pytest.mark.parametrize("rid", bench.CORE)
def test_dask_100k_rows_identical_to_vector(rid: str) -> None:
    compiled = api.compile(rid)
    table = bench.generate_table(compiled, 100_000, seed=21)
    import dask

    with dask.config.set({"dataframe.convert-string": False}):  # keep pandas' own str dtype for the inputs
        frame = dd.from_pandas(table, npartitions=7)
    got = distributed.evaluate_dask(rid, frame, explain=True).compute()
    expected = api.evaluate(compiled, table, explain=True)
    expected.attrs = {}
    assert frame.npartitions == 7
    pd.testing.assert_frame_equal(got, expected)


def test_dask_on_messy_cells_with_parameters() -> None:
    """Raw workbook cells (text numbers, bad values, three date forms) and an overridden parameter."""
    rows = random_rows(api.compile("guarantee"), 3_000, seed=8)
    table = pd.DataFrame(rows, dtype=object)
    params = {"risk_visit_interval_days": 7}
    got = distributed.evaluate_dask("guarantee", table, params=params, explain=True).compute()
    expected = api.evaluate("guarantee", table, params=params, explain=True)
    compiled = api.compile("guarantee", params)
    pd.testing.assert_frame_equal(out.render_frame(got, compiled), out.render_frame(expected, compiled))


def test_partition_job_pickles_without_compiled_state() -> None:
    """What travels to a worker is the definition and the overrides, compiled there once."""
    job = distributed._job("credit", {"grade_a_min_score": 85}, explain=False)
    clone = pickle.loads(pickle.dumps(job))  # plain pickle: what a Dask or Spark worker receives
    table = pd.DataFrame({"评估日期": ["2024-06-30"], "月均销售额": ["20000"], "平均回款天数": ["50"]})
    result = clone(table)
    assert result.loc[0, "total_score"] == 80
    assert result.loc[0, "grade"] == "B"  # 80 is A by default; the override (85) travelled with the job
    assert api.evaluate("credit", table).loc[0, "grade"] == "A"


def test_unknown_ruleset_fails_before_any_partition_runs() -> None:
    with pytest.raises(Exception, match="nonexistent"):
        distributed.evaluate_dask("nonexistent", pd.DataFrame({"a": [1]}))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_eval_engine_dask_equals_vector(tmp_path: Path, suffix: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    compiled = api.compile("bank_layering")
    source = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        frame = pd.DataFrame(random_rows(compiled, 2_000, seed=4), dtype=object)
        frame.map(lambda v: "" if v is None else str(v)).to_csv(source, index=False, encoding="utf-8-sig")
    else:
        bench.write_parquet_table(compiled, 2_000, str(source), seed=4, block=500)
    assert cli.main(["eval", "bank_layering", str(source), "-o", str(tmp_path / "dask.csv"), "--engine", "dask"]) == 0
    assert "engine dask" in capsys.readouterr().err
    assert cli.main(["eval", "bank_layering", str(source), "-o", str(tmp_path / "vector.csv")]) == 0
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "vector.csv").read_bytes()


def _spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime for Spark")
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[2]").appName("tierbook-test")
            .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # PySpark 4.x warns about pandas 3
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_spark_identical_to_vector() -> None:
    spark = _spark()
    try:
        for rid in bench.CORE:
            compiled = api.compile(rid)
            table = bench.generate_table(compiled, 20_000, seed=6)
            booleans = {name: object for name in table.columns if str(table[name].dtype) == "boolean"}
            source = spark.createDataFrame(table.astype(booleans).replace({pd.NA: None}))
            got = distributed.evaluate_spark(rid, source, explain=True).toPandas()
            expected = api.evaluate(compiled, table, explain=True)
            for name in expected.columns[len(table.columns):]:
                want = expected[name]
                if want.dtype.kind == "M":  # Spark dates come back as datetime.date
                    want = want.dt.date.astype(object).where(want.notna(), None)
                have = got[name].astype(object).where(got[name].notna(), None)
                assert list(have) == list(want.astype(object).where(want.notna(), None)), (rid, name)
    finally:
        spark.stop()

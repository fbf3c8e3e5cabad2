"""Past one machine: the same compiled ruleset applied per partition on Dask or Spark (PRODUCT §9).

Both entry points run the vector engine itself on each partition — the same parser, the same
error codes, the same exact-decimal fall-back — so a distributed run gives, row for row, what
`engine.evaluate` gives (rows are independent, RULESETS §0.1). Only the ruleset *definition* and
the parameter overrides travel to the workers (plain picklable data); each worker compiles once
and keeps the result in `engine.api`'s cache, so a partition costs no compile.

    import dask.dataframe as dd
    from engine.distributed import evaluate_dask
    graded = evaluate_dask("guarantee", dd.read_parquet("s3://bucket/loans/"))
    graded.to_parquet("s3://bucket/graded/")

    from engine.distributed import evaluate_spark
    graded = evaluate_spark("bank_layering", spark.read.parquet("hdfs:///customers"))
    graded.write.parquet("hdfs:///layered")

`tier eval --engine dask` runs the first on this machine (a local Dask scheduler, one partition
per core). docs/SCALE.md is the guide for a real cluster. dask and pyspark are optional
(`pip install "tierbook[scale]"`); importing this module needs neither.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine import api
from engine.errors import InputError, TierError
from engine.ruleset import RulesetDef

if TYPE_CHECKING:
    from engine.stream import StreamReport

DISTRIBUTED_ENGINES = ("dask", "spark")


@dataclass(frozen=True)
class PartitionJob:
    """Evaluate one partition: a picklable callable (ruleset definition + overrides, no compiled state)."""

    definition: RulesetDef
    params: Mapping[str, Any] = field(default_factory=dict)
    explain: bool = False

    def __call__(self, partition: pd.DataFrame) -> pd.DataFrame:
        compiled = api.compile(self.definition, dict(self.params) or None)
        result = api.evaluate(compiled, partition, explain=self.explain)
        result.attrs = {}  # run info is per run, not per partition (dask compares partition metadata)
        return result


def _job(ruleset: Any, params: Mapping[str, Any] | None, explain: bool) -> PartitionJob:
    compiled = api.compile(ruleset, params)  # fail here, before any partition is scheduled
    # The embedded examples stay behind: workers never run them, and they are read-only
    # mapping proxies, which pickle (Dask, Spark) cannot serialise.
    return PartitionJob(dataclasses.replace(compiled.definition, examples=()), dict(params or {}), explain)


@contextlib.contextmanager
def _quiet_dependencies() -> Iterator[None]:
    """Silence the deprecation notices dask/pyspark raise about the pandas version they run on.

    They concern the libraries' own use of pandas (pandas 3 deprecations), not anything a
    tierbook user can act on, and `-W error` test runs would otherwise fail inside dask.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _missing(package: str, extra: str = "scale") -> TierError:
    return TierError(f"{package} 未安装 / {package} is not installed: pip install \"tierbook[{extra}]\" "
                     f"(or pip install {package})")


# --------------------------------------------------------------------------- Dask
def evaluate_dask(ruleset: Any, frame: Any, params: Mapping[str, Any] | None = None, explain: bool = False) -> Any:
    """A lazy `dask.dataframe.DataFrame`: input columns, then the outputs, per partition.

    `frame` is a Dask DataFrame (or a pandas one, split into one partition per core). Nothing
    runs until the caller computes or writes the result.
    """
    try:
        import dask.dataframe as dd
    except ImportError as exc:
        raise _missing("dask") from exc
    if isinstance(frame, pd.DataFrame):
        import dask

        with dask.config.set({"dataframe.convert-string": False}):  # the input columns keep their dtypes
            frame = dd.from_pandas(frame, npartitions=max(1, min(os.cpu_count() or 1, len(frame) // 50_000 or 1)))
    job = _job(ruleset, params, explain)
    meta = job(frame._meta)
    return frame.map_partitions(job, meta=meta, enforce_metadata=False)


def _read_dask(path: Path, blocksize: str) -> Any:
    """The file as a Dask frame whose partitions hold what engine.io / engine.stream would read."""
    import dask
    import dask.dataframe as dd

    from engine import io as tio
    from engine import stream

    with dask.config.set({"dataframe.convert-string": False}):
        if path.suffix.lower() == ".parquet":
            return dd.read_parquet(str(path), split_row_groups="adaptive", blocksize=blocksize)
        encoding = stream._csv_encoding(path)
        frame = dd.read_csv(str(path), encoding=encoding, dtype=object, keep_default_na=False, na_filter=False,
                            skip_blank_lines=True, blocksize=blocksize)
    tio._check_headers(frame.columns, path.name)
    return frame


def evaluate_file_dask(ruleset: Any, input_path: str | os.PathLike, output_path: str | os.PathLike,
                       params: Mapping[str, Any] | None = None, explain: bool = False,
                       blocksize: str = "64MB", workers: int | None = None) -> StreamReport:
    """`tier eval --engine dask`: partitions evaluated in parallel, written in order to one file.

    Output is one .csv or .parquet file, like the other engines (at most `workers` partitions
    are held in memory at a time); on a cluster write `evaluate_dask(...)` to a dataset instead.
    """
    import dask

    from engine import stream

    started = time.perf_counter()
    source, target = Path(input_path), Path(output_path)
    if source.suffix.lower() not in stream.STREAMABLE or target.suffix.lower() not in stream.STREAMABLE:
        raise InputError(f"--engine dask 只支持 .csv/.parquet / --engine dask reads and writes .csv or .parquet, "
                         f"not {source.name} → {target.name}")
    if not source.is_file():
        raise InputError(f"输入文件不存在 / input file not found: {source}")
    compiled = api.compile(ruleset, params)
    try:
        import dask.dataframe
    except ImportError as exc:
        raise _missing("dask") from exc
    with _quiet_dependencies():
        frame = _read_dask(source, blocksize)
        graded = evaluate_dask(compiled.definition, frame, params, explain)
        parts = graded.to_delayed()
    width = workers or os.cpu_count() or 1
    attrs = api.run_info(compiled, "dask")

    def results() -> Iterator[tuple[stream.Chunk, pd.DataFrame]]:
        for start in range(0, len(parts), width):
            with _quiet_dependencies():
                computed = dask.compute(*parts[start:start + width], scheduler="threads", num_workers=width)
            for result in computed:
                result.attrs["tierbook"] = attrs
                inputs = result.iloc[:, :len(frame.columns)]
                yield stream.Chunk(inputs, None), result

    rows, ok, count = stream.write_results(compiled, results(), target)
    return stream.StreamReport(rows=rows, ok=ok, error=rows - ok, chunks=count, seconds=time.perf_counter() - started)


# --------------------------------------------------------------------------- Spark
_SPARK_TYPES = {"number": "double", "integer": "double", "boolean": "double", "date": "date", "text": "string"}


def spark_output_schema(ruleset: Any, input_schema: Any, params: Mapping[str, Any] | None = None,
                        explain: bool = False) -> Any:
    """The Spark schema of `evaluate_spark`'s result: the input fields, then the outputs."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    compiled = api.compile(ruleset, params)
    fields = list(input_schema.fields)
    names = ["status", "errors", "notes"]
    kinds = {"status": "text", "errors": "text", "notes": "text"}
    tier = compiled.definition.tier_output
    for output in compiled.definition.outputs:
        names.append(output.key)
        kinds[output.key] = "text" if output.key == tier else compiled.fact_types.get(output.key, "text")
    if explain:
        names.append("fired_rules")
        kinds["fired_rules"] = "text"
    for name in names:
        fields.append(StructField(name, _parse_datatype_string(_SPARK_TYPES[kinds[name]]), True))
    return StructType(fields)


@dataclass(frozen=True)
class SparkBatches:
    """The function `mapInPandas` calls: evaluates each Arrow batch (as pandas) of a partition."""

    job: PartitionJob
    dates: tuple[str, ...]
    tier: str | None

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            result = self.job(batch)
            for name in self.dates:  # Spark DateType takes datetime.date, not a timestamp
                result[name] = result[name].dt.date.astype(object).where(result[name].notna(), None)
            if self.tier is not None and result[self.tier].dtype != object:
                result[self.tier] = result[self.tier].astype(object)
            yield result


def evaluate_spark(ruleset: Any, frame: Any, params: Mapping[str, Any] | None = None, explain: bool = False) -> Any:
    """A lazy Spark DataFrame: `frame`'s columns, then the outputs, via `mapInPandas`.

    Needs Python with tierbook on the executors. The tier column is text (`待定` on ERROR rows),
    numbers are doubles, dates Spark dates; column names are used as they are (Spark wants
    backticks around Chinese names in SQL, never in this API).
    """
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise _missing("pyspark") from exc
    compiled = api.compile(ruleset, params)
    job = _job(compiled.definition, params, explain)
    schema = spark_output_schema(compiled.definition, frame.schema, params, explain)
    dates = tuple(o.key for o in compiled.definition.outputs
                  if compiled.fact_types.get(o.key) == "date" and o.key != compiled.definition.tier_output)
    return frame.mapInPandas(SparkBatches(job, dates, compiled.definition.tier_output), schema)

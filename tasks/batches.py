"""Tasks that read an AOI or point table in batches through the shared planner/fetcher, and commit the output.

One path for both kinds of input: :func:`split_input` splits the table into row
ranges once, :func:`read_batch` reads one range's rows (and nothing else of the
file) and reads or samples the collection for them, :func:`commit_output` writes
every staged part in one commit. What differs between AOIs and points is the
kind's options (:class:`AoiOptions`, :class:`PointOptions`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from rasteret_core import Collection, IOStats, SchemaError, Settings, load
from rasteret_core.engine import (
    RowRange,
    TableSplit,
    check_sample_options,
    check_stats,
    read_geometry_table,
    read_row_range,
    split_table,
    transaction_version,
    write_table,
)

from ._common import COMMIT_TAGS, IO_TAGS, RETRY_OPTIONS, retry_if_retryable, stage_table, stream_staged

Kind = Literal["aois", "points"]
Match = Literal["all", "first", "latest", "nearest-date"]
Mode = Literal["overwrite", "append", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AoiOptions:
    """Read AOIs: one row per AOI x record x band, pixels or ``stats`` (``Collection.get_table``'s options)."""

    kind: ClassVar[Kind] = "aois"
    noun: ClassVar[str] = "AOI"
    operation: ClassVar[str] = "extract"

    stats: tuple[str, ...] | None = None
    all_touched: bool = False
    overview: int | None = None

    def __post_init__(self) -> None:
        if self.stats is not None:  # a bad name fails here, once, naming the valid ones
            object.__setattr__(self, "stats", check_stats(self.stats))

    def geometry_column(self, column: str) -> str | None:
        """The input's geometry column (AOIs always have one)."""
        return column

    def columns(self) -> tuple[str, ...]:
        """Input columns these options name (besides the geometry column)."""
        return ()

    def metadata(self) -> dict[str, Any]:
        """These options for the output's commit metadata."""
        return {**({"stats": list(self.stats)} if self.stats is not None else {}),
                **({"all_touched": True} if self.all_touched else {}),
                **({"overview": self.overview} if self.overview is not None else {})}

    def read(self, col: Collection, table: pa.Table, bands: list[str], *, geometry_column: str,
             geometry_crs: str) -> tuple[pa.Table, IOStats]:
        """The output rows of ``table``'s AOIs and the I/O they took."""
        return col.get_table(table, bands, geometry_crs=geometry_crs, geometry_column=geometry_column,
                             all_touched=self.all_touched, overview=self.overview, stats=self.stats)


@dataclass(frozen=True, slots=True, kw_only=True)
class PointOptions:
    """Sample points: one row per point x record x band, or per point x band (``Collection.sample_table``'s options)."""

    kind: ClassVar[Kind] = "points"
    noun: ClassVar[str] = "point"
    operation: ClassVar[str] = "sample"

    match: Match = "all"
    date_column: str | None = None
    x_column: str | None = None
    y_column: str | None = None
    masked: bool = False

    def __post_init__(self) -> None:
        check_sample_options(match=self.match, date_column=self.date_column, x_column=self.x_column,
                             y_column=self.y_column)

    def geometry_column(self, column: str) -> str | None:
        """The input's geometry column, or None when the points are x/y columns."""
        return None if self.x_column is not None else column

    def columns(self) -> tuple[str, ...]:
        """Input columns these options name (besides the geometry column)."""
        return tuple(c for c in (self.x_column, self.y_column, self.date_column) if c is not None)

    def metadata(self) -> dict[str, Any]:
        """These options for the output's commit metadata."""
        return {"match": self.match, "masked": self.masked,
                **{k: v for k, v in (("date_column", self.date_column), ("x_column", self.x_column),
                                     ("y_column", self.y_column)) if v is not None}}

    def read(self, col: Collection, table: pa.Table, bands: list[str], *, geometry_column: str,
             geometry_crs: str) -> tuple[pa.Table, IOStats]:
        """The output rows of ``table``'s points and the I/O they took."""
        return col.sample_table(table, bands, geometry_crs=geometry_crs, geometry_column=geometry_column,
                                x_column=self.x_column, y_column=self.y_column, match=self.match,
                                date_column=self.date_column, masked=self.masked)


BatchOptions = AoiOptions | PointOptions


def batch_options(kind: Kind, **options: Any) -> BatchOptions:
    """The options of ``kind`` (``"aois"`` or ``"points"``), checked.

    Raises:
        StatisticError, SchemaError: an option is invalid (as the kind's class says).
        TypeError: an option the kind does not take.
    """
    kinds: dict[str, type[AoiOptions | PointOptions]] = {"aois": AoiOptions, "points": PointOptions}
    if kind not in kinds:
        raise SchemaError(f"kind={kind!r}; use 'aois' or 'points'")
    return kinds[kind](**options)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchInput:
    """An input table split into row ranges, with what every batch needs to know of it (read once).

    Attributes:
        split: The row ranges (and the copy they read, if the source's row groups were too large).
        crs: The CRS of the input's geometries (or x/y columns), as PROJJSON.
        fingerprint: The source file's size and modification time (``"<bytes>:<mtime ns>"``).
    """

    split: TableSplit
    crs: str
    fingerprint: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """What one batch staged.

    Attributes:
        start: The batch's first input row.
        stop: One past its last input row.
        path: The staged output part.
        inputs: Input rows read (the range's rows, no others).
        input_bytes: Compressed bytes of the input file's row groups read (its footer aside).
        rows: Output rows staged.
        requests: Byte-range requests the pixel reads took.
        bytes: Bytes those requests fetched.
    """

    start: int
    stop: int
    path: str
    inputs: int
    input_bytes: int
    rows: int
    requests: int
    bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputCommit:
    """The output table's new version (None when nothing was committed) and its rows.

    ``already`` says an earlier run of the same append job had committed it (nothing written now).
    """

    version: int | None
    rows: int
    already: bool = False


def append_transaction(operation: str, collection_uri: str, version: int | None, source: str, fingerprint: str,
                       bands: list[str], options: dict[str, Any], *, geometry_column: str,
                       geometry_crs: str | None) -> tuple[str, int]:
    """The Delta transaction ``(app_id, 1)`` naming one append job: the same inputs give the same id.

    The job is the operation, the collection version read, the source file (its URI,
    size and modification time), the bands and the options: a re-run of a job whose
    commit landed before its run was killed appends nothing (``write_table``'s
    ``transaction``); a changed source file, or another collection version, is another job.
    """
    job = json.dumps([operation, collection_uri, version, source, fingerprint, sorted(bands), options,
                      geometry_column, geometry_crs], sort_keys=True, default=str)
    return f"rasteret-{operation}-{hashlib.sha256(job.encode()).hexdigest()[:32]}", 1


def _fingerprint(source: str, settings: Settings) -> str:
    fs, path = settings.arrow_filesystem(source)
    if fs is None:
        stat = os.stat(path)
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    info = fs.get_file_info(path)
    return f"{info.size}:{info.mtime_ns}"


@task(name="split-input", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def split_input(source: str, options: BatchOptions, *, batch_size: int, stage: str, geometry_column: str = "geometry",
                geometry_crs: str | None = None) -> BatchInput:
    """Split the (Geo)Parquet table at ``source`` into row ranges of at most ``batch_size`` rows; check it once.

    Reads the footer (and, when the source's row groups are larger than a batch, streams
    the source once into a copy in ``stage``); finds the input's CRS and checks the columns
    ``options`` name, so a bad input fails here rather than in every batch.
    """
    settings = Settings.from_env()
    split = split_table(source, batch_size=batch_size, folder=stage, settings=settings)
    _, crs = read_geometry_table(split.schema.empty_table(), geometry_column=options.geometry_column(geometry_column),
                                 geometry_crs=geometry_crs)
    missing = [c for c in options.columns() if c not in split.schema.names]
    if missing:
        raise SchemaError(f"{source} has no column(s) {missing} (columns: {split.schema.names})")
    get_run_logger().info("%s: %d %ss in %d batch(es) of at most %d%s", source, split.rows, options.noun,
                          len(split.ranges), batch_size, f" (copied to {split.copy})" if split.copy else "")
    return BatchInput(split=split, crs=crs.to_json(), fingerprint=_fingerprint(source, settings))


@task(name="read-batch", task_run_name="read-{options.kind}-{rows.start}-{rows.stop}", tags=IO_TAGS,
      retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def read_batch(collection_uri: str, version: int, rows: RowRange, bands: list[str], options: BatchOptions, *,
               crs: str, stage: str, geometry_column: str = "geometry") -> BatchResult:
    """Read input rows ``rows`` (only them) and read or sample ``bands`` for them; stage the output rows.

    The rows and columns are the library's for the same options (``Collection.get_table``
    for AOIs, ``Collection.sample_table`` for points); ``crs`` is the input's CRS, found
    once by :func:`split_input`.
    """
    settings = Settings.from_env()
    col = load(collection_uri, version=version, settings=settings)
    table = read_row_range(rows, settings=settings)
    out, io = options.read(col, table, bands, geometry_column=geometry_column, geometry_crs=crs)
    path = stage_table(out, stage, f"{options.kind}-{rows.start:08d}")
    get_run_logger().info("%ss [%d, %d): %d rows, %d requests, %d bytes", options.noun, rows.start, rows.stop,
                          out.num_rows, io.requests, io.bytes)
    return BatchResult(start=rows.start, stop=rows.stop, path=path, inputs=table.num_rows, input_bytes=rows.nbytes,
                       rows=out.num_rows, requests=io.requests, bytes=io.bytes)


@task(name="commit-output", tags=COMMIT_TAGS)
def commit_output(paths: list[str], out_uri: str, *, operation: str, mode: Mode, metadata: dict[str, Any],
                  transaction: tuple[str, int] | None = None) -> OutputCommit:
    """Write the staged output parts to the Delta table at ``out_uri`` in one commit.

    The parts are streamed into the commit a part at a time (memory does not grow with
    the output). Unsigned pixel types are widened to the signed type that holds them
    (Delta has no unsigned types). With ``transaction`` (:func:`append_transaction`) the commit is idempotent: when the
    table already records it, nothing is written (``already``).
    """
    settings = Settings.from_env()
    if transaction is not None:
        done = transaction_version(out_uri, transaction[0], settings=settings)
        if done is not None and done >= transaction[1]:
            get_run_logger().info("%s: this job's rows were committed by an earlier run (%s); nothing appended",
                                  out_uri, transaction[0])
            return OutputCommit(version=None, rows=0, already=True)
    rows = sum(pq.read_metadata(p).num_rows for p in paths)
    # streamed, a part at a time: memory stays flat however many batches the run read
    version = write_table(stream_staged(paths), out_uri, settings=settings, operation=operation, mode=mode,
                          metadata=metadata, transaction=transaction)
    get_run_logger().info("%s: version %d, %d rows", out_uri, version, rows)
    return OutputCommit(version=version, rows=rows)

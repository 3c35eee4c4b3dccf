"""Row ranges of a Parquet table: planned from its footer, each read without the rest of the file.

A pipeline that splits an AOI or point table into batches reads each batch's rows
only: a range is a run of whole row groups, so reading it fetches those row
groups' column chunks and the footer, nothing else. When the source's row groups
are larger than a batch (pyarrow writes up to 1,048,576 rows per group, so most
files are one group), or its footer is large (many row groups: every batch would
read it whole), the source is streamed once into one small file per batch, and
the ranges point at those.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rasteret_core.errors import ConfigError, SourceError
from rasteret_core.settings import Settings

__all__ = ["FOOTER_READ", "RowRange", "TableSplit", "plan_row_ranges", "read_row_range", "split_table"]

FOOTER_READ = 64 * 1024
"""Bytes a Parquet reader (Arrow's) reads first from the end of a file, to find the footer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RowRange:
    """Rows ``[start, stop)`` of a table, held whole by the row groups ``row_groups`` of the Parquet file ``path``.

    Attributes:
        path: The file that holds the rows: the source, or the batch's own file (local path or ``s3://`` URI).
        start: The first row (0-based, in the source's order).
        stop: One past the last row.
        row_groups: The row groups of ``path`` holding exactly these rows, in order.
        nbytes: The compressed bytes of those row groups' column chunks (what reading them fetches,
            the footer aside).
    """

    path: str
    start: int
    stop: int
    row_groups: tuple[int, ...]
    nbytes: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop or not self.row_groups:
            raise ConfigError(f"an empty or inverted row range [{self.start}, {self.stop}) of {self.path}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TableSplit:
    """A Parquet table split into row ranges of at most ``batch_size`` rows.

    Attributes:
        source: The table split (local path or ``s3://`` URI).
        rows: Its rows.
        schema: Its Arrow schema, metadata (GeoParquet ``geo``) included.
        ranges: The row ranges, in order; together they hold every row once.
        copy: The folder of the per-batch files the ranges read, or None when they read ``source``.
        copied_bytes: The compressed bytes of ``source`` read to write them (0 without a copy).
    """

    source: str
    rows: int
    schema: pa.Schema
    ranges: tuple[RowRange, ...]
    copy: str | None = None
    copied_bytes: int = 0


def plan_row_ranges(metadata: pq.FileMetaData, path: str, *, batch_size: int) -> tuple[RowRange, ...] | None:
    """Pack the row groups of a file (``metadata``, its footer) into ranges of at most ``batch_size`` rows.

    Consecutive whole row groups go together while their rows fit in a batch; groups
    without rows are left out. Pure: no I/O.

    Returns:
        The ranges, or None when a row group alone holds more than ``batch_size`` rows
        (the file must be copied with smaller row groups, see :func:`split_table`).
    """
    _check_batch_size(batch_size)
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    if any(g.num_rows > batch_size for g in groups):
        return None
    ranges: list[RowRange] = []
    members: list[int] = []
    start = rows = nbytes = 0
    for i, group in enumerate(groups):
        if members and rows + group.num_rows > batch_size:
            ranges.append(RowRange(path=path, start=start, stop=start + rows, row_groups=tuple(members),
                                   nbytes=nbytes))
            start, rows, nbytes, members = start + rows, 0, 0, []
        if group.num_rows:
            members.append(i)
            rows += group.num_rows
            nbytes += _group_bytes(group)
    if members:
        ranges.append(RowRange(path=path, start=start, stop=start + rows, row_groups=tuple(members), nbytes=nbytes))
    return tuple(ranges)


def split_table(source: str | os.PathLike[str], *, batch_size: int, folder: str, settings: Settings,
                filesystem: Any | None = None) -> TableSplit:
    """Split the Parquet table at ``source`` into row ranges of at most ``batch_size`` rows.

    Reads the footer. The ranges read ``source`` in place when its row groups are no
    larger than a batch and its footer no larger than the first read of any Parquet
    reader (:data:`FOOTER_READ`), so that a range costs its own row groups and that one
    read. Otherwise ``source`` is streamed once (one batch in memory at a time) into one
    small Parquet file per batch in ``folder``. Either way, reading every range once
    reads each byte of the table's data about once, whatever the number of batches.

    Args:
        source: A local path or an ``s3://`` URI (credentials from ``settings``).
        batch_size: Rows per range, at most.
        folder: Where the per-batch files go (a folder every reader of the ranges can reach).
        settings: S3 access.
        filesystem: A ``pyarrow.fs.FileSystem`` to read ``source`` with instead (then
            ``source`` is a path on it).

    Raises:
        SourceError: ``source`` does not exist or is not Parquet.
    """
    _check_batch_size(batch_size)
    source = str(source)
    parquet = _open(source, settings, filesystem)
    metadata, schema = parquet.metadata, parquet.schema_arrow
    ranges = plan_row_ranges(metadata, source, batch_size=batch_size)
    if ranges is not None and metadata.serialized_size <= FOOTER_READ:
        return TableSplit(source=source, rows=metadata.num_rows, schema=schema, ranges=ranges)
    copy = os.path.join(folder, f"input-{uuid.uuid4().hex[:12]}")
    os.makedirs(copy, exist_ok=True)
    copied: list[RowRange] = []
    start = 0
    for chunk in _rechunk(parquet.iter_batches(batch_size=batch_size), batch_size):
        path = os.path.join(copy, f"rows-{start:012d}.parquet")
        written: list[pq.FileMetaData] = []
        pq.write_table(chunk.replace_schema_metadata(schema.metadata), f"{path}.tmp", metadata_collector=written)
        os.replace(f"{path}.tmp", path)
        copied.append(RowRange(path=path, start=start, stop=start + chunk.num_rows, row_groups=(0,),
                               nbytes=sum(_group_bytes(m.row_group(0)) for m in written)))
        start += chunk.num_rows
    return TableSplit(source=source, rows=metadata.num_rows, schema=schema, ranges=tuple(copied), copy=copy,
                      copied_bytes=sum(_group_bytes(metadata.row_group(i)) for i in range(metadata.num_row_groups)))


def read_row_range(rows: RowRange, *, settings: Settings, filesystem: Any | None = None) -> pa.Table:
    """Read the rows of ``rows`` (its row groups and the file's footer, nothing else); schema metadata kept.

    Raises:
        SourceError: the file is gone, is not Parquet, or no longer holds those rows.
    """
    table = _open(rows.path, settings, filesystem).read_row_groups(list(rows.row_groups))
    if table.num_rows != rows.stop - rows.start:
        raise SourceError(f"{rows.path} changed since it was split: row groups {list(rows.row_groups)} hold "
                          f"{table.num_rows} rows, not the {rows.stop - rows.start} of rows "
                          f"[{rows.start}, {rows.stop})")
    return table


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")


def _open(uri: str, settings: Settings, filesystem: Any | None) -> pq.ParquetFile:
    """The Parquet file at ``uri``; one no larger than :data:`FOOTER_READ` is read whole, once."""
    path = uri
    if filesystem is None:
        filesystem, path = settings.arrow_filesystem(uri)
    try:
        source = (filesystem or pafs.LocalFileSystem()).open_input_file(path)
        if source.size() <= FOOTER_READ:  # Arrow would read it all to find the footer, then its chunks again
            with source:
                source = pa.BufferReader(source.readall())
        return pq.ParquetFile(source)
    except FileNotFoundError as exc:
        raise SourceError(f"no table at {uri}") from exc
    except pa.ArrowInvalid as exc:
        raise SourceError(f"cannot read {uri} as Parquet: {exc}") from exc


def _group_bytes(group: pq.RowGroupMetaData) -> int:
    return sum(group.column(c).total_compressed_size for c in range(group.num_columns))


def _rechunk(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Tables of exactly ``size`` rows (the last may hold fewer) from record batches of any size."""
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        rest = batch
        while rest.num_rows:
            take = rest.slice(0, size - rows)
            held.append(take)
            rows += take.num_rows
            rest = rest.slice(take.num_rows)
            if rows == size:
                yield pa.Table.from_batches(held)
                held, rows = [], 0
    if rows:
        yield pa.Table.from_batches(held)

"""Collections and output tables on Delta Lake (a local path or ``s3://``).

Every write is one Delta commit whose ``custom_metadata`` says what happened
(``rasteret.operation``, source, query, counts); never secrets.

Layout of a collection table (chosen by measurement on 100,000 records,
``python -m bench.layouts``; numbers and the rejected layouts in ``bench/README.md``):

- **Partitioned by acquisition month** (``rasteret_month``, derived on every write).
  A month's files hold only that month, so their ``bbox`` statistics stay tight:
  a small bbox + one month opened 1 file of 66 (0.13 s CPU), against 3 of 49
  (0.21 s) for the same clustering without partitions, where files straddling
  two months span the globe.
- **Rows clustered on write**: every commit sorts its rows by month, then by the
  Z-order (Morton) key of the footprint's centre, so each file holds one region
  of one month; ``datetime`` and the nested ``bbox.xmin`` ... statistics prune
  files (the table sets ``delta.dataSkippingNumIndexedCols`` to cover the core
  columns but the JSON ``properties``).
- **Files of about** :data:`TARGET_FILE_SIZE` **bytes, row groups of**
  :data:`ROW_GROUP_ROWS` **rows, Snappy.** Reads prune in two steps: delta-rs
  selects files from their statistics (``file_pruning_predicate``, nested columns
  included), then :meth:`Snapshot.read` filters each kept file on its light
  columns and decodes ``assets`` (the headers, 99 % of the bytes) only for the row
  groups that match. 64 MiB files read more per query; Zstd saved 28 % of the
  bytes but doubled decode time; a Z-order over (datetime, bbox) spread a month
  over half the files.
- :func:`optimize_table` compacts the small files of many small commits within
  each month, or rewrites the table in cluster order.

Ingestion merges on ``id``: :func:`merge_table` updates matched rows and inserts
the rest in one commit, retrying when a concurrent writer committed first.

Commits on S3 are safe without a locking provider: delta-rs writes each
``_delta_log/<version>.json`` with a conditional PUT (``If-None-Match: *``), so
the store refuses (412) the second of two writers racing for one version, which
rebases and retries. The store must honour ``If-None-Match`` (AWS S3 and SeaweedFS
do; ``tests/integration/test_concurrency.py``); for one that does not, pass
``AWS_S3_LOCKING_PROVIDER`` (DynamoDB) in the storage options.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from rasteret_core.errors import AccessDeniedError, CollectionError, SchemaError
from rasteret_core.settings import Settings

from .schema import CORE_FIELDS, INTERNAL_COLUMNS, MONTH, RECORD_HASH, missing_columns, record_hashes

_JITTER = random.Random()  # retry jitter; a private generator leaves the global random state alone

__all__ = [
    "COLLECTION_CONFIGURATION",
    "ROW_GROUP_ROWS",
    "TARGET_FILE_SIZE",
    "Snapshot",
    "cluster_order",
    "merge_table",
    "open_snapshot",
    "optimize_table",
    "read_table",
    "stored_hashes",
    "table_exists",
    "table_history",
    "transaction_version",
    "vacuum_table",
    "write_table",
]

log = logging.getLogger(__name__)

TARGET_FILE_SIZE = 16 * 1024 * 1024
"""Bytes per data file of a collection (see the module docstring for why)."""

ROW_GROUP_ROWS = 128
"""Rows per Parquet row group: the unit a selective read decodes headers of."""

_WRITER = WriterProperties(compression="SNAPPY", max_row_group_size=ROW_GROUP_ROWS)
_MERGE_ATTEMPTS = 8
_READ_THREADS = 4


def _leaf_count(fields: Sequence[pa.Field]) -> int:
    return sum(_leaf_count(list(f.type)) if pa.types.is_struct(f.type) else 1 for f in fields)


# Statistics for every core leaf column but the JSON ``properties`` (min/max of JSON text prunes nothing).
COLLECTION_CONFIGURATION = {
    "delta.dataSkippingNumIndexedCols": str(_leaf_count(CORE_FIELDS) - 1),
    "delta.targetFileSize": str(TARGET_FILE_SIZE),
}
"""Table properties of a new collection table."""


def _options(uri: str, settings: Settings) -> dict[str, str] | None:
    return settings.delta_storage_options() if uri.startswith("s3://") else None


def _commit(operation: str, metadata: Mapping[str, Any] | None,
            transaction: tuple[str, int] | None = None, *, retries: int | None = None) -> CommitProperties:
    meta = {"rasteret.operation": operation}
    for key, value in (metadata or {}).items():
        meta[f"rasteret.{key}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return CommitProperties(custom_metadata=meta, max_commit_retries=retries,
                            app_transactions=None if transaction is None else [Transaction(*transaction)])


def _backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after a conflict: exponential, capped, jittered."""
    return min(5.0, 0.2 * 2.0 ** (attempt - 1)) * (0.5 + _JITTER.random())


def transaction_version(uri: str, app_id: str, *, settings: Settings) -> int | None:
    """The last version the writer ``app_id`` recorded in the table at ``uri`` (Delta ``txn``); None if none.

    None too when there is no table.
    """
    if not table_exists(uri, settings):
        return None
    with _delta_errors(lambda exc: f"{uri}: cannot read the table's transactions: {exc}"):
        dt = DeltaTable(uri, storage_options=_options(uri, settings))
        version = dt.transaction_version(app_id)
        del dt
    return version


def _is_collection(table: pa.Table) -> bool:
    return not missing_columns(table.schema)


def _strip_geo_metadata(table: pa.Table) -> pa.Table:
    # delta-rs keeps no schema metadata; the geo metadata is re-attached on read
    return table.replace_schema_metadata(None)


def table_exists(uri: str, settings: Settings) -> bool:
    """Whether a Delta table exists at ``uri``."""
    return DeltaTable.is_deltatable(uri, storage_options=_options(uri, settings))


def _morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Interleave the bits of two 16-bit grid coordinates (a Z-order key)."""

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64)
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
        spread_bits: np.ndarray = (v | (v << np.uint64(1))) & np.uint64(0x55555555)
        return spread_bits

    key: np.ndarray = spread(x) | (spread(y) << np.uint64(1))
    return key


def cluster_order(table: pa.Table) -> pa.Array:
    """Row order that clusters a collection: by acquisition month, then footprint Z-order.

    Rows without a datetime or bbox sort last within their group.
    """
    if table.num_rows == 0:
        return pa.array([], pa.int64())
    month = pc.fill_null(pc.strftime(table["datetime"], "%Y-%m"), "~")
    bb = table["bbox"]

    def centre(lo: str, hi: str, span: float) -> np.ndarray:
        mid = pc.divide(pc.add(pc.struct_field(bb, lo), pc.struct_field(bb, hi)), 2.0)
        values = pc.fill_null(mid, span / 2).to_numpy(zero_copy_only=False)
        grid: np.ndarray = np.clip((values + span / 2) / span * 65535, 0, 65535)
        return grid

    key = _morton(centre("xmin", "xmax", 360.0), centre("ymin", "ymax", 180.0))
    keys = pa.table({"m": month, "z": pa.array(key)})
    return pc.sort_indices(keys, sort_keys=[("m", "ascending"), ("z", "ascending")])


def _prepare(table: pa.Table) -> pa.Table:
    """A collection's rows as stored: digests and month filled in, clustered; any table without geo metadata."""
    if _is_collection(table):
        derived = {RECORD_HASH: record_hashes(table), MONTH: pc.strftime(table["datetime"], "%Y-%m")}
        for name, values in derived.items():
            if name in table.schema.names:
                table = table.set_column(table.schema.get_field_index(name), name, values)
            else:
                table = table.add_column(table.schema.get_field_index("assets"), name, values)
        table = table.take(cluster_order(table))
    return _strip_geo_metadata(table)


def write_table(
    table: pa.Table | pa.RecordBatchReader,
    uri: str,
    *,
    settings: Settings,
    operation: str,
    mode: Literal["append", "overwrite", "error"] = "append",
    metadata: Mapping[str, Any] | None = None,
    transaction: tuple[str, int] | None = None,
) -> int:
    """Append to (or overwrite, or create) the Delta table at ``uri`` in one commit; return the new version.

    A collection table (one with the core columns) is clustered and gets its
    record digests; a new one gets :data:`COLLECTION_CONFIGURATION`. Any other table
    may come as a ``RecordBatchReader``: its batches are written as they come, so
    memory holds a batch at a time, not the table.

    Appends of concurrent writers both land (delta-rs rebases a blind append on the
    newer version itself); any other conflict (an overwrite racing a writer) is
    retried on the new version, up to eight attempts with jittered backoff (a
    reader, which can be read once, is not retried: the error says to run again).

    ``transaction`` (``(app_id, version)``) makes the write idempotent: the commit
    records it (a Delta ``txn`` action), and a write whose ``app_id`` the table
    already records at ``version`` or later writes nothing and returns the current
    version. A job re-run after a crash that came after its commit so appends nothing
    twice; two runs of it at once commit once (the loser's conflict is retried, and
    then finds the winner's transaction).

    Raises:
        CollectionError: the table cannot be written (or conflicts persisted).
    """
    collection = _is_collection(table)
    streamed = [0]  # rows a reader gave
    if isinstance(table, pa.RecordBatchReader):
        if collection:
            raise CollectionError(f"{uri}: collection rows are clustered before they are written: pass a Table")
        data: pa.Table | pa.RecordBatchReader = _counted(table, streamed)
    else:
        data = _prepare(table)
    schema_mode: Literal["merge", "overwrite"] | None = (
        "merge" if mode == "append" else "overwrite" if mode == "overwrite" else None
    )
    options = _options(uri, settings)
    for attempt in range(1, _MERGE_ATTEMPTS + 1):
        if transaction is not None:
            done = transaction_version(uri, transaction[0], settings=settings)
            if done is not None and done >= transaction[1]:
                version = DeltaTable(uri, storage_options=options).version()
                log.info("%s: %s already committed by writer %s (version %d); nothing written", uri, operation,
                         transaction[0], version)
                return version
        conflict: CommitFailedError | None = None
        with _delta_errors(lambda exc: f"{uri}: cannot write the Delta table: {exc}"):
            # written through a table object, whose version is then the commit's own (a re-read of the
            # latest version may already hold a concurrent writer's next commit)
            target = DeltaTable(uri, storage_options=options) if table_exists(uri, settings) else None
            try:
                write_deltalake(
                    target if target is not None else uri,
                    data,
                    mode=mode,
                    schema_mode=schema_mode,
                    storage_options=options,
                    partition_by=[MONTH] if collection else None,
                    configuration=COLLECTION_CONFIGURATION if collection else None,
                    # a stream's files roll over at the target size: the writer buffers one file, not the table
                    target_file_size=TARGET_FILE_SIZE if collection or isinstance(data, pa.RecordBatchReader) else None,
                    # None (the default) is what write_deltalake takes for "none"; its overloads leave it out
                    writer_properties=_WRITER if collection else cast("WriterProperties", None),
                    commit_properties=_commit(operation, metadata, transaction),
                )
            except CommitFailedError as exc:  # another writer committed first, in a way that conflicts
                conflict = exc
            else:
                version = (target if target is not None else DeltaTable(uri, storage_options=options)).version()
            del target
        if conflict is not None:
            if isinstance(data, pa.RecordBatchReader):
                raise CollectionError(f"{uri}: commit conflicted with a concurrent writer ({conflict}); its rows "
                                      "were streamed and are gone: run again") from conflict
            if attempt == _MERGE_ATTEMPTS:
                raise CollectionError(
                    f"{uri}: commit kept conflicting with concurrent writers ({_MERGE_ATTEMPTS} attempts, last: "
                    f"{conflict}); retry later"
                ) from conflict
            delay = _backoff(attempt)
            log.info("%s: concurrent commit (%s); writing again in %.1f s (attempt %d)", uri, conflict, delay, attempt)
            time.sleep(delay)
            continue
        rows = streamed[0] if isinstance(data, pa.RecordBatchReader) else data.num_rows
        log.info("%s: committed version %d (%s, %d rows)", uri, version, operation, rows)
        return version
    raise AssertionError("unreachable")


def _counted(reader: pa.RecordBatchReader, rows: list[int]) -> pa.RecordBatchReader:
    """``reader`` without schema metadata (delta-rs keeps none), adding the rows it gives to ``rows[0]``."""
    schema = reader.schema.remove_metadata()

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            rows[0] += batch.num_rows
            yield batch.replace_schema_metadata(None)

    return pa.RecordBatchReader.from_batches(schema, batches())


@contextmanager
def _delta_errors(
    failed: Callable[[Exception], str],
    *,
    not_found: str | None = None,
    before: Sequence[tuple[type[Exception], Callable[[Exception], str]]] = (),
) -> Iterator[None]:
    """Raise a :class:`CollectionError` for a delta-rs or I/O error in the block.

    The cases are tried in order: a missing table (``not_found``, if given), then
    ``before`` (``(exception type, message)`` pairs), then any other ``DeltaError`` or
    ``OSError`` (``failed``); other exceptions pass through.
    """
    cases: list[tuple[type[Exception] | tuple[type[Exception], ...], Callable[[Exception], str]]] = []
    if not_found is not None:
        cases.append((TableNotFoundError, lambda _: not_found))
    cases += [*before, ((DeltaError, OSError), failed)]
    try:
        yield
    except Exception as exc:
        if isinstance(exc, (DeltaError, OSError)) and _ACCESS_DENIED.search(str(exc)):
            raise AccessDeniedError(_access_denied(str(exc)), uri=failed(exc).split(": ", 1)[0]) from exc
        for kind, message in cases:
            if isinstance(exc, kind):
                raise CollectionError(message(exc)) from exc
        raise


# How object_store reports a refusal (403/401) or a credential chain that found nothing (it falls back to the
# instance metadata service, 169.254.169.254, and fails there).
_ACCESS_DENIED = re.compile(r"\b40[13] (Forbidden|Unauthorized)\b|lacked the necessary privileges|169\.254\.169\.254")


def _access_denied(text: str) -> str:
    """A delta-rs refusal in one line: no credentials, or the store's status and S3 error code."""
    if "169.254.169.254" in text:
        return ("no AWS credentials found (the credential chain ended at the instance metadata service): set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or AWS_NO_SIGN_REQUEST=YES for a "
                "public bucket")
    status = "401" if "401 Unauthorized" in text else "403"
    code = re.search(r"<Code>(\w+)</Code>", text)
    return (f"access denied to the Delta table (HTTP {status}{' ' + code.group(1) if code else ''}): check AWS_* "
            "credentials (or AWS_PROFILE, AWS_NO_SIGN_REQUEST)")


def merge_table(
    table: pa.Table,
    uri: str,
    *,
    settings: Settings,
    operation: str,
    key: str = "id",
    metadata: Mapping[str, Any] | None = None,
    exists: bool | None = None,
) -> tuple[int, dict[str, int]]:
    """Upsert ``table`` into the Delta table at ``uri`` on ``key`` in one commit (a missing table is created holding it).

    Matched rows are replaced whole, the others inserted. A missing table is
    created with the rows in one commit (version 0); when another writer creates
    it first, the rows are merged into that writer's table instead. When another
    writer commits first (a conflict), the merge is re-run on the new version, up to
    eight times with jittered backoff: concurrent writers lose nothing.

    ``exists`` is whether the caller saw the table a moment ago (None: look; a
    table seen missing may have been created since, which the creation finds).

    Returns:
        The new version and the counts of rows ``inserted`` and ``updated``.

    Raises:
        SchemaError: the rows' columns differ from the table's.
        CollectionError: the table cannot be written (or conflicts persisted).
    """
    data = _prepare(table)
    options = _options(uri, settings)
    for attempt in range(1, _MERGE_ATTEMPTS + 1):
        try:
            if attempt == 1 and not (table_exists(uri, settings) if exists is None else exists) and _create_with(
                    uri, data, settings=settings, collection=_is_collection(table), operation=operation,
                    metadata=metadata):
                log.info("%s: created holding %d rows (version 0)", uri, data.num_rows)
                return 0, {"inserted": data.num_rows, "updated": 0}
            dt = DeltaTable(uri, storage_options=options)
            _check_columns(uri, dt, data)
            result = (
                dt.merge(
                    data,
                    predicate=f"t.`{key}` = s.`{key}`",
                    source_alias="s",
                    target_alias="t",
                    merge_schema=RECORD_HASH not in dt.schema().to_arrow().names and RECORD_HASH in data.schema.names,
                    writer_properties=_WRITER,
                    commit_properties=_commit(operation, metadata),
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
            version = dt.version()
        except CommitFailedError as exc:
            if attempt == _MERGE_ATTEMPTS:
                raise CollectionError(
                    f"{uri}: merge kept conflicting with concurrent writers ({_MERGE_ATTEMPTS} attempts, last: {exc}); "
                    "retry later"
                ) from exc
            delay = _backoff(attempt)
            log.info("%s: concurrent commit (%s); merging again in %.1f s (attempt %d)", uri, exc, delay, attempt)
            time.sleep(delay)
            continue
        except (DeltaError, OSError) as exc:
            raise CollectionError(f"{uri}: cannot merge into the Delta table: {exc}") from exc
        counts = {"inserted": int(result["num_target_rows_inserted"]), "updated": int(result["num_target_rows_updated"])}
        log.info("%s: merged into version %d (%s)", uri, version, counts)
        return version, counts
    raise AssertionError("unreachable")


def _create_with(uri: str, data: pa.Table, *, settings: Settings, collection: bool, operation: str,
                 metadata: Mapping[str, Any] | None) -> bool:
    """Create the table at ``uri`` holding ``data``, in one commit; False when another writer created it first.

    The commit is not retried: delta-rs would retry a losing creation as a blind
    append, and two writers creating one table at once would both commit their rows
    (duplicating shared ids). The loser finds the table and merges into it instead.
    """
    try:
        write_deltalake(uri, data, mode="error", storage_options=_options(uri, settings),
                        partition_by=[MONTH] if collection else None,
                        configuration=COLLECTION_CONFIGURATION if collection else None,
                        target_file_size=TARGET_FILE_SIZE if collection else None, writer_properties=_WRITER,
                        commit_properties=_commit(operation, metadata, retries=0))
    except (CommitFailedError, DeltaError) as exc:
        if not table_exists(uri, settings):  # not a lost creation race: a real failure
            raise
        log.info("%s: created concurrently by another writer (%s); merging into it", uri, exc)
        return False
    return True


def _check_columns(uri: str, dt: DeltaTable, data: pa.Table) -> None:
    have = set(dt.schema().to_arrow().names) - set(INTERNAL_COLUMNS)
    differ = have ^ (set(data.schema.names) - set(INTERNAL_COLUMNS))
    if differ:
        raise SchemaError(
            f"{uri}: the new records' columns differ from the collection's ({sorted(differ)}); "
            "build with the same bands and columns, or into a new URI"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """One version of a Delta table, pinned: reads return that version whatever commits later.

    Attributes:
        uri: The table.
        version: The pinned version.
        num_rows: Rows in that version (from the log's file statistics).
        schema: Its Arrow schema.
    """

    uri: str
    version: int
    num_rows: int
    schema: pa.Schema
    storage_options: dict[str, str] | None = field(default=None, repr=False)  # credentials: never shown

    def _table(self) -> DeltaTable:
        with _delta_errors(lambda exc: f"{self.uri}: cannot open version {self.version}: {exc}"):
            return DeltaTable(self.uri, version=self.version, storage_options=self.storage_options)

    def read(
        self,
        *,
        bbox: Sequence[float] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        where: pc.Expression | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Read the rows that may meet the conditions, opening only the files that may hold them.

        Args:
            bbox: ``(xmin, ymin, xmax, ymax)`` in OGC:CRS84: rows whose ``bbox`` covering
                overlaps it (a superset of the footprints meeting it).
            start: rows acquired at or after this instant.
            end: rows acquired at or before this instant.
            where: any further row condition, a ``pyarrow.compute`` expression.
            columns: the columns to read (all by default).

        Files are chosen from their min/max statistics (delta-rs), rows by pyarrow;
        the rows returned meet every condition exactly (the bbox one on the covering).
        """
        sql: list[str] = []
        expr = where
        if start is not None:
            sql.append(f"datetime >= '{start.isoformat()}'")
            expr = _and(expr, pc.field("datetime") >= pa.scalar(start, pa.timestamp("us", tz="UTC")))
        if end is not None:
            sql.append(f"datetime <= '{end.isoformat()}'")
            expr = _and(expr, pc.field("datetime") <= pa.scalar(end, pa.timestamp("us", tz="UTC")))
        if bbox is not None:
            xmin, ymin, xmax, ymax = (float(v) for v in bbox)
            sql.append(f"bbox.xmin <= {xmax!r} AND bbox.xmax >= {xmin!r} AND bbox.ymin <= {ymax!r} AND bbox.ymax >= {ymin!r}")
            overlap = ((pc.field("bbox", "xmin") <= xmax) & (pc.field("bbox", "xmax") >= xmin)
                       & (pc.field("bbox", "ymin") <= ymax) & (pc.field("bbox", "ymax") >= ymin))
            expr = _and(expr, overlap | ~pc.field("bbox").is_valid())
        dt = self._table()
        try:
            dataset = dt.to_pyarrow_dataset(file_pruning_predicate=" AND ".join(sql) if sql else None)
            log.debug("%s v%d: reading %d file(s) for %s", self.uri, self.version, len(dataset.files), sql)
            names = list(columns) if columns is not None else dataset.schema.names
            if expr is None:
                return dataset.to_table(columns=names)
            return _read_in_two_steps(dataset, names, expr)
        except (DeltaError, OSError, pa.ArrowInvalid) as exc:
            raise CollectionError(f"{self.uri} v{self.version}: cannot read the table: {exc}") from exc
        finally:
            del dt


def _read_in_two_steps(dataset: Any, names: list[str], expr: pc.Expression) -> pa.Table:
    """Filter on the light columns first, then read ``names`` only from the row groups that match.

    The headers in ``assets`` are nearly all of a collection's bytes; a selective
    query touches a few of a file's row groups (pyarrow does not prune row groups
    on nested statistics itself). The filter runs on the light columns only, read
    with the table's types (files written by a merge hold view types that pyarrow
    will not compare with the table's in a pushed-down filter); the matching rows
    are then taken by position, without copying when every row matches.
    """
    import pyarrow.dataset  # here, not at the top: it pulls in pandas (about 1 s of a cold start)

    light = [n for n in dataset.schema.names if n != "assets"]

    def one(fragment: Any) -> pa.Table | None:
        rows = fragment.to_table(schema=dataset.schema, columns=light)
        rows = rows.append_column("__row", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        try:
            hits = pyarrow.dataset.dataset(rows).to_table(columns=["__row"], filter=expr)["__row"].to_numpy()
        except pa.ArrowInvalid:  # the condition names a heavy column: filter the whole file
            return fragment.to_table(schema=dataset.schema).filter(expr).select(names)
        if hits.size == 0:
            return None
        sizes = np.array([rg.num_rows for rg in fragment.row_groups])
        starts = np.cumsum(sizes) - sizes
        group_of = np.searchsorted(starts, hits, side="right") - 1
        groups = np.unique(group_of)
        if 2 * len(groups) < len(sizes):  # a few row groups of the file: read those, index within them
            fragment = fragment.subset(row_group_ids=groups.tolist())
            offset = np.cumsum(sizes[groups]) - sizes[groups]
            hits = hits - starts[group_of] + offset[np.searchsorted(groups, group_of)]
        table = fragment.to_table(schema=dataset.schema, columns=names)
        return table if len(hits) == table.num_rows else table.take(pa.array(hits))

    # pyarrow releases the GIL while it reads and decodes: files are read side by side
    with ThreadPoolExecutor(max_workers=_READ_THREADS, thread_name_prefix="rasteret-scan") as pool:
        parts = [part for part in pool.map(one, dataset.get_fragments()) if part is not None]
    if not parts:
        return dataset.schema.empty_table().select(names)
    return pa.concat_tables(parts)


def _and(a: pc.Expression | None, b: pc.Expression) -> pc.Expression:
    return b if a is None else a & b


def open_snapshot(
    uri: str, *, settings: Settings, version: int | None = None, as_of: datetime | str | None = None
) -> Snapshot:
    """Pin a version of the table at ``uri``: the latest, ``version``, or the one current at ``as_of``.

    ``as_of`` is a datetime (naive means UTC) or an ISO 8601 string; the version is
    the last one whose commit timestamp (the one :func:`table_history` shows,
    written in the commit, to the millisecond) is at or before it. Delta's own
    timestamp travel uses the commit files' modification times, which object
    stores keep to the second, so commits made within a second would be confused.
    Reads no data, only the log.

    Raises:
        CollectionError: no table at ``uri``, or no such version.
    """
    if version is not None and as_of is not None:
        raise CollectionError("pass version= or as_of=, not both")
    options = _options(uri, settings)
    with _delta_errors(
        lambda exc: f"{uri}: cannot open the Delta table (version={version}, as_of={as_of}): {exc}; "
                    "see collection.history() for the versions there are",
        not_found=f"{uri}: no collection (Delta table) here; build one first",
        before=((ValueError, lambda _: f"{uri}: as_of={as_of!r} is not an ISO 8601 date and time"),),
    ):
        dt = DeltaTable(uri, version=version, storage_options=options)
        if as_of is not None:
            dt.load_as_version(_version_at(uri, dt, as_of))
        counts = pa.table(dt.get_add_actions()).column("num_records")
        snapshot = Snapshot(
            uri=uri,
            version=dt.version(),
            num_rows=int(pc.sum(counts).as_py() or 0),
            schema=pa.schema(dt.schema().to_arrow()),
            storage_options=options,
        )
        del dt
    return snapshot


def _version_at(uri: str, dt: DeltaTable, as_of: datetime | str) -> int:
    when = as_of if isinstance(as_of, datetime) else datetime.fromisoformat(str(as_of))
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    stamp = when.timestamp() * 1000
    for entry in dt.history():  # newest first
        if entry["timestamp"] <= stamp:
            return int(entry["version"])
    raise CollectionError(f"{uri}: no version was committed at or before {when.isoformat()}; see collection.history()")


def read_table(
    uri: str, *, settings: Settings, version: int | None = None, as_of: datetime | str | None = None
) -> tuple[pa.Table, int]:
    """Read a whole Delta table (a version, or the version current at ``as_of``); return it and its version."""
    snapshot = open_snapshot(uri, settings=settings, version=version, as_of=as_of)
    return snapshot.read(), snapshot.version


def stored_hashes(uri: str, *, settings: Settings) -> tuple[int | None, dict[str, str | None]]:
    """The latest version and each of its records' digest by id (None where a row has none).

    ``(None, {})`` when there is no table. Reads two columns, not the headers.
    """
    if not table_exists(uri, settings):
        return None, {}
    snapshot = open_snapshot(uri, settings=settings)
    columns = ["id", RECORD_HASH] if RECORD_HASH in snapshot.schema.names else ["id"]
    table = snapshot.read(columns=columns)
    hashes = table[RECORD_HASH].to_pylist() if RECORD_HASH in columns else [None] * table.num_rows
    return snapshot.version, dict(zip(table["id"].to_pylist(), hashes, strict=True))


def table_history(uri: str, *, settings: Settings, limit: int | None = None) -> list[dict[str, Any]]:
    """The commits of the table at ``uri``, newest first.

    Each entry: ``version``, ``timestamp`` (aware datetime), ``operation`` (Rasteret's
    name, else Delta's), ``delta_operation``, ``metadata`` (Rasteret's commit
    metadata, JSON values decoded) and ``metrics`` (Delta's operation metrics).
    """
    try:
        dt = DeltaTable(uri, storage_options=_options(uri, settings))
    except TableNotFoundError as exc:
        raise CollectionError(f"{uri}: no collection (Delta table) here") from exc
    out = []
    for entry in dt.history(limit):
        meta = {k.removeprefix("rasteret."): _decode(v) for k, v in entry.items() if k.startswith("rasteret.")}
        out.append(
            {
                "version": entry.get("version"),
                "timestamp": datetime.fromtimestamp(entry["timestamp"] / 1000, tz=UTC),
                "operation": meta.pop("operation", entry.get("operation")),
                "delta_operation": entry.get("operation"),
                "metadata": meta,
                "metrics": entry.get("operationMetrics", {}),
            }
        )
    del dt
    return out


def _decode(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def optimize_table(
    uri: str, *, settings: Settings, recluster: bool = False, target_size: int | None = None
) -> tuple[int, dict[str, Any]]:
    """Compact the table's small files, or (``recluster``) rewrite it in cluster order; one commit.

    Compaction (delta-rs) bin-packs small files in commit order, which keeps the
    time clustering of chronological ingestions; it is cheap and commutes with
    concurrent appends. ``recluster`` reads the whole version and rewrites it
    sorted by :func:`cluster_order` (an overwrite: it holds the table in memory
    and conflicts with concurrent writers): for tables whose ingestions came out
    of time order. A Z-order on (datetime, bbox) was measured and rejected: it
    spreads one month over a quarter of the files (``bench/README.md``).

    Returns the version after (unchanged when there was nothing to do) and the
    metrics (``numFilesAdded``, ``numFilesRemoved``, ...).
    """
    options = _options(uri, settings)
    with _delta_errors(
        lambda exc: f"{uri}: optimize failed: {exc}; no commit was made, retry",
        not_found=f"{uri}: no collection (Delta table) here",
        before=((CommitFailedError, lambda exc: f"{uri}: optimize lost a race with another writer ({exc}); run it again"),),
    ):
        dt = DeltaTable(uri, storage_options=options)
        before = dt.version()
        files = len(dt.file_uris())
        if recluster:
            table = dt.to_pyarrow_table()
            write_deltalake(uri, _prepare(table), mode="overwrite", storage_options=options, partition_by=[MONTH],
                            target_file_size=target_size or TARGET_FILE_SIZE, writer_properties=_WRITER,
                            commit_properties=_commit("optimize", {"recluster": True, "records": table.num_rows}))
            dt.update_incremental()
            metrics = {"numFilesRemoved": files, "numFilesAdded": len(dt.file_uris())}
        else:
            metrics = dt.optimize.compact(target_size=target_size or TARGET_FILE_SIZE, writer_properties=_WRITER,
                                          commit_properties=_commit("optimize", {"recluster": False}))
        version = dt.version()
        del dt
    log.info("%s: optimize v%d -> v%d (%s)", uri, before, version, metrics)
    return version, metrics


def vacuum_table(
    uri: str,
    *,
    settings: Settings,
    retention_hours: float | None = None,
    dry_run: bool = True,
    enforce_retention_duration: bool = True,
) -> list[str]:
    """List (``dry_run``) or delete the files no version within the retention still uses.

    Versions older than the retention can no longer be loaded once their files are
    gone. ``retention_hours`` defaults to the table's (one week); less than that
    needs ``enforce_retention_duration=False``.

    Returns:
        The files removed (or that would be).
    """
    with _delta_errors(
        lambda exc: f"{uri}: vacuum failed: {exc}; a retention shorter than the table's needs "
                    "enforce_retention_duration=False",
        not_found=f"{uri}: no collection (Delta table) here",
    ):
        dt = DeltaTable(uri, storage_options=_options(uri, settings))
        hours = None if retention_hours is None else int(retention_hours)
        files = dt.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=enforce_retention_duration,
                          commit_properties=None if dry_run else _commit("vacuum", {"retention_hours": hours}))
        del dt
    log.info("%s: vacuum %s %d file(s)", uri, "would remove" if dry_run else "removed", len(files))
    return list(files)

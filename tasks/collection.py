"""Tasks that build and update collections: each wraps one step of the core's ingestion (see `rasteret_core`).

Search and normalise (:func:`search_records`), select the changed records against the
stored digests (:func:`select_changed_records`) or the rows lacking headers
(:func:`select_unenriched`), parse headers by partition (:func:`parse_scene_headers`),
merge once (:func:`commit_collection`), quarantine what failed (:func:`quarantine_scenes`).
Each returns a small frozen dataclass; rows travel as staged Parquet files.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from rasteret_core import FetchError, Settings, load
from rasteret_core.engine import (
    Changes,
    HeaderFailure,
    MergeResult,
    Refresh,
    drop_failures,
    enrich_records,
    merge_changes,
    read_digests,
    records_from_stac,
    select_changed,
    select_for_enrichment,
    write_table,
)

from ._common import (
    COMMIT_TAGS,
    IO_TAGS,
    RETRY_OPTIONS,
    attempt,
    read_manifest,
    read_rows,
    read_staged,
    retry_if_retryable,
    stage_folder,
    stage_table,
    write_atomically,
    write_manifest,
)

QUARANTINE_SCHEMA = pa.schema([
    ("record_id", pa.string()), ("band", pa.string()), ("href", pa.string()), ("error", pa.string()),
    ("retryable", pa.bool_()), ("collection", pa.string()), ("collection_version", pa.int64()),
    ("flow_run", pa.string()), ("quarantined_at", pa.timestamp("us", tz="UTC")),
])
"""One row per asset whose header could not be parsed, per run that tried."""

SELECTION_ROW_GROUP = 1024
"""Rows per row group of a staged selection: each partition task decodes the groups holding its rows."""


def quarantine_uri_for(uri: str) -> str:
    """The default quarantine table of a collection: ``<uri>_quarantine`` beside it."""
    return uri.rstrip("/") + "_quarantine"


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedRecords:
    """The records a STAC search found, staged.

    Attributes:
        path: The staged records (Parquet).
        records: How many.
        metadata: The search as commit metadata (:class:`rasteret_core.engine.StacRecords`).
    """

    path: str
    records: int
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectedRecords:
    """The records to parse headers of, staged and sorted by id, and how they were chosen.

    Attributes:
        stage: The staging folder of the selection and its partitions.
        path: The staged rows (Parquet); partitions are row ranges of it.
        changes_path: The :class:`rasteret_core.engine.Changes` (JSON) the commit reports.
        records: Records considered.
        selected: Rows staged (new or changed; or lacking headers).
        base_version: The collection version they were compared with (None: no table yet).
    """

    stage: str
    path: str
    changes_path: str
    records: int
    selected: int
    base_version: int | None

    def partitions(self, size: int) -> list[tuple[int, int]]:
        """Row ranges ``[start, stop)`` of at most ``size`` rows covering the staged rows."""
        return [(start, min(start + size, self.selected)) for start in range(0, self.selected, size)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedPartition:
    """One partition's headers parsed and its rows staged.

    Attributes:
        path: The staged rows, headers filled in (null where they failed).
        start: First row of the partition.
        stop: Row after its last.
        records: Rows in it.
        parsed: Headers parsed.
        failures: Assets whose header failed (after the task's retries).
        requests: Requests made.
        bytes_read: Bytes read.
        attempts: The attempt that finished it.
        resumed: Staged by an earlier run or attempt (nothing read now).
    """

    path: str
    start: int
    stop: int
    records: int
    parsed: int
    failures: tuple[HeaderFailure, ...]
    requests: int
    bytes_read: int
    attempts: int
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        """This partition as a JSON manifest (:meth:`from_json` reads it back)."""
        return {**dataclasses.asdict(self), "failures": [dataclasses.asdict(f) for f in self.failures]}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ParsedPartition:
        """The partition a manifest describes."""
        return cls(**{**value, "failures": tuple(HeaderFailure(**f) for f in value["failures"])})


@dataclass(frozen=True, slots=True, kw_only=True)
class Quarantined:
    """What :func:`quarantine_scenes` appended: the quarantine table's new version, and assets."""

    version: int
    assets: int


@task(name="search-records", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def search_records(
    stac_api: str, collection: str, *, stage: str, bbox: list[float] | None = None, datetime: str | None = None,
    intersects: dict[str, Any] | None = None, query: dict[str, Any] | None = None,
    bands: dict[str, str] | None = None, max_items: int | None = None, href_rewrites: dict[str, str] | None = None,
) -> StagedRecords:
    """Search a STAC API (all pages), normalise the items to collection rows (``records_from_stac``), stage them."""
    found = records_from_stac(stac_api, collection=collection, bbox=bbox, datetime=datetime, intersects=intersects,
                              query=query, bands=bands, max_items=max_items, href_rewrites=href_rewrites,
                              timeout=Settings.from_env().request_timeout)
    path = stage_table(found.table, stage, "records")
    get_run_logger().info("found %d items in %s at %s (query applied: %s)", found.table.num_rows, collection,
                          found.metadata["source"], found.metadata["query_applied"])
    return StagedRecords(path=path, records=found.table.num_rows, metadata=found.metadata)


@task(name="select-changed-records", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def select_changed_records(records_path: str, uri: str, *, stage: str) -> SelectedRecords:
    """Compare staged records with the collection's stored digests (``select_changed``); stage the changed ones.

    Reads the collection's ids and digests only, never a header: records it already
    holds as they are (headers parsed) are left out here, before any header is read.
    """
    table = pq.read_table(records_path)
    stored = read_digests(uri, settings=Settings.from_env())
    change = select_changed(table, stored, enrich=True)
    selected = _stage_selection(change.table, change.changes, stage, "changed")
    get_run_logger().info("%s (v%s): %d of %d record(s) new or changed, %d unchanged", uri, stored.version,
                          selected.selected, table.num_rows, change.changes.unchanged)
    return selected


@task(name="select-unenriched-records", tags=["rasteret"])
def select_unenriched(uri: str, *, version: int | None, partition_size: int,
                      refresh: Refresh = False) -> SelectedRecords:
    """Pin a collection version and stage the rows to parse (``select_for_enrichment``: lacking a header, see ``refresh``).

    The staging folder is keyed by the collection URI, the pinned version and the
    options, so a re-run after a crash finds the partitions it already finished.
    Rows are sorted by id: the same version always splits the same way.
    """
    settings = Settings.from_env()
    col = load(uri, version=version, settings=settings)
    stage = stage_folder(settings, "enrich", uri, col.version, partition_size, refresh)
    todo = select_for_enrichment(col.to_arrow(), refresh=refresh, settings=settings)
    changes = Changes(records=todo.num_rows, base_version=col.version)
    selected = _stage_selection(todo, changes, stage, "records")
    get_run_logger().info("%s v%d: %d of %d records lack header metadata", uri, col.version, todo.num_rows, len(col))
    return selected


def _stage_selection(table: pa.Table, changes: Changes, stage: str, name: str) -> SelectedRecords:
    """Stage ``table`` sorted by id as ``stage/<name>.parquet`` and ``changes`` beside it (kept when present)."""
    path = os.path.join(stage, f"{name}.parquet")
    changes_path = os.path.join(stage, f"{name}-changes.json")
    if not os.path.exists(path):
        write_atomically(table.sort_by("id"), path, row_group_size=SELECTION_ROW_GROUP)
    if read_manifest(changes_path) is None:
        write_manifest(changes_path, changes.to_json())
    return SelectedRecords(stage=stage, path=path, changes_path=changes_path, records=changes.records, selected=table.num_rows,
                           base_version=changes.base_version)


@task(name="parse-scene-headers", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def parse_scene_headers(records_path: str, start: int, stop: int, *, stage: str,
                        refresh: Refresh = False) -> ParsedPartition:
    """Parse the COG headers of rows ``[start, stop)`` of a staged record table (``enrich_records``); stage the rows.

    A partition that an earlier attempt or run finished (its manifest exists under
    ``stage``) is not read again. When an asset fails with a retryable error the
    partition raises, so Prefect retries it, until the last attempt, which records
    the failure like a final one (a corrupt file): such assets keep a null header
    and are returned in ``failures``, never dropped.
    """
    log = get_run_logger()
    name = os.path.join(stage, f"part-{start:08d}-{stop:08d}")
    done = read_manifest(f"{name}.json")
    if done is not None:
        log.info("partition [%d, %d): staged by an earlier run; skipped", start, stop)
        return dataclasses.replace(ParsedPartition.from_json(done), resumed=True)
    settings = Settings.from_env()
    number, last = attempt()
    table = read_rows(records_path, start, stop)  # its row groups only: not the whole selection per partition
    result = enrich_records(table, settings=settings, refresh=refresh is True)  # "stale": cleared at selection
    retryable = [f for f in result.failures if f.retryable]
    if retryable and not last:
        raise FetchError(
            f"partition [{start}, {stop}), attempt {number}: {len(retryable)} header(s) failed with retryable "
            f"errors, first: {retryable[0].error}",
            uri=retryable[0].href,
            retryable=True,
        )
    write_atomically(result.table, f"{name}.parquet")
    parsed = ParsedPartition(path=f"{name}.parquet", start=start, stop=stop, records=table.num_rows,
                             parsed=result.parsed, failures=result.failures, requests=result.stats.requests,
                             bytes_read=result.stats.bytes, attempts=number)
    write_manifest(f"{name}.json", parsed.to_json())
    log.info(
        "partition [%d, %d): %d headers parsed, %d failed, %d requests, %d bytes (attempt %d)",
        start, stop, result.parsed, len(result.failures), result.stats.requests, result.stats.bytes, number,
    )
    return parsed


@task(name="commit-collection", tags=COMMIT_TAGS)
def commit_collection(
    paths: list[str],
    uri: str,
    *,
    changes_path: str,
    operation: str,
    parsed: int,
    metadata: dict[str, Any],
    left_out: list[HeaderFailure] | None = None,
) -> MergeResult:
    """Merge the staged partitions into the collection at ``uri`` on id in one Delta commit (``merge_changes``).

    The records of ``left_out`` (headers that failed, under ``partial``) are not
    committed and are listed in the commit's metadata; the other rows are merged as
    staged (a failed header stays null). No rows: no commit.
    """
    staged_changes = read_manifest(changes_path)
    if staged_changes is None:
        raise FileNotFoundError(f"the selection's changes are not staged at {changes_path}")
    changes = Changes.from_json(staged_changes)
    table = read_staged(paths)
    left = left_out or []
    if left:
        table = drop_failures(table, left, partial=True)
    merged = merge_changes(table, uri, changes=changes, settings=Settings.from_env(), operation=operation,
                           parsed=parsed, skipped=left, metadata=metadata)
    get_run_logger().info("%s: version %s (%d inserted, %d updated%s)", uri, merged.version, merged.inserted,
                          merged.updated, "" if merged.committed else "; nothing committed")
    return merged


@task(name="quarantine-scenes", tags=COMMIT_TAGS)
def quarantine_scenes(
    failures: list[HeaderFailure], quarantine_uri: str, *, collection_uri: str, version: int | None, run: str
) -> Quarantined:
    """Append the assets whose headers failed, with their errors, to the quarantine Delta table."""
    settings = Settings.from_env()
    now = datetime.now(UTC)
    rows = [
        {**{k: getattr(f, k) for k in ("record_id", "band", "href", "error", "retryable")},
         "collection": collection_uri, "collection_version": version, "flow_run": run, "quarantined_at": now}
        for f in failures
    ]
    table = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
    scenes = pc.count_distinct(table["record_id"]).as_py()
    written = write_table(table, quarantine_uri, settings=settings, operation="quarantine", mode="append",
                          metadata={"collection": collection_uri, "collection_version": version,
                                    "assets": len(rows), "scenes": scenes})
    get_run_logger().warning("%s: quarantined %d asset(s) of %d scene(s) (collection version %s)", quarantine_uri,
                             len(rows), scenes, version)
    return Quarantined(version=written, assets=len(rows))

"""Tasks that build and update collections: search, select, parse headers by partition, commit, quarantine."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from rasteret_core import FetchError, Settings, enrich_records, load, records_from_items, search_items
from rasteret_core._delta import merge_table, write_table

from ._common import (
    COMMIT_TAGS,
    IO_TAGS,
    RETRY_OPTIONS,
    attempt,
    read_manifest,
    read_staged,
    retry_if_retryable,
    stage_folder,
    stage_table,
    write_atomically,
    write_manifest,
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("band", pa.string()),
        ("href", pa.string()),
        ("error", pa.string()),
        ("retryable", pa.bool_()),
        ("collection", pa.string()),
        ("collection_version", pa.int64()),
        ("flow_run", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)
"""One row per asset whose header could not be parsed, per run that tried."""


@task(name="search-records", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def search_records(
    stac_api: str,
    collection: str,
    *,
    stage: str,
    bbox: list[float] | None = None,
    datetime: str | None = None,
    bands: dict[str, str] | None = None,
    max_items: int | None = None,
) -> dict[str, Any]:
    """Search a STAC API (all pages), normalise the items to collection rows, stage them; return path and count."""
    items = search_items(stac_api, collections=collection, bbox=bbox, datetime=datetime, max_items=max_items)
    table = records_from_items(items, bands=bands)
    path = stage_table(table, stage, "records")
    get_run_logger().info("found %d items in %s at %s", table.num_rows, collection, stac_api)
    return {"path": path, "records": table.num_rows}


@task(name="select-unenriched-records", tags=["rasteret"])
def select_unenriched(uri: str, *, version: int | None, partition_size: int, refresh: bool = False) -> dict[str, Any]:
    """Pin a collection version, stage its rows lacking header metadata, and split them into partitions.

    The staging folder is keyed by the collection URI, the pinned version and the
    options, so a re-run after a crash finds the partitions it already finished.
    Rows are sorted by id: the same version always splits the same way.
    """
    settings = Settings.from_env()
    col = load(uri, version=version, settings=settings)
    table = col.to_arrow()
    lacking = [
        refresh or any(a is not None and a["header"] is None for a in (assets or {}).values())
        for assets in table["assets"].to_pylist()
    ]
    todo = table.filter(pa.array(lacking, pa.bool_())).sort_by("id")
    stage = stage_folder(settings, "enrich", uri, col.version, partition_size, refresh)
    records_path = os.path.join(stage, "records.parquet")
    if not os.path.exists(records_path):
        write_atomically(todo, records_path)
    n = todo.num_rows
    bounds = [[s, min(s + partition_size, n)] for s in range(0, n, partition_size)]
    get_run_logger().info("%s v%d: %d of %d records lack header metadata; %d partition(s) of at most %d",
                          uri, col.version, n, len(col), len(bounds), partition_size)
    return {"version": col.version, "total": len(col), "records": n, "records_path": records_path,
            "stage": stage, "partitions": bounds}


@task(name="parse-scene-headers", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def parse_scene_headers(records_path: str, start: int, stop: int, *, stage: str, refresh: bool = False) -> dict[str, Any]:
    """Parse the COG headers of rows ``[start, stop)`` of a staged record table; stage the rows.

    A partition that an earlier attempt or run finished (its manifest exists under
    ``stage``) is not read again. When an asset fails with a retryable error the
    partition raises, so Prefect retries it, until the last attempt, which records
    the failure like a final one (a corrupt file): such assets keep a null header
    and are returned in ``failures``, never dropped.

    Returns:
        The staged path, counts, failures (record_id, band, href, error, retryable),
        requests and bytes read, the attempt that finished and whether it was resumed.
    """
    log = get_run_logger()
    name = os.path.join(stage, f"part-{start:08d}-{stop:08d}")
    done = read_manifest(f"{name}.json")
    if done is not None:
        log.info("partition [%d, %d): staged by an earlier run; skipped", start, stop)
        return {**done, "resumed": True}
    settings = Settings.from_env()
    number, last = attempt()
    table = pq.read_table(records_path).slice(start, stop - start)
    result = enrich_records(table, settings=settings, refresh=refresh)
    retryable = [f for f in result.failures if f.retryable]
    if retryable and not last:
        raise FetchError(
            f"partition [{start}, {stop}), attempt {number}: {len(retryable)} header(s) failed with retryable "
            f"errors, first: {retryable[0].error}",
            uri=retryable[0].href,
            retryable=True,
        )
    write_atomically(result.table, f"{name}.parquet")
    summary = {
        "path": f"{name}.parquet",
        "start": start,
        "stop": stop,
        "records": table.num_rows,
        "parsed": result.parsed,
        "failures": [dataclasses.asdict(f) for f in result.failures],
        "requests": result.stats.requests,
        "bytes": result.stats.bytes,
        "attempts": number,
    }
    write_manifest(f"{name}.json", summary)
    log.info(
        "partition [%d, %d): %d headers parsed, %d failed, %d requests, %d bytes (attempt %d)",
        start, stop, result.parsed, len(result.failures), result.stats.requests, result.stats.bytes, number,
    )
    return {**summary, "resumed": False}


@task(name="commit-collection", tags=COMMIT_TAGS)
def commit_collection(paths: list[str], uri: str, *, operation: str, metadata: dict[str, Any]) -> dict[str, int]:
    """Merge the staged partitions into the collection at ``uri`` on id, in one Delta commit."""
    settings = Settings.from_env()
    table = read_staged(paths)
    version, counts = merge_table(table, uri, settings=settings, operation=operation, metadata=metadata)
    get_run_logger().info("%s: version %d (%d inserted, %d updated)", uri, version, counts["inserted"], counts["updated"])
    return {"version": version, **counts}


@task(name="quarantine-scenes", tags=COMMIT_TAGS)
def quarantine_scenes(
    failures: list[dict[str, Any]], quarantine_uri: str, *, collection_uri: str, version: int, run: str
) -> dict[str, int]:
    """Append the assets whose headers failed, with their errors, to the quarantine Delta table."""
    settings = Settings.from_env()
    now = datetime.now(UTC)
    rows = [
        {**{k: f[k] for k in ("record_id", "band", "href", "error", "retryable")}, "collection": collection_uri,
         "collection_version": version, "flow_run": run, "quarantined_at": now}
        for f in failures
    ]
    table = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
    written = write_table(table, quarantine_uri, settings=settings, operation="quarantine", mode="append",
                          metadata={"collection": collection_uri, "collection_version": version,
                                    "assets": len(rows), "scenes": len({r["record_id"] for r in rows})})
    get_run_logger().warning("%s: quarantined %d asset(s) of %d scene(s) (version %d)", quarantine_uri, len(rows),
                             len({r["record_id"] for r in rows}), written)
    return {"version": written, "assets": len(rows)}

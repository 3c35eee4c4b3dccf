"""Tasks that build and update collections: search, parse headers by partition, commit."""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow.parquet as pq
from prefect import get_run_logger, task

from rasteret_core import Settings, enrich_records, records_from_items, search_items
from rasteret_core._delta import merge_table

from ._common import IO_TAGS, RETRY_OPTIONS, read_staged, retry_if_retryable, stage_table


@task(name="search-records", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def search_records(
    stac_api: str,
    collection: str,
    *,
    run: str,
    bbox: list[float] | None = None,
    datetime: str | None = None,
    bands: dict[str, str] | None = None,
    max_items: int | None = None,
) -> dict[str, Any]:
    """Search a STAC API, normalise the items to collection rows, stage them; return the path and count."""
    settings = Settings.from_env()
    items = search_items(stac_api, collections=collection, bbox=bbox, datetime=datetime, max_items=max_items)
    table = records_from_items(items, bands=bands)
    path = stage_table(table, settings, run, "records")
    get_run_logger().info("found %d items in %s at %s", table.num_rows, collection, stac_api)
    return {"path": path, "records": table.num_rows}


@task(name="parse-scene-headers", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def parse_scene_headers(records_path: str, start: int, stop: int, *, run: str) -> dict[str, Any]:
    """Parse the COG headers of rows ``[start, stop)`` of a staged record table; stage the result.

    Returns the staged path, counts and the assets that failed (each with its error).
    """
    settings = Settings.from_env()
    table = pq.read_table(records_path).slice(start, stop - start)
    result = enrich_records(table, settings=settings)
    path = stage_table(result.table, settings, run, f"headers-{start:08d}")
    get_run_logger().info(
        "partition [%d, %d): %d headers parsed, %d failed, %d requests, %d bytes",
        start, stop, result.parsed, len(result.failures), result.stats.requests, result.stats.bytes,
    )
    return {
        "path": path,
        "records": table.num_rows,
        "parsed": result.parsed,
        "failures": [dataclasses.asdict(f) for f in result.failures],
        "requests": result.stats.requests,
        "bytes": result.stats.bytes,
    }


@task(name="commit-collection", tags=["rasteret", "rasteret-commit"])
def commit_collection(paths: list[str], uri: str, *, operation: str, metadata: dict[str, Any]) -> dict[str, int]:
    """Merge the staged partitions into the collection at ``uri`` in one Delta commit."""
    settings = Settings.from_env()
    table = read_staged(paths)
    version, counts = merge_table(table, uri, settings=settings, operation=operation, metadata=metadata)
    get_run_logger().info("%s: version %d (%d inserted, %d updated)", uri, version, counts["inserted"], counts["updated"])
    return {"version": version, **counts}

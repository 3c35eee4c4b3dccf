"""Tasks that read pixels for AOI or point batches through the shared planner/fetcher, and commit the output."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq
from prefect import get_run_logger, task

from rasteret_core import Settings, load, read_geometry_table
from rasteret_core._delta import write_table

from ._common import COMMIT_TAGS, IO_TAGS, RETRY_OPTIONS, read_staged, retry_if_retryable, stage_table, widen_unsigned


@task(name="plan-batches", tags=["rasteret"])
def plan_batches(source: str, *, batch_size: int) -> list[tuple[int, int]]:
    """Split the (Geo)Parquet table at ``source`` into row ranges of at most ``batch_size``."""
    rows = pq.ParquetFile(source).metadata.num_rows
    return [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]


@task(name="extract-aoi-batch", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def extract_aoi_batch(
    collection_uri: str,
    version: int,
    aois: str,
    start: int,
    stop: int,
    bands: list[str],
    *,
    stage: str,
    geometry_column: str = "geometry",
    geometry_crs: str | None = None,
    all_touched: bool = False,
    stats: list[str] | None = None,
) -> dict[str, Any]:
    """Read AOI rows ``[start, stop)`` from every record they meet; stage the output rows.

    With ``stats`` the rows hold those statistics instead of pixels (``Collection.get_table``).
    """
    settings = Settings.from_env()
    col = load(collection_uri, version=version, settings=settings)
    table, crs = read_geometry_table(aois, geometry_column=geometry_column, geometry_crs=geometry_crs)
    batch = table.slice(start, stop - start)
    out, io = col.get_table(batch, bands, geometry_crs=crs, geometry_column=geometry_column, all_touched=all_touched,
                            stats=stats)
    path = stage_table(out, stage, f"aois-{start:08d}")
    get_run_logger().info(
        "AOIs [%d, %d): %d rows, %d requests, %d bytes", start, stop, out.num_rows, io.requests, io.bytes
    )
    return {"path": path, "inputs": batch.num_rows, "rows": out.num_rows, "requests": io.requests,
            "bytes": io.bytes}


@task(name="sample-point-batch", tags=IO_TAGS, retry_condition_fn=retry_if_retryable, **RETRY_OPTIONS)
def sample_point_batch(
    collection_uri: str,
    version: int,
    points: str,
    start: int,
    stop: int,
    bands: list[str],
    *,
    stage: str,
    geometry_column: str = "geometry",
    geometry_crs: str | None = None,
    x_column: str | None = None,
    y_column: str | None = None,
    match: str = "all",
    date_column: str | None = None,
    masked: bool = False,
) -> dict[str, Any]:
    """Sample ``bands`` at point rows ``[start, stop)`` from the records covering them; stage the output rows.

    The options are ``Collection.sample_table``'s, so a batch's rows are the library's rows for those points.
    """
    settings = Settings.from_env()
    col = load(collection_uri, version=version, settings=settings)
    table, crs = read_geometry_table(points, geometry_column=None if x_column is not None else geometry_column,
                                     geometry_crs=geometry_crs)
    batch = table.slice(start, stop - start)
    out, stats = col.sample_table(batch, bands, geometry_crs=crs, geometry_column=geometry_column, x_column=x_column,
                                  y_column=y_column, match=match, date_column=date_column,  # type: ignore[arg-type]
                                  masked=masked)
    path = stage_table(out, stage, f"points-{start:08d}")
    get_run_logger().info(
        "points [%d, %d): %d rows, %d requests, %d bytes", start, stop, out.num_rows, stats.requests, stats.bytes
    )
    return {"path": path, "inputs": batch.num_rows, "rows": out.num_rows, "requests": stats.requests,
            "bytes": stats.bytes}


@task(name="commit-output", tags=COMMIT_TAGS)
def commit_output(
    paths: list[str], out_uri: str, *, operation: str, mode: str, metadata: dict[str, Any]
) -> dict[str, int]:
    """Write the staged output parts to the Delta table at ``out_uri`` in one commit.

    Unsigned pixel types are widened to the signed type that holds them (Delta has no unsigned types).
    """
    settings = Settings.from_env()
    table = widen_unsigned(read_staged(paths))
    version = write_table(table, out_uri, settings=settings, operation=operation, mode=mode, metadata=metadata)
    get_run_logger().info("%s: version %d, %d rows", out_uri, version, table.num_rows)
    return {"version": version, "rows": table.num_rows}

"""Point sampling: point batches fanned out to tasks sharing the core planner/fetcher; one output commit."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rasteret_core import Settings, check_sample_options, load
from rasteret_tasks import discard_folder, plan_batches, sample_point_batch, stage_folder

from ._fanout import fan_out
from ._output import commit_parts
from ._report import publish_summary


@flow(name="sample-points")
def sample_points(
    collection_uri: str,
    points: str,
    bands: list[str],
    out_uri: str,
    version: int | None = None,
    batch_size: int = 1024,
    geometry_column: str = "geometry",
    geometry_crs: str | None = None,
    match: Literal["all", "first", "latest", "nearest-date"] = "all",
    mode: str = "overwrite",
    max_in_flight: int = 4,
    x_column: str | None = None,
    y_column: str | None = None,
    date_column: str | None = None,
    masked: bool = False,
) -> dict[str, Any]:
    """Sample ``bands`` at every point of the (Geo)Parquet file ``points``; write one output Delta table.

    The output keeps every point column and adds ``record_id``, ``datetime``,
    ``band`` and ``value``: one row per point x record x band (``match="all"``), or
    per point x band from the first or latest record covering it, or the one nearest
    in time to the point's ``date_column`` (``"nearest-date"``). Points are the
    ``geometry_column`` or the ``x_column``/``y_column`` coordinates (CRS
    ``geometry_crs``); ``masked`` writes invalid pixels as null values. The rows and
    columns are ``Collection.sample_points``'s for the same options (unsigned values
    widened: Delta has no unsigned types). The collection version is pinned at the
    start. A batch that still fails after its retries is reported (log, artifact, the
    returned ``failed batches``) and the others are committed.
    """
    check_sample_options(match=match, date_column=date_column, x_column=x_column, y_column=y_column)
    started = time.perf_counter()
    pinned = load(collection_uri, version=version).version
    stage = stage_folder(Settings.from_env(), "sample", flow_run.id or uuid.uuid4())
    batches = plan_batches(points, batch_size=batch_size)
    get_run_logger().info("%s v%d: %d point batch(es) of at most %d", collection_uri, pinned, len(batches),
                          batch_size)
    done = fan_out(
        sample_point_batch,
        [{"collection_uri": collection_uri, "version": pinned, "points": points, "start": s, "stop": e,
          "bands": bands, "stage": stage, "geometry_column": geometry_column, "geometry_crs": geometry_crs,
          "x_column": x_column, "y_column": y_column, "match": match, "date_column": date_column,
          "masked": masked} for s, e in batches],
        [f"point batch [{s}, {e})" for s, e in batches],
        max_in_flight=max_in_flight,
    )
    summary = commit_parts(done.results, out_uri, operation="sample", mode=mode, metadata={
        "collection": collection_uri, "collection_version": pinned, "points": points, "bands": bands,
        "match": match, "masked": masked})
    discard_folder(stage)
    summary = {"collection": f"{collection_uri} v{pinned}", **summary, "points": summary.pop("inputs"),
               "batches": len(batches), "failed batches": len(done.failures),
               "seconds": round(time.perf_counter() - started, 2)}
    publish_summary("sample-points", f"Point samples into {out_uri}", summary, done.failures)
    return {**summary, "batch failures": done.failures}

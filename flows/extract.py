"""Extraction: AOI batches fanned out to tasks sharing the core planner/fetcher; one output commit."""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rasteret_core import Settings, check_stats, load
from rasteret_tasks import discard_folder, extract_aoi_batch, plan_batches, stage_folder

from ._fanout import fan_out
from ._output import commit_parts
from ._report import publish_summary


@flow(name="extract-aois")
def extract_aois(
    collection_uri: str,
    aois: str,
    bands: list[str],
    out_uri: str,
    version: int | None = None,
    batch_size: int = 64,
    geometry_column: str = "geometry",
    geometry_crs: str | None = None,
    all_touched: bool = False,
    mode: str = "overwrite",
    max_in_flight: int = 4,
    stats: list[str] | None = None,
) -> dict[str, Any]:
    """Read ``bands`` for every AOI in the (Geo)Parquet file ``aois`` and write one output Delta table.

    The output keeps every AOI column and adds one row per AOI x record x band
    (see ``Collection.get_table``); with ``stats`` (``["count", "mean", ...]``) the rows
    hold those statistics instead of pixels, in the same schema ``get_table(stats=...)``
    returns. The collection version is pinned at the start. A batch that still fails
    after its retries is reported (log, artifact, the returned ``failed batches``) and
    the others are committed.
    """
    if stats is not None:
        stats = list(check_stats(stats))  # a bad name fails here, once, naming the valid ones
    started = time.perf_counter()
    pinned = load(collection_uri, version=version).version
    stage = stage_folder(Settings.from_env(), "extract", flow_run.id or uuid.uuid4())
    batches = plan_batches(aois, batch_size=batch_size)
    get_run_logger().info("%s v%d: %d AOI batch(es) of at most %d", collection_uri, pinned, len(batches), batch_size)
    done = fan_out(
        extract_aoi_batch,
        [{"collection_uri": collection_uri, "version": pinned, "aois": aois, "start": s, "stop": e, "bands": bands,
          "stage": stage, "geometry_column": geometry_column, "geometry_crs": geometry_crs,
          "all_touched": all_touched, "stats": stats} for s, e in batches],
        [f"AOI batch [{s}, {e})" for s, e in batches],
        max_in_flight=max_in_flight,
    )
    summary = commit_parts(done.results, out_uri, operation="extract", mode=mode, metadata={
        "collection": collection_uri, "collection_version": pinned, "aois": aois, "bands": bands,
        **({"stats": stats} if stats is not None else {})})
    discard_folder(stage)
    summary = {"collection": f"{collection_uri} v{pinned}", **summary, "aois": summary.pop("inputs"),
               "batches": len(batches), "failed batches": len(done.failures),
               "seconds": round(time.perf_counter() - started, 2)}
    publish_summary("extract-aois", f"Extraction into {out_uri}", summary, done.failures)
    return {**summary, "batch failures": done.failures}


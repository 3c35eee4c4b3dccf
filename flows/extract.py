"""Extraction: AOI batches fanned out to tasks sharing the core planner/fetcher; one output commit."""

from __future__ import annotations

import shutil
import time
import uuid
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.runtime import flow_run

from rasteret_core import Settings, load
from tasks import commit_output, extract_aoi_batch, plan_batches

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
) -> dict[str, Any]:
    """Read ``bands`` for every AOI in the (Geo)Parquet file ``aois`` and write one output Delta table.

    The output keeps every AOI column and adds one row per AOI x record x band
    (see ``Collection.get_table``). The collection version is pinned at the start.
    """
    log = get_run_logger()
    started = time.perf_counter()
    run = str(flow_run.id or uuid.uuid4())
    pinned = load(collection_uri, version=version).version
    batches = plan_batches(aois, batch_size=batch_size)
    log.info("%s v%d: %d AOI batch(es) of at most %d", collection_uri, pinned, len(batches), batch_size)
    parts = extract_aoi_batch.map(
        unmapped(collection_uri), unmapped(pinned), unmapped(aois), [b[0] for b in batches], [b[1] for b in batches],
        unmapped(bands), run=unmapped(run), geometry_column=unmapped(geometry_column),
        geometry_crs=unmapped(geometry_crs), all_touched=unmapped(all_touched),
    ).result()
    committed = commit_output(
        [p["path"] for p in parts], out_uri, mode=mode,
        metadata={"collection": collection_uri, "collection_version": pinned, "aois": aois, "bands": bands},
    )
    shutil.rmtree(f"{Settings.from_env().staging_root()}/{run}", ignore_errors=True)
    summary = {
        "collection": f"{collection_uri} v{pinned}",
        "output": out_uri,
        "output version": committed["version"],
        "aois": sum(p["aois"] for p in parts),
        "rows": committed["rows"],
        "batches": len(parts),
        "requests": sum(p["requests"] for p in parts),
        "bytes read": sum(p["bytes"] for p in parts),
        "seconds": round(time.perf_counter() - started, 2),
    }
    publish_summary("extract-aois", f"Extraction into {out_uri}", summary)
    return summary

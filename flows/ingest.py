"""Ingestion: STAC search, normalise, parse headers in scene partitions, one Delta commit."""

from __future__ import annotations

import shutil
import time
import uuid
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.runtime import flow_run

from rasteret_core import Settings
from tasks import commit_collection, parse_scene_headers, search_records

from ._report import publish_summary


@flow(name="ingest-collection")
def ingest_collection(
    stac_api: str,
    collection: str,
    uri: str,
    bbox: list[float] | None = None,
    datetime: str | None = None,
    bands: dict[str, str] | None = None,
    max_items: int | None = None,
    partition_size: int = 16,
) -> dict[str, Any]:
    """Build or update the collection at ``uri`` from a STAC API search; one commit per run.

    Records merge on id, so re-running the same search adds nothing. Assets whose
    header fails to parse keep a null header, are listed in the run's artifact and
    logs, and are picked up by a later ``rasteret enrich``.
    """
    log = get_run_logger()
    started = time.perf_counter()
    run = str(flow_run.id or uuid.uuid4())
    found = search_records(stac_api, collection, run=run, bbox=bbox, datetime=datetime, bands=bands, max_items=max_items)
    n = found["records"]
    bounds = [(s, min(s + partition_size, n)) for s in range(0, n, partition_size)]
    log.info("%d records in %d partition(s) of at most %d", n, len(bounds), partition_size)
    parts = parse_scene_headers.map(
        unmapped(found["path"]), [b[0] for b in bounds], [b[1] for b in bounds], run=unmapped(run)
    ).result()
    failures = [f for p in parts for f in p["failures"]]
    committed = commit_collection(
        [p["path"] for p in parts], uri, operation="ingest",
        metadata={"source": stac_api, "collection": collection, "bbox": bbox, "datetime": datetime,
                  "items": n, "headers_parsed": sum(p["parsed"] for p in parts), "header_failures": len(failures)},
    )
    shutil.rmtree(f"{Settings.from_env().staging_root()}/{run}", ignore_errors=True)
    summary = {
        "collection": uri,
        "version": committed["version"],
        "records": n,
        "rows inserted": committed["inserted"],
        "rows updated": committed["updated"],
        "partitions": len(parts),
        "headers parsed": sum(p["parsed"] for p in parts),
        "header failures": len(failures),
        "requests": sum(p["requests"] for p in parts),
        "bytes read": sum(p["bytes"] for p in parts),
        "seconds": round(time.perf_counter() - started, 2),
    }
    for failure in failures:
        log.warning("header not parsed: %s/%s %s: %s", failure["record_id"], failure["band"], failure["href"], failure["error"])
    publish_summary("ingest-collection", f"Ingestion into {uri}", summary, failures)
    return {**summary, "failures": failures}

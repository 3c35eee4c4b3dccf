"""Ingestion: paged STAC search, normalise, parse headers in scene partitions, one Delta commit."""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rasteret_core import Settings
from rasteret_tasks import commit_collection, discard_folder, parse_scene_headers, search_records, stage_folder

from ._fanout import fan_out
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
    max_in_flight: int = 4,
) -> dict[str, Any]:
    """Build or update the collection at ``uri`` from a STAC API search; one commit per run.

    Records merge on id, so re-running the same search adds nothing. Assets whose
    header fails to parse keep a null header, are listed in the run's artifact and
    logs, and are picked up by a later ``enrich_collection`` run.
    """
    log = get_run_logger()
    started = time.perf_counter()
    stage = stage_folder(Settings.from_env(), "ingest", flow_run.id or uuid.uuid4())
    found = search_records(stac_api, collection, stage=stage, bbox=bbox, datetime=datetime, bands=bands,
                           max_items=max_items)
    n = found["records"]
    bounds = [(s, min(s + partition_size, n)) for s in range(0, n, partition_size)]
    log.info("%d records in %d partition(s) of at most %d", n, len(bounds), partition_size)
    done = fan_out(parse_scene_headers, [{"records_path": found["path"], "start": s, "stop": e, "stage": stage}
                                         for s, e in bounds],
                   [f"partition [{s}, {e})" for s, e in bounds], max_in_flight=max_in_flight)
    parts = done.results
    failures = [f for p in parts for f in p["failures"]]
    committed = commit_collection(
        [p["path"] for p in parts], uri, operation="ingest",
        metadata={"source": stac_api, "collection": collection, "bbox": bbox, "datetime": datetime,
                  "items": n, "headers_parsed": sum(p["parsed"] for p in parts), "header_failures": len(failures)},
    ) if parts else {"version": None, "inserted": 0, "updated": 0}
    discard_folder(stage)
    summary = {
        "collection": uri,
        "version": committed["version"],
        "records": n,
        "rows inserted": committed["inserted"],
        "rows updated": committed["updated"],
        "partitions": len(bounds),
        "failed partitions": len(done.failures),
        "headers parsed": sum(p["parsed"] for p in parts),
        "header failures": len(failures),
        "requests": sum(p["requests"] for p in parts),
        "bytes read": sum(p["bytes"] for p in parts),
        "seconds": round(time.perf_counter() - started, 2),
    }
    for failure in failures:
        log.warning("header not parsed: %s/%s %s: %s", failure["record_id"], failure["band"], failure["href"],
                    failure["error"])
    publish_summary("ingest-collection", f"Ingestion into {uri}", summary, [*done.failures, *failures])
    return {**summary, "failures": failures, "partition failures": done.failures}

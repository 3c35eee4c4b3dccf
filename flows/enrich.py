"""Enrichment: rows lacking header metadata, parsed in scene partitions; one commit; failures quarantined."""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rasteret_tasks import commit_collection, discard_folder, parse_scene_headers, quarantine_scenes, select_unenriched

from ._fanout import fan_out
from ._report import publish_summary


def quarantine_uri_for(uri: str) -> str:
    """The default quarantine table of a collection: ``<uri>_quarantine`` beside it."""
    return uri.rstrip("/") + "_quarantine"


@flow(name="enrich-collection")
def enrich_collection(
    uri: str,
    version: int | None = None,
    partition_size: int = 16,
    max_in_flight: int = 4,
    quarantine_uri: str | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Parse the COG headers the collection at ``uri`` lacks; commit them in one new version.

    The version is pinned at the start; its rows lacking headers (every row with
    ``refresh``) are split into partitions of ``partition_size`` scenes, parsed
    with at most ``max_in_flight`` partitions at once, and staged under a folder
    keyed by the URI and version, so a re-run after a crash skips the partitions
    already staged. Partitions retry retryable errors with exponential backoff and
    jitter. Assets that still fail keep a null header in the collection, are
    appended with their error to the quarantine table (``<uri>_quarantine`` by
    default) and listed in the run's artifact; a later run tries them again.
    """
    log = get_run_logger()
    started = time.perf_counter()
    run = str(flow_run.id or uuid.uuid4())
    selected = select_unenriched(uri, version=version, partition_size=partition_size, refresh=refresh)
    pinned, bounds = selected["version"], selected["partitions"]
    parsing = time.perf_counter()
    done = fan_out(
        parse_scene_headers,
        [{"records_path": selected["records_path"], "start": s, "stop": e, "stage": selected["stage"],
          "refresh": refresh} for s, e in bounds],
        [f"partition [{s}, {e})" for s, e in bounds],
        max_in_flight=max_in_flight,
    )
    parsing = time.perf_counter() - parsing
    parts = done.results
    failures = [f for p in parts for f in p["failures"]]
    parsed = sum(p["parsed"] for p in parts)
    committing = time.perf_counter()
    committed = {"version": pinned, "inserted": 0, "updated": 0}
    if parsed:
        committed = commit_collection(
            [p["path"] for p in parts], uri, operation="enrich",
            metadata={"pinned_version": pinned, "partitions": len(bounds), "headers_parsed": parsed,
                      "header_failures": len(failures), "flow_run": run},
        )
    quarantine = quarantine_uri or quarantine_uri_for(uri)
    if failures:
        quarantine_scenes(failures, quarantine, collection_uri=uri, version=pinned, run=run)
    discard_folder(selected["stage"])  # only a crash leaves it, for the re-run to resume from
    committing = time.perf_counter() - committing
    summary = {
        "collection": uri,
        "pinned version": pinned,
        "version": committed["version"],
        "records lacking headers": selected["records"],
        "partitions": len(bounds),
        "partitions resumed": sum(1 for p in parts if p["resumed"]),
        "partitions retried": sum(1 for p in parts if p["attempts"] > 1 and not p["resumed"]),
        "failed partitions": len(done.failures),
        "headers parsed": parsed,
        "rows updated": committed["updated"],
        "quarantined scenes": len({f["record_id"] for f in failures}),
        "quarantine": quarantine if failures else "-",
        "requests": sum(p["requests"] for p in parts if not p["resumed"]),
        "bytes read": sum(p["bytes"] for p in parts if not p["resumed"]),
        "seconds parsing": round(parsing, 2),
        "seconds committing": round(committing, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    for failure in failures:
        log.warning("quarantined %s/%s %s: %s", failure["record_id"], failure["band"], failure["href"],
                    failure["error"])
    publish_summary("enrich-collection", f"Enrichment of {uri}", summary, [*done.failures, *failures])
    return {**summary, "failures": failures, "partition failures": done.failures}

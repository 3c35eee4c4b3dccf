"""Enrichment: rows lacking header metadata, parsed in scene partitions; one commit; failures quarantined."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rasteret_core import Settings, load
from rasteret_tasks import (
    claim_stage,
    commit_collection,
    discard_folder,
    quarantine_uri_for,
    select_unenriched,
    stage_folder,
    sweep_staging,
)

from ._headers import parse_in_partitions
from ._report import HeaderRunSummary, publish_summary

__all__ = ["EnrichSummary", "enrich_collection", "quarantine_uri_for"]

@dataclass(frozen=True, slots=True, kw_only=True)
class EnrichSummary(HeaderRunSummary):
    """What an enrichment run did.

    Attributes:
        collection: The collection's URI.
        pinned_version: The version whose rows were read.
        version: The version after the run (the pinned one when nothing was committed).
        records_lacking_headers: Rows of the pinned version selected to parse (see ``refresh``).
        partitions: Header-parsing partitions.
        partitions_resumed: Partitions an earlier (killed) run had staged.
        partitions_retried: Partitions that needed a retry.
        failed_partitions: Partitions that failed after their retries.
        headers_parsed: Headers parsed.
        rows_updated: Rows replaced by the commit.
        quarantined_scenes: Records with an asset whose header failed.
        seconds_parsing: Wall time of the parsing fan-out.
        seconds_committing: Wall time of the commit and quarantine.

    and the fields of :class:`HeaderRunSummary` (requests and bytes of this run, resumed
    partitions not counted; failed assets keep a null header and are quarantined).
    """

    collection: str
    pinned_version: int
    version: int | None
    records_lacking_headers: int
    partitions: int
    partitions_resumed: int
    partitions_retried: int
    failed_partitions: int
    headers_parsed: int
    rows_updated: int
    quarantined_scenes: int
    seconds_parsing: float
    seconds_committing: float


@flow(name="enrich-collection")
def enrich_collection(
    uri: str,
    version: int | None = None,
    partition_size: int = 16,
    max_in_flight: int = 4,
    quarantine_uri: str | None = None,
    refresh: bool | Literal["stale"] = False,
) -> EnrichSummary:
    """Parse the COG headers the collection at ``uri`` lacks; commit them in one new version.

    The version is pinned at the start; its rows lacking headers (with ``refresh="stale"``
    also those whose object changed since, one HEAD per object; every row with
    ``refresh=True``: the selection of the library's ``Collection.enrich``) are split
    into partitions of ``partition_size`` scenes, parsed with at most ``max_in_flight``
    partitions at once, and staged under a folder keyed by the URI and version, so a
    re-run after a crash skips the partitions
    already staged. Partitions retry retryable errors with exponential backoff and
    jitter. Assets that still fail keep a null header in the collection, are
    appended with their error to the quarantine table (``<uri>_quarantine`` by
    default) and listed in the run's artifact; a later run tries them again. The
    commit is the ingestion core's merge (``merge_changes``), as the ingestion flow's.
    """
    log = get_run_logger()
    started = time.perf_counter()
    run = str(flow_run.id or uuid.uuid4())
    settings = Settings.from_env()
    pinned = load(uri, version=version, settings=settings).version
    assert pinned is not None  # a Delta table: a committed version
    # the folder is keyed by the pinned version and options: claimed before the sweep, a killed run's
    # partitions are resumed here; the folders of other killed runs are removed
    with claim_stage(stage_folder(settings, "enrich", uri, pinned, partition_size, refresh)):
        sweep_staging()
        selected = select_unenriched(uri, version=pinned, partition_size=partition_size, refresh=refresh)
        parsing = time.perf_counter()
        headers = parse_in_partitions(selected, collection_uri=uri, version=pinned, run=run,
                                      partition_size=partition_size, max_in_flight=max_in_flight, refresh=refresh,
                                      quarantine_uri=quarantine_uri)
        done, parts, failures, parsed = headers.done, headers.parts, headers.failures, headers.parsed
        parsing = time.perf_counter() - parsing
        committing = time.perf_counter()
        committed = None
        if parsed:
            committed = commit_collection(
                [p.path for p in parts], uri, changes_path=selected.changes_path, operation="enrich", parsed=parsed,
                metadata={"pinned_version": pinned, "partitions": len(headers.partitions),
                          "header_failures": len(failures), "flow_run": run},
            )
        discard_folder(selected.stage)  # only a crash leaves it, for the re-run to resume from
    committing = time.perf_counter() - committing
    summary = EnrichSummary(
        collection=uri,
        pinned_version=pinned,
        version=committed.version if committed else pinned,
        records_lacking_headers=selected.selected,
        partitions=len(headers.partitions),
        partitions_resumed=sum(1 for p in parts if p.resumed),
        partitions_retried=sum(1 for p in parts if p.attempts > 1 and not p.resumed),
        failed_partitions=len(done.failures),
        headers_parsed=parsed,
        rows_updated=committed.updated if committed else 0,
        quarantined_scenes=len({f.record_id for f in failures}),
        quarantine=headers.quarantine,
        requests=sum(p.requests for p in parts if not p.resumed),
        bytes_read=sum(p.bytes_read for p in parts if not p.resumed),
        seconds_parsing=round(parsing, 2),
        seconds_committing=round(committing, 2),
        seconds=round(time.perf_counter() - started, 2),
        failures=failures,
        partition_failures=tuple(done.failures),
    )
    for failure in failures:
        log.warning("quarantined %s/%s %s: %s", failure.record_id, failure.band, failure.href, failure.error)
    publish_summary("enrich-collection", f"Enrichment of {uri}", summary.report(),
                    [*done.failures, *(dataclasses.asdict(f) for f in failures)])
    return summary

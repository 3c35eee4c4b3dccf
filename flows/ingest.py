"""Ingestion: STAC search, the records that changed, headers parsed in scene partitions, one Delta commit."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rasteret_core import CollectionError, Settings
from rasteret_tasks import (
    claim_stage,
    commit_collection,
    discard_folder,
    search_records,
    select_changed_records,
    stage_folder,
    sweep_staging,
)

from ._headers import parse_in_partitions
from ._report import HeaderRunSummary, publish_summary


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestSummary(HeaderRunSummary):
    """What an ingestion run did.

    Attributes:
        collection: The collection's URI.
        version: Its version after the run (unchanged when nothing was committed;
            None when there is still no table).
        committed: Whether the run committed a version.
        records: Records the search found.
        unchanged: Those the collection already held as they are (no header read).
        changed: New or changed records, whose headers were parsed.
        inserted: Rows inserted.
        updated: Rows replaced.
        partitions: Header-parsing partitions.
        failed_partitions: Partitions that failed after their retries (not committed).
        headers_parsed: Headers parsed.
        header_failures: Assets whose header failed (quarantined).
        records_skipped: Records left out of the commit because a header failed.

    and the fields of :class:`HeaderRunSummary` (quarantine, requests and bytes of the
    header parsing, wall time, failures).
    """

    collection: str
    version: int | None
    committed: bool
    records: int
    unchanged: int
    changed: int
    inserted: int
    updated: int
    partitions: int
    failed_partitions: int
    headers_parsed: int
    header_failures: int
    records_skipped: int


@flow(name="ingest-collection")
def ingest_collection(
    stac_api: str,
    collection: str,
    uri: str,
    bbox: list[float] | None = None,
    datetime: str | None = None,
    intersects: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    bands: dict[str, str] | None = None,
    max_items: int | None = None,
    href_rewrites: dict[str, str] | None = None,
    partial: bool = True,
    partition_size: int = 16,
    max_in_flight: int = 4,
    quarantine_uri: str | None = None,
) -> IngestSummary:
    """Build or update the collection at ``uri`` from a STAC API search; at most one commit per run.

    The steps are ``build_from_stac``'s, with its options (``bbox``, ``datetime``,
    ``intersects`` as GeoJSON, ``query``, ``bands``, ``max_items``,
    ``href_rewrites``), run as tasks: search and normalise; select the records that
    are new or changed against the collection's stored digests (records it holds
    as they are are skipped before any header is read); parse their headers in
    partitions of ``partition_size`` scenes, at most ``max_in_flight`` at once;
    merge on id in one commit. An unchanged archive reads no header and commits
    nothing.

    Assets whose header fails are appended with their error to the quarantine
    table (``<uri>_quarantine`` by default) and listed in the run's artifact. With
    ``partial`` (the default) their records are left out of the commit (listed in
    its metadata) and the rest committed; a later run tries them again. Without
    it any failure (a header, or a partition after its retries) fails the run
    before anything is committed.
    """
    log = get_run_logger()
    started = time.perf_counter()
    run = str(flow_run.id or uuid.uuid4())
    stage = stage_folder(Settings.from_env(), "ingest", run)
    with claim_stage(stage):  # held for the run: a killed run's folder is left to the next run's sweep
        sweep_staging()
        try:
            found = search_records(stac_api, collection, stage=stage, bbox=bbox, datetime=datetime,
                                   intersects=intersects, query=query, bands=bands, max_items=max_items,
                                   href_rewrites=href_rewrites)
            selected = select_changed_records(found.path, uri, stage=stage)
            log.info("%d of %d records new or changed: partitions of at most %d", selected.selected,
                     selected.records, partition_size)
            headers = parse_in_partitions(selected, collection_uri=uri, version=selected.base_version, run=run,
                                          partition_size=partition_size, max_in_flight=max_in_flight,
                                          quarantine_uri=quarantine_uri)
            done, parts, failures = headers.done, headers.parts, headers.failures
            if not partial and (failures or done.failures):
                raise CollectionError(
                    f"{uri}: {len(failures)} header(s) and {len(done.failures)} partition(s) failed; nothing committed"
                    + (f" (failed headers are in {headers.quarantine})" if failures else "")
                    + "; pass partial=True to commit the rest"
                )
            committed = commit_collection(
                [p.path for p in parts], uri, changes_path=selected.changes_path, operation="ingest",
                parsed=headers.parsed, left_out=list(failures),
                metadata={**found.metadata, "partitions": len(headers.partitions),
                          "failed_partitions": len(done.failures), "flow_run": run},
            ) if parts else None
        finally:
            discard_folder(stage)
    summary = IngestSummary(
        collection=uri,
        version=committed.version if committed else selected.base_version,
        committed=bool(committed and committed.committed),
        records=selected.records,
        unchanged=selected.records - selected.selected,
        changed=selected.selected,
        inserted=committed.inserted if committed else 0,
        updated=committed.updated if committed else 0,
        partitions=len(headers.partitions),
        failed_partitions=len(done.failures),
        headers_parsed=headers.parsed,
        header_failures=len(failures),
        records_skipped=len({f.record_id for f in failures}),
        quarantine=headers.quarantine,
        requests=sum(p.requests for p in parts),
        bytes_read=sum(p.bytes_read for p in parts),
        seconds=round(time.perf_counter() - started, 2),
        failures=failures,
        partition_failures=tuple(done.failures),
    )
    for failure in failures:
        log.warning("header not parsed, record left out: %s/%s %s: %s", failure.record_id, failure.band,
                    failure.href, failure.error)
    publish_summary("ingest-collection", f"Ingestion into {uri}", summary.report(),
                    [*done.failures, *(dataclasses.asdict(f) for f in failures)])
    return summary

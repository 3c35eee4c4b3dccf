"""The one batched-read path of the extraction and sampling flows: split the input once, fan out, commit once."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run

from rasteret_core import Settings, load
from rasteret_tasks import (
    BatchOptions,
    BatchResult,
    Kind,
    Mode,
    OutputCommit,
    append_transaction,
    claim_stage,
    commit_output,
    discard_folder,
    read_batch,
    split_input,
    stage_folder,
    sweep_staging,
)

from ._fanout import fan_out
from ._report import publish_summary


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFailure:
    """A batch that still failed after its retries: which rows (``"point batch [2, 3)"``) and the error."""

    unit: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchedReadSummary:
    """What an extraction or sampling run did.

    Attributes:
        kind: ``"aois"`` or ``"points"``.
        collection: The collection URI.
        collection_version: The version read (pinned at the start; None for a collection file without versions).
        output: The output Delta table.
        output_version: Its new version, or None when no batch finished.
        inputs: Input rows (AOIs or points) read by the batches that finished.
        batches: Batches planned.
        rows: Output rows committed.
        requests: Byte-range requests of the pixel reads.
        bytes_read: Bytes those requests fetched.
        input_bytes: Compressed input bytes read: the source once when it had to be copied
            into smaller row groups, plus each finished batch's row groups.
        seconds: Wall time of the run.
        failures: The batches that failed after their retries (the others are committed).
    """

    kind: Kind
    collection: str
    collection_version: int | None
    output: str
    output_version: int | None
    inputs: int
    batches: int
    rows: int
    requests: int
    bytes_read: int
    input_bytes: int
    seconds: float
    failures: tuple[BatchFailure, ...] = ()

    @property
    def failed_batches(self) -> int:
        """How many batches failed."""
        return len(self.failures)

    def report(self) -> dict[str, Any]:
        """The summary as labelled values, for the run's artifact and the command line."""
        return {"collection": f"{self.collection} v{self.collection_version}", "output": self.output,
                "output version": self.output_version, "AOIs" if self.kind == "aois" else "points": self.inputs,
                "rows": self.rows, "requests": self.requests, "bytes read": self.bytes_read,
                "input bytes read": self.input_bytes, "batches": self.batches,
                "failed batches": self.failed_batches, "seconds": self.seconds}


def read_in_batches(options: BatchOptions, collection_uri: str, source: str, bands: list[str], out_uri: str, *,
                    version: int | None, batch_size: int, geometry_column: str, geometry_crs: str | None,
                    mode: Mode, max_in_flight: int) -> BatchedReadSummary:
    """Read ``bands`` for every row of the (Geo)Parquet table ``source`` as ``options`` say; write one output table.

    Runs inside a flow: pins the collection version, splits ``source`` into row ranges
    of at most ``batch_size`` rows (finding its CRS and checking its columns once), reads
    the batches with at most ``max_in_flight`` at once (each reads only its own rows),
    and commits every finished batch's rows to ``out_uri`` in one write. A batch that
    still fails after its retries is reported (log, artifact, ``failures``) and the
    others are committed.
    """
    started = time.perf_counter()
    pinned = load(collection_uri, version=version).version
    stage = stage_folder(Settings.from_env(), options.operation, flow_run.id or uuid.uuid4())
    with claim_stage(stage):  # held for the run: a killed run's folder is left to the next run's sweep
        sweep_staging()
        batch_input = split_input(source, options, batch_size=batch_size, stage=stage, geometry_column=geometry_column,
                                  geometry_crs=geometry_crs)
        ranges = batch_input.split.ranges
        get_run_logger().info("%s v%d: %d %s batch(es) of at most %d", collection_uri, pinned, len(ranges),
                              options.noun, batch_size)
        done = fan_out(
            read_batch,
            [{"collection_uri": collection_uri, "version": pinned, "rows": rows, "bands": bands, "options": options,
              "crs": batch_input.crs, "stage": stage, "geometry_column": geometry_column} for rows in ranges],
            [f"{options.noun} batch [{rows.start}, {rows.stop})" for rows in ranges],
            max_in_flight=max_in_flight,
        )
        parts: list[BatchResult] = done.results
        metadata = {"collection": collection_uri, "collection_version": pinned, options.kind: source, "bands": bands,
                    **options.metadata()}
        # an append names its job in the commit: a re-run after a kill that came after the commit appends nothing
        transaction = append_transaction(
            options.operation, collection_uri, pinned, source, batch_input.fingerprint, bands, options.metadata(),
            geometry_column=geometry_column, geometry_crs=geometry_crs) if mode == "append" else None
        committed = commit_output([p.path for p in parts], out_uri, operation=options.operation, mode=mode,
                                  metadata=metadata, transaction=transaction) if parts else OutputCommit(version=None,
                                                                                                         rows=0)
        discard_folder(stage)
    summary = BatchedReadSummary(
        kind=options.kind, collection=collection_uri, collection_version=pinned, output=out_uri,
        output_version=committed.version, inputs=sum(p.inputs for p in parts), batches=len(ranges),
        rows=committed.rows, requests=sum(p.requests for p in parts), bytes_read=sum(p.bytes for p in parts),
        input_bytes=batch_input.split.copied_bytes + sum(p.input_bytes for p in parts),
        seconds=round(time.perf_counter() - started, 2),
        failures=tuple(BatchFailure(unit=f["unit"], error=f["error"]) for f in done.failures),
    )
    publish_summary(f"{options.operation}-{options.kind}", f"{options.operation.capitalize()} {options.noun}s into "
                    f"{out_uri}", summary.report(), done.failures)
    return summary

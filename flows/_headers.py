"""The steps ingestion and enrichment share: parse staged records' headers in scene partitions, quarantine failures."""

from __future__ import annotations

from dataclasses import dataclass

from rasteret_core.engine import HeaderFailure, Refresh
from rasteret_tasks import ParsedPartition, SelectedRecords, parse_scene_headers, quarantine_scenes, quarantine_uri_for

from ._fanout import FanOut, fan_out


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedHeaders:
    """The partitions of a selection parsed, and where their failed headers went.

    Attributes:
        partitions: The row ranges ``[start, stop)`` parsed, one task each.
        done: The partitions that finished (``results``) and those that failed after their retries.
        failures: The assets whose header failed in the finished partitions.
        parsed: Headers parsed.
        quarantine: The quarantine table the failures were appended to; None when none failed.
    """

    partitions: list[tuple[int, int]]
    done: FanOut[ParsedPartition]
    failures: tuple[HeaderFailure, ...]
    parsed: int
    quarantine: str | None

    @property
    def parts(self) -> list[ParsedPartition]:
        """The finished partitions, in row order."""
        return self.done.results


def parse_in_partitions(selected: SelectedRecords, *, collection_uri: str, version: int | None, run: str,
                        partition_size: int, max_in_flight: int, refresh: Refresh = False,
                        quarantine_uri: str | None = None) -> ParsedHeaders:
    """Parse the headers of ``selected`` in partitions of ``partition_size`` scenes, ``max_in_flight`` at once.

    Assets whose header still fails are appended with their error to the quarantine
    table (``quarantine_uri``, default ``<collection_uri>_quarantine``), tagged with
    ``version`` and the flow ``run``, before anything is committed.
    """
    bounds = selected.partitions(partition_size)
    done = fan_out(parse_scene_headers,
                   [{"records_path": selected.path, "start": s, "stop": e, "stage": selected.stage, "refresh": refresh}
                    for s, e in bounds],
                   [f"partition [{s}, {e})" for s, e in bounds], max_in_flight=max_in_flight)
    failures = tuple(f for p in done.results for f in p.failures)
    quarantine = None
    if failures:
        quarantine = quarantine_uri or quarantine_uri_for(collection_uri)
        quarantine_scenes(list(failures), quarantine, collection_uri=collection_uri, version=version, run=run)
    return ParsedHeaders(partitions=bounds, done=done, failures=failures, parsed=sum(p.parsed for p in done.results),
                         quarantine=quarantine)

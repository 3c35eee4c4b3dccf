"""Run summaries: one markdown artifact per flow run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import create_markdown_artifact

from rasteret_core.engine import HeaderFailure

_LIST = {"report": False}
"""Field metadata of lists left out of the report rows (they get tables of their own)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderRunSummary:
    """What the runs that parse headers (ingestion, enrichment) report beside their own fields.

    Attributes:
        quarantine: The quarantine table written to, or None.
        requests: Requests made to parse headers.
        bytes_read: Bytes read to parse headers.
        seconds: Wall time of the run.
        failures: The assets whose header failed.
        partition_failures: The partitions that failed (``unit``, ``error``).
    """

    quarantine: str | None
    requests: int
    bytes_read: int
    seconds: float
    failures: tuple[HeaderFailure, ...] = field(default=(), metadata=_LIST)
    partition_failures: tuple[dict[str, str], ...] = field(default=(), metadata=_LIST)

    def report(self) -> dict[str, Any]:
        """The summary as labelled values (failures aside), for the run's artifact and the command line."""
        return report_rows(self)


def summary_markdown(title: str, summary: Mapping[str, Any],
                     failures: Sequence[Mapping[str, Any]] | None = None) -> str:
    """``summary`` as a two-column markdown table, then one table of ``failures`` (any columns)."""
    lines = [f"# {title}", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in summary.items()]
    if failures:
        columns = list(dict.fromkeys(k for f in failures for k in f))
        lines += ["", f"## {len(failures)} failure(s)", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(f.get(c, "")) for c in columns) + " |" for f in failures]
    return "\n".join(lines)


def publish_summary(key: str, title: str, summary: Mapping[str, Any],
                    failures: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Publish ``summary`` (and any failures) as a markdown table artifact of this run."""
    create_markdown_artifact(markdown=summary_markdown(title, summary, failures), key=key, description=title)


def report_rows(summary: Any) -> dict[str, Any]:
    """A summary dataclass as report rows: each field's name in words, and its value.

    Fields whose metadata says ``report=False`` (lists of failures) are left out; a
    :class:`HeaderRunSummary`'s shared fields come after the run's own.
    """
    shared = {f.name for f in dataclasses.fields(HeaderRunSummary)}
    fields = sorted(dataclasses.fields(summary), key=lambda f: f.name in shared)  # stable: own fields first
    return {f.name.replace("_", " "): getattr(summary, f.name) for f in fields if f.metadata.get("report", True)}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")

"""Run summaries: one markdown artifact per flow run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.artifacts import create_markdown_artifact


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

    Fields whose metadata says ``report=False`` (lists of failures) are left out.
    """
    return {f.name.replace("_", " "): getattr(summary, f.name) for f in dataclasses.fields(summary)
            if f.metadata.get("report", True)}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")

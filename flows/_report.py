"""Run summaries: one markdown artifact per flow run."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact


def publish_summary(key: str, title: str, summary: dict[str, Any], failures: list[dict[str, Any]] | None = None) -> None:
    """Publish ``summary`` (and any failures) as a markdown table artifact of this run."""
    lines = [f"# {title}", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items()]
    if failures:
        lines += ["", f"## {len(failures)} failure(s)", "", "| record | band | href | error |", "|---|---|---|---|"]
        lines += [f"| {f['record_id']} | {f['band']} | {f['href']} | {f['error']} |" for f in failures]
    create_markdown_artifact(markdown="\n".join(lines), key=key, description=title)

"""The last step of extraction and sampling: one commit of every staged part, and the totals."""

from __future__ import annotations

from typing import Any

from rasteret_tasks import commit_output


def commit_parts(parts: list[dict[str, Any]], out_uri: str, *, operation: str, mode: str,
                 metadata: dict[str, Any]) -> dict[str, Any]:
    """Commit the staged parts of the batches that finished in one write; sum their counts."""
    committed = commit_output([p["path"] for p in parts], out_uri, operation=operation, mode=mode,
                              metadata=metadata) if parts else {"version": None, "rows": 0}
    return {
        "output": out_uri,
        "output version": committed["version"],
        "inputs": sum(p["inputs"] for p in parts),
        "rows": committed["rows"],
        "requests": sum(p["requests"] for p in parts),
        "bytes read": sum(p["bytes"] for p in parts),
    }

"""What every Rasteret task shares: retry policy, tags, staging."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect.tasks import exponential_backoff

from rasteret_core import RasteretError, Settings

IO_TAGS = ["rasteret", "rasteret-io"]

RETRY_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1),
    "retry_jitter_factor": 0.5,
}


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task only when its error says a retry can help.

    Rasteret's own errors carry ``retryable`` (fetch errors) or are final
    (bad input, schema, format); anything else (a crash, a lost worker) is retried.
    """
    try:
        state.result()
    except RasteretError as exc:
        return bool(getattr(exc, "retryable", False))
    except Exception:  # an unexpected failure: let Prefect retry it
        return True
    return False


def stage_table(table: pa.Table, settings: Settings, run: str, name: str) -> str:
    """Write a partition's result to the staging folder; return its path."""
    folder = os.path.join(settings.staging_root(), run)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{uuid.uuid4().hex[:8]}.parquet")
    pq.write_table(table, path)
    return path


def read_staged(paths: list[str]) -> pa.Table:
    """Concatenate staged partition tables."""
    return pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default")

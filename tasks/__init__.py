"""Prefect tasks: thin wrappers of `rasteret_core` functions.

Each task does one step or one side effect, returns small values (URIs, counts,
staged-file paths), retries only on errors that a retry can help, and reads its
settings at its own edge (so no secret travels as a task parameter).
"""

from .collection import commit_collection, parse_scene_headers, search_records
from .extract import commit_output, extract_aoi_batch, plan_batches

__all__ = [
    "search_records",
    "parse_scene_headers",
    "commit_collection",
    "plan_batches",
    "extract_aoi_batch",
    "commit_output",
]

"""Prefect tasks: thin wrappers of `rasteret_core` functions.

Each task does one step or one side effect, returns small values (URIs, counts,
staged-file paths), retries only on errors that a retry can help, and reads its
settings at its own edge (so no secret travels as a task parameter).
"""

from ._common import discard_folder, stage_folder
from .collection import (
    commit_collection,
    parse_scene_headers,
    quarantine_scenes,
    search_records,
    select_unenriched,
)
from .extract import commit_output, extract_aoi_batch, plan_batches, sample_point_batch

__all__ = [
    "commit_collection",
    "commit_output",
    "discard_folder",
    "extract_aoi_batch",
    "parse_scene_headers",
    "plan_batches",
    "quarantine_scenes",
    "sample_point_batch",
    "search_records",
    "select_unenriched",
    "stage_folder",
]

"""Prefect tasks: thin wrappers of `rasteret_core` functions.

Each task does one step or one side effect, returns small values (URIs, counts,
staged-file paths), retries only on errors that a retry can help, and reads its
settings at its own edge (so no secret travels as a task parameter).
"""

from ._common import claim_stage, discard_folder, stage_folder, sweep_stages
from .batches import (
    AoiOptions,
    BatchInput,
    BatchOptions,
    BatchResult,
    Kind,
    Mode,
    OutputCommit,
    PointOptions,
    append_transaction,
    batch_options,
    commit_output,
    read_batch,
    split_input,
)
from .collection import (
    ParsedPartition,
    Quarantined,
    SelectedRecords,
    StagedRecords,
    commit_collection,
    parse_scene_headers,
    quarantine_scenes,
    quarantine_uri_for,
    search_records,
    select_changed_records,
    select_unenriched,
)
from .staging import sweep_staging

__all__ = [
    "AoiOptions",
    "BatchInput",
    "BatchOptions",
    "BatchResult",
    "Kind",
    "Mode",
    "OutputCommit",
    "ParsedPartition",
    "PointOptions",
    "Quarantined",
    "SelectedRecords",
    "StagedRecords",
    "append_transaction",
    "batch_options",
    "claim_stage",
    "commit_collection",
    "commit_output",
    "discard_folder",
    "parse_scene_headers",
    "quarantine_scenes",
    "quarantine_uri_for",
    "read_batch",
    "search_records",
    "select_changed_records",
    "select_unenriched",
    "split_input",
    "stage_folder",
    "sweep_stages",
    "sweep_staging",
]

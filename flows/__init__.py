"""Prefect flows: they compose `tasks` and do nothing else."""

from ._batched import BatchedReadSummary, BatchFailure
from ._runners import task_runner, with_runner
from .enrich import EnrichSummary, enrich_collection
from .extract import extract_aois
from .ingest import IngestSummary, ingest_collection
from .sample import sample_points

__all__ = [
    "BatchFailure",
    "BatchedReadSummary",
    "EnrichSummary",
    "IngestSummary",
    "enrich_collection",
    "extract_aois",
    "ingest_collection",
    "sample_points",
    "task_runner",
    "with_runner",
]

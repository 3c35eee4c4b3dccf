"""Prefect flows: they compose `tasks` and do nothing else."""

from .extract import extract_aois
from .ingest import ingest_collection

__all__ = ["ingest_collection", "extract_aois"]

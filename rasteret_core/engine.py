"""The engine's low-level pieces in one place: ingestion steps, planner, fetcher, stores, header parsing.

The pipelines (``tasks``, ``flows``), the benchmarks and the tests import these from here;
users want the small surface of :mod:`rasteret_core` instead. Names here may change
between minor versions more freely than the top-level ones.
"""

from .geo.geometry import read_geometry_table
from .ingest import (
    Changes,
    ChangeSet,
    MergeResult,
    StoredDigests,
    ingest_records,
    merge_changes,
    read_digests,
    select_changed,
)
from .io.freshness import StaleAsset, check_fresh, expected_objects
from .io.store import ByteStore, IOStats, Stores
from .read.fetch import execute_plan
from .read.grid import Stack
from .read.planner import ChunkRequest, ReadPlan, plan_read
from .read.points import MATCHES, check_sample_options
from .read.stats import STATISTICS, check_stats
from .table.delta import read_table, transaction_version, write_table
from .table.enrich import (
    EnrichResult,
    HeaderFailure,
    Refresh,
    drop_failures,
    enrich_records,
    select_for_enrichment,
)
from .table.row_ranges import RowRange, TableSplit, read_row_range, split_table
from .table.sources import records_from_table
from .table.stac import StacRecords, StacSearch, records_from_items, records_from_stac, search, search_items
from .tiff.header import ImageInfo, TiffHeader
from .tiff.parser import fetch_headers, parse_header

__all__ = [
    "MATCHES",
    "STATISTICS",
    "ByteStore",
    "ChangeSet",
    "Changes",
    "ChunkRequest",
    "EnrichResult",
    "HeaderFailure",
    "IOStats",
    "ImageInfo",
    "MergeResult",
    "ReadPlan",
    "Refresh",
    "RowRange",
    "StacRecords",
    "StacSearch",
    "Stack",
    "StaleAsset",
    "StoredDigests",
    "Stores",
    "TableSplit",
    "TiffHeader",
    "check_fresh",
    "check_sample_options",
    "check_stats",
    "drop_failures",
    "enrich_records",
    "execute_plan",
    "expected_objects",
    "fetch_headers",
    "ingest_records",
    "merge_changes",
    "parse_header",
    "plan_read",
    "read_digests",
    "read_geometry_table",
    "read_row_range",
    "read_table",
    "records_from_items",
    "records_from_stac",
    "records_from_table",
    "search",
    "search_items",
    "select_changed",
    "select_for_enrichment",
    "split_table",
    "transaction_version",
    "write_table",
]

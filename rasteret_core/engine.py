"""The engine's low-level pieces in one place: ingestion steps, planner, fetcher, stores, header parsing.

The pipelines (``tasks``, ``flows``), the benchmarks and the tests import these from here;
users want the small surface of :mod:`rasteret_core` instead. Names here may change
between minor versions more freely than the top-level ones.
"""

from ._delta import read_table, write_table
from ._enrich import EnrichResult, HeaderFailure, drop_failures, enrich_records
from ._fetch import execute_plan, fetch_headers
from ._freshness import StaleAsset, check_fresh, expected_objects
from ._geometry import read_geometry_table
from ._header import ImageInfo, TiffHeader
from ._ingest import (
    Changes,
    ChangeSet,
    MergeResult,
    StoredDigests,
    ingest_records,
    merge_changes,
    read_digests,
    select_changed,
)
from ._planner import ChunkRequest, ReadPlan, plan_read
from ._points import MATCHES, check_sample_options
from ._read import Stack
from ._row_ranges import RowRange, TableSplit, read_row_range, split_table
from ._sources import records_from_table
from ._stac import StacRecords, StacSearch, records_from_items, records_from_stac, search, search_items
from ._stats import STATISTICS, check_stats
from ._store import ByteStore, IOStats, Stores
from ._tiff import parse_header

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
    "split_table",
    "write_table",
]

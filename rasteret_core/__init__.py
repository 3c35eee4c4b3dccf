"""Rasteret: an index-first raster engine for cloud-optimized GeoTIFFs.

A collection is a Delta Lake table of raster records with every asset's COG
header parsed once; reads plan byte ranges from it and fetch only the tiles a
request touches. This package is the library; it never imports Prefect.
"""

from importlib import metadata as _metadata

from ._catalog import CatalogEntry, build, catalog, register
from ._collection import Collection, load
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
    build_from_stac,
    build_from_table,
    ingest_records,
    merge_changes,
    read_digests,
    select_changed,
)
from ._planner import ReadPlan, plan_read
from ._points import MATCHES, check_sample_options
from ._row_ranges import RowRange, TableSplit, read_row_range, split_table
from ._sources import records_from_table
from ._stac import StacRecords, StacSearch, records_from_items, records_from_stac, search, search_items
from ._stats import STATISTICS, check_stats
from ._store import ByteStore, IOStats, Stores
from ._tiff import parse_header
from .errors import (
    BandError,
    CollectionError,
    ConfigError,
    DecodeError,
    FetchError,
    GeometryError,
    GridMismatchError,
    NoRecordsError,
    ObjectNotFoundError,
    PlanningError,
    RasteretError,
    SchemaError,
    SourceError,
    StaleAssetError,
    StatisticError,
    TiffFormatError,
    UnresolvedCRSError,
    UnsupportedTiffError,
)
from .settings import Settings

try:
    __version__ = _metadata.version("rasteret")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CatalogEntry",
    "Collection",
    "StacSearch",
    "StaleAsset",
    "build",
    "build_from_stac",
    "build_from_table",
    "catalog",
    "check_fresh",
    "expected_objects",
    "load",
    "records_from_table",
    "register",
    # the ingestion core: the build functions and the flows run these steps
    "ChangeSet",
    "Changes",
    "MergeResult",
    "StacRecords",
    "StoredDigests",
    "drop_failures",
    "ingest_records",
    "merge_changes",
    "read_digests",
    "records_from_stac",
    "select_changed",
    "read_table",
    "write_table",
    "STATISTICS",
    "check_stats",
    "search",
    "read_geometry_table",
    "MATCHES",
    "check_sample_options",
    # batched input: pipelines split an AOI/point table into row ranges, each read alone
    "RowRange",
    "TableSplit",
    "read_row_range",
    "split_table",
    "EnrichResult",
    "HeaderFailure",
    "enrich_records",
    "execute_plan",
    "fetch_headers",
    "ImageInfo",
    "TiffHeader",
    "ReadPlan",
    "plan_read",
    "records_from_items",
    "search_items",
    "ByteStore",
    "IOStats",
    "Stores",
    "parse_header",
    "Settings",
    "RasteretError",
    "ConfigError",
    "TiffFormatError",
    "UnresolvedCRSError",
    "UnsupportedTiffError",
    "PlanningError",
    "GeometryError",
    "BandError",
    "NoRecordsError",
    "GridMismatchError",
    "StatisticError",
    "FetchError",
    "ObjectNotFoundError",
    "DecodeError",
    "CollectionError",
    "SchemaError",
    "SourceError",
    "StaleAssetError",
    "__version__",
]

"""Rasteret: an index-first raster engine for cloud-optimized GeoTIFFs.

A collection is a Delta Lake table of raster records with every asset's COG
header parsed once; reads plan byte ranges from it and fetch only the tiles a
request touches. This package is the library; it never imports Prefect.
"""

from ._collection import Collection, build_from_stac, load, read_geometry_table
from ._enrich import EnrichResult, HeaderFailure, enrich_records
from ._fetch import execute_plan, fetch_headers
from ._header import ImageInfo, TiffHeader
from ._planner import ReadPlan, plan_read
from ._stac import records_from_items, search_items
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
    TiffFormatError,
    UnsupportedTiffError,
)
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "Collection",
    "build_from_stac",
    "load",
    "read_geometry_table",
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
    "UnsupportedTiffError",
    "PlanningError",
    "GeometryError",
    "BandError",
    "NoRecordsError",
    "GridMismatchError",
    "FetchError",
    "ObjectNotFoundError",
    "DecodeError",
    "CollectionError",
    "SchemaError",
    "SourceError",
    "__version__",
]

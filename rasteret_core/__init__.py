"""Rasteret: an index-first raster engine for cloud-optimized GeoTIFFs.

A collection is a Delta Lake table of raster records with every asset's COG
header parsed once; reads plan byte ranges from it and fetch only the tiles a
request touches. This package is the library; it never imports Prefect.

The names here are the user surface: collections, builds, the catalog, settings,
errors and the read contracts. The engine's pieces (ingestion steps, planner,
fetcher, stores, header parsing) live in :mod:`rasteret_core.engine`.
"""

import warnings as _warnings
from importlib import metadata as _metadata
from typing import Any as _Any

from . import engine, errors
from .collection import Collection, load
from .errors import *  # noqa: F403 - the whole error hierarchy is public (errors.__all__)
from .ingest import build_from_stac, build_from_table
from .io.freshness import StaleAsset
from .io.store import IOStats
from .read.grid import ReadOptions, ReadResult, Resampling
from .read.points import Match
from .read.xarray import Mosaic
from .registry import CatalogEntry, build, catalog, register
from .settings import Settings

try:
    __version__ = _metadata.version("rasteret")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    # collections and how to build them
    "CatalogEntry",
    "Collection",
    "build",
    "build_from_stac",
    "build_from_table",
    "catalog",
    "load",
    "register",
    # read contracts and results
    "IOStats",
    "Match",
    "Mosaic",
    "ReadOptions",
    "ReadResult",
    "Resampling",
    "StaleAsset",
    # settings
    "Settings",
    "__version__",
]
__all__ += [name for name in errors.__all__ if name.endswith("Error")]  # every error of the one hierarchy


def __getattr__(name: str) -> _Any:
    """The engine's names, once exported here, still resolve, with a DeprecationWarning."""
    if name in engine.__all__:
        _warnings.warn(f"rasteret_core.{name} moved to rasteret_core.engine.{name}; import it from there",
                       DeprecationWarning, stacklevel=2)
        return getattr(engine, name)
    raise AttributeError(f"module 'rasteret_core' has no attribute {name!r}")

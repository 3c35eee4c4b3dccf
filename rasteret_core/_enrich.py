"""Enrichment: parse each asset's COG header once and store it in the collection rows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from ._fetch import read_headers
from ._header import TiffHeader
from ._schema import header_to_dict
from ._store import IOStats, ObjectInfo
from .errors import RasteretError, UnsupportedTiffError
from .settings import Settings

__all__ = ["EnrichResult", "HeaderFailure", "enrich_records"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HeaderFailure:
    """One asset whose header could not be parsed: where and why."""

    record_id: str
    band: str
    href: str
    error: str
    retryable: bool


@dataclass(frozen=True, slots=True, eq=False)
class EnrichResult:
    """Rows with headers filled in, the assets that failed, and the I/O it took."""

    table: pa.Table
    failures: tuple[HeaderFailure, ...]
    parsed: int
    stats: IOStats


def enrich_records(
    table: pa.Table,
    *,
    settings: Settings,
    refresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EnrichResult:
    """Parse the COG header of every asset lacking one (every asset with ``refresh``).

    Failures are returned (never dropped): their assets keep a null header.
    """
    rows = table.to_pylist()
    todo = sorted(
        {
            asset["href"]
            for row in rows
            for asset in (row["assets"] or {}).values()
            if asset is not None and (refresh or asset["header"] is None)
        }
    )

    results, stats = read_headers(todo, settings, on_done=progress) if todo else ({}, IOStats())
    results = {uri: _placeable(result) for uri, result in results.items()}
    failures = []
    for row in rows:
        for band, asset in (row["assets"] or {}).items():
            if asset is None or asset["href"] not in results:
                continue
            result = results[asset["href"]]
            if isinstance(result, RasteretError):
                failures.append(
                    HeaderFailure(row["id"], band, asset["href"], str(result), bool(getattr(result, "retryable", False)))
                )
                asset["header"] = None
            else:
                header, info = result
                asset["header"] = header_to_dict(header, size=info.size, etag=info.etag, last_modified=info.last_modified)
    for failure in failures:
        log.warning("header of %s (record %s, band %s) not parsed: %s", failure.href, failure.record_id, failure.band, failure.error)
    out = pa.Table.from_pylist(rows, schema=table.schema)
    return EnrichResult(out, tuple(failures), len(todo) - len({f.href for f in failures}), stats)


def _placeable(
    result: tuple[TiffHeader, ObjectInfo] | RasteretError,
) -> tuple[TiffHeader, ObjectInfo] | RasteretError:
    """The parse result, or an error when GDAL could not place the raster on Earth either."""
    if isinstance(result, RasteretError):
        return result
    header = result[0]
    if header.transform is None or header.crs is None:
        missing = "a geotransform" if header.transform is None else "a CRS"
        return UnsupportedTiffError(
            f"the raster has no {missing} (GCPs only, or no georeferencing): a collection places every "
            "record on Earth, and GDAL cannot either without warping; georeference it first "
            "(gdalwarp, or gdal_translate -a_srs/-a_ullr) or leave the file out",
            uri=header.uri,
        )
    return result

"""Enrichment: parse each asset's COG header once and store it in the collection rows.

A header whose GeoKeys define no CRS Rasteret can build (:class:`~rasteret_core.errors.UnresolvedCRSError`)
is parsed again with the record's catalog CRS (``proj:wkt2`` / ``proj:projjson``, or the
``crs`` column they were read into), and says ``crs_source="catalog"``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_core.errors import CollectionError, RasteretError, UnresolvedCRSError, UnsupportedTiffError, redact
from rasteret_core.io.freshness import stale_assets
from rasteret_core.io.runtime import with_stores
from rasteret_core.io.store import IOStats, ObjectInfo, Stores
from rasteret_core.settings import Settings
from rasteret_core.tiff.header import TiffHeader
from rasteret_core.tiff.parser import parse_header, read_headers

from .schema import header_to_dict

__all__ = ["EnrichResult", "HeaderFailure", "Refresh", "changed_headers", "drop_failures", "enrich_records",
           "raise_failures", "select_for_enrichment"]

log = logging.getLogger(__name__)


Refresh = bool | Literal["stale"]
"""Which headers an enrichment parses: ``False`` the missing ones, ``"stale"`` also those whose
object changed since (one HEAD per object), ``True`` every one."""


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
    unresolved = {href for href, result in results.items() if isinstance(result, UnresolvedCRSError)}
    fallbacks: dict[str, str] = {}
    for row in rows if unresolved else ():
        hrefs = [a["href"] for a in (row["assets"] or {}).values() if a is not None and a["href"] in unresolved]
        if hrefs and (crs := _catalog_crs(row)) is not None:
            fallbacks.update(dict.fromkeys(hrefs, crs))
    if fallbacks:
        again, more = _read_headers_with_crs(fallbacks, settings)
        results.update(again)
        stats.include(more)
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
        log.warning("header of %s (record %s, band %s) not parsed: %s", redact(failure.href), failure.record_id,
                    failure.band, failure.error)
    out = pa.Table.from_pylist(rows, schema=table.schema)
    return EnrichResult(out, tuple(failures), len(todo) - len({f.href for f in failures}), stats)


def raise_failures(failures: Sequence[HeaderFailure], *, hint: str = "") -> None:
    """Raise when any header failed, listing the first few (record, band, error), then ``hint``.

    Raises:
        CollectionError: ``failures`` is not empty.
    """
    if failures:
        listed = "; ".join(f"{f.record_id}/{f.band} {f.error}" for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise CollectionError(f"{len(failures)} asset header(s) could not be parsed: {listed}{more}{hint}")


def drop_failures(table: pa.Table, failures: Sequence[HeaderFailure], *, partial: bool) -> pa.Table:
    """``table`` without the records an asset of which failed, with ``partial``; without it, refuse them.

    Raises:
        CollectionError: a header failed and ``partial`` is off.
    """
    if not failures:
        return table
    if not partial:
        raise_failures(failures, hint="; nothing was committed: fix or drop those files, or build with "
                       "partial=True to leave their records out (listed in the commit metadata)")
    for failure in failures:
        log.warning("record %s left out: %s", failure.record_id, failure.error)
    bad = pa.array(sorted({f.record_id for f in failures}), pa.string())
    return table.filter(pc.invert(pc.is_in(table["id"], value_set=bad)))


def _placeable(
    result: tuple[TiffHeader, ObjectInfo] | RasteretError,
) -> tuple[TiffHeader, ObjectInfo] | RasteretError:
    """The parse result, or an error when GDAL could not place the raster on Earth either."""
    if isinstance(result, RasteretError):
        return result
    header = result[0]
    if header.transform is None or header.crs is None:
        missing = "geotransform" if header.transform is None else "CRS"
        return UnsupportedTiffError(
            f"the raster has no {missing} (GCPs only, or no georeferencing): a collection places every "
            "record on Earth, and GDAL cannot either without warping; georeference it first "
            "(gdalwarp, or gdal_translate -a_srs/-a_ullr) or leave the file out",
            uri=header.uri,
        )
    return result


_CATALOG_CRS_KEYS = ("proj:wkt2", "proj:projjson")


def _catalog_crs(row: Mapping[str, Any]) -> str | None:
    """The record's catalog CRS: a ``proj:wkt2`` / ``proj:projjson`` column or property, else its ``crs``."""
    try:
        properties = json.loads(row.get("properties") or "{}")
    except (TypeError, ValueError):
        properties = {}
    sources = (row, properties if isinstance(properties, Mapping) else {})
    for value in [source.get(key) for source in sources for key in _CATALOG_CRS_KEYS] + [row.get("crs")]:
        if value:
            return json.dumps(value) if isinstance(value, Mapping) else str(value)
    return None


def _read_headers_with_crs(
    fallbacks: Mapping[str, str], settings: Settings
) -> tuple[dict[str, tuple[TiffHeader, ObjectInfo] | RasteretError], IOStats]:
    """Parse the headers at ``fallbacks``' URIs again, each with its catalog CRS as ``fallback_crs``."""

    async def one(stores: Stores, uri: str, crs: str) -> tuple[str, tuple[TiffHeader, ObjectInfo] | RasteretError]:
        try:
            info, header = await asyncio.gather(
                stores.head(uri),
                parse_header(uri, stores, header_read=stores.settings.header_read, fallback_crs=crs),
            )
        except RasteretError as exc:
            return uri, exc
        log.info("%s: CRS from the catalog (the GeoKeys define none Rasteret can build)", uri)
        return uri, (header, info)

    async def go(stores: Stores) -> tuple[dict[str, tuple[TiffHeader, ObjectInfo] | RasteretError], IOStats]:
        done = await asyncio.gather(*(one(stores, uri, crs) for uri, crs in fallbacks.items()))
        return dict(done), stores.stats

    return with_stores(settings, go)


def select_for_enrichment(table: pa.Table, *, refresh: Refresh, settings: Settings) -> pa.Table:
    """The rows of ``table`` an enrichment with ``refresh`` must parse (see :data:`Refresh`).

    With ``"stale"`` the headers of changed objects are cleared in the rows returned, so
    that parsing them (``enrich_records(refresh=False)``) fills them again. The library
    (``Collection.enrich``) and the enrichment flow select with this one function.
    """
    if refresh is True:
        return table
    if refresh == "stale":
        stale = {(a.record_id, a.band) for a in stale_assets(table, settings=settings)}
        table = _without_headers(table, stale)
    return table.filter(_lacks_a_header(table))


def changed_headers(before: pa.Table, after: pa.Table) -> pa.Table:
    """The rows of ``after`` (``before`` enriched, row for row) whose headers changed: presence, ETag, size, time."""
    return after.filter(pc.not_equal(_header_facts(after), _header_facts(before)))


def _headers(table: pa.Table) -> list[pa.ChunkedArray]:
    """Each band's header column (null where the asset or its header is)."""
    return [pc.struct_field(pc.struct_field(table["assets"], [i]), "header")
            for i in range(table.schema.field("assets").type.num_fields)]


def _header_facts(table: pa.Table) -> pa.ChunkedArray:
    """Per row, every band's header presence, ETag, size and last-modified time, as one string."""
    parts = []
    for header in _headers(table):
        parts.append(pc.if_else(header.is_valid(), "h", "-"))
        parts += [pc.cast(pc.struct_field(header, name), pa.string()).fill_null("-")
                  for name in ("etag", "size", "last_modified")]
    return pc.binary_join_element_wise(*parts, "|")


def _lacks_a_header(table: pa.Table) -> pa.ChunkedArray:
    """Per row, whether an asset of it has no header."""
    lacking = None
    for i, header in enumerate(_headers(table)):
        asset = pc.struct_field(table["assets"], [i])
        missing = pc.and_(asset.is_valid(), pc.invert(header.is_valid()))
        lacking = missing if lacking is None else pc.or_(lacking, missing)
    return lacking


def _without_headers(table: pa.Table, assets: set[tuple[str, str]]) -> pa.Table:
    """``table`` with the headers of the given (record id, band) assets set to null."""
    if not assets:
        return table
    rows = {rid for rid, _ in assets}
    hit = pc.is_in(table["id"], value_set=pa.array(sorted(rows), pa.string()))
    changed = table.filter(hit).to_pylist()
    for row in changed:
        for band, asset in (row["assets"] or {}).items():
            if asset is not None and (row["id"], band) in assets:
                asset["header"] = None
    return pa.concat_tables([table.filter(pc.invert(hit)),
                             pa.Table.from_pylist(changed, schema=table.schema)])

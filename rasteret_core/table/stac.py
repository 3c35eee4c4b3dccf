"""STAC items in, collection records out.

:func:`search` asks a STAC API (pystac-client, every page); :func:`records_from_items`
normalises items to collection rows (see `table.schema`): footprint to WKB, native CRS
from the projection extension (``proj:code``, ``proj:epsg``, ``proj:wkt2``,
``proj:projjson``, on the first band's asset or the item), COG assets picked by
media type and role, or by an explicit band map, hrefs rewritten by prefix.

A ``query`` (the STAC query extension) goes to the server when it conforms to
the extension; otherwise (``rustac serve``, for one) the search runs without it
and the query is applied to the returned items here, and the result says so.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, Unpack

import pyarrow as pa
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from rasteret_core.errors import GeometryError, SourceError, redact
from rasteret_core.geo.geometry import to_geometry

from .schema import collection_schema

__all__ = [
    "StacRecords",
    "StacSearch",
    "cog_asset_keys",
    "matches_query",
    "native_crs",
    "records_from_items",
    "records_from_stac",
    "rewrite_href",
    "search",
    "search_items",
]

log = logging.getLogger(__name__)

_COG_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff", "application/geotiff")
_TIFF_SUFFIX = re.compile(r"\.tiff?$", re.IGNORECASE)
_NOT_DATA_ROLES = {"visual", "overview", "thumbnail"}
_CORE_PROPS = {"datetime", "eo:cloud_cover", "proj:epsg", "proj:code", "proj:wkt2", "proj:projjson"}
_QUERY_CONFORMANCE = re.compile(r"/item-search#query$")


@dataclass(frozen=True, slots=True)
class StacSearch:
    """The items of a search and how its ``query`` was applied.

    Attributes:
        items: The matching items, as dicts, in the server's order.
        query_applied: ``"server"``, ``"client"`` (the server does not conform to the
            query extension, so the items were filtered here) or None (no query).
        matched: Items the server returned (before a client-side query).
    """

    items: list[dict[str, Any]]
    query_applied: Literal["server", "client"] | None
    matched: int


def search(
    stac_api: str,
    *,
    collections: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    intersects: Any | None = None,
    query: Mapping[str, Any] | None = None,
    max_items: int | None = None,
    page_size: int = 100,
    timeout: float | None = 30.0,
) -> StacSearch:
    """Search a STAC API, following every page; apply ``query`` here if the server cannot.

    Args:
        stac_api: API root URL.
        collections: Collection id(s).
        bbox: ``(minx, miny, maxx, maxy)`` in lon/lat.
        datetime: ``"START/END"`` (ISO 8601, ``..`` for an open end) or one instant.
        intersects: A GeoJSON geometry (or anything :func:`to_geometry` reads) in lon/lat.
        query: STAC query extension, ``{"eo:cloud_cover": {"lt": 20}}``.
        max_items: Stop after this many items (counted after a client-side query).
        page_size: Items per page requested.
        timeout: Seconds to wait for each answer (connect and read); None waits forever.

    Raises:
        SourceError: the API failed, timed out or answered something unusable (not JSON, not STAC).
    """
    import requests
    from pystac_client import Client, ConformanceClasses
    from pystac_client.exceptions import APIError

    if intersects is not None and not isinstance(intersects, Mapping):
        try:
            intersects = shapely.geometry.mapping(to_geometry(intersects))
        except GeometryError as exc:
            raise SourceError(f"intersects= is not a geometry: {exc}") from exc
    try:
        client = Client.open(stac_api, timeout=timeout)
        server_query = bool(query) and client.conforms_to(ConformanceClasses.QUERY)
        found = client.search(
            # pystac-client reads any iterable here; its annotations want a list
            collections=[collections] if isinstance(collections, str) else None if collections is None else list(collections),
            bbox=None if bbox is None else list(bbox),
            datetime=datetime,
            intersects=None if intersects is None else dict(intersects),  # pystac-client takes only a dict
            query=dict(query) if server_query and query else None,
            max_items=None if query and not server_query else max_items,
            limit=page_size,
        )
        items = list(found.items_as_dicts())
    except (APIError, requests.RequestException) as exc:
        cause = exc.__cause__ or exc.__context__ if isinstance(exc, APIError) else exc  # pystac-client wraps requests'
        if isinstance(cause, requests.Timeout):
            raise SourceError(f"STAC search at {stac_api} failed: timed out after {timeout}s "
                              "(RASTERET_REQUEST_TIMEOUT); the API is slow or stalled: try again later") from exc
        if isinstance(cause, requests.ConnectionError):
            raise SourceError(f"STAC search at {stac_api} failed: cannot get an answer (connection refused, closed "
                              f"or malformed): {cause}") from exc
        if isinstance(cause, (requests.exceptions.JSONDecodeError, json.JSONDecodeError)):
            raise SourceError(f"STAC search at {stac_api} failed: the API answered something that is not JSON "
                              f"({cause}); check the URL is a STAC API root") from exc
        status = getattr(exc, "status_code", None)
        raise SourceError(f"STAC search at {stac_api} failed: the API answered HTTP {status or '(error)'}: "
                          f"{str(exc)[:300]}; try again later, or check the API") from exc
    except (requests.exceptions.JSONDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"STAC search at {stac_api} failed: the API answered something that is not JSON ({exc}); "
                          "check the URL is a STAC API root") from exc
    except (requests.ConnectionError, OSError) as exc:
        raise SourceError(f"STAC search at {stac_api} failed: cannot get an answer (connection refused, closed or "
                          f"malformed): {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise SourceError(f"STAC search at {stac_api} failed: the answer is not STAC ({type(exc).__name__}: "
                          f"{exc})") from exc
    matched = len(items)
    applied: Literal["server", "client"] | None = None
    if query:
        applied = "server" if server_query else "client"
        if not server_query:
            items = [item for item in items if matches_query(item, query)]
            if max_items is not None:
                items = items[:max_items]
            log.info("%s does not conform to the STAC query extension: query applied to the %d returned item(s) "
                     "here, %d kept", redact(stac_api), matched, len(items))
    log.info("STAC search at %s returned %d items", redact(stac_api), len(items))
    return StacSearch(items=items, query_applied=applied, matched=matched)


def search_items(stac_api: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Search a STAC API and return the matching items as dicts (see :func:`search` for the options)."""
    return search(stac_api, **kwargs).items


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StacRecords:
    """A STAC search normalised to collection rows, and what to record about it.

    Attributes:
        table: The records (headers not yet parsed), one per item.
        metadata: The search as commit metadata: ``source``, ``collection``, ``bbox``,
            ``datetime``, ``intersects`` (whether given), ``query``, ``query_applied``,
            ``bands``, ``href_rewrites``, ``items``. JSON values, never secrets.
    """

    table: pa.Table
    metadata: dict[str, Any]


class SearchKeywords(TypedDict, total=False):
    """The filters of a STAC search (:func:`search`), as keyword arguments of every STAC build.

    ``bbox`` (lon/lat), ``datetime`` (``"START/END"``, ISO 8601, ``..`` open), ``intersects``
    (a geometry in lon/lat), ``query`` (the query extension, applied here when the server
    lacks it) and ``max_items``.
    """

    bbox: Sequence[float] | None
    datetime: str | None
    intersects: Any | None
    query: Mapping[str, Any] | None
    max_items: int | None


def records_from_stac(stac_api: str, *, collection: str, bands: Mapping[str, str] | None = None,
                      href_rewrites: Mapping[str, str] | None = None, timeout: float | None = 30.0,
                      **filters: Unpack[SearchKeywords]) -> StacRecords:
    """Search a STAC API (:func:`search`, with ``filters``) and normalise the items (:func:`records_from_items`).

    Every ingestion from STAC starts here: :func:`~rasteret_core.build_from_stac` and the
    ingestion flow alike.

    ``timeout`` bounds each answer of the API (:func:`search`). The metadata names the
    API without its query string or user info (:func:`~rasteret_core.errors.redact`).

    Raises:
        SourceError: the search failed or found nothing to build from.
    """
    found = search(stac_api, collections=collection, timeout=timeout, **filters)
    table = records_from_items(found.items, bands=bands, href_rewrites=href_rewrites)
    bbox, query = filters.get("bbox"), filters.get("query")
    metadata = {
        "source": redact(stac_api), "collection": collection, "bbox": list(bbox) if bbox is not None else None,
        "datetime": filters.get("datetime"), "intersects": filters.get("intersects") is not None,
        "query": dict(query) if query else query,
        "query_applied": found.query_applied, "bands": dict(bands) if bands else None,
        "href_rewrites": dict(href_rewrites) if href_rewrites else None, "items": len(found.items),
    }
    return StacRecords(table=table, metadata=metadata)


_OPERATORS: dict[str, Any] = {
    "eq": lambda v, x: v == x,
    "neq": lambda v, x: v != x,
    "lt": lambda v, x: v is not None and v < x,
    "lte": lambda v, x: v is not None and v <= x,
    "gt": lambda v, x: v is not None and v > x,
    "gte": lambda v, x: v is not None and v >= x,
    "startsWith": lambda v, x: isinstance(v, str) and v.startswith(x),
    "endsWith": lambda v, x: isinstance(v, str) and v.endswith(x),
    "contains": lambda v, x: isinstance(v, str) and x in v,
    "in": lambda v, x: v in x,
}


def matches_query(item: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Whether an item meets a STAC query-extension ``query`` (every property, every operator).

    Raises:
        SourceError: an operator is not one of the extension's.
    """
    props = item.get("properties", {})
    for name, ops in query.items():
        value = props.get(name, item.get(name))
        for op, operand in (ops.items() if isinstance(ops, Mapping) else [("eq", ops)]):
            if op not in _OPERATORS:
                raise SourceError(f"query operator {op!r} (on {name}) is not one of {sorted(_OPERATORS)}")
            try:
                if not _OPERATORS[op](value, operand):
                    return False
            except TypeError:
                return False
    return True


def cog_asset_keys(item: Mapping[str, Any]) -> list[str]:
    """Asset keys of an item that are GeoTIFF data.

    An asset counts when its media type is a GeoTIFF one (or, with no media type,
    its href ends in ``.tif``/``.tiff``) and its roles include ``data`` or none of
    ``visual``, ``overview``, ``thumbnail``.
    """
    keys = []
    for key, asset in item.get("assets", {}).items():
        media = str(asset.get("type") or "").lower()
        tiff = media.startswith(_COG_TYPES) or (not media and bool(_TIFF_SUFFIX.search(str(asset.get("href", "")))))
        roles = set(asset.get("roles") or ["data"])
        if tiff and ("data" in roles or not roles & _NOT_DATA_ROLES):
            keys.append(key)
    return keys


def native_crs(item: Mapping[str, Any], asset: Mapping[str, Any] | None = None) -> tuple[str | None, int | None]:
    """The native CRS of an item (its asset's first): ``("EPSG:<code>", code)``, ``(WKT or code, None)``, or Nones.

    Reads ``proj:code``, ``proj:epsg``, ``proj:wkt2`` and ``proj:projjson`` (in that
    order of preference), on the asset, then on the item's properties.

    Raises:
        SourceError: a ``proj:wkt2`` or ``proj:projjson`` value is not a CRS.
    """
    for source in (asset or {}, item.get("properties", {})):
        code = source.get("proj:code")
        epsg = source.get("proj:epsg")
        if epsg is None and isinstance(code, str) and code.upper().startswith("EPSG:"):
            epsg = int(code.split(":", 1)[1])
        if epsg is not None:
            return f"EPSG:{int(epsg)}", int(epsg)
        if code:
            return str(code), None
        for key in ("proj:wkt2", "proj:projjson"):
            value = source.get(key)
            if value:
                try:
                    crs = CRS.from_user_input(json.dumps(value) if isinstance(value, Mapping) else value)
                except CRSError as exc:
                    raise SourceError(f"item {item.get('id')}: {key} is not a CRS: {exc}") from exc
                found = crs.to_epsg()
                return (f"EPSG:{found}", found) if found else (crs.to_wkt(), None)
    return None, None


def rewrite_href(href: str, rewrites: Mapping[str, str] | None) -> str:
    """``href`` with its longest matching prefix replaced (``{"https://host/": "s3://bucket/"}``)."""
    for prefix in sorted(rewrites or {}, key=len, reverse=True):
        if href.startswith(prefix):
            return rewrites[prefix] + href[len(prefix):]  # type: ignore[index]
    return href


def parse_utc(raw: Any, *, what: str = "datetime") -> datetime:
    """An ISO 8601 string (or a datetime) as an aware datetime in UTC; a naive one is UTC."""
    if isinstance(raw, datetime):
        dt = raw
    else:
        try:
            dt = datetime.fromisoformat(str(raw))
        except ValueError as exc:
            raise SourceError(f"{what} {raw!r} is not ISO 8601") from exc
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def _parse_datetime(item: Mapping[str, Any]) -> datetime | None:
    props = item.get("properties", {})
    raw = props.get("datetime") or props.get("start_datetime")
    return None if raw is None else parse_utc(raw, what=f"item {item.get('id')}: datetime")


def split_band_spec(spec: str, assets: Mapping[str, Any]) -> tuple[str, int | None]:
    """``"image:4"`` -> (``"image"``, 4): the 4th band (1-based) of a multi-band asset.

    A spec that names an asset as it is (``"B04"``, even ``"a:1"`` if that key exists) is
    the asset's first band (None).
    """
    key, sep, index = spec.rpartition(":")
    if spec in assets or not sep or not index.isdigit():
        return spec, None
    if int(index) < 1:
        raise SourceError(f"band {spec!r}: band numbers start at 1")
    return key, int(index)


def records_from_items(
    items: Sequence[Mapping[str, Any]],
    *,
    bands: Mapping[str, str] | None = None,
    href_rewrites: Mapping[str, str] | None = None,
    extra: Sequence[pa.Field] = (),
) -> pa.Table:
    """Normalise STAC items to a collection table (headers not yet parsed).

    Args:
        items: STAC items as dicts. ``geometry`` may be GeoJSON, WKB or shapely, in lon/lat.
        bands: band name -> asset key. None takes every COG asset (:func:`cog_asset_keys`)
            of the first item, named by its asset key.
        href_rewrites: href prefix -> replacement, applied to every asset href.
        extra: user columns, taken from each item's top-level key of the same name.

    Raises:
        SourceError: no items, no GeoTIFF asset, or an item that is not STAC.
    """
    if not items:
        raise SourceError("no items to build a collection from; widen the search (bbox, datetime, collection)")
    band_map = dict(bands) if bands else {k: k for k in cog_asset_keys(items[0])}
    if not band_map:
        raise SourceError(
            f"item {items[0].get('id')} has no GeoTIFF assets; pass bands={{name: asset_key}} to choose assets"
        )
    rows = []
    for item in items:
        if not item.get("id") or item.get("geometry") is None:
            raise SourceError(f"not a STAC item (no id or geometry): {str(item)[:200]}")
        try:
            geom = to_geometry(item["geometry"])
        except GeometryError as exc:
            raise SourceError(f"item {item['id']}: geometry: {exc}") from exc
        props = dict(item.get("properties", {}))
        bbox = item.get("bbox")
        xmin, ymin, xmax, ymax = (bbox[0], bbox[1], bbox[-3 if len(bbox) == 6 else 2], bbox[-2 if len(bbox) == 6 else 3]) \
            if bbox is not None and len(bbox) in (4, 6) else geom.bounds
        assets: dict[str, Any] = {}
        first_asset = None
        for band, spec in band_map.items():
            key, band_index = split_band_spec(spec, item.get("assets") or {})
            asset = (item.get("assets") or {}).get(key)
            if asset is None or not asset.get("href"):
                assets[band] = None
                continue
            first_asset = first_asset or asset
            assets[band] = {
                "key": key,
                "href": rewrite_href(str(asset["href"]), href_rewrites),
                "type": asset.get("type"),
                "roles": list(asset["roles"]) if asset.get("roles") is not None else None,
                "band_index": band_index,
                "header": asset.get("header"),
            }
        crs, epsg = native_crs(item, first_asset)
        rows.append(
            {
                "id": str(item["id"]),
                "collection": item.get("collection"),
                "datetime": _parse_datetime(item),
                "geometry": shapely.to_wkb(geom),
                "bbox": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
                "crs": crs,
                "proj:epsg": epsg,
                "eo:cloud_cover": props.get("eo:cloud_cover"),
                "split": item.get("split"),
                "properties": json.dumps({k: v for k, v in props.items() if k not in _CORE_PROPS}, default=str,
                                         sort_keys=True),
                **{f.name: item.get(f.name) for f in extra},
                "assets": assets,
            }
        )
    try:
        return pa.Table.from_pylist(rows, schema=collection_schema(list(band_map), list(extra)))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SourceError(f"the records do not fit the collection schema: {exc}") from exc

"""STAC items in, collection records out.

:func:`search_items` asks a STAC API (pystac-client, paged); :func:`records_from_items`
normalises items to collection rows (see `_schema`): footprint to WKB, native CRS
from the projection extension (``proj:code``, ``proj:epsg``, ``proj:wkt2``,
``proj:projjson``, on the item or its assets), COG assets picked by media type and
role, or by an explicit band map.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from ._schema import collection_schema
from .errors import SourceError

__all__ = ["search_items", "records_from_items", "cog_asset_keys"]

log = logging.getLogger(__name__)

_COG_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")
_CORE_PROPS = {"datetime", "eo:cloud_cover", "proj:epsg", "proj:code", "proj:wkt2", "proj:projjson"}


def search_items(
    stac_api: str,
    *,
    collections: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    intersects: Mapping[str, Any] | None = None,
    query: Mapping[str, Any] | None = None,
    max_items: int | None = None,
    page_size: int = 100,
) -> list[dict[str, Any]]:
    """Search a STAC API and return the matching items as dicts (all pages)."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(stac_api)
        search = client.search(
            collections=[collections] if isinstance(collections, str) else collections,
            bbox=bbox,
            datetime=datetime,
            intersects=intersects,
            query=dict(query) if query else None,
            max_items=max_items,
            limit=page_size,
        )
        items = list(search.items_as_dicts())
    except (APIError, OSError, ValueError) as exc:
        raise SourceError(f"STAC search at {stac_api} failed: {exc}") from exc
    log.info("STAC search at %s returned %d items", stac_api, len(items))
    return items


def cog_asset_keys(item: Mapping[str, Any]) -> list[str]:
    """Asset keys of an item that are GeoTIFF data (media type GeoTIFF, role data or no role)."""
    keys = []
    for key, asset in item.get("assets", {}).items():
        media = str(asset.get("type", "")).lower()
        roles = asset.get("roles") or ["data"]
        if media.startswith(_COG_TYPES) and ("data" in roles or "visual" not in roles and "overview" not in roles and "thumbnail" not in roles):
            keys.append(key)
    return keys


def _native_crs(item: Mapping[str, Any], asset: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
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
                    crs = CRS.from_user_input(json.dumps(value) if isinstance(value, dict) else value)
                except CRSError as exc:
                    raise SourceError(f"item {item.get('id')}: {key} is not a CRS: {exc}") from exc
                found = crs.to_epsg()
                return (f"EPSG:{found}", found) if found else (crs.to_wkt(), None)
    return None, None


def _parse_datetime(item: Mapping[str, Any]) -> datetime | None:
    props = item.get("properties", {})
    raw = props.get("datetime") or props.get("start_datetime")
    if raw is None:
        return None
    try:
        dt = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as exc:
        raise SourceError(f"item {item.get('id')}: datetime {raw!r} is not ISO 8601") from exc
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def records_from_items(items: Sequence[Mapping[str, Any]], *, bands: Mapping[str, str] | None = None) -> pa.Table:
    """Normalise STAC items to a collection table (headers not yet parsed).

    Args:
        items: STAC items as dicts.
        bands: band name -> asset key. None takes every COG asset of the first
            item, named by its asset key.
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
        if "id" not in item or "geometry" not in item:
            raise SourceError(f"not a STAC item (no id or geometry): {str(item)[:200]}")
        try:
            geom = shapely.geometry.shape(item["geometry"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise SourceError(f"item {item['id']}: geometry is not GeoJSON: {exc}") from exc
        props = dict(item.get("properties", {}))
        xmin, ymin, xmax, ymax = item.get("bbox") or geom.bounds
        assets = {}
        first_asset = None
        for band, key in band_map.items():
            asset = item.get("assets", {}).get(key)
            if asset is None:
                assets[band] = None
                continue
            first_asset = first_asset or asset
            assets[band] = {
                "key": key,
                "href": asset["href"],
                "type": asset.get("type"),
                "roles": asset.get("roles"),
                "header": None,
            }
        crs, epsg = _native_crs(item, first_asset)
        rows.append(
            {
                "id": item["id"],
                "collection": item.get("collection"),
                "datetime": _parse_datetime(item),
                "geometry": shapely.to_wkb(geom),
                "bbox": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
                "crs": crs,
                "proj:epsg": epsg,
                "eo:cloud_cover": props.get("eo:cloud_cover"),
                "split": None,
                "properties": json.dumps({k: v for k, v in props.items() if k not in _CORE_PROPS}, default=str),
                "assets": assets,
            }
        )
    return pa.Table.from_pylist(rows, schema=collection_schema(list(band_map)))

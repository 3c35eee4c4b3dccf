"""Record tables in, collection rows out: :func:`records_from_table` normalises any table of records.

It takes a collection table (an export) as it is, a stac-geoparquet table, or a
flat table of ids, footprints and href columns; STAC items go through
:func:`~rasteret_core.table.stac.records_from_items`. Building and committing is
:mod:`rasteret_core.ingest`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import shapely

from rasteret_core.errors import SchemaError
from rasteret_core.geo.geometry import CRS84, read_geometry_table, reproject

from .schema import conform_table, missing_columns, without_internal
from .stac import records_from_items

__all__ = ["records_from_table"]

_AUTHORITY_CODE = re.compile(r"^[A-Za-z_]+:\S+$")
# Top-level stac-geoparquet columns that are not item properties.
_STAC_TOP = {"type", "stac_version", "stac_extensions", "links", "id", "geometry", "bbox", "assets", "collection"}


def records_from_table(
    source: Any,
    *,
    column_map: Mapping[str, str] | None = None,
    bands: Mapping[str, str] | None = None,
    geometry_crs: Any | None = None,
) -> pa.Table:
    """Normalise a record table to collection rows (headers kept where present, else null).

    Args:
        source: A path or URI of Parquet/GeoParquet, a ``pa.Table``, a
            ``RecordBatchReader``, a GeoDataFrame, or anything with ``__arrow_c_stream__``.
            Three shapes are understood:

            - a collection table (an export of one): taken as it is;
            - a stac-geoparquet table: ``assets`` is a struct of asset key ->
              ``struct<href, type, roles, ...>``, other non-STAC columns are item
              properties; ``bands`` maps band name -> asset key (default: every
              COG asset of the first row);
            - any other table: one row per record with ``id``, ``geometry`` (WKB,
              in the table's CRS), optionally ``datetime``, ``bbox``,
              ``collection``, ``crs``/``proj:epsg``/``proj:code``,
              ``eo:cloud_cover``, ``split``, and href columns; ``bands`` maps band
              name -> href column (default: every ``<band>_href`` column); other
              columns are kept as user columns.
        column_map: source column -> collection column, applied first
            (``{"scene_id": "id", "footprint": "geometry"}``).
        bands: See above.
        geometry_crs: CRS of the geometries when the table does not say (GeoParquet or
            GeoDataFrame metadata); footprints are transformed to OGC:CRS84.

    Raises:
        SchemaError: no ``id``/``geometry`` column, or no href column to make bands of.
        SourceError: rows that cannot be records.
    """
    inverse = {new: old for old, new in (column_map or {}).items()}
    table, crs = read_geometry_table(source, geometry_column=inverse.get("geometry", "geometry"),
                                     geometry_crs=geometry_crs)
    if column_map:
        unknown = sorted(set(column_map) - set(table.schema.names))
        if unknown:
            raise SchemaError(f"column_map names columns the table lacks: {unknown} (columns: {table.schema.names})")
        table = table.rename_columns([column_map.get(n, n) for n in table.schema.names])
    if "id" not in table.schema.names:
        raise SchemaError(f"the table has no id column (columns: {table.schema.names}); map one with column_map=")
    if not missing_columns(table.schema) and _has_headers(table.schema):
        table = conform_table(table.replace_schema_metadata(None))
        if crs != CRS84:
            raise SchemaError(f"a collection table's footprints must be in OGC:CRS84, this one says {crs.to_string()}")
        return without_internal(table)
    rows = table.to_pylist()
    if crs != CRS84:
        for row in rows:
            footprint = reproject(shapely.from_wkb(row["geometry"]), crs, CRS84)
            row["geometry"], row["bbox"] = shapely.to_wkb(footprint), None
    if "assets" in table.schema.names:
        items = [_stac_item(row) for row in rows]
        return records_from_items(items, bands=bands)
    band_map = dict(bands) if bands else {n[: -len("_href")]: n for n in table.schema.names if n.endswith("_href")}
    if not band_map:
        raise SchemaError(
            "the table has no assets struct and no <band>_href columns; pass bands={'red': 'href_column', ...}"
        )
    absent = sorted(set(band_map.values()) - set(table.schema.names))
    if absent:
        raise SchemaError(f"bands= names href columns the table lacks: {absent}")
    known = {"id", "geometry", "bbox", "collection", "datetime", "crs", "proj:epsg", "proj:code", "eo:cloud_cover",
             "split", "properties", *band_map.values()}
    extra = [f for f in table.schema if f.name not in known]
    items = [_flat_item(row, band_map, extra) for row in rows]
    return records_from_items(items, bands={band: band for band in band_map}, extra=extra)


def _has_headers(schema: pa.Schema) -> bool:
    assets = schema.field("assets").type
    return pa.types.is_struct(assets) and all(
        pa.types.is_struct(f.type) and "header" in [g.name for g in f.type] for f in assets
    )


def _bbox_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return [value["xmin"], value["ymin"], value["xmax"], value["ymax"]]
    return list(value)


def _stac_item(row: dict[str, Any]) -> dict[str, Any]:
    assets = {k: v for k, v in (row.get("assets") or {}).items() if v is not None}
    props = {k: v for k, v in row.items() if k not in _STAC_TOP}
    if isinstance(props.get("properties"), str):  # a collection table whose assets lack headers
        props.update(json.loads(props.pop("properties") or "{}"))
    return {"id": row["id"], "geometry": row["geometry"], "bbox": _bbox_list(row.get("bbox")),
            "collection": row.get("collection"), "assets": assets, "properties": props, "split": row.get("split")}


def _flat_item(row: dict[str, Any], band_map: Mapping[str, str], extra: Sequence[pa.Field]) -> dict[str, Any]:
    props = json.loads(row["properties"]) if isinstance(row.get("properties"), str) else {}
    for key in ("datetime", "eo:cloud_cover", "proj:epsg", "proj:code"):
        if row.get(key) is not None:
            props[key] = row[key]
    crs = row.get("crs")
    if crs and "proj:epsg" not in props and "proj:code" not in props:
        props["proj:code" if _AUTHORITY_CODE.match(str(crs)) else "proj:wkt2"] = crs
    return {
        "id": row["id"], "geometry": row["geometry"], "bbox": _bbox_list(row.get("bbox")),
        "collection": row.get("collection"), "split": row.get("split"), "properties": props,
        "assets": {band: {"href": row[col], "type": None, "roles": ["data"]}
                   for band, col in band_map.items() if row.get(col)},
        **{f.name: row[f.name] for f in extra},
    }

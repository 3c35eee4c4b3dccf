"""Building collections: from a STAC API search, or from any record table.

Every build goes through :func:`ingest_records`: rows whose content (and parsed
headers) the collection already holds are skipped before any header is parsed;
the rest are enriched and merged on ``id`` in one Delta commit. Re-running the
same ingestion therefore commits nothing and leaves the version as it was.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import shapely

from . import _delta
from ._collection import Collection, _raise_failures, load, read_geometry_table
from ._enrich import HeaderFailure, enrich_records
from ._geometry import CRS84, reproject
from ._schema import conform_table, missing_columns, record_hashes, without_internal
from ._stac import records_from_items, search
from .errors import SchemaError, SourceError
from .settings import Settings

__all__ = ["build_from_stac", "build_from_table", "ingest_records", "records_from_table"]

log = logging.getLogger(__name__)

_AUTHORITY_CODE = re.compile(r"^[A-Za-z_]+:\S+$")
# Top-level stac-geoparquet columns that are not item properties.
_STAC_TOP = {"type", "stac_version", "stac_extensions", "links", "id", "geometry", "bbox", "assets", "collection"}


def ingest_records(
    table: pa.Table,
    uri: str | None,
    *,
    settings: Settings,
    operation: str,
    metadata: Mapping[str, Any] | None = None,
    enrich: bool = True,
    partial: bool = False,
) -> Collection:
    """Commit new and changed records to the collection at ``uri``; skip the ones it already holds.

    With ``partial``, records with an asset whose header cannot be parsed (corrupt,
    unsupported, not georeferenced) are left out and the rest committed; the commit's
    metadata lists them under ``skipped`` (id, band, error) and counts them in
    ``records_skipped``. Without it such a record fails the whole build.

    A row is skipped when the stored row with its id has the same digest
    (:func:`~rasteret_core._schema.record_hashes`): same content and, with
    ``enrich``, every header already parsed. The other rows are enriched (with
    ``enrich``) and merged on ``id`` in one commit whose metadata carries
    ``records``, ``unchanged``, ``inserted``, ``updated`` and ``headers_parsed``.
    When every row is skipped there is no commit: the collection's latest version
    is returned as it was. With ``uri`` None the collection stays in memory.

    Raises:
        SourceError: two rows share an id.
        CollectionError: a header could not be parsed (nothing is committed).
    """
    ids = table["id"]
    if pc.count_distinct(ids).as_py() != table.num_rows:
        counts = pc.value_counts(ids)
        dupes = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:5]
        raise SourceError(f"record ids must be unique; repeated: {dupes}")
    if uri is None:
        if enrich:
            result = enrich_records(table, settings=settings)
            table, _ = _without_failures(result.table, result.failures, partial)
        return Collection(table, settings=settings)
    stored = _delta.stored_hashes(uri, settings=settings)
    enriched = record_hashes(table, assume_headers=True).to_pylist()
    actual = record_hashes(table).to_pylist() if not enrich else enriched
    keep = [
        rid not in stored or (stored[rid] != full and (enrich or stored[rid] != now))
        for rid, full, now in zip(ids.to_pylist(), enriched, actual)
    ]
    todo = table.filter(pa.array(keep, pa.bool_()))
    unchanged = table.num_rows - todo.num_rows
    if todo.num_rows == 0:
        log.info("%s: all %d record(s) unchanged; nothing to commit", uri, table.num_rows)
        return load(uri, settings=settings)
    parsed, skipped = 0, []
    if enrich:
        result = enrich_records(todo, settings=settings)
        todo, skipped = _without_failures(result.table, result.failures, partial)
        parsed = result.parsed
        if todo.num_rows == 0:
            log.warning("%s: every new or changed record failed; nothing to commit", uri)
            return load(uri, settings=settings)
    inserted = sum(1 for rid in todo["id"].to_pylist() if rid not in stored)
    version, counts = _delta.merge_table(
        without_internal(todo), uri, settings=settings,
        operation=operation,
        metadata={**(metadata or {}), "records": table.num_rows, "unchanged": unchanged, "inserted": inserted,
                  "updated": todo.num_rows - inserted, "headers_parsed": parsed,
                  **({"records_skipped": len({f["id"] for f in skipped}), "skipped": skipped[:100]} if skipped else {})},
    )
    log.info("%s: version %d: %s, %d unchanged", uri, version, counts, unchanged)
    return load(uri, version=version, settings=settings)


def _without_failures(
    table: pa.Table, failures: Sequence[HeaderFailure], partial: bool
) -> tuple[pa.Table, list[dict[str, str]]]:
    """``table`` without the records whose headers failed (with ``partial``), and what was left out.

    Raises:
        CollectionError: a header failed and ``partial`` is off.
    """
    if not failures:
        return table, []
    if not partial:
        _raise_failures(failures)
    for failure in failures:
        log.warning("record %s left out: %s", failure.record_id, failure.error)
    bad = pa.array(sorted({f.record_id for f in failures}), pa.string())
    skipped = [{"id": f.record_id, "band": f.band, "error": f.error} for f in failures]
    return table.filter(pc.invert(pc.is_in(table["id"], value_set=bad))), skipped


def build_from_stac(
    *,
    stac_api: str,
    collection: str,
    uri: str | None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    intersects: Any | None = None,
    query: Mapping[str, Any] | None = None,
    bands: Mapping[str, str] | None = None,
    max_items: int | None = None,
    href_rewrites: Mapping[str, str] | None = None,
    enrich: bool = True,
    partial: bool = False,
    settings: Settings | None = None,
    operation: str = "build_from_stac",
    metadata: Mapping[str, Any] | None = None,
) -> Collection:
    """Search a STAC API, normalise the items, parse their COG headers, commit to Delta at ``uri``.

    Args:
        stac_api: API root URL.
        collection: STAC collection id.
        uri: Delta table (local path or ``s3://``); None keeps the collection in memory.
        bbox: ``(minx, miny, maxx, maxy)`` in lon/lat.
        datetime: ``"START/END"`` (ISO 8601, ``..`` open).
        intersects: A geometry (GeoJSON, shapely, WKB) in lon/lat.
        query: STAC query extension; applied here when the server does not support it.
        bands: band name -> asset key (``{"B04": "red"}``); None takes every COG asset.
        max_items: Stop after this many items.
        href_rewrites: href prefix -> replacement (``{"https://host/": "s3://bucket/"}``).
        enrich: Parse the COG headers now.
        partial: Leave out the records whose headers cannot be parsed (listed in the
            commit's metadata) instead of failing the build.
        settings: Defaults to :meth:`Settings.from_env`.
        operation: The commit's ``rasteret.operation``.
        metadata: More commit metadata (never secrets).

    Re-running the same search commits nothing; changed items update their rows
    (merge on id) and the rest are left alone.
    """
    settings = settings or Settings.from_env()
    found = search(stac_api, collections=collection, bbox=bbox, datetime=datetime, intersects=intersects,
                   query=query, max_items=max_items)
    table = records_from_items(found.items, bands=bands, href_rewrites=href_rewrites)
    return ingest_records(
        table, uri, settings=settings, operation=operation, enrich=enrich, partial=partial,
        metadata={"source": stac_api, "collection": collection, "bbox": bbox, "datetime": datetime,
                  "intersects": intersects is not None, "query": query, "query_applied": found.query_applied,
                  "bands": dict(bands) if bands else None, "items": len(found.items), **(metadata or {})},
    )


def build_from_table(
    source: Any,
    *,
    uri: str | None = None,
    column_map: Mapping[str, str] | None = None,
    bands: Mapping[str, str] | None = None,
    geometry_crs: Any | None = None,
    enrich: bool = True,
    partial: bool = False,
    settings: Settings | None = None,
) -> Collection:
    """Build a collection from a record table (see :func:`records_from_table` for what it takes).

    With ``uri`` the records are committed there (merge on id, unchanged rows
    skipped); without, the collection stays in memory. Rows that already carry
    parsed headers (an exported collection) keep them; ``enrich`` parses the rest.
    ``partial`` leaves out the records whose headers cannot be parsed (see
    :func:`ingest_records`) instead of failing the build.
    """
    settings = settings or Settings.from_env()
    table = records_from_table(source, column_map=column_map, bands=bands, geometry_crs=geometry_crs)
    return ingest_records(table, uri, settings=settings, operation="build_from_table", enrich=enrich, partial=partial,
                          metadata={"source": _describe(source), "records": table.num_rows,
                                    "column_map": dict(column_map) if column_map else None})


def _describe(source: Any) -> str:
    if isinstance(source, str) or hasattr(source, "__fspath__"):
        return str(source)
    return type(source).__name__


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

"""The collection table's schema, and header metadata to and from Arrow.

One row per raster record (a scene). Columns follow stac-geoparquet where it has
a convention (``id``, ``collection``, ``datetime``, ``geometry``, ``bbox``,
``assets``, and STAC property names such as ``eo:cloud_cover``):

========================  ======================================================
``id``                    record id (STAC item id), unique
``collection``            source collection id
``datetime``              acquisition time, ``timestamp[us, UTC]``
``geometry``              footprint, WKB, OGC:CRS84 (lon/lat)
``bbox``                  GeoParquet 1.1 covering ``struct<xmin, ymin, xmax, ymax>``
``crs``                   native raster CRS, as ``EPSG:<code>`` (or WKT)
``proj:epsg``             native EPSG code, when there is one
``eo:cloud_cover``        percent, when known
``split``                 user split label (train/val/test), null by default
``properties``            every other source property, as JSON text
*user columns*            kept as they come (from ``build_from_table``)
``rasteret:record_hash``  digest of the row without its headers (see :func:`record_hashes`)
``rasteret_month``        acquisition month, the Delta partition column (a name without ``:``,
                          which DataFusion would read as a URL scheme in file paths)
``assets``                ``struct<band: ASSET>``, one field per band
========================  ======================================================

``ASSET`` is ``struct<key, href, type, roles, header>``: ``key`` the source asset
key, ``href`` where the COG is (``s3://``, ``http(s)://`` or a local path),
``type`` its media type, ``roles`` its STAC roles, and ``header`` the parsed COG
header (null until enriched), :data:`HEADER_TYPE`:

=================  ===========================================================
``byte_order``     ``"<"`` (little endian) or ``">"``
``bigtiff``        BigTIFF or classic TIFF
``crs``            ``EPSG:<code>`` from the GeoKeys, else WKT; null when none
``transform``      affine ``[a, b, c, d, e, f]`` (rasterio order) of pixel (0, 0)'s
                   outer corner, in ``crs`` units
``nodata``         GDAL_NODATA, when set
``pixel_is_point`` the raster says PixelIsPoint (``transform`` is already shifted)
``gdal_metadata``  the GDAL_METADATA XML, when present
``crs_source``     where ``crs`` came from: ``epsg`` (an EPSG code in the GeoKeys),
                   ``geokeys`` (a user-defined CRS built from the keys, as libgeotiff
                   does), ``citation`` (an ESRI PE string) or ``catalog`` (the record's
                   ``proj:wkt2``/``proj:projjson``, when the keys cannot be resolved)
``warnings``       what the file says that GDAL ignores (say, a nodata value outside
                   the dtype's range), one sentence each
``size``           object size in bytes, from the store (HEAD) at enrichment
``etag``           object ETag at enrichment (as the store sent it, quotes kept);
                   compared at read time to detect a replaced COG
``last_modified``  object last-modified time at enrichment, ISO 8601 UTC
``images``         ``list<IMAGE>``: ``images[0]`` the full resolution, then the
                   overviews and masks in file order (:data:`IMAGE_TYPE`: size,
                   tile size, sample layout, codec, predictor, ``subfile_type``
                   (bit 2: a mask), ``extra_samples`` (alpha),
                   and the tile tables ``tile_offsets`` / ``tile_byte_counts`` as
                   byte offsets and lengths within the object)
=================  ===========================================================

The table carries GeoParquet 1.1 ``geo`` metadata (:data:`GEO_METADATA`):
primary column ``geometry``, WKB, CRS OGC:CRS84 (PROJJSON), and the ``bbox``
covering, so GeoPandas, DuckDB and Polars readers find footprints and CRS.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from rasteret_core.errors import SchemaError
from rasteret_core.geo.geometry import CRS84
from rasteret_core.tiff.header import ImageInfo, TiffHeader

__all__ = [
    "ASSET_TYPE",
    "BBOX_TYPE",
    "CORE_FIELDS",
    "GEO_METADATA",
    "HEADER_TYPE",
    "IMAGE_TYPE",
    "INTERNAL_COLUMNS",
    "MONTH",
    "RECORD_HASH",
    "collection_schema",
    "conform_table",
    "geo_metadata",
    "header_from_dict",
    "header_to_dict",
    "missing_columns",
    "record_hashes",
    "without_internal",
]

IMAGE_TYPE = pa.struct([
    ("width", pa.int32()), ("height", pa.int32()), ("tile_width", pa.int32()), ("tile_height", pa.int32()),
    ("tiled", pa.bool_()), ("samples_per_pixel", pa.int32()), ("bits_per_sample", pa.int32()),
    ("sample_format", pa.int32()), ("dtype", pa.string()), ("planar_config", pa.int32()), ("compression", pa.int32()),
    ("predictor", pa.int32()), ("photometric", pa.int32()), ("subfile_type", pa.int32()),
    ("tile_offsets", pa.list_(pa.int64())), ("tile_byte_counts", pa.list_(pa.int64())), ("jpeg_tables", pa.binary()),
    ("extra_samples", pa.list_(pa.int32())),
])
"""One IFD: the full resolution, an overview or a mask."""

HEADER_TYPE = pa.struct(
    [
        ("byte_order", pa.string()),
        ("bigtiff", pa.bool_()),
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64())),  # a, b, c, d, e, f (rasterio order)
        ("nodata", pa.float64()),
        ("pixel_is_point", pa.bool_()),
        ("gdal_metadata", pa.string()),
        ("crs_source", pa.string()),
        ("warnings", pa.list_(pa.string())),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("last_modified", pa.string()),
        ("images", pa.list_(IMAGE_TYPE)),  # images[0] is the full resolution
    ]
)
"""A parsed COG header, as stored per asset."""

ASSET_TYPE_FIELDS = [
    ("key", pa.string()),
    ("href", pa.string()),
    ("type", pa.string()),
    ("roles", pa.list_(pa.string())),
    ("band_index", pa.int32()),  # 1-based band of a multi-band asset (null: its first band)
    ("header", HEADER_TYPE),
]
ASSET_TYPE = pa.struct(ASSET_TYPE_FIELDS)

BBOX_TYPE = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64())])

CORE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("collection", pa.string()),
    pa.field("datetime", pa.timestamp("us", tz="UTC")),
    pa.field("geometry", pa.binary()),
    pa.field("bbox", BBOX_TYPE),
    pa.field("crs", pa.string()),
    pa.field("proj:epsg", pa.int32()),
    pa.field("eo:cloud_cover", pa.float64()),
    pa.field("split", pa.string()),
    pa.field("properties", pa.string()),
]


RECORD_HASH = "rasteret:record_hash"
"""Column holding each row's digest without headers: re-ingesting an unchanged record is a no-op."""

MONTH = "rasteret_month"
"""Partition column of a stored collection: the acquisition month, ``YYYY-MM`` (null without a datetime)."""

INTERNAL_COLUMNS = (RECORD_HASH, MONTH)
"""Columns the Delta table adds to the records (derived on every write, dropped on export)."""


def without_internal(table: pa.Table) -> pa.Table:
    """``table`` without :data:`INTERNAL_COLUMNS`."""
    return table.drop_columns([c for c in INTERNAL_COLUMNS if c in table.schema.names])

GEO_METADATA: dict[str, Any] = {
    "version": "1.1.0",
    "primary_column": "geometry",
    "columns": {
        "geometry": {
            "encoding": "WKB",
            "geometry_types": [],
            "crs": CRS84.to_json_dict(),
            "covering": {
                "bbox": {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"], "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]}
            },
        }
    },
}
"""GeoParquet 1.1 metadata of a collection table: WKB footprints in OGC:CRS84 with a bbox covering."""


def collection_schema(bands: list[str], extra: list[pa.Field] | None = None) -> pa.Schema:
    """The schema of a collection with these bands (and user columns)."""
    assets = pa.struct([(band, ASSET_TYPE) for band in bands])
    return pa.schema([*CORE_FIELDS, *(extra or []), pa.field("assets", assets)])


def missing_columns(schema: pa.Schema) -> list[str]:
    """The core columns (and ``assets``) a schema lacks; empty for a collection table."""
    return [f.name for f in CORE_FIELDS if f.name not in schema.names] + (
        [] if "assets" in schema.names else ["assets"]
    )


_GEOPARQUET_TYPES = {
    0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
    6: "MultiPolygon", 7: "GeometryCollection",
}


def geo_metadata(table: pa.Table) -> dict[str, Any]:
    """The GeoParquet ``geo`` metadata of a collection table, with its geometry types and extent."""
    meta: dict[str, Any] = json.loads(json.dumps(GEO_METADATA))  # a deep copy
    column = meta["columns"]["geometry"]
    if table.num_rows:
        kinds = shapely.get_type_id(shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False)))
        column["geometry_types"] = sorted({_GEOPARQUET_TYPES[k] for k in np.unique(kinds).tolist() if k >= 0})
        bb = table["bbox"]
        column["bbox"] = [
            pc.min(pc.struct_field(bb, "xmin")).as_py(), pc.min(pc.struct_field(bb, "ymin")).as_py(),
            pc.max(pc.struct_field(bb, "xmax")).as_py(), pc.max(pc.struct_field(bb, "ymax")).as_py(),
        ]
    return meta


def _canonical_type(have: pa.DataType, want: pa.DataType) -> pa.DataType:
    """``want`` where ``have`` is the same data in another physical type (large, view); else ``have``."""
    if pa.types.is_struct(have):
        if not pa.types.is_struct(want):
            return have
        wanted = {f.name: f for f in want}
        return pa.struct([
            f.with_type(_canonical_type(f.type, wanted[f.name].type)) if f.name in wanted else f.with_type(_plain(f.type))
            for f in have
        ])
    if _is_list(have) and _is_list(want):
        return pa.list_(_canonical_type(have.value_type, want.value_type))
    return want if _plain(have) == want or pa.types.is_null(have) else _plain(have)


def _is_list(t: pa.DataType) -> bool:
    listed: bool = (
        pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)
    )
    return listed


def _plain(t: pa.DataType) -> pa.DataType:
    """The 32-bit-offset, non-view form of a type (what Delta Lake and the collection use)."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if _is_list(t):
        return pa.list_(_plain(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_plain(f.type)) for f in t])
    if pa.types.is_timestamp(t) and t.tz is not None and t.unit == "ns":
        return pa.timestamp("us", tz=t.tz)
    return t


def conform_table(table: pa.Table) -> pa.Table:
    """Cast a collection table read by another engine back to the collection's types.

    Polars and DuckDB hand back large or view strings, binaries and lists, and may
    drop the ``split`` column's type to null; the values are the same. Core columns
    take their :data:`CORE_FIELDS` types, ``assets`` its :data:`ASSET_TYPE` fields,
    other columns their 32-bit-offset forms.

    Raises:
        SchemaError: a core column is missing or cannot take its type.
    """
    missing = missing_columns(table.schema)
    if missing:
        raise SchemaError(f"not a collection table: columns {missing} are missing")
    core = {f.name: f.type for f in CORE_FIELDS}
    bands = table.schema.field("assets").type
    want_assets = pa.struct([(f.name, ASSET_TYPE) for f in bands]) if pa.types.is_struct(bands) else bands
    fields = []
    for field in table.schema:
        if field.name in core:
            target = core[field.name]
        elif field.name == "assets":
            target = _canonical_type(field.type, want_assets)
        else:
            target = _plain(field.type)
        fields.append(pa.field(field.name, target, nullable=field.name != "id"))
    schema = pa.schema(fields, metadata=table.schema.metadata)
    if schema == table.schema:
        return table
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaError(f"the table's columns cannot take the collection's types: {exc}") from exc


def record_hashes(table: pa.Table, *, assume_headers: bool = False) -> pa.Array:
    """A digest per row of everything but the parsed headers' contents (and this digest itself).

    Each asset's header counts only as present or absent (``assume_headers`` counts
    every asset's as present: what a row will be once enriched). Two rows with
    equal digests describe the same record the same way, with the same headers
    parsed: re-ingesting such a row changes nothing, so ingestion skips it (and
    its header parsing).
    """
    digests: list[str] = []
    light = without_internal(table)
    for batch in light.to_batches(max_chunksize=8192):
        assets = batch.column(batch.schema.get_field_index("assets"))
        stripped = pa.StructArray.from_arrays(
            [_header_as_flag(assets.field(i), assume_headers) for i in range(assets.type.num_fields)],
            names=[f.name for f in assets.type],
            mask=assets.is_null() if assets.null_count else None,
        )
        rows = batch.drop_columns(["assets"]).append_column("assets", stripped).to_pylist()
        digests.extend(
            hashlib.blake2b(json.dumps(row, sort_keys=True, default=repr).encode(), digest_size=16).hexdigest()
            for row in rows
        )
    return pa.array(digests, pa.string())


def _header_as_flag(asset: pa.Array, assume_headers: bool) -> pa.Array:
    arrays, fields = [], []
    for i, f in enumerate(asset.type):
        if f.name == "header":
            column = asset.field(i)
            flag = pa.array(np.ones(len(asset), bool)) if assume_headers else column.is_valid()
            arrays.append(flag)
            fields.append(pa.field("header", pa.bool_()))
        else:
            arrays.append(asset.field(i))
            fields.append(f)
    return pa.StructArray.from_arrays(arrays, fields=fields, mask=asset.is_null() if asset.null_count else None)


def header_to_dict(
    header: TiffHeader, *, size: int | None = None, etag: str | None = None, last_modified: str | None = None
) -> dict[str, Any]:
    """A header as a Python dict shaped like :data:`HEADER_TYPE`; object facts from the store."""
    return {
        "byte_order": header.byte_order,
        "bigtiff": header.bigtiff,
        "crs": header.crs,
        "transform": list(header.transform) if header.transform is not None else None,
        "nodata": header.nodata,
        "pixel_is_point": header.pixel_is_point,
        "gdal_metadata": header.gdal_metadata,
        "crs_source": header.crs_source,
        "warnings": list(header.warnings),
        "size": size if size is not None else header.size,
        "etag": etag,
        "last_modified": last_modified,
        "images": [_image_to_dict(im) for im in header.images],
    }


_IMAGE_SCALARS = (
    "width", "height", "tile_width", "tile_height", "tiled", "samples_per_pixel", "bits_per_sample",
    "sample_format", "planar_config", "compression", "predictor", "photometric", "subfile_type",
)
"""The :class:`ImageInfo` fields a stored header dict holds as they are."""


def _image_to_dict(im: ImageInfo) -> dict[str, Any]:
    return {
        "width": im.width,
        "height": im.height,
        "tile_width": im.tile_width,
        "tile_height": im.tile_height,
        "tiled": im.tiled,
        "samples_per_pixel": im.samples_per_pixel,
        "bits_per_sample": im.bits_per_sample,
        "sample_format": im.sample_format,
        "dtype": im.dtype.name,
        "planar_config": im.planar_config,
        "compression": im.compression,
        "predictor": im.predictor,
        "photometric": im.photometric,
        "subfile_type": im.subfile_type,
        "tile_offsets": im.tile_offsets.tolist(),
        "tile_byte_counts": im.tile_byte_counts.tolist(),
        "jpeg_tables": im.jpeg_tables,
        "extra_samples": list(im.extra_samples),
    }


def header_from_dict(d: dict[str, Any], *, uri: str) -> TiffHeader:
    """Rebuild a :class:`TiffHeader` from a stored header dict."""
    images = tuple(
        ImageInfo(
            **{name: im[name] for name in _IMAGE_SCALARS},
            tile_offsets=np.asarray(im["tile_offsets"], dtype=np.int64),
            tile_byte_counts=np.asarray(im["tile_byte_counts"], dtype=np.int64),
            jpeg_tables=im["jpeg_tables"],
            extra_samples=tuple(im.get("extra_samples") or ()),
        )
        for im in d["images"]
    )
    transform = d["transform"]
    return TiffHeader(
        uri=uri,
        byte_order=d["byte_order"],
        bigtiff=d["bigtiff"],
        images=images,
        crs=d["crs"],
        transform=tuple(transform) if transform is not None else None,
        nodata=d["nodata"],
        pixel_is_point=bool(d["pixel_is_point"]),
        gdal_metadata=d["gdal_metadata"],
        crs_source=d.get("crs_source"),
        warnings=tuple(d.get("warnings") or ()),
        size=d["size"],
    )

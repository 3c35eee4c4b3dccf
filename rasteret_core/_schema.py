"""The collection table's schema, and header metadata to and from Arrow.

One row per raster record (a scene). Columns follow stac-geoparquet where it has
a convention:

==================  ==========================================================
``id``              record id (STAC item id), unique
``collection``      source collection id
``datetime``        acquisition time, ``timestamp[us, UTC]``
``geometry``        footprint, WKB, OGC:CRS84 (lon/lat)
``bbox``            GeoParquet 1.1 covering ``struct<xmin, ymin, xmax, ymax>``
``crs``             native raster CRS, as ``EPSG:<code>`` (or WKT)
``proj:epsg``       native EPSG code, when there is one
``eo:cloud_cover``  percent, when known
``split``           user split label (train/val/test), null by default
``properties``      every other source property, as JSON text
``assets``          ``struct<band: ASSET>``, one field per band
==================  ==========================================================

``ASSET`` is ``struct<key, href, type, roles, header>``; ``key`` is the source
asset key, ``header`` the parsed COG header (null until enriched), see
:data:`HEADER_TYPE`. Any other column is a user column and is kept as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ._header import ImageInfo, TiffHeader

__all__ = [
    "IMAGE_TYPE",
    "HEADER_TYPE",
    "ASSET_TYPE",
    "CORE_FIELDS",
    "collection_schema",
    "header_to_dict",
    "header_from_dict",
]

IMAGE_TYPE = pa.struct(
    [
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("tile_width", pa.int32()),
        ("tile_height", pa.int32()),
        ("tiled", pa.bool_()),
        ("samples_per_pixel", pa.int32()),
        ("bits_per_sample", pa.int32()),
        ("sample_format", pa.int32()),
        ("dtype", pa.string()),
        ("planar_config", pa.int32()),
        ("compression", pa.int32()),
        ("predictor", pa.int32()),
        ("photometric", pa.int32()),
        ("subfile_type", pa.int32()),
        ("tile_offsets", pa.list_(pa.int64())),
        ("tile_byte_counts", pa.list_(pa.int64())),
        ("jpeg_tables", pa.binary()),
    ]
)
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


def collection_schema(bands: list[str], extra: list[pa.Field] | None = None) -> pa.Schema:
    """The schema of a collection with these bands (and user columns)."""
    assets = pa.struct([(band, ASSET_TYPE) for band in bands])
    return pa.schema([*CORE_FIELDS, *(extra or []), pa.field("assets", assets)])


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
        "size": size if size is not None else header.size,
        "etag": etag,
        "last_modified": last_modified,
        "images": [_image_to_dict(im) for im in header.images],
    }


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
    }


def header_from_dict(d: dict[str, Any], *, uri: str) -> TiffHeader:
    """Rebuild a :class:`TiffHeader` from a stored header dict."""
    images = tuple(
        ImageInfo(
            width=im["width"],
            height=im["height"],
            tile_width=im["tile_width"],
            tile_height=im["tile_height"],
            tiled=im["tiled"],
            samples_per_pixel=im["samples_per_pixel"],
            bits_per_sample=im["bits_per_sample"],
            sample_format=im["sample_format"],
            planar_config=im["planar_config"],
            compression=im["compression"],
            predictor=im["predictor"],
            photometric=im["photometric"],
            subfile_type=im["subfile_type"],
            tile_offsets=np.asarray(im["tile_offsets"], dtype=np.int64),
            tile_byte_counts=np.asarray(im["tile_byte_counts"], dtype=np.int64),
            jpeg_tables=im["jpeg_tables"],
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
        transform=tuple(transform) if transform is not None else None,  # type: ignore[arg-type]
        nodata=d["nodata"],
        pixel_is_point=bool(d["pixel_is_point"]),
        gdal_metadata=d["gdal_metadata"],
        size=d["size"],
    )

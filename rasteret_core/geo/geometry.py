"""Geometry and CRS inputs, and tables of them, normalised once at the public edge.

AOIs and points come as shapely geometries, WKB bytes, GeoJSON mappings,
``__geo_interface__`` objects or bbox tuples ``(minx, miny, maxx, maxy)``. Their
CRS is whatever the caller says (``geometry_crs=``), read from table metadata, or
else OGC:CRS84; Rasteret never guesses anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from rasteret_core.errors import CollectionError, GeometryError, SchemaError

__all__ = [
    "GeometryLike",
    "geometry_table_crs",
    "inverse_affine",
    "read_geometry_table",
    "reproject",
    "reproject_xy",
    "to_crs",
    "to_geometry",
]

GeometryLike = Any  # shapely geometry | bytes (WKB) | Mapping (GeoJSON) | bbox tuple | __geo_interface__

_G = TypeVar("_G", bound=shapely.Geometry)

CRS84 = CRS.from_user_input("OGC:CRS84")


def to_geometry(obj: GeometryLike) -> BaseGeometry:
    """Normalise one geometry input to a valid shapely geometry.

    Raises:
        GeometryError: the input is not a geometry, is empty, or is invalid.
    """
    geom: BaseGeometry | None
    try:
        if isinstance(obj, BaseGeometry):  # the one subclass of shapely.Geometry: every shapely geometry
            geom = obj
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            geom = shapely.from_wkb(bytes(obj))
        elif isinstance(obj, str):
            geom = shapely.from_geojson(obj) if obj.lstrip().startswith("{") else shapely.from_wkt(obj)
        elif isinstance(obj, Mapping):
            mapping = obj.get("geometry", obj) if obj.get("type") == "Feature" else obj
            geom = shapely.geometry.shape(mapping)  # type: ignore[arg-type]  # stub wants dict; shape() reads any Mapping
        elif hasattr(obj, "__geo_interface__"):
            geom = shapely.geometry.shape(obj.__geo_interface__)
        elif isinstance(obj, Sequence) and len(obj) == 4 and all(isinstance(v, (int, float)) for v in obj):
            minx, miny, maxx, maxy = (float(v) for v in obj)
            if not (minx < maxx and miny < maxy):
                raise GeometryError(f"bbox {tuple(obj)} must be (minx, miny, maxx, maxy) with min < max")
            geom = shapely.box(minx, miny, maxx, maxy)
        else:
            raise GeometryError(
                f"cannot read a geometry from {type(obj).__name__}; pass a shapely geometry, WKB, "
                "GeoJSON or a (minx, miny, maxx, maxy) tuple"
            )
    except GeometryError:
        raise
    except (shapely.errors.ShapelyError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise GeometryError(f"cannot read a geometry from {type(obj).__name__}: {exc}") from exc
    if geom is None or geom.is_empty:
        raise GeometryError("the geometry is empty")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise GeometryError(f"the geometry is invalid ({reason}); repair it first, e.g. with shapely.make_valid")
    return geom


def to_crs(crs: Any | None) -> CRS:
    """Normalise a CRS input (anything pyproj accepts); None means OGC:CRS84."""
    if crs is None:
        return CRS84
    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise GeometryError(f"unknown CRS {crs!r}: {exc}") from exc


@lru_cache(maxsize=256)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def reproject(geom: shapely.Geometry, src: CRS, dst: CRS) -> BaseGeometry:
    """Transform a geometry's vertices from ``src`` to ``dst`` (x/y = lon/lat order)."""
    assert isinstance(geom, BaseGeometry)  # every shapely geometry is one (shapely.Geometry lacks .bounds)
    if src.is_geographic:
        xmin, ymin, xmax, ymax = geom.bounds
        if xmin < -360 or xmax > 360 or ymin < -90 or ymax > 90:
            raise GeometryError(
                f"coordinates {tuple(round(v, 3) for v in geom.bounds)} are out of range for lon/lat "
                f"({src.name}); if they are projected, say so with geometry_crs="
            )
        if not dst.is_geographic:
            _check_projectable(geom)
    if src == dst:
        return geom
    transformer = _transformer(src.to_wkt(), dst.to_wkt())
    out = shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    coords = shapely.get_coordinates(out)
    if not np.isfinite(coords).all():
        raise GeometryError(
            f"the geometry does not transform from {src.to_string()} to {dst.to_string()} "
            "(it lies outside the target CRS's area of use)"
        )
    return out


def reproject_xy(xs: np.ndarray, ys: np.ndarray, src: CRS, dst: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Transform point coordinates from ``src`` to ``dst`` (x/y = lon/lat order), vectorised.

    Points that do not transform (outside the target CRS's area of use) come back
    non-finite; the caller decides what that means (a point sample: off the raster).
    """
    if src == dst:
        return xs, ys
    transformer = _transformer(src.to_wkt(), dst.to_wkt())
    x, y = transformer.transform(xs, ys)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _check_projectable(geom: shapely.Geometry) -> None:
    """Refuse lon/lat geometries whose vertex-wise projection would not be the same area.

    A part spanning more than 180 degrees of longitude is taken to cross the
    antimeridian the long way round; a part touching a pole has no single
    projected vertex for it. Both get a clear error with what to do.
    """
    for part in shapely.get_parts(geom):
        pxmin, pymin, pxmax, pymax = part.bounds
        if pymin <= -90 or pymax >= 90:
            raise GeometryError(
                "the geometry touches a pole in lon/lat, which has no single projected point; give it in a "
                "polar CRS (say EPSG:3413 or EPSG:3031) with geometry_crs="
            )
        if pxmax - pxmin > 180:
            raise GeometryError(
                f"a part of the geometry spans {pxmax - pxmin:.1f} degrees of longitude; if it crosses the "
                "antimeridian, split it there into a MultiPolygon (one part on each side of +/-180)"
            )


def inverse_affine(t: Sequence[float]) -> tuple[float, float, float, float, float, float]:
    """The inverse of an affine ``(a, b, c, d, e, f)``, computed as affine/rasterio do."""
    a, b, c, d, e, f = t
    det = a * e - b * d
    if det == 0:
        raise GeometryError(f"the raster transform {tuple(t)} is degenerate")
    idet = 1.0 / det
    ra, rb, rd, re = e * idet, -b * idet, -d * idet, a * idet
    return (ra, rb, -c * ra - f * rb, rd, re, -c * rd - f * re)


def apply_affine(t: Sequence[float], geom: _G) -> _G:
    """Apply an affine ``(a, b, c, d, e, f)`` to every vertex of ``geom``."""
    a, b, c, d, e, f = t
    return shapely.transform(geom, lambda xy: np.column_stack((xy[:, 0] * a + xy[:, 1] * b + c, xy[:, 0] * d + xy[:, 1] * e + f)))


def geometry_table_crs(schema: pa.Schema, column: str) -> CRS | None:
    """The CRS a table's metadata gives its geometry column (GeoParquet ``geo`` or GeoArrow), if any."""
    meta = schema.metadata or {}
    if b"geo" in meta:
        geo = json.loads(meta[b"geo"])
        col = geo.get("columns", {}).get(column)
        if col is not None:
            crs = col.get("crs", "OGC:CRS84")  # GeoParquet: a missing crs means OGC:CRS84
            return CRS84 if crs is None else to_crs(crs)
    field = schema.field(column)
    ext_meta = (field.metadata or {}).get(b"ARROW:extension:metadata")
    if ext_meta:
        crs = json.loads(ext_meta).get("crs")
        if crs is not None:
            return to_crs(crs)
    ext_type = getattr(field.type, "extension_name", None)
    if ext_type and hasattr(field.type, "__arrow_ext_serialize__"):
        payload = field.type.__arrow_ext_serialize__()
        if payload:
            crs = json.loads(payload).get("crs")
            if crs is not None:
                return to_crs(crs)
    return None


def _states_crs(schema: pa.Schema, column: str) -> bool:
    """Whether the metadata names the column's CRS, rather than implying OGC:CRS84 by leaving ``crs`` out.

    GeoParquet reads a missing ``crs`` as OGC:CRS84, but files written without one often
    hold projected coordinates: an explicit ``geometry_crs=`` wins over that default.
    """
    geo = json.loads((schema.metadata or {}).get(b"geo", b"{}"))
    col = geo.get("columns", {}).get(column)
    return col is None or "crs" in col


def read_geometry_table(
    source: Any, *, geometry_column: str | None = "geometry", geometry_crs: Any | None = None
) -> tuple[pa.Table, CRS]:
    """Normalise an AOI/point source to an Arrow table with a WKB geometry column, and its CRS.

    ``source``: a path/URI of (Geo)Parquet, a ``pa.Table``, a ``RecordBatchReader``, a
    GeoDataFrame, anything with ``__arrow_c_stream__``, or a sequence of geometries.
    The CRS is ``geometry_crs`` if given, else the table's GeoParquet/GeoArrow metadata
    (or the GeoDataFrame's), else OGC:CRS84. A ``geometry_crs`` that contradicts a CRS the
    metadata names is an error; GeoParquet metadata without a ``crs`` names none. ``geometry_column=None`` (points given as
    x/y columns) asks for no geometry column, and the CRS is ``geometry_crs`` or OGC:CRS84.
    """
    meta_crs: CRS | None = None
    if hasattr(source, "to_wkb") and hasattr(source, "crs") and hasattr(source, "geometry"):  # GeoDataFrame
        meta_crs = CRS.from_user_input(source.crs) if source.crs is not None else None
        df = source.to_wkb()
        table = pa.Table.from_pandas(df, preserve_index=False)
        geometry_column = source.geometry.name if geometry_column is not None else None
    elif isinstance(source, (str,)) or hasattr(source, "__fspath__"):
        try:
            table = pq.read_table(str(source))
        except (OSError, pa.ArrowInvalid) as exc:
            raise CollectionError(f"cannot read the table {source}: {exc}") from exc
    elif isinstance(source, pa.Table):
        table = source
    elif isinstance(source, pa.RecordBatchReader):
        table = source.read_all()
    elif hasattr(source, "__arrow_c_stream__"):
        table = pa.table(source)
    elif isinstance(source, Sequence):
        table = pa.table({"geometry": [shapely.to_wkb(to_geometry(g)) for g in source]})
        geometry_column = "geometry"
    else:
        raise SchemaError(f"cannot read geometries from {type(source).__name__}")
    if geometry_column is None:  # x/y columns: no geometry column, no metadata CRS
        return table, to_crs(geometry_crs)
    if geometry_column not in table.schema.names:
        raise SchemaError(f"the table has no geometry column {geometry_column!r} (columns: {table.schema.names})")
    if meta_crs is None:
        meta_crs = geometry_table_crs(table.schema, geometry_column)
    if geometry_crs is not None:
        crs = to_crs(geometry_crs)
        if meta_crs is not None and meta_crs != crs and _states_crs(table.schema, geometry_column):
            raise SchemaError(
                f"geometry_crs={crs.to_string()} contradicts the table's own CRS {meta_crs.to_string()}; drop one"
            )
    else:
        crs = meta_crs or CRS84
    return table, crs

"""The Collection: a versioned Delta table of raster records, and reads through it."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime as _dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS

from . import _delta
from ._enrich import enrich_records
from ._geometry import CRS84, GeometryLike, geometry_table_crs, reproject, to_crs, to_geometry
from ._read import (
    ReadOptions,
    Stack,
    check_bands,
    footprints_meet,
    plan_stack,
    read_aoi_table,
    read_stack,
    stack_to_xarray,
)
from ._schema import CORE_FIELDS
from ._stac import records_from_items, search_items
from ._store import IOStats
from .errors import CollectionError, GridMismatchError, SchemaError
from .settings import Settings

__all__ = ["Collection", "load", "build_from_stac", "GEO_METADATA"]

log = logging.getLogger(__name__)

GEO_METADATA = {
    "version": "1.1.0",
    "primary_column": "geometry",
    "columns": {
        "geometry": {
            "encoding": "WKB",
            "geometry_types": [],
            "covering": {
                "bbox": {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"], "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]}
            },
        }
    },
}
"""GeoParquet 1.1 metadata of a collection table: WKB footprints in OGC:CRS84 (no ``crs`` key)."""


class Collection:
    """A view of a collection version: a table of records; reads plan against it.

    Views are cheap; filtering returns a new view and reads nothing. Arrays are
    ``[record, band, y, x]``; records are ordered by datetime, then id.
    """

    def __init__(
        self, table: pa.Table, *, uri: str | None = None, version: int | None = None, settings: Settings | None = None
    ) -> None:
        missing = [f.name for f in CORE_FIELDS if f.name not in table.schema.names] + (
            [] if "assets" in table.schema.names else ["assets"]
        )
        if missing:
            raise SchemaError(f"not a collection table: columns {missing} are missing")
        meta = dict(table.schema.metadata or {})
        meta[b"geo"] = json.dumps(GEO_METADATA).encode()
        self._table = table.replace_schema_metadata(meta)
        self.uri = uri
        self.version = version
        self.settings = settings or Settings.from_env()

    # ------------------------------------------------------------------ inspect
    @property
    def bands(self) -> list[str]:
        """Band names, in table order."""
        return [f.name for f in self._table.schema.field("assets").type]

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        where = f"{self.uri} v{self.version}" if self.uri else "in memory"
        return f"<Collection {where}: {len(self)} records, bands {self.bands}>"

    def to_arrow(self) -> pa.Table:
        """The records as a ``pa.Table`` with GeoParquet ``geo`` metadata."""
        return self._table

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._table.__arrow_c_stream__(requested_schema)

    def history(self) -> list[dict[str, Any]]:
        """The collection's Delta commits, newest first."""
        if self.uri is None:
            raise CollectionError("an in-memory collection has no history; write it to a URI first")
        return _delta.table_history(self.uri, settings=self.settings)

    # ------------------------------------------------------------------ filter
    def _view(self, table: pa.Table) -> Collection:
        return Collection(table, uri=self.uri, version=self.version, settings=self.settings)

    def where(self, expr: pc.Expression) -> Collection:
        """Keep the records matching a ``pyarrow.compute`` expression."""
        return self._view(self._table.filter(expr))

    def subset(
        self,
        *,
        bbox: Sequence[float] | None = None,
        datetime: str | tuple[Any, Any] | None = None,
        geometries: GeometryLike | Sequence[GeometryLike] | None = None,
        geometry_crs: Any | None = None,
        cloud_cover_lt: float | None = None,
        split: str | Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
    ) -> Collection:
        """Keep the records meeting every given condition.

        Args:
            bbox: ``(minx, miny, maxx, maxy)`` in OGC:CRS84; footprints must intersect it.
            datetime: ``"2024-01-01/2024-02-01"`` (open ends as ``..``) or a ``(start, end)``
                pair; both ends inclusive.
            geometries: footprints must intersect at least one (CRS: ``geometry_crs``).
            cloud_cover_lt: ``eo:cloud_cover`` strictly below this.
            split: one split label or several.
            ids: record ids.
        """
        t = self._table
        if ids is not None:
            t = t.filter(pc.is_in(t["id"], value_set=pa.array(list(ids), pa.string())))
        if split is not None:
            labels = [split] if isinstance(split, str) else list(split)
            t = t.filter(pc.is_in(t["split"], value_set=pa.array(labels, pa.string())))
        if cloud_cover_lt is not None:
            t = t.filter(pc.less(t["eo:cloud_cover"], cloud_cover_lt))
        if datetime is not None:
            start, end = _time_range(datetime)
            if start is not None:
                t = t.filter(pc.greater_equal(t["datetime"], pa.scalar(start, pa.timestamp("us", tz="UTC"))))
            if end is not None:
                t = t.filter(pc.less_equal(t["datetime"], pa.scalar(end, pa.timestamp("us", tz="UTC"))))
        shapes: list[shapely.Geometry] = []
        if bbox is not None:
            shapes.append(to_geometry(tuple(bbox)))
        if geometries is not None:
            many = geometries if isinstance(geometries, (list, tuple)) and not _is_bbox(geometries) else [geometries]
            crs = to_crs(geometry_crs)
            shapes.append(shapely.union_all([reproject(to_geometry(g), crs, CRS84) for g in many]))
        for shape in shapes:
            t = t.filter(pa.array(footprints_meet(t, shape)))
        return self._view(t)

    # ------------------------------------------------------------------ read
    def explain(self, geometry: GeometryLike, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                all_touched: bool = False, overview: int | None = None,
                resolution: float | None = None) -> dict[str, int]:
        """What reading ``geometry`` would cost, before any I/O: records, tiles, requests, bytes."""
        band_list = check_bands(self.bands, bands)
        options = ReadOptions(all_touched=all_touched, overview=overview, resolution=resolution)
        plan, rows = plan_stack(self._table, geometry, band_list, settings=self.settings,
                                geometry_crs=geometry_crs, options=options)
        return {"records": len(rows), **plan.summary()}

    def get_numpy(
        self,
        geometry: GeometryLike,
        bands: str | Sequence[str],
        *,
        geometry_crs: Any | None = None,
        all_touched: bool = False,
        overview: int | None = None,
        resolution: float | None = None,
        target_crs: Any | None = None,
    ) -> np.ndarray:
        """Read the pixels of ``bands`` within ``geometry`` from every record it meets.

        Returns ``[records, bands, height, width]`` in the native dtype; for each record and
        band the slice equals ``rasterio.mask.mask(src, [geometry in the raster CRS],
        crop=True, all_touched=all_touched, filled=True, nodata=fill)`` with ``fill`` the
        asset's nodata, else 0. With ``overview=k`` (or a ``resolution=`` that picks it)
        ``src`` is the file's k-th overview (``rasterio.open(path, overview_level=k)``).

        Raises:
            NoRecordsError: no record's footprint meets the geometry.
            BandError: a band is unknown or lacks header metadata.
            GridMismatchError: the records (or bands) lie on different pixel grids.
        """
        return self._stack(geometry, bands, geometry_crs=geometry_crs, all_touched=all_touched, overview=overview,
                           resolution=resolution, target_crs=target_crs).data

    def get_xarray(
        self,
        geometry: GeometryLike,
        bands: str | Sequence[str],
        *,
        geometry_crs: Any | None = None,
        all_touched: bool = False,
        overview: int | None = None,
        resolution: float | None = None,
        target_crs: Any | None = None,
    ) -> Any:
        """:meth:`get_numpy` as an ``xarray.Dataset`` (needs ``rasteret[xarray]``).

        One variable per band with dims ``(time, y, x)``, pixel-centre ``x``/``y``
        coordinates, record ids on ``id``, and a CF ``spatial_ref`` grid mapping.
        """
        stack = self._stack(geometry, bands, geometry_crs=geometry_crs, all_touched=all_touched, overview=overview,
                            resolution=resolution, target_crs=target_crs)
        return stack_to_xarray(stack)

    def get_table(
        self,
        aois: Any,
        bands: str | Sequence[str],
        *,
        geometry_crs: Any | None = None,
        geometry_column: str = "geometry",
        all_touched: bool = False,
        overview: int | None = None,
        resolution: float | None = None,
    ) -> tuple[pa.Table, IOStats]:
        """Read every AOI of a table from every record it meets; one row per AOI x record x band.

        ``aois``: anything :func:`read_geometry_table` accepts. The output keeps every AOI
        column and adds ``record_id``, ``datetime``, ``band``, ``crs``, ``transform`` (of the
        window), ``height``, ``width`` and ``data`` (the masked window, row-major). AOIs that
        meet no record add no row. Records on different grids are fine here.
        """
        band_list = check_bands(self.bands, bands)
        table, crs = read_geometry_table(aois, geometry_column=geometry_column, geometry_crs=geometry_crs)
        options = ReadOptions(all_touched=all_touched, overview=overview, resolution=resolution)
        return read_aoi_table(self._table, table, crs, band_list, settings=self.settings,
                              geometry_column=geometry_column, options=options)

    def get_gdf(self, aois: Any, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                geometry_column: str = "geometry", all_touched: bool = False, overview: int | None = None,
                resolution: float | None = None) -> Any:
        """:meth:`get_table` as a GeoDataFrame (needs ``rasteret[geo]``); ``data`` holds 2-D arrays."""
        try:
            import geopandas as gpd
        except ImportError as exc:
            raise ImportError('get_gdf needs geopandas: pip install "rasteret[geo]"') from exc
        band_list = check_bands(self.bands, bands)
        table, crs = read_geometry_table(aois, geometry_column=geometry_column, geometry_crs=geometry_crs)
        options = ReadOptions(all_touched=all_touched, overview=overview, resolution=resolution)
        out, _ = read_aoi_table(self._table, table, crs, band_list, settings=self.settings,
                                geometry_column=geometry_column, options=options)
        df = out.drop_columns([geometry_column]).to_pandas()
        df["data"] = [np.asarray(d).reshape(h, w) for d, h, w in zip(df["data"], df["height"], df["width"])]
        return gpd.GeoDataFrame(df, geometry=shapely.from_wkb(out[geometry_column].to_pylist()), crs=crs)

    def _stack(self, geometry: GeometryLike, bands: str | Sequence[str], *, geometry_crs: Any | None,
               all_touched: bool, overview: int | None, resolution: float | None, target_crs: Any | None) -> Stack:
        if target_crs is not None:
            raise GridMismatchError(
                "target_crs= (reprojection onto one grid) is not available yet; read each grid "
                "separately with subset(), or use get_gdf()"
            )
        band_list = check_bands(self.bands, bands)
        options = ReadOptions(all_touched=all_touched, overview=overview, resolution=resolution)
        return read_stack(self._table, geometry, band_list, settings=self.settings, geometry_crs=geometry_crs,
                          options=options)

    # ------------------------------------------------------------------ lifecycle
    def enrich(self, *, refresh: bool = False) -> Collection:
        """Parse headers for rows that lack them (all rows with ``refresh``); commit a new version."""
        result = enrich_records(self._table, settings=self.settings, refresh=refresh)
        _raise_failures(result.failures)
        if self.uri is None:
            return self._view(result.table)
        version, _ = _delta.merge_table(result.table, self.uri, settings=self.settings, operation="enrich",
                                        metadata={"headers_parsed": result.parsed})
        return load(self.uri, version=version, settings=self.settings)


def _is_bbox(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value)


def _time_range(value: str | tuple[Any, Any]) -> tuple[_dt | None, _dt | None]:
    if isinstance(value, str):
        parts = value.split("/") if "/" in value else [value, value]
        if len(parts) != 2:
            raise CollectionError(f"datetime {value!r} must be 'START/END' (ISO 8601, '..' for an open end)")
        start, end = parts
        end_is_date = len(end) == 10
    else:
        start, end = value
        end_is_date = isinstance(end, str) and len(end) == 10

    def parse(v: Any, *, is_end: bool) -> _dt | None:
        if v in (None, "", ".."):
            return None
        if isinstance(v, _dt):
            dt = v
        else:
            try:
                dt = _dt.fromisoformat(str(v).replace("Z", "+00:00"))
            except ValueError as exc:
                raise CollectionError(f"datetime {v!r} is not ISO 8601") from exc
            if is_end and end_is_date:
                dt = dt.replace(hour=23, minute=59, second=59, microsecond=999999)
        from datetime import timezone

        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)

    return parse(start, is_end=False), parse(end, is_end=True)


def _raise_failures(failures: Sequence[Any]) -> None:
    if failures:
        listed = "; ".join(f"{f.record_id}/{f.band} {f.error}" for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise CollectionError(f"{len(failures)} asset header(s) could not be parsed: {listed}{more}")


def read_geometry_table(
    source: Any, *, geometry_column: str = "geometry", geometry_crs: Any | None = None
) -> tuple[pa.Table, CRS]:
    """Normalise an AOI/point source to an Arrow table with a WKB geometry column, and its CRS.

    ``source``: a path/URI of (Geo)Parquet, a ``pa.Table``, a ``RecordBatchReader``, a
    GeoDataFrame, anything with ``__arrow_c_stream__``, or a sequence of geometries.
    The CRS is ``geometry_crs`` if given, else the table's GeoParquet/GeoArrow metadata
    (or the GeoDataFrame's), else OGC:CRS84.
    """
    meta_crs: CRS | None = None
    if hasattr(source, "to_wkb") and hasattr(source, "crs") and hasattr(source, "geometry"):  # GeoDataFrame
        meta_crs = CRS.from_user_input(source.crs) if source.crs is not None else None
        df = source.to_wkb()
        table = pa.Table.from_pandas(df, preserve_index=False)
        geometry_column = source.geometry.name
    elif isinstance(source, (str,)) or hasattr(source, "__fspath__"):
        import pyarrow.parquet as pq

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
    if geometry_column not in table.schema.names:
        raise SchemaError(f"the table has no geometry column {geometry_column!r} (columns: {table.schema.names})")
    if meta_crs is None:
        meta_crs = geometry_table_crs(table.schema, geometry_column)
    if geometry_crs is not None:
        crs = to_crs(geometry_crs)
        if meta_crs is not None and meta_crs != crs:
            raise SchemaError(
                f"geometry_crs={crs.to_string()} contradicts the table's own CRS {meta_crs.to_string()}; drop one"
            )
    else:
        crs = meta_crs or CRS84
    return table, crs


def load(uri: str, *, version: int | None = None, as_of: _dt | str | None = None,
         settings: Settings | None = None) -> Collection:
    """Load a collection: the latest version, a ``version``, or the one current at ``as_of``."""
    settings = settings or Settings.from_env()
    table, found = _delta.read_table(uri, settings=settings, version=version, as_of=as_of)
    return Collection(table, uri=uri, version=found, settings=settings)


def build_from_stac(
    *,
    stac_api: str,
    collection: str,
    uri: str,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    intersects: Mapping[str, Any] | None = None,
    query: Mapping[str, Any] | None = None,
    bands: Mapping[str, str] | None = None,
    max_items: int | None = None,
    enrich: bool = True,
    settings: Settings | None = None,
) -> Collection:
    """Search a STAC API, normalise the items, parse their COG headers, commit to Delta at ``uri``.

    Re-running with the same search merges on record id: changed items update
    their rows, nothing is duplicated.
    """
    settings = settings or Settings.from_env()
    items = search_items(stac_api, collections=collection, bbox=bbox, datetime=datetime,
                         intersects=intersects, query=query, max_items=max_items)
    table = records_from_items(items, bands=bands)
    parsed = 0
    if enrich:
        result = enrich_records(table, settings=settings)
        _raise_failures(result.failures)
        table, parsed = result.table, result.parsed
    version, counts = _delta.merge_table(
        table, uri, settings=settings, operation="build_from_stac",
        metadata={"source": stac_api, "collection": collection, "bbox": bbox, "datetime": datetime,
                  "items": len(items), "headers_parsed": parsed},
    )
    return load(uri, version=version, settings=settings)

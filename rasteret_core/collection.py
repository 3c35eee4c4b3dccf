"""The Collection: a versioned Delta table of raster records, and reads through it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime as _dt
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

from .errors import CollectionError, SchemaError
from .geo.geometry import CRS84, GeometryLike, read_geometry_table, reproject, to_crs, to_geometry
from .io.freshness import StaleAsset, stale_assets
from .io.store import IOStats
from .read.grid import (
    ReadKeywords,
    ReadOptions,
    ReadResult,
    Resampling,
    check_bands,
    footprints_meet,
    plan_stack,
    read_aoi_table,
    read_options,
    read_stack,
    refuse_options,
)
from .read.points import Match, sample_table, to_points
from .read.stats import check_stats
from .read.xarray import Chunks, GroupBy, Mosaic, check_mosaic, read_xarray
from .settings import Settings
from .table import delta as _delta
from .table.enrich import changed_headers, enrich_records, raise_failures, select_for_enrichment
from .table.schema import GEO_METADATA, geo_metadata, missing_columns, without_internal
from .table.sources import records_from_table
from .table.stac import parse_utc

__all__ = ["GEO_METADATA", "Collection", "load"]

log = logging.getLogger(__name__)


class DatasetKeywords(TypedDict, total=False):
    """The options of :meth:`Collection.to_torchgeo_dataset` (documented there)."""

    crs: Any
    res: float | tuple[float, float] | None
    time: str | tuple[Any, Any] | None
    split: str | Sequence[str] | None
    where: pc.Expression | None
    resampling: Resampling
    is_image: bool
    dtype: Any
    transforms: Any


class Collection:
    """A view of a collection version: a table of records; reads plan against it.

    A collection loaded from Delta (:func:`load`) holds only its pinned version's
    log until asked: ``len``, ``bands`` and ``schema`` read nothing more;
    ``subset``/``where`` read just the files (and row groups) that may hold the
    records they keep and return an in-memory view; ``to_arrow`` reads it whole.
    Arrays are ``[record, band, y, x]``; records are ordered by datetime, then id.
    """

    def __init__(
        self,
        table: pa.Table | None = None,
        *,
        uri: str | None = None,
        version: int | None = None,
        settings: Settings | None = None,
        snapshot: _delta.Snapshot | None = None,
    ) -> None:
        """Wrap a table of records, or (``snapshot``) a pinned Delta version read only when needed."""
        if (table is None) == (snapshot is None):
            raise CollectionError("a Collection wraps either a table or a Delta snapshot; pass exactly one")
        schema = table.schema if table is not None else snapshot.schema  # type: ignore[union-attr]
        missing = missing_columns(schema)
        if missing:
            raise SchemaError(f"not a collection table: columns {missing} are missing")
        self._data = _with_geo(table) if table is not None else None
        self._snapshot = snapshot
        self.uri = snapshot.uri if snapshot is not None else uri
        self.version = snapshot.version if snapshot is not None else version
        self.settings = settings or Settings.from_env()

    @property
    def _table(self) -> pa.Table:
        """The records; a collection loaded from Delta reads its version whole on first use."""
        if self._data is None:
            self._data = _with_geo(self._snapshot.read())  # type: ignore[union-attr]
        return self._data

    @property
    def _lazy(self) -> bool:
        return self._data is None

    # ------------------------------------------------------------------ inspect
    @property
    def schema(self) -> pa.Schema:
        """The records' Arrow schema (read from the Delta log, without reading data)."""
        return self._data.schema if self._data is not None else self._snapshot.schema  # type: ignore[union-attr]

    @property
    def bands(self) -> list[str]:
        """Band names, in table order."""
        return [f.name for f in self.schema.field("assets").type]

    def __len__(self) -> int:
        return self._data.num_rows if self._data is not None else self._snapshot.num_rows  # type: ignore[union-attr]

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
        """Keep the records matching a ``pyarrow.compute`` expression.

        On a collection loaded from Delta only the files whose statistics may match
        are read (for conditions on top-level columns).
        """
        if self._lazy:
            return self._view(self._snapshot.read(where=expr))  # type: ignore[union-attr]
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

        On a collection loaded from Delta this reads only the files (and row groups)
        whose statistics may hold matching records: the time range and the bbox of
        the shapes prune through the Delta log; the result is held in memory.

        Args:
            bbox: ``(minx, miny, maxx, maxy)`` in OGC:CRS84; footprints must intersect it.
            datetime: ``"2024-01-01/2024-02-01"`` (open ends as ``..``) or a ``(start, end)``
                pair; both ends inclusive.
            geometries: footprints must intersect at least one (CRS: ``geometry_crs``).
            cloud_cover_lt: ``eo:cloud_cover`` strictly below this.
            split: one split label or several.
            ids: record ids.
        """
        conditions: list[pc.Expression] = []
        if ids is not None:
            conditions.append(pc.field("id").isin(pa.array(list(ids), pa.string())))
        if split is not None:
            labels = [split] if isinstance(split, str) else list(split)
            conditions.append(pc.field("split").isin(pa.array(labels, pa.string())))
        if cloud_cover_lt is not None:
            conditions.append(pc.field("eo:cloud_cover") < cloud_cover_lt)
        start, end = _time_range(datetime) if datetime is not None else (None, None)
        shapes: list[shapely.Geometry] = []
        if bbox is not None:
            shapes.append(to_geometry(tuple(bbox)))
        if geometries is not None:
            many = geometries if isinstance(geometries, (list, tuple)) and not _is_bbox(geometries) else [geometries]
            crs = to_crs(geometry_crs)
            shapes.append(shapely.union_all([reproject(to_geometry(g), crs, CRS84) for g in many]))
        if self._lazy:
            # a footprint meets every shape, so its bbox overlaps the smallest shape's bounds
            envelope = min((_bounds(s) for s in shapes), key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if shapes else None
            t = _with_geo(self._snapshot.read(  # type: ignore[union-attr]
                bbox=envelope, start=start, end=end, where=_all_of(conditions)))
        else:
            t = self._table
            if start is not None:
                conditions.append(pc.field("datetime") >= pa.scalar(start, pa.timestamp("us", tz="UTC")))
            if end is not None:
                conditions.append(pc.field("datetime") <= pa.scalar(end, pa.timestamp("us", tz="UTC")))
            if conditions:
                t = t.filter(_all_of(conditions))
        for shape in shapes:
            t = t.filter(pa.array(footprints_meet(t, shape)))
        return self._view(t)

    # ------------------------------------------------------------------ read
    def explain(self, geometry: GeometryLike, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> dict[str, int]:
        """What reading ``geometry`` would cost, before any I/O: records, tiles, requests, bytes.

        Takes the read options of :meth:`get_numpy` (``options=`` or keywords); ``target_crs``
        and ``resampling`` do not change what is fetched from the native grids and are ignored.
        """
        band_list = check_bands(self.bands, bands)
        opts = dataclasses.replace(read_options(options, **keywords), target_crs=None)
        plan, rows, _ = plan_stack(self._near(geometry, geometry_crs), geometry, band_list, settings=self.settings,
                                   geometry_crs=geometry_crs, options=opts)
        return {"records": len(rows), **plan.summary()}

    def get_numpy(self, geometry: GeometryLike, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                  options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> np.ndarray:
        """Read the pixels of ``bands`` within ``geometry`` from every record it meets.

        Read options (:class:`ReadOptions`: ``all_touched``, ``overview``, ``resolution``,
        ``target_crs``, ``resampling``, ``masked``) come as ``options=`` or as keywords over
        it; every read method takes them the same way.

        Returns ``[records, bands, height, width]`` in the native dtype; for each record and
        band the slice equals ``rasterio.mask.mask(src, [geometry in the raster CRS],
        crop=True, all_touched=all_touched, filled=True, nodata=fill)`` with ``fill`` the
        asset's nodata, else 0. With ``overview=k`` (or a ``resolution=`` that picks it)
        ``src`` is the file's k-th overview (``rasterio.open(path, overview_level=k)``).

        With ``target_crs`` every record and band is reprojected (``resampling``, as
        ``rasterio.warp.reproject`` does) onto one north-up grid covering the geometry,
        aligned to multiples of ``resolution`` (target CRS units; default: the first
        record's resolution carried over), then masked with the geometry on that grid.

        With ``masked`` the result is a ``numpy.ma.MaskedArray`` (as rasterio's
        ``read(masked=True)``): masked where a pixel is outside the geometry or GDAL's mask
        band marks it invalid (an internal mask, nodata or alpha); its data hold the fill.

        Raises:
            NoRecordsError: no record's footprint meets the geometry.
            BandError: a band is unknown or lacks header metadata.
            GridMismatchError: the records (or bands) lie on different pixel grids.
        """
        return self.read_numpy(geometry, bands, geometry_crs=geometry_crs, options=options, **keywords).data

    def read_numpy(self, geometry: GeometryLike, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                   options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> ReadResult:
        """:meth:`get_numpy`, returning a :class:`ReadResult`.

        ``result.data`` is what :meth:`get_numpy` returns; ``result.stats`` the I/O it took, and
        ``record_ids``, ``datetimes``, ``bands``, ``transform``, ``crs``, ``fill`` place it.
        """
        opts = read_options(options, **keywords)
        band_list = check_bands(self.bands, bands)
        stack = read_stack(self._near(geometry, geometry_crs), geometry, band_list, settings=self.settings,
                           geometry_crs=geometry_crs, options=opts)
        return ReadResult.from_stack(stack)

    def read_table(self, aois: Any, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                   geometry_column: str = "geometry", stats: Sequence[str] | None = None,
                   options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> ReadResult:
        """:meth:`get_table`, returning a :class:`ReadResult`.

        ``result.data`` is the table :meth:`get_table` returns, ``result.stats`` the I/O it took and
        ``result.crs`` the AOIs' CRS. ``target_crs`` and ``resampling`` do not apply to table reads.
        """
        opts = read_options(options, **keywords)
        refuse_options(opts, ["target_crs", "resampling"], "table reads read each AOI on its records' own grids")
        band_list = check_bands(self.bands, bands)
        names = check_stats(stats) if stats is not None else None  # before any I/O
        table, crs = read_geometry_table(aois, geometry_column=geometry_column, geometry_crs=geometry_crs)
        out, io = read_aoi_table(self._near(table[geometry_column].to_pylist(), crs), table, crs, band_list,
                                 geometry_column=geometry_column, settings=self.settings, options=opts, stats=names)
        return ReadResult(out, io, crs=crs.to_string())

    def get_xarray(self, geometry: GeometryLike, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                   mosaic: Mosaic | None = None, group_by: GroupBy = "date", chunks: Chunks | None = None,
                   options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> Any:
        """:meth:`get_numpy` as an ``xarray.Dataset`` (needs ``rasteret[xarray]``); the same read options.

        One variable per band with dims ``(time, y, x)``, pixel-centre ``x``/``y``
        coordinates, record ids on ``id``, and a CF ``spatial_ref`` grid mapping. With
        ``masked`` (as rioxarray's ``open_rasterio(masked=True)``) the variables are floats
        with NaN where pixels are invalid or outside the geometry; otherwise they keep the
        native dtype, with the fill named by the ``nodata`` attribute and ``_FillValue``.

        Args:
            mosaic: Combine records into one layer per UTC calendar date (``time`` is the
                date; ``id`` is dropped), in record order (datetime, then id), as
                ``rasterio.merge.merge`` takes its sources: ``"first"`` keeps each pixel of
                the first record where it is valid, ``"latest"`` of the last, ``"median"``
                the median of the valid values (always floats with NaN). Validity is the
                masked read's: GDAL's mask band and the geometry. The records must lie on
                one grid: records on other CRSs need ``target_crs=``.
            group_by: With ``mosaic``: ``"date"`` (the default) or ``"all"``, one layer of
                every record with dims ``(y, x)``.
            chunks: A dask-backed Dataset instead: nothing is read until it is computed,
                and each block reads its own records, band and pixel window through the
                same planner and fetcher, giving the eager read's pixels. A mapping of
                ``"time"`` (layers), ``"y"``, ``"x"`` to sizes (``-1`` or left out: whole;
                ``"auto"``: tile multiples up to dask's chunk size), or ``"auto"`` for
                ``{"time": 1, "y": "auto", "x": "auto"}``. The graph pickles (records as
                Arrow, the settings) and runs on threads or ``dask.distributed``
                processes. With ``target_crs`` each block of time is warped whole, then
                cut into the ``y``/``x`` chunks.

        Raises:
            NoRecordsError, BandError, GridMismatchError: as :meth:`get_numpy`.
            PlanningError: an unknown ``mosaic``, ``group_by`` or ``chunks``.
        """
        band_list = check_bands(self.bands, bands)
        opts = read_options(options, **keywords)
        check_mosaic(mosaic, group_by)  # before any I/O
        return read_xarray(self._near(geometry, geometry_crs), geometry, band_list, settings=self.settings,
                           geometry_crs=geometry_crs, options=opts, mosaic=mosaic, group_by=group_by, chunks=chunks)

    def get_table(self, aois: Any, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                  geometry_column: str = "geometry", stats: Sequence[str] | None = None,
                  options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> tuple[pa.Table, IOStats]:
        """Read every AOI of a table from every record it meets; one row per AOI x record x band.

        ``aois``: anything :func:`read_geometry_table` accepts. The output keeps every AOI
        column and adds ``record_id``, ``datetime``, ``band``, ``crs``, ``transform`` (of the
        window), ``height``, ``width`` and ``data`` (the masked window, row-major). AOIs that
        meet no record add no row. Records on different grids are fine here. With ``masked``
        the ``data`` values of invalid pixels (GDAL's mask band) and of pixels outside the
        AOI are null.

        With ``stats`` (any of ``"count", "mean", "min", "max", "std", "median"``) each row
        holds statistics instead of ``data``: ``pixels`` (the window's pixels inside the
        AOI) and one column per statistic, named as asked, over the valid pixels only
        (inside the AOI, valid by GDAL's mask band, not NaN). ``count`` is the number of
        valid pixels; a window without any has count 0 and null statistics. ``mean`` and
        ``std`` are float64 (``std`` with ``ddof=0``, numpy's default), ``median`` is
        numpy's median as float64, ``min``/``max`` keep the bands' dtype (unsigned widened
        to the signed type that holds it, as Delta output tables store it). The read runs
        in batches of ``RASTERET_BATCH_PIXELS`` window pixels, each window reduced as soon
        as it is read, so no more than one batch of arrays is held at once.

        Read options as :meth:`get_numpy`'s, but for ``target_crs`` and ``resampling``: each AOI
        is read on its records' own grids.

        Raises:
            StatisticError: an unknown (or repeated) statistic; the message lists the valid ones.
        """
        result = self.read_table(aois, bands, geometry_crs=geometry_crs, geometry_column=geometry_column,
                                 stats=stats, options=options, **keywords)
        return result.data, result.stats

    def sample_points(self, points: Any, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                      geometry_column: str = "geometry", x_column: str | None = None, y_column: str | None = None,
                      match: Match = "all", date_column: str | None = None, options: ReadOptions | None = None,
                      **keywords: Unpack[ReadKeywords]) -> pa.Table:
        """Sample ``bands`` at every point; one row per point x record x band (see ``rasteret_core.read.points.sample_table``).

        ``points``: anything :func:`read_geometry_table` accepts, with Point geometries in
        ``geometry_column`` (WKB, WKT or GeoArrow points), or coordinates in ``x_column`` and
        ``y_column`` (numbers, CRS ``geometry_crs``, else OGC:CRS84). The output keeps every
        point column and adds ``record_id``, ``datetime``, ``band`` and ``value`` (the pixel
        holding the point, as ``rasterio``'s ``sample`` picks it). Each tile the points touch
        is read and decoded once, however many points it holds.

        ``match``: ``"all"`` records covering a point; only the ``"first"`` / ``"latest"`` (by
        datetime, then id); or ``"nearest-date"``: per point, the covering record whose datetime
        is nearest to the point's date in ``date_column`` (ties: the earlier, then the smaller
        id). A record covers a point when the point is in its footprint and on its raster,
        valid pixel or not.

        Invalid pixels (GDAL's mask band: nodata, an internal mask, alpha) hold the fill value
        (the asset's nodata, else 0), as in ``get_numpy``; with ``masked`` their ``value`` is
        null instead (valid exactly where rasterio's ``sample(masked=True)`` is unmasked). Of the
        read options only ``masked`` applies: a point reads the full-resolution pixel under it.
        """
        out, _ = self.sample_table(points, bands, geometry_crs=geometry_crs, geometry_column=geometry_column,
                                   x_column=x_column, y_column=y_column, match=match, date_column=date_column,
                                   options=options, **keywords)
        return out

    def sample_table(self, points: Any, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                     geometry_column: str = "geometry", x_column: str | None = None, y_column: str | None = None,
                     match: Match = "all", date_column: str | None = None, options: ReadOptions | None = None,
                     **keywords: Unpack[ReadKeywords]) -> tuple[pa.Table, IOStats]:
        """:meth:`sample_points`, also returning the I/O it took (as :meth:`get_table` does)."""
        opts = read_options(options, **keywords)
        refuse_options(opts, ["all_touched", "overview", "resolution", "target_crs", "resampling"],
                       "sampling reads the full-resolution pixel under each point on its record's own grid")
        band_list = check_bands(self.bands, bands)
        table, crs = read_geometry_table(points, geometry_column=None if x_column is not None else geometry_column,
                                         geometry_crs=geometry_crs)
        pts = to_points(table, crs, geometry_column=geometry_column, x_column=x_column, y_column=y_column,
                        date_column=date_column, match=match)  # every check before any I/O
        if len(pts):  # the records whose footprints meet the points' bounds (pruned through Delta when loaded)
            pad = 1e-9
            bbox = (float(pts.lon.min()) - pad, float(pts.lat.min()) - pad,
                    float(pts.lon.max()) + pad, float(pts.lat.max()) + pad)
            near = self.subset(bbox=bbox)._table  # noqa: SLF001 - a Collection's own table
        else:
            near = self.subset(ids=[])._table  # noqa: SLF001 - a Collection's own table
        return sample_table(near, table, pts, band_list, settings=self.settings, match=match, masked=opts.masked)

    def get_gdf(self, aois: Any, bands: str | Sequence[str], *, geometry_crs: Any | None = None,
                geometry_column: str = "geometry", stats: Sequence[str] | None = None,
                options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> Any:
        """:meth:`get_table` as a GeoDataFrame (needs ``rasteret[geo]``); ``data`` holds 2-D arrays
        (``numpy.ma.MaskedArray`` with ``masked``); with ``stats``, the statistics columns instead
        (null statistics are NaN or pandas' NA).
        """
        try:
            import geopandas as gpd
        except ImportError as exc:
            raise ImportError('get_gdf needs geopandas: pip install "rasteret[geo]"') from exc
        result = self.read_table(aois, bands, geometry_crs=geometry_crs, geometry_column=geometry_column,
                                 stats=stats, options=options, **keywords)
        out: pa.Table = result.data  # a table read's data is a table
        crs, masked = result.crs, read_options(options, **keywords).masked
        if stats is not None:
            df = out.drop_columns([geometry_column]).to_pandas()
            return gpd.GeoDataFrame(df, geometry=shapely.from_wkb(out[geometry_column].to_pylist()), crs=crs)
        df = out.drop_columns([geometry_column, "data"]).to_pandas()
        df["data"] = [_window_array(v, h, w, masked) for v, h, w in zip(out["data"], df["height"], df["width"], strict=True)]
        return gpd.GeoDataFrame(df, geometry=shapely.from_wkb(out[geometry_column].to_pylist()), crs=crs)

    def to_torchgeo_dataset(self, bands: str | Sequence[str], **options: Unpack[DatasetKeywords]) -> Any:
        """This collection as a ``torchgeo.datasets.GeoDataset`` (needs ``rasteret[torchgeo]``).

        The dataset (:class:`rasteret_core.torchgeo.CollectionDataset`) works with TorchGeo's
        samplers and a ``DataLoader`` with worker processes; its chips are read through the
        planner and fetcher, records on other CRSs warped onto ``crs`` (``resampling``).

        Args:
            bands: The bands of each chip, in this order.
            crs: The dataset CRS (anything pyproj accepts); default the first record's
                (by datetime, then id).
            res: Pixel size ``res`` or ``(xres, yres)`` in ``crs`` units; default the pixel size
                of the first record on ``crs`` (if none is, the first record's carried over to
                ``crs`` as GDAL suggests).
            time: Keep records in this time range (as :meth:`subset`'s ``datetime``).
            split: Keep records with this split label (or any of these).
            where: Keep records matching this ``pyarrow.compute`` expression (other label columns).
            resampling: ``"nearest"`` (default; exact values) or ``"bilinear"``.
            is_image: Samples hold ``image`` (else ``mask``, band axis squeezed), as TorchGeo's
                ``RasterDataset.is_image``.
            dtype: The samples' torch dtype; default ``float32`` for images, ``long`` for masks.
            transforms: A callable applied to each sample (picklable, for worker processes).

        Raises:
            ImportError: torch or torchgeo is missing.
            NoRecordsError: the selection keeps no record.
        """
        from .torchgeo import CollectionDataset  # raises ImportError naming rasteret[torchgeo]

        return CollectionDataset(self, bands, **options)

    def _near(self, geometries: GeometryLike | Sequence[GeometryLike], crs: Any | None) -> pa.Table:
        """The records whose footprints meet any of ``geometries`` (pruned through Delta when loaded)."""
        if isinstance(geometries, list) and not geometries:
            return self._table.slice(0, 0)
        return self.subset(geometries=geometries, geometry_crs=crs)._table  # noqa: SLF001

    # ------------------------------------------------------------------ lifecycle
    def enrich(self, *, refresh: bool | Literal["stale"] = False) -> Collection:
        """Parse the COG headers this view's rows lack; commit the rows that changed as a new version.

        Args:
            refresh: ``False`` parses only missing headers; ``"stale"`` also re-parses
                the assets whose object changed since enrichment (one HEAD per
                object finds them, see :func:`~rasteret_core.io.freshness.find_stale`);
                ``True`` re-parses every header.

        Only rows whose headers changed are merged (on id); when none did, nothing
        is committed and this collection is returned as it is.

        Raises:
            CollectionError: a header could not be parsed (nothing is committed).
        """
        table = self._table
        todo = select_for_enrichment(table, refresh=refresh, settings=self.settings)
        result = enrich_records(todo, settings=self.settings, refresh=refresh is True)
        raise_failures(result.failures)
        changed = changed_headers(todo, result.table)
        if changed.num_rows == 0:
            return self
        if self.uri is None:
            ids = pc.is_in(table["id"], value_set=changed["id"])
            return self._view(pa.concat_tables([table.filter(pc.invert(ids)), changed.select(table.schema.names)]))
        version, counts = _delta.merge_table(
            changed, self.uri, settings=self.settings, operation="enrich",
            metadata={"refresh": refresh, "records": changed.num_rows, "headers_parsed": result.parsed},
        )
        log.info("%s: enrich committed version %d (%s)", self.uri, version, counts)
        return load(self.uri, version=version, settings=self.settings)

    def stale_assets(self, *, bands: Sequence[str] | None = None) -> list[StaleAsset]:
        """The enriched assets whose object changed since enrichment (one HEAD per object).

        ``enrich(refresh="stale")`` re-parses exactly these.
        """
        return stale_assets(self._table, settings=self.settings, bands=bands)

    def export(self, path: str | os.PathLike[str]) -> str:
        """Write this view to a GeoParquet file (stac-geoparquet conventions) to share; return its path.

        The file carries GeoParquet 1.1 ``geo`` metadata (WKB footprints in
        OGC:CRS84 with the ``bbox`` covering, geometry types and extent), so
        GeoPandas, DuckDB and Polars read it with geometry and CRS; ``load(path)`` or
        ``build_from_table(path)`` makes a collection of it again, headers included.
        ``path`` is a local path or an ``s3://`` URI.
        """
        table = self._table
        table = without_internal(table)
        meta = {**(table.schema.metadata or {}), b"geo": json.dumps(geo_metadata(table)).encode()}
        target = str(path)
        filesystem, where = self.settings.arrow_filesystem(target)
        try:
            pq.write_table(table.replace_schema_metadata(meta), where, filesystem=filesystem, compression="zstd",
                           row_group_size=_delta.ROW_GROUP_ROWS * 8)
        except (OSError, pa.ArrowInvalid) as exc:
            raise CollectionError(f"cannot write {target}: {exc}") from exc
        log.info("exported %d records to %s", table.num_rows, target)
        return target

    def optimize(self, *, recluster: bool = False, target_size: int | None = None) -> Collection:
        """Compact the table's small files (``recluster``: rewrite it in cluster order); a new version.

        Run it now and then on a collection built by many small ingestions;
        earlier versions stay loadable until vacuumed. See
        :func:`~rasteret_core.table.delta.optimize_table` for when to recluster.
        """
        uri = self._require_uri("optimize")
        version, _ = _delta.optimize_table(uri, settings=self.settings, recluster=recluster, target_size=target_size)
        return load(uri, version=version, settings=self.settings)

    def vacuum(self, *, retention_hours: float | None = None, dry_run: bool = True,
               enforce_retention_duration: bool = True) -> list[str]:
        """List (``dry_run``, the default) or delete data files no version within the retention uses.

        Versions older than ``retention_hours`` (default: the table's, one week) can
        no longer be loaded afterwards. Returns the files removed, or that would be.
        """
        uri = self._require_uri("vacuum")
        return _delta.vacuum_table(uri, settings=self.settings, retention_hours=retention_hours, dry_run=dry_run,
                                   enforce_retention_duration=enforce_retention_duration)

    def _require_uri(self, what: str) -> str:
        if self.uri is None:
            raise CollectionError(f"an in-memory collection cannot {what}; build it into a URI first")
        return self.uri


def _bounds(geom: shapely.Geometry) -> tuple[float, float, float, float]:
    assert isinstance(geom, BaseGeometry)  # every shapely geometry is one (shapely.Geometry lacks bounds)
    return geom.bounds


def _with_geo(table: pa.Table) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(GEO_METADATA).encode()
    return table.replace_schema_metadata(meta)


def _all_of(conditions: Sequence[pc.Expression]) -> pc.Expression | None:
    out = None
    for condition in conditions:
        out = condition if out is None else out & condition
    return out


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
        dt = parse_utc(v)
        if is_end and end_is_date and not isinstance(v, _dt):
            dt = dt.replace(hour=23, minute=59, second=59, microsecond=999999)
        return dt

    return parse(start, is_end=False), parse(end, is_end=True)


def _window_array(value: pa.ListScalar, height: int, width: int, masked: bool) -> np.ndarray:
    """One ``data`` value of a read table as a 2-D array (masked where its values are null)."""
    values = value.values
    if not masked:
        array: np.ndarray = values.to_numpy(zero_copy_only=False).reshape(height, width)
        return array
    data = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).reshape(height, width)
    return np.ma.MaskedArray(data, mask=values.is_null().to_numpy(zero_copy_only=False).reshape(height, width))


def load(uri: str | os.PathLike[str], *, version: int | None = None, as_of: _dt | str | None = None,
         settings: Settings | None = None) -> Collection:
    """Load a collection: the latest version, a ``version``, or the one current at ``as_of`` (time travel).

    Only the Delta log is read; records are read when needed, and ``subset`` /
    ``where`` read just the files that may hold the records they keep. ``as_of`` is
    a datetime (naive means UTC) or an ISO 8601 string: the version is the last one
    committed at or before it. A GeoParquet file (an ``export``) loads too, in
    memory, without versions.

    Raises:
        CollectionError: no collection at ``uri``, or no such version.
    """
    settings = settings or Settings.from_env()
    target = str(uri)
    if target.endswith(".parquet") or os.path.isfile(target):
        if version is not None or as_of is not None:
            raise CollectionError(f"{target} is a Parquet file, not a Delta table: it has no versions")
        return Collection(records_from_table(target), settings=settings)
    snapshot = _delta.open_snapshot(target, settings=settings, version=version, as_of=as_of)
    return Collection(snapshot=snapshot, settings=settings)

"""Reads through a collection: records x bands x geometry -> plan -> pixels.

The surfaces (`get_numpy`, `get_xarray`, `get_table`, `get_gdf`, `explain`) all
come here; this module picks the records, builds the chunk requests, calls the
one planner and the one fetcher, and shapes the result.

Conventions: stacks are ``[record, band, y, x]``; records are ordered by
datetime, then id; transforms are rasterio-ordered affines of the output's
pixel (0, 0) corner.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from rasteret_core.errors import BandError, GridMismatchError, NoRecordsError, PlanningError, SchemaError
from rasteret_core.geo.geometry import CRS84, GeometryLike, reproject, to_crs, to_geometry
from rasteret_core.geo.rasterize import rasterize_mask
from rasteret_core.geo.warp import Resampling, default_resolution, plan_source_window, plan_target_grid, reproject_array
from rasteret_core.io.freshness import ObjectFacts, expect_fresh
from rasteret_core.io.store import IOStats
from rasteret_core.settings import Settings
from rasteret_core.table.schema import header_from_dict
from rasteret_core.tiff.header import TiffHeader

from .fetch import read_plan, reduce_plan
from .planner import ChunkPlan, ChunkRequest, ReadPlan, Window, plan_read, resolve_overview, select_image
from .stats import check_stats, reduce_window, stats_columns

__all__ = ["ReadKeywords", "ReadOptions", "ReadResult", "Resampling", "Stack", "TargetGrid", "footprints_meet",
           "plan_stack", "read_aoi_table", "read_options", "read_stack", "refuse_options", "stack_grid"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadOptions:
    """How to read: mask rule and resolution.

    Attributes:
        all_touched: Keep every pixel the geometry touches (rasterio's ``all_touched``),
            not only those whose centre it contains.
        overview: Read this overview (0 = the finest reduced level) instead of full resolution.
        resolution: Without ``target_crs``: read from the coarsest overview whose pixels are
            no larger than this (in the raster CRS's units); the output keeps that overview's
            grid. With ``target_crs``: the target grid's pixel size, in its units.
        target_crs: Reproject every record onto one north-up grid in this CRS, aligned to
            multiples of the resolution (default: the first record's resolution carried over).
        resampling: ``nearest`` or ``bilinear`` for reprojection, as GDAL does them.
        masked: Return which pixels are valid as well: numpy masked arrays (mask True where
            a pixel is outside the geometry, or invalid by GDAL's mask band: an internal
            mask, nodata or alpha), null list values in tables, NaN in xarray.
    """

    all_touched: bool = False
    overview: int | None = None
    resolution: float | None = None
    target_crs: CRS | None = None
    resampling: Resampling = "nearest"
    masked: bool = False

    def __post_init__(self) -> None:
        if self.overview is not None and self.resolution is not None and self.target_crs is None:
            raise PlanningError("pass overview= or resolution=, not both")
        if self.overview is not None and self.overview < 0:
            raise PlanningError(f"overview must be 0 or more, got {self.overview}")
        if self.resampling not in ("nearest", "bilinear"):
            raise PlanningError(f"resampling must be 'nearest' or 'bilinear', got {self.resampling!r}")
        if self.resolution is not None and self.resolution <= 0:
            raise PlanningError(f"resolution must be positive, got {self.resolution}")

    def overview_for(self, header: TiffHeader) -> int | None:
        """The overview level to read from ``header``: the one asked, or the one ``resolution`` picks."""
        if self.resolution is None or self.target_crs is not None:  # with a target CRS, resolution is the target's
            return self.overview
        return resolve_overview(header, self.resolution)


class ReadKeywords(TypedDict, total=False):
    """:class:`ReadOptions`' fields, as keyword arguments of every read method (``get_numpy(..., masked=True)``)."""

    all_touched: bool
    overview: int | None
    resolution: float | None
    target_crs: Any
    resampling: Resampling
    masked: bool


def read_options(options: ReadOptions | None = None, **keywords: Unpack[ReadKeywords]) -> ReadOptions:
    """The one :class:`ReadOptions` of a read: ``options`` (default: the defaults) with ``keywords`` over it.

    ``target_crs`` may be anything pyproj accepts; it is returned as a ``pyproj.CRS``.

    Raises:
        PlanningError: an unknown keyword, or values :class:`ReadOptions` refuses.
    """
    unknown = sorted(set(keywords) - set(ReadKeywords.__annotations__))
    if unknown:
        raise PlanningError(f"unknown read option(s) {unknown}; the read options are "
                            + ", ".join(ReadKeywords.__annotations__))
    merged = dataclasses.replace(options or ReadOptions(), **keywords)
    target: Any = merged.target_crs  # typed CRS, but callers pass what pyproj accepts
    if target is not None and not isinstance(target, CRS):
        return dataclasses.replace(merged, target_crs=to_crs(target))
    return merged


def refuse_options(options: ReadOptions, names: Sequence[str], why: str) -> None:
    """Raise :class:`PlanningError` if any of ``names`` is set away from its default in ``options``."""
    defaults = ReadOptions()
    set_ = [n for n in names if getattr(options, n) != getattr(defaults, n)]
    if set_:
        raise PlanningError(f"{', '.join(set_)} do(es) not apply: {why}")


@dataclass(frozen=True, slots=True, eq=False)
class Stack:
    """A read stacked on one grid: ``data[record, band, y, x]`` plus what places it.

    ``data`` is a ``numpy.ma.MaskedArray`` when the read was ``masked``.
    """

    data: np.ndarray
    record_ids: list[str]
    datetimes: list[datetime | None]
    bands: list[str]
    transform: tuple[float, ...]
    crs: str
    fill: float
    stats: IOStats


@dataclass(frozen=True, slots=True, eq=False)
class ReadResult:
    """A read's result with the I/O it took: what ``Collection.read_numpy`` / ``read_table`` return.

    Attributes:
        data: ``[record, band, y, x]`` pixels (a ``numpy.ma.MaskedArray`` when the read was
            ``masked``), or a ``pyarrow.Table`` for table reads.
        stats: The bytes, requests and time the read took.
        record_ids, datetimes, bands: For array reads, the records (in ``data``'s order:
            datetime, then id) and bands along the first two axes; empty for table reads.
        transform: For array reads, the rasterio-ordered affine of pixel (0, 0); else None.
        crs: For array reads, the grid's CRS (WKT or authority string); for table reads the
            AOIs' CRS; None when unknown.
        fill: For array reads, the value of pixels outside the geometry or invalid; else None.
    """

    data: np.ndarray | pa.Table
    stats: IOStats
    record_ids: tuple[str, ...] = ()
    datetimes: tuple[datetime | None, ...] = ()
    bands: tuple[str, ...] = ()
    transform: tuple[float, ...] | None = None
    crs: str | None = None
    fill: float | None = None

    @classmethod
    def from_stack(cls, stack: Stack) -> ReadResult:
        """The result of a read as a :class:`Stack` holds it."""
        return cls(stack.data, stack.stats, tuple(stack.record_ids), tuple(stack.datetimes), tuple(stack.bands),
                   stack.transform, stack.crs, stack.fill)


def check_bands(available: Sequence[str], bands: str | Sequence[str]) -> list[str]:
    """Normalise ``bands`` to a list and check each is in the collection."""
    band_list = [bands] if isinstance(bands, str) else list(bands)
    if not band_list:
        raise BandError("no band asked; pass one or more of " + ", ".join(available))
    unknown = [b for b in band_list if b not in available]
    if unknown:
        raise BandError(f"unknown band(s) {unknown}; the collection has {list(available)}")
    return band_list


def asset_of(row: Mapping[str, Any], band: str) -> tuple[str, TiffHeader, int]:
    """The href, parsed header and sample index (0-based) of one record's band."""
    asset = (row["assets"] or {}).get(band)
    if asset is None:
        raise BandError(f"record {row['id']} has no asset for band {band!r}")
    if asset["header"] is None:
        raise BandError(
            f"record {row['id']} band {band!r} ({asset['href']}) has no header metadata; run collection.enrich()"
        )
    return asset["href"], header_from_dict(asset["header"], uri=asset["href"]), (asset.get("band_index") or 1) - 1


def footprints_meet(table: pa.Table, shape: shapely.Geometry) -> np.ndarray:
    """Boolean per row: does the record's footprint (CRS84) intersect ``shape`` (CRS84)?

    The bbox covering column prunes first; exact footprints decide the rest.
    """
    if table.num_rows == 0:
        return np.zeros(0, dtype=bool)
    assert isinstance(shape, BaseGeometry)  # every shapely geometry is one (shapely.Geometry lacks bounds)
    xmin, ymin, xmax, ymax = shape.bounds
    bb = table["bbox"].combine_chunks()
    near = np.asarray(
        pc.and_(
            pc.and_(pc.less_equal(bb.field("xmin"), xmax), pc.greater_equal(bb.field("xmax"), xmin)),
            pc.and_(pc.less_equal(bb.field("ymin"), ymax), pc.greater_equal(bb.field("ymax"), ymin)),
        ).fill_null(True)
    )
    out = np.zeros(table.num_rows, dtype=bool)
    idx = np.flatnonzero(near)
    if idx.size:
        feet = shapely.from_wkb(table["geometry"].take(pa.array(idx)).to_pylist())
        out[idx] = shapely.intersects(feet, shape)
    return out


def _record_order(row: Mapping[str, Any]) -> tuple[datetime, str]:
    dt = row["datetime"]
    return (dt.replace(tzinfo=None) if dt is not None else datetime.min, row["id"])  # noqa: DTZ901 - naive, as dt


def _plan(requests: list[ChunkRequest], options: ReadOptions, settings: Settings) -> ReadPlan:
    return plan_read(requests, all_touched=options.all_touched, coalesce_gap=settings.coalesce_gap,
                     max_request_bytes=settings.max_request_bytes)


@dataclass(frozen=True, slots=True, eq=False)
class TargetGrid:
    """The one grid a reprojected read lands on, and the geometry in its CRS."""

    crs: CRS
    transform: tuple[float, ...]
    width: int
    height: int
    geometry: shapely.Geometry


def _records_meeting(table: pa.Table, geom: shapely.Geometry, crs: CRS) -> list[dict[str, Any]]:
    hits = table.filter(pa.array(footprints_meet(table, reproject(geom, crs, CRS84))))
    rows = sorted(hits.to_pylist(), key=_record_order)
    if not rows:
        assert isinstance(geom, BaseGeometry)  # every shapely geometry is one (shapely.Geometry lacks bounds)
        raise NoRecordsError(
            f"no record's footprint meets the geometry (bounds {tuple(round(v, 6) for v in geom.bounds)} in "
            f"{crs.to_string()}); check geometry_crs= and the collection's extent"
        )
    return rows


def fresh_check(plan: ReadPlan, rows: Sequence[Mapping[str, Any]]) -> Any:
    """A check that every object the plan reads is still the one its header was parsed from (on each GET's answer)."""
    uris = {c.uri for c in plan.chunks}
    expected = {
        asset["href"]: ObjectFacts(asset["header"]["etag"], asset["header"]["size"], asset["header"]["last_modified"])
        for row in rows
        for asset in (row["assets"] or {}).values()
        if asset is not None and asset["href"] in uris and asset["header"] is not None
    }
    return functools.partial(expect_fresh, expected)


def _target_grid(geom: shapely.Geometry, crs: CRS, first: TiffHeader, options: ReadOptions) -> TargetGrid:
    target = options.target_crs
    assert target is not None
    _, _, transform = select_image(first, options.overview)
    resolution = options.resolution or default_resolution(
        transform, first.crs, target, first.image.width, first.image.height)
    projected = reproject(geom, crs, target)
    assert isinstance(projected, BaseGeometry)  # every shapely geometry is one (shapely.Geometry lacks bounds)
    dst_transform, width, height = plan_target_grid(projected.bounds, crs=target, resolution=resolution)
    return TargetGrid(target, dst_transform, width, height, projected)


def plan_stack(
    table: pa.Table, geometry: GeometryLike, bands: Sequence[str], *, settings: Settings,
    geometry_crs: Any | None = None, options: ReadOptions = ReadOptions(),
) -> tuple[ReadPlan, list[dict[str, Any]], TargetGrid | None]:
    """Plan reading ``bands`` within one geometry from every record whose footprint meets it.

    With ``options.target_crs`` each chunk reads the source window that the target grid
    needs (whole, unmasked); the grid is returned too.
    """
    geom = to_geometry(geometry)
    crs = to_crs(geometry_crs)
    rows = _records_meeting(table, geom, crs)
    grid = None
    if options.target_crs is not None:
        grid = _target_grid(geom, crs, asset_of(rows[0], bands[0])[1], options)
    requests = []
    for ri, row in enumerate(rows):
        for bi, band in enumerate(bands):
            uri, header, sample = asset_of(row, band)
            window = None
            if grid is not None:
                _, _, src_transform = select_image(header, options.overview)
                window = Window(*plan_source_window(
                    src_transform=src_transform, src_crs=header.crs, dst_transform=grid.transform, dst_crs=grid.crs,
                    dst_shape=(grid.height, grid.width), resampling=options.resampling))
            requests.append(ChunkRequest(key=(ri, bi), uri=uri, header=header, geometry=geom, geometry_crs=crs,
                                         sample=sample, overview=options.overview_for(header), window=window))
    plan = _plan(requests, options, settings)
    if not plan.chunks and grid is None:
        raise NoRecordsError("the geometry meets record footprints but no pixel of their rasters")
    return plan, rows, grid


def read_stack(
    table: pa.Table, geometry: GeometryLike, bands: Sequence[str], *, settings: Settings,
    geometry_crs: Any | None = None, options: ReadOptions = ReadOptions(),
) -> Stack:
    """Read one geometry from every record it meets, stacked ``[record, band, y, x]`` on one grid.

    Raises:
        GridMismatchError: the records (or bands) lie on different pixel grids and no
            ``target_crs`` puts them on one.
    """
    plan, rows, grid = plan_stack(table, geometry, bands, settings=settings, geometry_crs=geometry_crs,
                                  options=options)
    if grid is not None:
        return _warp_stack(plan, rows, bands, grid, settings, options)
    first = stack_grid(plan, rows, bands)
    arrays, stats = read_plan(plan, settings, check=fresh_check(plan, rows), masked=options.masked)
    dtype = np.result_type(*(a.dtype for a in arrays))
    out = _empty((len(rows), len(bands), first.window.height, first.window.width), dtype, options.masked)
    for chunk, arr in zip(plan.chunks, arrays, strict=True):
        out[cast("tuple[int, int]", chunk.key)] = arr  # keyed (record, band) in plan_stack
    return Stack(out, [r["id"] for r in rows], [r["datetime"] for r in rows], list(bands), first.transform,
                 first.crs or "", first.fill, stats)


def stack_grid(plan: ReadPlan, rows: Sequence[Mapping[str, Any]], bands: Sequence[str]) -> ChunkPlan:
    """The first chunk of a stack's plan, once every record x band is known to lie on its grid.

    Raises:
        GridMismatchError: the chunks lie on different pixel grids, or some record x band
            has no chunk.
    """
    grids = {(c.crs, c.transform, c.window.height, c.window.width) for c in plan.chunks}
    if len(grids) > 1 or len(plan.chunks) != len(rows) * len(bands):
        raise GridMismatchError(
            f"the {len(rows)} records x {len(bands)} bands asked lie on {len(grids)} different pixel "
            "grids (CRS, resolution or origin differ) and cannot stack in one array; read one grid at a "
            "time (subset by CRS or band resolution), pass target_crs= to reproject, or use get_gdf()"
        )
    return plan.chunks[0]


def _warp_stack(plan: ReadPlan, rows: list[dict[str, Any]], bands: Sequence[str], grid: TargetGrid,
                settings: Settings, options: ReadOptions) -> Stack:
    """Reproject each chunk's source window onto the target grid, then mask with the geometry there."""
    # Source windows come masked (GDAL's mask band), so invalid source pixels are no data to the warper.
    arrays, stats = read_plan(plan, settings, check=fresh_check(plan, rows), masked=True)
    headers = {(ri, bi): asset_of(row, band)[1] for ri, row in enumerate(rows) for bi, band in enumerate(bands)}
    fills = {key: (h.nodata if h.nodata is not None else 0) for key, h in headers.items()}
    dtype = np.result_type(*(h.image.dtype for h in headers.values()))
    out = cast("np.ma.MaskedArray", _empty((len(rows), len(bands), grid.height, grid.width), dtype, True))
    for key in fills:
        out[key] = np.ma.masked  # records whose raster misses the target grid stay invalid
    for chunk, arr in zip(plan.chunks, arrays, strict=True):
        chunk_key = cast("tuple[int, int]", chunk.key)  # keyed (record, band) in plan_stack
        out[chunk_key] = reproject_array(
            arr, src_transform=chunk.transform, src_crs=chunk.crs, dst_transform=grid.transform, dst_crs=grid.crs,
            dst_shape=(grid.height, grid.width), resampling=options.resampling,
            src_nodata=headers[chunk_key].nodata, dst_nodata=fills[chunk_key])
    outside = ~rasterize_mask(grid.geometry, grid.transform, grid.height, grid.width, options.all_touched)
    for key, fill in fills.items():
        out[key][outside] = np.ma.masked
        out.data[key][np.ma.getmaskarray(out)[key]] = fill  # out's mask is a full array (see _empty)
    data: np.ndarray = out if options.masked else out.data
    epsg = grid.crs.to_epsg()
    return Stack(data, [r["id"] for r in rows], [r["datetime"] for r in rows], list(bands), grid.transform,
                 f"EPSG:{epsg}" if epsg else grid.crs.to_wkt(), next(iter(fills.values())), stats)


def read_grid(
    table: pa.Table,
    bands: Sequence[str],
    grid: TargetGrid,
    *,
    settings: Settings,
    options: ReadOptions = ReadOptions(),
) -> Stack:
    """Read every record of ``table`` onto one given grid, stacked ``[record, band, y, x]``.

    Unlike :func:`read_stack`, the caller picks both the records (none is dropped for its
    footprint) and the exact grid (``grid.geometry`` masks it, in ``grid.crs``): TorchGeo
    queries come as a box and a resolution, and must come back in exactly that shape.
    Each record and band is warped as :func:`read_stack` does with ``target_crs``
    (``options.resampling``; ``options.overview`` picks the source image); a record whose
    raster misses the grid is all invalid (its fill, or masked with ``options.masked``).
    Records are ordered by datetime, then id.
    """
    rows = sorted(table.to_pylist(), key=_record_order)
    if not rows:
        raise NoRecordsError("no record to read onto the grid")
    requests = []
    for ri, row in enumerate(rows):
        for bi, band in enumerate(bands):
            uri, header, sample = asset_of(row, band)
            _, _, src_transform = select_image(header, options.overview)
            window = Window(*plan_source_window(
                src_transform=src_transform, src_crs=header.crs, dst_transform=grid.transform, dst_crs=grid.crs,
                dst_shape=(grid.height, grid.width), resampling=options.resampling))
            requests.append(ChunkRequest(key=(ri, bi), uri=uri, header=header, geometry=grid.geometry,
                                         geometry_crs=grid.crs, sample=sample, overview=options.overview,
                                         window=window))
    return _warp_stack(_plan(requests, options, settings), rows, bands, grid, settings, options)


def _empty(shape: tuple[int, ...], dtype: np.dtype, masked: bool) -> np.ndarray:
    """An uninitialised array, or a masked one with nothing masked yet."""
    data = np.empty(shape, dtype=dtype)
    return np.ma.MaskedArray(data, mask=np.zeros(shape, bool)) if masked else data


def read_aoi_table(
    table: pa.Table,
    aois: pa.Table,
    aoi_crs: CRS,
    bands: Sequence[str],
    *,
    settings: Settings,
    geometry_column: str = "geometry",
    options: ReadOptions = ReadOptions(),
    stats: Sequence[str] | None = None,
) -> tuple[pa.Table, IOStats]:
    """Read every AOI from every record it meets; one output row per AOI x record x band.

    The output keeps every AOI column and adds ``record_id``, ``datetime``, ``band``,
    ``crs``, ``transform`` (of the window), ``height``, ``width`` and ``data`` (the
    masked window, row-major, in the band's dtype; with ``options.masked`` invalid pixels
    are null values). AOIs that meet no record add no row.

    With ``stats`` (names from :data:`~rasteret_core.read.stats.STATISTICS`) ``data`` gives way
    to ``pixels`` (the window's pixels inside the AOI, int64) and one column per statistic,
    in the order asked, over the valid pixels only (see :mod:`rasteret_core.read.stats`). The
    whole read is planned at once and run in batches of at most ``settings.batch_pixels``
    window pixels, each window reduced as soon as its batch is read (``options.masked``
    changes nothing there).
    """
    names = check_stats(stats) if stats is not None else None
    geoms = [to_geometry(g) for g in aois[geometry_column].to_pylist()]
    rows = table.to_pylist()
    feet = shapely.from_wkb([r["geometry"] for r in rows])
    shapely.prepare(feet)
    requests = []
    for ai, geom in enumerate(geoms):
        hits = np.flatnonzero(shapely.intersects(feet, reproject(geom, aoi_crs, CRS84)))
        for ri in sorted(hits, key=lambda i: _record_order(rows[i])):
            for band in bands:
                uri, header, sample = asset_of(rows[ri], band)
                requests.append(ChunkRequest(key=(ai, int(ri), band), uri=uri, header=header, geometry=geom,
                                             geometry_crs=aoi_crs, sample=sample, overview=options.overview_for(header)))
    plan = _plan(requests, options, settings)
    columns: dict[str, pa.Array]
    if names is None:
        arrays, io = (read_plan(plan, settings, check=fresh_check(plan, rows), masked=options.masked)
                      if plan.chunks else ([], IOStats()))
        columns = {"data": _list_array(arrays)}
    else:
        reduce = functools.partial(_window_stats, names, options.all_touched)
        windows, io = (reduce_plan(plan, settings, reduce, max_pixels=settings.batch_pixels,
                                   check=fresh_check(plan, rows)) if plan.chunks else ([], IOStats()))
        dtypes = {r.header.image.dtype for r in requests} or {np.dtype("uint16")}  # uint16: a placeholder
        columns = {"pixels": pa.array([w[0] for w in windows], pa.int64()),
                   **stats_columns([w[1] for w in windows], names, np.result_type(*dtypes))}
    keys = [cast("tuple[int, int, str]", c.key) for c in plan.chunks]  # keyed (aoi, record, band) above
    out = aois.take(pa.array([k[0] for k in keys], pa.int64()))
    extra = {
        "record_id": pa.array([rows[k[1]]["id"] for k in keys], pa.string()),
        "datetime": pa.array([rows[k[1]]["datetime"] for k in keys], pa.timestamp("us", tz="UTC")),
        "band": pa.array([k[2] for k in keys], pa.string()),
        "crs": pa.array([c.crs for c in plan.chunks], pa.string()),
        "transform": pa.array([list(c.transform) for c in plan.chunks], pa.list_(pa.float64())),
        "height": pa.array([c.window.height for c in plan.chunks], pa.int32()),
        "width": pa.array([c.window.width for c in plan.chunks], pa.int32()),
        **columns,
    }
    for name, column in extra.items():
        if name in out.schema.names:
            raise SchemaError(f"the AOI table has a column {name!r} that the output needs; rename it")
        out = out.append_column(name, column)
    return out, io


def _window_stats(names: Sequence[str], all_touched: bool, chunk: ChunkPlan,
                  array: np.ma.MaskedArray) -> tuple[int, dict[str, Any]]:
    """One window's pixels inside its AOI and its statistics (run by the fetcher as its batch is read)."""
    inside = rasterize_mask(chunk.geometry, chunk.transform, chunk.window.height, chunk.window.width, all_touched)
    return int(np.count_nonzero(inside)), reduce_window(array, names)


def _list_array(arrays: Sequence[np.ndarray]) -> pa.Array:
    if not arrays:
        return pa.array([], pa.list_(pa.uint16()))
    dtype = np.result_type(*(a.dtype for a in arrays))
    flat = np.concatenate([np.asarray(a).ravel().astype(dtype, copy=False) for a in arrays])
    offsets = np.concatenate([[0], np.cumsum([a.size for a in arrays])]).astype(np.int32)
    invalid = (np.concatenate([np.ma.getmaskarray(a).ravel() for a in arrays])
               if any(isinstance(a, np.ma.MaskedArray) for a in arrays) else None)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, mask=invalid))

"""xarray Datasets of reads: eager, mosaicked per date, or dask-lazy through the one planner and fetcher.

Every Dataset has one variable per band with dims ``(time, y, x)`` (``(y, x)`` for a
mosaic of every record), pixel-centre ``x``/``y`` coordinates and a CF ``spatial_ref``
grid mapping (as rioxarray writes it). Validity is carried one way everywhere: with
``masked`` (and always for a ``median`` mosaic) variables are floats with NaN where a
pixel is invalid (``_FillValue`` NaN in the encoding); otherwise they keep the native
dtype and invalid pixels hold the fill (the first record's nodata, else 0), named by
the ``nodata`` attribute and the ``_FillValue`` encoding.

Mosaics combine the records of one UTC calendar date (``group_by="date"``) or of every
date (``"all"``) into one layer, in the read's record order (datetime, then id), as
GDAL's VRT order and ``rasterio.merge.merge`` take their sources: ``"first"`` keeps
each pixel of the first record where it is valid, ``"latest"`` of the last, and
``"median"`` is the NaN-median of the valid values. Validity is the masked read's
(GDAL's mask band and the geometry).

Lazy Datasets (``chunks=``) read nothing when built: each dask block plans and reads
its own records, band and pixel window when computed. Their graph holds the records
as an Arrow table and the settings (no client or open file), so it runs on the
threaded scheduler and on ``dask.distributed`` worker processes alike.
"""

from __future__ import annotations

import functools
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

from rasteret_core.errors import GridMismatchError, PlanningError
from rasteret_core.geo.geometry import GeometryLike, to_crs, to_geometry
from rasteret_core.geo.rasterize import rasterize_mask
from rasteret_core.settings import Settings
from rasteret_core.tiff.header import TiffHeader

from .fetch import read_plan
from .grid import ReadOptions, Stack, asset_of, fresh_check, plan_stack, read_stack, stack_grid
from .planner import ChunkRequest, Window, plan_read

__all__ = ["Chunks", "GroupBy", "Mosaic", "check_mosaic", "group_records", "mosaic_layers", "read_xarray",
           "resolve_chunks", "stack_to_xarray"]

Mosaic = Literal["first", "latest", "median"]
GroupBy = Literal["date", "all"]
Chunks = Mapping[str, int | str | None] | Literal["auto"]

_DIMS = ("time", "y", "x")


def _import_xarray() -> Any:
    try:
        import xarray as xr
    except ImportError as exc:
        raise ImportError('get_xarray needs xarray: pip install "rasteret[xarray]"') from exc
    return xr


# ------------------------------------------------------------------ pure pieces


def group_records(datetimes: Sequence[datetime | None], group_by: GroupBy) -> tuple[list[list[int]], list[date | None]]:
    """The records each mosaic layer combines (indices, in record order) and each layer's UTC date.

    ``"date"``: one layer per calendar date of the records' datetimes in UTC (records
    without a datetime share one layer, dated None); ``"all"``: one layer of every
    record, dated None. Layers come in the records' order.
    """
    if group_by == "all":
        return [list(range(len(datetimes)))], [None]
    groups: dict[date | None, list[int]] = {}
    for index, dt in enumerate(datetimes):
        key = None if dt is None else (dt.astimezone(UTC) if dt.tzinfo is not None else dt).date()
        groups.setdefault(key, []).append(index)
    return list(groups.values()), list(groups)


def mosaic_layers(data: np.ma.MaskedArray, groups: Sequence[Sequence[int]], how: Mosaic) -> np.ma.MaskedArray:
    """Combine ``data[record, y, x]`` (masked where invalid) into one layer per group: ``[group, y, x]``.

    ``"first"`` takes each pixel from the first record of the group where it is valid
    (``rasterio.merge.merge(method="first")``), ``"latest"`` from the last
    (``method="last"``), both in ``data``'s dtype; ``"median"`` is the median of the
    valid values (``numpy.nanmedian``) as floats (float32 for integers up to 16 bits).
    A pixel no record of its group holds validly is masked; its data is undefined.
    """
    valid_all = ~np.ma.getmaskarray(data)
    values_all = np.ma.getdata(data)
    layers = []
    for members in groups:
        index = np.asarray(members, dtype=np.intp)
        values, valid = values_all[index], valid_all[index]
        any_valid = valid.any(axis=0)
        if how == "median":
            floats = values.astype(np.result_type(values.dtype, np.float32))
            floats[~valid] = np.nan
            floats[:, ~any_valid] = 0  # no all-NaN slice: nanmedian would warn; these stay masked
            layer = np.nanmedian(floats, axis=0)
        elif how in ("first", "latest"):
            pick = np.argmax(valid, axis=0) if how == "first" else len(index) - 1 - np.argmax(valid[::-1], axis=0)
            layer = np.take_along_axis(values, pick[np.newaxis], axis=0)[0]
        else:
            raise PlanningError(f"mosaic must be 'first', 'latest' or 'median', got {how!r}")
        layers.append(np.ma.MaskedArray(layer, mask=~any_valid))
    return np.ma.stack(layers)


def resolve_chunks(chunks: Chunks, shape: tuple[int, int, int], dtype: np.dtype,
                   tile: tuple[int, int]) -> tuple[tuple[int, ...], ...]:
    """Dask chunks of a ``(time, y, x)`` array from ``chunks=``.

    ``chunks``: a mapping of ``"time"``, ``"y"``, ``"x"`` to a size, ``-1`` or None
    (the whole dimension, also for a dimension left out) or ``"auto"``; or ``"auto"``
    for ``{"time": 1, "y": "auto", "x": "auto"}``. ``"auto"`` sizes are whole multiples
    of the rasters' tiles up to dask's ``array.chunk-size``.
    """
    from dask.array.core import normalize_chunks

    if isinstance(chunks, str):
        if chunks != "auto":
            raise PlanningError(f"chunks must be 'auto' or a mapping of {_DIMS} to sizes, got {chunks!r}")
        asked: tuple[Any, ...] = (1, "auto", "auto")
    elif isinstance(chunks, Mapping):
        unknown = sorted(set(chunks) - set(_DIMS))
        if unknown:
            raise PlanningError(f"chunks names unknown dimension(s) {unknown}; the dimensions are {list(_DIMS)}")
        asked = tuple(_chunk_size(dim, chunks.get(dim)) for dim in _DIMS)
    else:
        raise PlanningError(f"chunks must be 'auto' or a mapping of {_DIMS} to sizes, got {type(chunks).__name__}")
    chunked = normalize_chunks(asked, shape, dtype=dtype, previous_chunks=(1, *tile))  # type: ignore[no-untyped-call]  # dask leaves it unannotated
    return tuple(chunked)


def _chunk_size(dim: str, size: Any) -> int | str:
    if size is None or size == -1:
        return -1
    if size == "auto":
        return "auto"
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
        return int(size)
    raise PlanningError(f"chunks[{dim!r}] must be a positive int, -1, None or 'auto', got {size!r}")


def _values(data: np.ma.MaskedArray, fill: float, as_float: bool) -> np.ndarray:
    """A masked layer as a Dataset stores it: floats with NaN where invalid, or the data with the fill there."""
    if as_float:
        return np.ma.filled(data.astype(np.result_type(data.dtype, np.float32)), np.nan)
    return np.ma.filled(data, fill)


def _time_coord(values: Sequence[datetime | date | None]) -> np.ndarray:
    def one(t: datetime | date | None) -> np.datetime64:
        if t is None:
            return np.datetime64("NaT", "ns")
        if isinstance(t, datetime):
            t = (t.astimezone(UTC) if t.tzinfo is not None else t).replace(tzinfo=None)
        return np.datetime64(t, "ns")

    return np.array([one(t) for t in values], dtype="datetime64[ns]")


def check_mosaic(mosaic: Mosaic | None, group_by: GroupBy) -> None:
    """Check ``mosaic`` and ``group_by`` are known values; raise :class:`PlanningError` naming the valid ones."""
    if mosaic not in (None, "first", "latest", "median"):
        raise PlanningError(f"mosaic must be None, 'first', 'latest' or 'median', got {mosaic!r}")
    if group_by not in ("date", "all"):
        raise PlanningError(f"group_by must be 'date' or 'all', got {group_by!r}")
    if mosaic is None and group_by != "date":
        raise PlanningError(f"group_by={group_by!r} groups records for a mosaic; pass mosaic= as well")


# ------------------------------------------------------------------ Datasets


def _dataset(layers: Mapping[str, Any], *, as_float: bool, fill: float, transform: Sequence[float], crs: str,
             time: np.ndarray | None, ids: np.ndarray | None, attrs: Mapping[str, Any]) -> Any:
    """The Dataset of per-band layers (numpy or dask, ``(time, y, x)`` or ``(y, x)`` when ``time`` is None)."""
    xr = _import_xarray()
    a, b, c, d, e, f = transform
    if b != 0 or d != 0:
        raise GridMismatchError("the grid is rotated; xarray coordinates need a north-up grid, use get_numpy()")
    height, width = next(iter(layers.values())).shape[-2:]
    crs_obj = CRS.from_user_input(crs)
    spatial_ref = xr.DataArray(0, attrs={
        **crs_obj.to_cf(),
        "crs_wkt": crs_obj.to_wkt(),
        "spatial_ref": crs_obj.to_wkt(),
        "GeoTransform": " ".join(str(v) for v in (c, a, b, f, d, e)),
    })
    coords: dict[str, Any] = {} if time is None else {"time": time}
    coords.update({"y": f + e * (np.arange(height) + 0.5), "x": c + a * (np.arange(width) + 0.5)})
    if ids is not None:
        coords["id"] = ("time", ids)
    coords["spatial_ref"] = spatial_ref
    x_attrs, y_attrs = ({"standard_name": "longitude", "units": "degrees_east"},
                        {"standard_name": "latitude", "units": "degrees_north"}) if crs_obj.is_geographic else (
        {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"},
        {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"})
    dims = ("y", "x") if time is None else _DIMS
    nodata = np.nan if as_float else fill
    data_vars = {
        band: xr.DataArray(values, dims=dims, attrs={"grid_mapping": "spatial_ref",
                                                     **({} if as_float else {"nodata": fill})})
        for band, values in layers.items()
    }
    ds = xr.Dataset(data_vars, coords=coords)
    for band in layers:
        ds[band].encoding["_FillValue"] = nodata
    ds["x"].attrs.update(x_attrs)
    ds["y"].attrs.update(y_attrs)
    ds.attrs.update(attrs)
    return ds


def stack_to_xarray(stack: Stack) -> Any:
    """A :class:`~rasteret_core.read.grid.Stack` as an ``xarray.Dataset``: one variable per band, dims
    ``(time, y, x)``, record ids on ``id``, I/O counts in ``attrs`` (``requests``, ``bytes_read``).
    """
    masked = isinstance(stack.data, np.ma.MaskedArray)
    values = _values(cast("np.ma.MaskedArray", stack.data), stack.fill, True) if masked else stack.data  # as rioxarray's masked=True
    return _dataset({band: values[:, bi] for bi, band in enumerate(stack.bands)}, as_float=masked, fill=stack.fill,
                    transform=stack.transform, crs=stack.crs, time=_time_coord(stack.datetimes),
                    ids=np.array(stack.record_ids, dtype=object),
                    attrs={"requests": stack.stats.requests, "bytes_read": stack.stats.bytes})


def _mosaic_to_xarray(stack: Stack, mosaic: Mosaic, group_by: GroupBy, masked: bool) -> Any:
    groups, dates = group_records(stack.datetimes, group_by)
    as_float = masked or mosaic == "median"
    data = cast("np.ma.MaskedArray", stack.data)  # read with masked=True (read_xarray)
    layers = {band: _values(mosaic_layers(data[:, bi], groups, mosaic), stack.fill, as_float)
              for bi, band in enumerate(stack.bands)}
    if group_by == "all":
        layers = {band: values[0] for band, values in layers.items()}
    return _dataset(layers, as_float=as_float, fill=stack.fill, transform=stack.transform, crs=stack.crs,
                    time=None if group_by == "all" else _time_coord(dates), ids=None,
                    attrs={"mosaic": mosaic, "group_by": group_by, "requests": stack.stats.requests,
                           "bytes_read": stack.stats.bytes})


def read_xarray(
    table: pa.Table, geometry: GeometryLike, bands: Sequence[str], *, settings: Settings,
    geometry_crs: Any | None = None, options: ReadOptions = ReadOptions(), mosaic: Mosaic | None = None,
    group_by: GroupBy = "date", chunks: Chunks | None = None,
) -> Any:
    """Read ``bands`` within ``geometry`` from every record it meets as an ``xarray.Dataset``.

    Without ``mosaic`` one layer per record (``time`` from its datetime, ``id`` its id);
    with it, one layer per group of :func:`group_records` combined by
    :func:`mosaic_layers` (``time`` the UTC date; no ``time`` dimension for
    ``group_by="all"``). With ``chunks`` (see :func:`resolve_chunks`) the variables
    are dask arrays and nothing is read until they are computed; the pixels are those
    of the eager read. With ``options.target_crs`` each block of time is warped whole
    (GDAL's warper interpolates along whole rows of the target grid) and cut into the
    ``y``/``x`` chunks asked.

    Raises:
        PlanningError: an unknown ``mosaic``, ``group_by`` or ``chunks``.
        GridMismatchError: the records lie on different grids and no ``target_crs``
            puts them on one.
    """
    check_mosaic(mosaic, group_by)
    _import_xarray()
    if chunks is not None:
        return _lazy_dataset(table, geometry, bands, settings=settings, geometry_crs=geometry_crs, options=options,
                             mosaic=mosaic, group_by=group_by, chunks=chunks)
    if mosaic is None:
        return stack_to_xarray(read_stack(table, geometry, bands, settings=settings, geometry_crs=geometry_crs,
                                          options=options))
    stack = read_stack(table, geometry, bands, settings=settings, geometry_crs=geometry_crs,
                       options=replace(options, masked=True))
    return _mosaic_to_xarray(stack, mosaic, group_by, options.masked)


# ------------------------------------------------------------------ lazy (dask) Datasets


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class _LazyRead:
    """What every block of a lazy Dataset needs to read itself; it pickles (no client, no open file).

    ``table`` holds the records in stack order (datetime, then id); ``layers`` the
    records of each output layer. On the records' native grid (``windows`` set) a block
    reads its pixel window of each record (``(record, band) -> (row_off, col_off)`` of
    the stack's window in the image) and masks it with the geometry burned on the whole
    stack window (``aoi``, WKB in the raster CRS); with a target CRS it warps its
    records onto the grid of ``resolution``, as the eager read does.
    """

    table: pa.Table
    bands: tuple[str, ...]
    layers: tuple[tuple[int, ...], ...]
    mosaic: Mosaic | None
    as_float: bool
    fill: float
    dtype: np.dtype
    settings: Settings
    options: ReadOptions
    geometry: shapely.Geometry
    geometry_crs: Any | None
    windows: Mapping[tuple[int, int], tuple[int, int]] | None
    aoi: bytes | None
    transform: tuple[float, ...]
    height: int
    width: int
    resolution: float | None


def _lazy_dataset(table: pa.Table, geometry: GeometryLike, bands: Sequence[str], *, settings: Settings,
                  geometry_crs: Any | None, options: ReadOptions, mosaic: Mosaic | None, group_by: GroupBy,
                  chunks: Chunks) -> Any:
    """Plan the whole read (pure: no request), then one dask block per (layers, band, window)."""
    import dask.array as da
    from dask.delayed import delayed

    plan, rows, grid = plan_stack(table, geometry, bands, settings=settings, geometry_crs=geometry_crs,
                                  options=options)
    if grid is None:
        first = stack_grid(plan, rows, bands)
        dtype = np.result_type(*(c.image.dtype for c in plan.chunks))
        windows: dict[tuple[int, int], tuple[int, int]] | None = {
            cast("tuple[int, int]", c.key): (c.window.row_off, c.window.col_off) for c in plan.chunks}
        aoi: bytes | None = shapely.to_wkb(first.geometry) if first.geometry is not None else None
        transform, crs, height, width = first.transform, first.crs or "", first.window.height, first.window.width
        tile = (first.image.tile_height, first.image.tile_width)
        fill, resolution = first.fill, None
    else:
        headers = [asset_of(row, band)[1] for row in rows for band in bands]
        dtype = np.result_type(*(h.image.dtype for h in headers))
        windows, aoi = None, None
        epsg = grid.crs.to_epsg()
        transform, crs = grid.transform, f"EPSG:{epsg}" if epsg else grid.crs.to_wkt()
        height, width = grid.height, grid.width
        tile = (headers[0].image.tile_height, headers[0].image.tile_width)
        nodata = headers[0].nodata
        fill, resolution = (nodata if nodata is not None else 0), grid.transform[0]
    layers: tuple[tuple[int, ...], ...]
    time: np.ndarray | None
    ids: np.ndarray | None
    if mosaic is None:
        layers = tuple((i,) for i in range(len(rows)))
        time, ids = _time_coord([r["datetime"] for r in rows]), np.array([r["id"] for r in rows], dtype=object)
        attrs: dict[str, Any] = {}
    else:
        groups, dates = group_records([r["datetime"] for r in rows], group_by)
        layers = tuple(tuple(g) for g in groups)
        time, ids = (None if group_by == "all" else _time_coord(dates)), None
        attrs = {"mosaic": mosaic, "group_by": group_by}
    as_float = options.masked or mosaic == "median"
    out_dtype = np.result_type(dtype, np.float32) if as_float else dtype
    position = {rid: i for i, rid in enumerate(table["id"].to_pylist())}
    spec = _LazyRead(
        table=table.take(pa.array([position[r["id"]] for r in rows], pa.int64())), bands=tuple(bands),
        layers=layers, mosaic=mosaic, as_float=as_float, fill=fill, dtype=out_dtype, settings=settings,
        options=options, geometry=to_geometry(geometry),
        geometry_crs=geometry_crs, windows=windows, aoi=aoi, transform=tuple(transform), height=height,
        width=width, resolution=resolution)
    token = uuid.uuid4().hex
    shared = delayed(spec, name=f"rasteret-read-{token}", traverse=False)
    shape = (len(layers), height, width)
    asked = resolve_chunks(chunks, shape, out_dtype, tile)
    per_block = asked if grid is None else (asked[0], (height,), (width,))  # a warp runs on the whole grid
    variables = {}
    for bi, band in enumerate(bands):
        arr = da.map_blocks(  # type: ignore[no-untyped-call]  # dask leaves map_blocks unannotated
            _read_block, shared, bi, chunks=per_block, dtype=out_dtype, meta=np.empty((0, 0, 0), out_dtype),
            name=f"rasteret-{bi}-{token}")
        if per_block != asked:
            arr = arr.rechunk(asked)
        variables[band] = arr[0] if time is None else arr
    return _dataset(variables, as_float=as_float, fill=fill, transform=transform, crs=crs, time=time, ids=ids,
                    attrs=attrs)


def _read_block(spec: _LazyRead, band: int, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """One dask block: the layers ``[t0, t1)`` of one band within rows ``[y0, y1)`` and columns ``[x0, x1)``."""
    assert block_info is not None
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    layers = spec.layers[t0:t1]
    records = sorted({r for layer in layers for r in layer})
    if spec.windows is not None:
        data = _read_window(spec, records, band, Window(y0, x0, y1 - y0, x1 - x0))
    else:
        stack = read_stack(spec.table.take(pa.array(records, pa.int64())), spec.geometry, [spec.bands[band]],
                           settings=spec.settings, geometry_crs=spec.geometry_crs,
                           options=replace(spec.options, masked=True, resolution=spec.resolution))
        data = cast("np.ma.MaskedArray", stack.data[:, 0, y0:y1, x0:x1])  # read with masked=True
    where = {r: i for i, r in enumerate(records)}
    if spec.mosaic is None:
        data = data[[where[layer[0]] for layer in layers]]
        values = _values(data, spec.fill, True) if spec.as_float else np.ma.getdata(data)
    else:
        combined = mosaic_layers(data, [[where[r] for r in layer] for layer in layers], spec.mosaic)
        values = _values(combined, spec.fill, spec.as_float)
    return values.astype(spec.dtype, copy=False)


def _read_window(spec: _LazyRead, records: Sequence[int], band: int, block: Window) -> np.ma.MaskedArray:
    """Read ``block`` (of the stack's window) of one band of ``records`` on their native grid, masked."""
    assert spec.windows is not None
    rows = [_record(spec, ri) for ri in records]
    geometry_crs = to_crs(spec.geometry_crs)
    requests = []
    for k, ri in enumerate(records):
        uri, header, sample = _asset(spec, ri, band)
        row_off, col_off = spec.windows[(ri, band)]
        requests.append(ChunkRequest(
            key=k, uri=uri, header=header, geometry=spec.geometry, geometry_crs=geometry_crs, sample=sample,
            overview=spec.options.overview_for(header),
            window=Window(row_off + block.row_off, col_off + block.col_off, block.height, block.width)))
    plan = plan_read(requests, all_touched=spec.options.all_touched, coalesce_gap=spec.settings.coalesce_gap,
                     max_request_bytes=spec.settings.max_request_bytes)
    if len(plan.chunks) != len(requests):
        raise PlanningError(f"block {block} of the lazy read falls off a record's raster; rebuild the Dataset")
    arrays, _ = read_plan(plan, spec.settings, check=fresh_check(plan, rows), masked=True)
    inside = _aoi_mask(spec.aoi, spec.transform, spec.height, spec.width, spec.options.all_touched)[
        block.row_off:block.row_off + block.height, block.col_off:block.col_off + block.width]
    dtype = np.result_type(*(a.dtype for a in arrays))
    out = np.ma.MaskedArray(np.empty((len(records), block.height, block.width), dtype),
                            mask=np.zeros((len(records), block.height, block.width), bool))
    for chunk, arr in zip(plan.chunks, arrays, strict=True):
        invalid = np.ma.getmaskarray(arr) | ~inside
        values = np.ma.getdata(arr)
        values[invalid] = chunk.fill  # as the eager read fills pixels outside the geometry
        out[cast("int", chunk.key)] = np.ma.MaskedArray(values, mask=invalid)  # keyed by position above
    return out


class _Decoded:
    """A lazy read's records as dicts and their parsed assets, decoded once per process and read."""

    def __init__(self, spec: _LazyRead) -> None:
        self.rows: list[dict[str, Any]] = spec.table.to_pylist()
        self.assets: dict[tuple[int, int], tuple[str, TiffHeader, int]] = {}


_decoded: weakref.WeakKeyDictionary[_LazyRead, _Decoded] = weakref.WeakKeyDictionary()
_decoded_lock = threading.Lock()


def _decoded_of(spec: _LazyRead) -> _Decoded:
    with _decoded_lock:  # blocks of one read share it (threads, or a worker process's tasks)
        if spec not in _decoded:
            _decoded[spec] = _Decoded(spec)
        return _decoded[spec]


def _record(spec: _LazyRead, index: int) -> dict[str, Any]:
    return _decoded_of(spec).rows[index]


def _asset(spec: _LazyRead, index: int, band: int) -> tuple[str, TiffHeader, int]:
    decoded = _decoded_of(spec)
    key = (index, band)
    if key not in decoded.assets:
        decoded.assets[key] = asset_of(decoded.rows[index], spec.bands[band])
    return decoded.assets[key]


@functools.lru_cache(maxsize=4)
def _aoi_mask(aoi: bytes | None, transform: tuple[float, ...], height: int, width: int,
              all_touched: bool) -> np.ndarray:
    """The geometry burned on the whole stack window, as the eager read burns it (once per process).

    A block's mask is a slice of it: burning the block's own window would move GDAL's
    floating-point ties.
    """
    mask = rasterize_mask(shapely.from_wkb(aoi) if aoi is not None else None, transform, height, width, all_touched)
    mask.flags.writeable = False
    return mask

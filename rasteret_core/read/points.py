"""Point sampling: the value of each band at each point, from every record (or one) that covers it.

Points are normalised once (:func:`to_points`): a geometry column (WKB, WKT, GeoArrow
points) or x/y columns, in any CRS, with a date per point when ``match="nearest-date"``.
For each record and band, one point request carries every point inside the record's
footprint; the planner turns it into one point chunk (:class:`~rasteret_core.read.planner.PointSet`)
that reads each tile its points touch once, and the fetcher decodes each tile once and
gathers its points' values vectorised. A million points over one scene cost that
scene's touched tiles, not a million one-pixel windows. ``match`` chooses, per point and
band, the records kept before any I/O, so tiles only the dropped records need are never read.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS

from rasteret_core.errors import GeometryError, RasteretError, SchemaError
from rasteret_core.geo.geometry import CRS84, reproject_xy
from rasteret_core.io.store import IOStats
from rasteret_core.settings import Settings
from rasteret_core.table.stac import parse_utc

from .fetch import read_plan
from .grid import asset_of, fresh_check
from .planner import ChunkRequest, ReadPlan, plan_read, select_points

__all__ = ["MATCHES", "OUTPUT_COLUMNS", "Match", "Points", "check_sample_options", "sample_table", "to_points"]

Match = Literal["all", "first", "latest", "nearest-date"]
"""Which records a point is sampled from, among those whose raster covers it: ``"all"``;
the ``"first"`` or ``"latest"`` (by datetime, then id); or, per point, the one whose datetime
is ``"nearest-date"`` to the point's date (ties: the earlier, then the smaller id)."""

MATCHES: tuple[str, ...] = get_args(Match)

OUTPUT_COLUMNS = ("record_id", "datetime", "band", "value")
"""The columns a sample adds to the point table."""

_US = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True, eq=False)
class Points:
    """Points normalised once: ``x``/``y`` in ``crs``, ``lon``/``lat`` in OGC:CRS84 (float64),
    and ``dates`` (int64 microseconds since the epoch, UTC) when a date column was given.
    """

    x: np.ndarray
    y: np.ndarray
    crs: CRS
    lon: np.ndarray
    lat: np.ndarray
    dates: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)


def to_points(
    table: pa.Table,
    crs: CRS,
    *,
    geometry_column: str = "geometry",
    x_column: str | None = None,
    y_column: str | None = None,
    date_column: str | None = None,
    match: str = "all",
) -> Points:
    """Check a point table and the sampling options; read its coordinates (and dates) once.

    Args:
        table: The point table.
        crs: The CRS of the coordinates (of ``geometry_column``, or of ``x_column``/``y_column``).
        geometry_column: Point geometries: WKB, WKT, or GeoArrow points (struct ``x, y`` or
            interleaved fixed-size lists). Not read when ``x_column`` is given.
        x_column, y_column: Numeric columns (or strings of numbers) holding the coordinates.
        date_column: A date per point (timestamps, naive ones taken as UTC; dates at 00:00
            UTC; ISO 8601 strings), needed by (and only by) ``match="nearest-date"``.
        match: One of :data:`MATCHES`.

    Raises:
        SchemaError: an unknown ``match``, a date column missing or given without
            ``"nearest-date"``, only one of ``x_column``/``y_column``, a missing column, a
            column that cannot hold coordinates or dates, a null date, or a point table
            that already has an output column.
        GeometryError: a geometry that is not a point (or is null or empty), a null or
            non-finite coordinate, or lon/lat out of range.
    """
    check_sample_options(match=match, date_column=date_column, x_column=x_column, y_column=y_column)
    clash = [name for name in OUTPUT_COLUMNS if name in table.schema.names]
    if clash:
        raise SchemaError(f"the point table has column(s) {clash} that the output needs; rename them")
    if x_column is not None and y_column is not None:
        x, y = _coordinate(table, x_column), _coordinate(table, y_column)
    else:
        x, y = _point_xy(table, geometry_column)
    if crs.is_geographic and len(x) and (np.abs(x).max() > 360 or np.abs(y).max() > 90):
        raise GeometryError(
            f"coordinates out of range for lon/lat ({crs.name}): x in [{x.min():.3f}, {x.max():.3f}], y in "
            f"[{y.min():.3f}, {y.max():.3f}]; if they are projected, say so with geometry_crs="
        )
    lon, lat = reproject_xy(x, y, crs, CRS84)
    dates = _dates(table, date_column) if date_column is not None else None
    return Points(x, y, crs, lon, lat, dates)


def check_sample_options(
    *, match: str = "all", date_column: str | None = None, x_column: str | None = None, y_column: str | None = None
) -> None:
    """Check sampling options that need no table (a flow or the CLI checks them before any batch runs).

    Raises:
        SchemaError: an unknown ``match``; ``"nearest-date"`` without ``date_column`` or
            ``date_column`` with another match; only one of ``x_column``/``y_column``.
    """
    if match not in MATCHES:
        raise SchemaError(f"match={match!r}; use one of {', '.join(repr(m) for m in MATCHES)}")
    if match == "nearest-date" and date_column is None:
        raise SchemaError('match="nearest-date" needs date_column= (the column holding each point\'s date)')
    if match != "nearest-date" and date_column is not None:
        raise SchemaError(f'date_column= is used only by match="nearest-date" (match is {match!r})')
    if (x_column is None) != (y_column is None):
        raise SchemaError("give both x_column= and y_column= (or neither, to read the geometry column)")


def sample_table(
    table: pa.Table,
    point_table: pa.Table,
    points: Points,
    bands: Sequence[str],
    *,
    settings: Settings,
    match: Match = "all",
    masked: bool = False,
) -> tuple[pa.Table, IOStats]:
    """Sample ``bands`` at every point; one row per point x record x band.

    Args:
        table: The collection's records (with parsed headers) that may cover the points.
        point_table: The point table (its rows are the points of ``points``).
        points: The points, from :func:`to_points`.
        bands: Band names (checked by the caller), in output order.
        settings: I/O settings.
        match: Which covering records to keep per point and band (see :data:`Match`). A
            record covers a point when the point is in its footprint and on its raster,
            whether or not the pixel there is valid.
        masked: Invalid pixels (GDAL's mask band: nodata, an internal mask, alpha) as null
            values; otherwise they hold the fill value (the asset's nodata, else 0), as in
            ``get_numpy``.

    Returns:
        The point table's columns (each point repeated per record and band) plus
        ``record_id``, ``datetime``, ``band`` and ``value`` (the pixel holding the point,
        as ``rasterio``'s ``sample`` picks it, in the bands' common dtype as the headers of
        ``table`` give it; float64 when ``table`` has no record), and the I/O it took.
        Points that no record covers add no row. Rows are ordered by point, then record
        (datetime, then id), then band.

    Raises:
        BandError: a band lacks header metadata.
    """
    rows = table.select(["id", "datetime", "geometry", "assets"]).to_pylist()
    rank = np.empty(len(rows), dtype=np.int64)
    rank[sorted(range(len(rows)), key=lambda i: (_naive(rows[i]["datetime"]), rows[i]["id"]))] = np.arange(len(rows))
    inside = _points_in_footprints(rows, points)
    requests = []
    for ri, idx in inside.items():
        xy = (points.x[idx], points.y[idx])
        for band in bands:
            uri, header, sample = asset_of(rows[ri], band)
            requests.append(ChunkRequest(key=(ri, band), uri=uri, header=header, geometry_crs=points.crs,
                                         sample=sample, points=xy))
    plan = plan_read(requests, coalesce_gap=settings.coalesce_gap, max_request_bytes=settings.max_request_bytes)
    if match != "all":  # one record per point and band, before any I/O
        keep = pick_records(plan, inside, rank, _record_times(rows), points.dates, match)
        plan = select_points(plan, keep, coalesce_gap=settings.coalesce_gap,
                             max_request_bytes=settings.max_request_bytes)
    arrays, stats = read_plan(plan, settings, check=fresh_check(plan, rows), masked=masked) if plan.chunks else (
        [], IOStats())
    return _output(point_table, table, plan, arrays, inside, rank, bands, _value_dtype(rows, bands), masked), stats


def pick_records(
    plan: ReadPlan,
    inside: Mapping[int, np.ndarray],
    rank: np.ndarray,
    times: np.ndarray,
    dates: np.ndarray | None,
    match: str,
) -> dict[Hashable, np.ndarray]:
    """The slots to keep of each point chunk: per point and band, the one record ``match`` picks.

    ``plan`` holds a point chunk keyed ``(record, band)`` per record and band covering some
    points; slot ``s`` of a chunk stands for point ``inside[record][chunk.points.index[s]]``.
    ``rank`` orders records (datetime, then id); ``times`` are record datetimes (int64 µs,
    ``_NO_TIME`` where null) and ``dates`` the points' (for ``"nearest-date"``).
    """
    keep: dict[Hashable, np.ndarray] = {}
    by_band: dict[str, list[int]] = {}
    for ci, chunk in enumerate(plan.chunks):
        by_band.setdefault(chunk.key[1], []).append(ci)  # type: ignore[index]
    for members in by_band.values():
        chunks = [plan.chunks[ci] for ci in members]
        slots = [np.arange(len(c.points)) for c in chunks]  # type: ignore[arg-type]
        point = np.concatenate([inside[c.key[0]][c.points.index] for c in chunks])  # type: ignore[index,union-attr]
        owner = np.concatenate([np.full(len(s), k) for k, s in enumerate(slots)])
        record = np.array([c.key[0] for c in chunks])[owner]  # type: ignore[index]
        order_keys: list[np.ndarray] = [rank[record]]
        if match == "latest":
            order_keys = [-rank[record]]
        elif match == "nearest-date":
            assert dates is not None
            t = times[record]
            gap = np.where(t == _NO_TIME, np.iinfo(np.int64).max, np.abs(t - dates[point]))
            order_keys = [rank[record], gap]  # lexsort: the last key is the first criterion
        order = np.lexsort((*order_keys, point))
        sorted_points = point[order]
        best = order[np.r_[True, sorted_points[1:] != sorted_points[:-1]]] if len(order) else order
        all_slots = np.concatenate(slots)
        for k, c in enumerate(chunks):
            chosen = best[owner[best] == k]
            keep[c.key] = np.sort(all_slots[chosen])
    return keep


_NO_TIME = np.iinfo(np.int64).min


def _record_times(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Record datetimes as int64 microseconds since the epoch (UTC); ``_NO_TIME`` where null."""
    times: np.ndarray = pa.array([r["datetime"] for r in rows], _US).cast(pa.int64()).fill_null(_NO_TIME).to_numpy()
    return times


def _points_in_footprints(rows: Sequence[Mapping[str, Any]], points: Points) -> dict[int, np.ndarray]:
    """For each record whose footprint meets some points: their indices, ascending."""
    out: dict[int, np.ndarray] = {}
    if not len(points):
        return out
    by_lon = np.argsort(points.lon, kind="stable")
    lon_sorted = points.lon[by_lon]
    for ri, row in enumerate(rows):
        footprint = shapely.from_wkb(row["geometry"])
        xmin, ymin, xmax, ymax = footprint.bounds
        near = by_lon[np.searchsorted(lon_sorted, xmin, "left"): np.searchsorted(lon_sorted, xmax, "right")]
        near = near[(points.lat[near] >= ymin) & (points.lat[near] <= ymax)]
        if near.size:
            shapely.prepare(footprint)
            near = np.sort(near[shapely.intersects_xy(footprint, points.lon[near], points.lat[near])])
        if near.size:
            out[ri] = near
    return out


def _output(
    point_table: pa.Table, table: pa.Table, plan: ReadPlan, arrays: Sequence[np.ndarray],
    inside: Mapping[int, np.ndarray], rank: np.ndarray, bands: Sequence[str], dtype: np.dtype, masked: bool,
) -> pa.Table:
    """The output rows, ordered by point, then record (datetime, then id), then band."""
    band_pos = {band: i for i, band in enumerate(bands)}
    point, record, band, values, invalid = [], [], [], [], []
    for chunk, arr in zip(plan.chunks, arrays, strict=True):
        ri, name = cast("tuple[int, str]", chunk.key)  # keyed (record, band) when planned
        assert chunk.points is not None
        point.append(inside[ri][chunk.points.index])
        record.append(np.full(len(chunk.points), ri, dtype=np.int64))
        band.append(np.full(len(chunk.points), band_pos[name], dtype=np.int64))
        values.append(np.ma.getdata(arr).astype(dtype, copy=False))
        if masked:
            invalid.append(np.ma.getmaskarray(arr))
    empty = np.zeros(0, dtype=np.int64)
    p, r, b = (np.concatenate(v) if v else empty for v in (point, record, band))
    order = np.lexsort((b, rank[r], p))
    p, r, b = p[order], r[order], b[order]
    value = np.concatenate(values)[order] if values else np.zeros(0, dtype=dtype)
    mask = np.concatenate(invalid)[order] if masked and invalid else None
    take = pa.array(r, pa.int64())
    out = point_table.take(pa.array(p, pa.int64()))
    extra = {
        "record_id": table["id"].take(take).cast(pa.string()),
        "datetime": table["datetime"].take(take).cast(_US),
        "band": pa.array(list(bands), pa.string()).take(pa.array(b, pa.int64())),
        "value": pa.array(value, mask=mask if mask is not None and mask.any() else None),
    }
    for name, column in extra.items():
        out = out.append_column(name, column)
    return out


def _point_xy(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates of a column of point geometries, read vectorised."""
    if column not in table.schema.names:
        raise SchemaError(f"the point table has no geometry column {column!r} (columns: {table.schema.names}); "
                          "give x_column= and y_column= for coordinate columns")
    arr = table[column].combine_chunks()
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if arr.null_count:
        raise GeometryError(f"row {_first(arr.is_null())} of {column!r} has no geometry")
    kind = arr.type
    if pa.types.is_struct(kind) and {"x", "y"} <= {kind.field(i).name for i in range(kind.num_fields)}:
        x, y = (arr.field(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in ("x", "y"))
    elif pa.types.is_fixed_size_list(kind) and kind.list_size in (2, 3, 4):
        flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, kind.list_size)
        x, y = flat[:, 0].copy(), flat[:, 1].copy()
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        x, y = _wkb_xy(arr)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        x, y = _geometries_xy(shapely.from_wkt(arr.to_numpy(zero_copy_only=False), on_invalid="raise"))
    else:
        raise SchemaError(f"cannot read points from column {column!r} of type {kind}; "
                          "give WKB, WKT or GeoArrow points, or x_column= and y_column=")
    _check_finite(x, y, column)
    return x, y


def _wkb_xy(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """WKB points' coordinates: 2-D little-endian points straight from the buffer, anything else via shapely."""
    _, offsets_buffer, data = arr.buffers()
    kind = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=kind)[arr.offset : arr.offset + len(arr) + 1]
    if len(arr) and np.all(np.diff(offsets) == 21):
        raw = np.frombuffer(data, dtype=np.uint8, count=int(offsets[-1] - offsets[0]),
                            offset=int(offsets[0])).reshape(-1, 21)
        if np.all(raw[:, 0] == 1) and np.all(raw[:, 1:5].copy().view("<u4")[:, 0] == 1):
            xy = raw[:, 5:].copy().view("<f8")
            if np.isfinite(xy).all():  # else (empty points are NaN) shapely says what is wrong
                return xy[:, 0].copy(), xy[:, 1].copy()
    try:
        geoms = shapely.from_wkb(arr.to_numpy(zero_copy_only=False))
    except shapely.errors.ShapelyError as exc:
        raise GeometryError(f"cannot read the point geometries: {exc}") from exc
    return _geometries_xy(geoms)


def _geometries_xy(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kinds = shapely.get_type_id(geoms)
    if (kinds != 0).any():
        row = _first(kinds != 0)
        raise GeometryError(f"sample_points needs Point geometries; row {row} is a {geoms[row].geom_type} "
                            "(use get_table for areas)")
    empty = shapely.is_empty(geoms)
    if empty.any():
        raise GeometryError(f"row {_first(empty)} holds an empty point")
    return shapely.get_x(geoms).astype(np.float64), shapely.get_y(geoms).astype(np.float64)


def _coordinate(table: pa.Table, column: str) -> np.ndarray:
    """A coordinate column as float64: numbers of any type, or strings of numbers."""
    if column not in table.schema.names:
        raise SchemaError(f"the point table has no column {column!r} (columns: {table.schema.names})")
    arr = table[column].combine_chunks()
    if arr.null_count:
        raise GeometryError(f"row {_first(arr.is_null())} of {column!r} has no coordinate")
    try:
        values: np.ndarray = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"column {column!r} ({arr.type}) does not hold numbers: {exc}") from exc
    _check_finite(values, values, column)
    return values


def _check_finite(x: np.ndarray, y: np.ndarray, column: str) -> None:
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise GeometryError(f"row {_first(bad)} of {column!r} has a non-finite coordinate")


def _dates(table: pa.Table, column: str) -> np.ndarray:
    """A date per point as int64 microseconds since the epoch (UTC)."""
    if column not in table.schema.names:
        raise SchemaError(f"the point table has no date column {column!r} (columns: {table.schema.names})")
    arr = table[column].combine_chunks()
    if arr.null_count:
        raise SchemaError(f'row {_first(arr.is_null())} of {column!r} has no date; match="nearest-date" needs one '
                          "per point")
    kind = arr.type
    if pa.types.is_timestamp(kind):
        arr = arr.cast(pa.timestamp("us", tz=kind.tz), safe=False)  # a naive timestamp is UTC
    elif pa.types.is_date(kind):
        arr = arr.cast(pa.timestamp("us"))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            arr = pa.array([parse_utc(v, what=f"{column!r} value") for v in arr.to_pylist()], _US)
        except RasteretError as exc:
            raise SchemaError(str(exc)) from exc
    else:
        raise SchemaError(f"column {column!r} ({kind}) does not hold dates; give timestamps, dates or ISO 8601 text")
    dates: np.ndarray = arr.cast(pa.int64()).to_numpy()
    return dates


def _first(flags: Any) -> int:
    return int(np.flatnonzero(np.asarray(flags))[0])


def _value_dtype(rows: Sequence[dict[str, Any]], bands: Sequence[str]) -> np.dtype:
    """The common dtype of the bands, from any record's header (float64 without records)."""
    dtypes = []
    for band in bands:
        for row in rows:
            asset = (row["assets"] or {}).get(band)
            if asset is not None and asset["header"] is not None and asset["header"]["images"]:
                dtypes.append(np.dtype(asset["header"]["images"][0]["dtype"]))
                break
    return np.result_type(*dtypes) if dtypes else np.dtype("float64")


def _naive(value: datetime | None) -> datetime:
    return value.replace(tzinfo=None) if value is not None else datetime.min  # noqa: DTZ901 - naive, as the values

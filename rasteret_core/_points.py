"""Point sampling: the value of each band at each point, from every record (or one) that covers it.

A point sample is an ordinary planned read: each point becomes a
:class:`~rasteret_core._planner.ChunkRequest` whose window is the one pixel that
contains it (as ``rasterio``'s ``sample`` picks it), so the shared planner and
fetcher do all the work and a sample costs one tile per point, record and band
(fewer when points share tiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

from ._fetch import read_plan
from ._geometry import CRS84, reproject, to_geometry
from ._planner import ChunkRequest, plan_read
from ._read import asset_of, fresh_check
from ._store import IOStats
from .errors import GeometryError, SchemaError
from .settings import Settings

__all__ = ["OUTPUT_COLUMNS", "Match", "sample_table"]

Match = Literal["all", "first", "latest"]
"""Which records a point is sampled from: every record that covers it, or only the
earliest or the latest one (by datetime, then id)."""

OUTPUT_COLUMNS = ("record_id", "datetime", "band", "value")
"""The columns a sample adds to the point table."""


def sample_table(
    table: pa.Table,
    points: pa.Table,
    points_crs: CRS,
    bands: Sequence[str],
    *,
    settings: Settings,
    geometry_column: str = "geometry",
    match: Match = "all",
) -> tuple[pa.Table, IOStats]:
    """Sample ``bands`` at every point of a table; one row per point x record x band.

    Args:
        table: The collection's records (with parsed headers).
        points: The point table; every geometry in ``geometry_column`` must be a Point.
        points_crs: CRS of the points.
        bands: Band names (checked by the caller), in output order.
        settings: I/O settings.
        geometry_column: The point column.
        match: ``"all"`` records covering a point, or only the ``"first"`` / ``"latest"``.

    Returns:
        The point table's columns (each point repeated per record and band) plus
        ``record_id``, ``datetime``, ``band`` and ``value`` (the pixel, in the bands'
        common dtype as the headers of ``table`` give it, float64 when ``table`` has no
        record; a nodata pixel keeps its nodata value), and the I/O it took.
        Points that no record's raster covers add no row. Rows are ordered by point,
        then record (datetime, then id), then band.

    Raises:
        GeometryError: a geometry is not a point.
        BandError: a band lacks header metadata.
        SchemaError: the point table already has an output column, or ``match`` is unknown.
    """
    if match not in ("all", "first", "latest"):
        raise SchemaError(f"match={match!r}; use 'all', 'first' or 'latest'")
    clash = [name for name in OUTPUT_COLUMNS if name in points.schema.names]
    if clash:
        raise SchemaError(f"the point table has column(s) {clash} that the output needs; rename them")
    geoms = [to_geometry(g) for g in points[geometry_column].to_pylist()]
    not_points = [i for i, g in enumerate(geoms) if g.geom_type != "Point"]
    if not_points:
        raise GeometryError(
            f"sample_points needs Point geometries; row {not_points[0]} is a {geoms[not_points[0]].geom_type} "
            "(use get_table for areas)"
        )
    rows = table.to_pylist()
    order = sorted(range(len(rows)), key=lambda i: (_naive(rows[i]["datetime"]), rows[i]["id"]))
    rank = {ri: pos for pos, ri in enumerate(order)}
    requests = []
    if rows and geoms:
        tree = shapely.STRtree(shapely.from_wkb([r["geometry"] for r in rows]))
        lonlat = [reproject(g, points_crs, CRS84) for g in geoms]
        point_idx, record_idx = tree.query(lonlat, predicate="intersects")
        for pi, ri in sorted(zip(point_idx.tolist(), record_idx.tolist()), key=lambda p: (p[0], rank[p[1]])):
            for band in bands:
                uri, header, sample = asset_of(rows[ri], band)
                requests.append(ChunkRequest(key=(pi, ri, band), uri=uri, header=header, geometry=geoms[pi],
                                             geometry_crs=points_crs, sample=sample))
    plan = plan_read(requests, coalesce_gap=settings.coalesce_gap, max_request_bytes=settings.max_request_bytes)
    if match != "all":  # one record per point and band, among those whose raster covers the point
        kept = _pick(plan.chunks, rank, latest=match == "latest")
        plan = plan_read([r for r in requests if r.key in kept], coalesce_gap=settings.coalesce_gap,
                         max_request_bytes=settings.max_request_bytes)
    arrays, stats = read_plan(plan, settings, check=fresh_check(plan, rows)) if plan.chunks else ([], IOStats())
    keys = [c.key for c in plan.chunks]
    out = points.take(pa.array([k[0] for k in keys], pa.int64()))
    dtype = _value_dtype(rows, bands)
    extra = {
        "record_id": pa.array([rows[k[1]]["id"] for k in keys], pa.string()),
        "datetime": pa.array([rows[k[1]]["datetime"] for k in keys], pa.timestamp("us", tz="UTC")),
        "band": pa.array([k[2] for k in keys], pa.string()),
        "value": pa.array(np.array([a[0, 0] for a in arrays], dtype=dtype)),
    }
    for name, column in extra.items():
        out = out.append_column(name, column)
    return out, stats


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
    return value.replace(tzinfo=None) if value is not None else datetime.min


def _pick(chunks: Sequence[Any], rank: dict[int, int], *, latest: bool) -> set[Any]:
    """The chunk key of the earliest (or latest) record for each point and band."""
    best: dict[tuple[int, str], Any] = {}
    for chunk in chunks:
        pi, ri, band = chunk.key
        current = best.get((pi, band))
        if current is None or (rank[ri] > rank[current[1]] if latest else rank[ri] < rank[current[1]]):
            best[(pi, band)] = chunk.key
    return set(best.values())

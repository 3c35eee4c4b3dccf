"""Geometry masks on a pixel grid, burned by GDAL's rules so reads crop exactly as ``rasterio.mask`` does.

:func:`rasterize_mask` gives the same pixels as ``rasterio.features.geometry_mask(...,
invert=True)`` (GDAL's ``GDALRasterizeGeometries``, ``MERGE_ALG=REPLACE``) on the same
grid, including the floating-point ties: pixel centres exactly on an edge or a vertex,
horizontal edges through pixel centres, edges along pixel boundaries with ``all_touched``.
It ports, vectorised with numpy, ``alg/llrasterize.cpp`` and ``alg/gdalrasterize.cpp``
of GDAL 3.10:

* **Vertices to pixel space.** Each ring is first made clockwise in the geometry's CRS
  (``GDALCollectRingsFromGeometry``, as OGR's ``isClockwise`` judges it; a LineString's
  vertices are reversed instead), then every vertex goes through the inverse
  geotransform as GDAL computes it (``GDALInvGeoTransform``, applied as
  ``inv[0] + x * inv[1] + y * inv[2]``), with no 0.5 shift: pixel ``(col, row)`` spans
  ``[col, col + 1) x [row, row + 1)``. The same float operations in the same order give
  the same doubles, so ties fall the same way.
* **Polygons** (``GDALdllImageFilledPolygon``): scanline ``row`` runs at ``y = row + 0.5``.
  A non-horizontal edge crosses it when ``ylo <= y < yhi``; its crossing
  ``(y - y1) * (x2 - x1) / (y2 - y1) + x1`` rounds to ``floor(x + 0.5)``; sorted
  crossings pair up and a pair ``(a, b)`` burns columns ``a .. b - 1``. A horizontal
  edge lying exactly on the scanline and running towards -x in pixel space (a bottom
  edge of a clockwise ring under a north-up transform) burns ``floor(x2 + 0.5) ..
  floor(x1 + 0.5) - 1`` as well. Each polygon of a multi-geometry is burned on its
  own and the results are unioned.
* **all_touched** (``GDALdllImageLineAllTouched`` with ``bIntersectOnly``): before the
  fill, every ring edge burns the pixels it passes through: an edge within one column
  (or less than 0.01 px wide) burns that column, one within one row burns that row,
  except edges lying (to 1e-4 px) on a pixel boundary; any other edge is walked from
  left to right, pixel to pixel, with GDAL's own float steps (run here in lockstep
  over all edges).
* **Lines** burn Bresenham's pixels from ``floor`` of their ends (``GDALdllImageLine``,
  in the vertex order above), or with ``all_touched`` the walk
  above without the boundary exception; **points** in a multi-geometry burn the pixel
  ``floor(x), floor(y)`` (``GDALdllImagePoint``).

One difference is left: GDAL burns a mask bigger than its block cache (``GDAL_CACHEMAX``,
by default 5% of RAM: some 4 x 10^8 pixels with 8 GB) in row chunks, and an
``all_touched`` edge clipped at a chunk border can then walk differently. Rasteret's
windows are far smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from rasteret_core.errors import GeometryError

__all__ = ["rasterize_mask"]

_EPS_INTERSECT = 1e-4  # GDAL's EPSILON_INTERSECT_ONLY: an edge this close to a pixel boundary lies on it
_AXIS = 0.01  # an edge narrower than this (px) is walked as one column or row
_MIN_STEP = 1e-9  # the smallest step GDAL's edge walker takes across a row boundary
_BLOCK_CELLS = 1 << 22  # cells per block when spans become pixels


def rasterize_mask(
    geometry: shapely.Geometry | None, transform: Sequence[float], height: int, width: int, all_touched: bool = False
) -> np.ndarray:
    """Boolean ``[height, width]`` array, True where a pixel belongs to ``geometry``, as GDAL burns it.

    Equal, pixel for pixel, to ``rasterio.features.geometry_mask([geometry], out_shape=(height,
    width), transform=Affine(*transform), all_touched=all_touched, invert=True)``, which is
    what ``rasterio.mask.mask`` crops with (see the module docstring for the rules).
    ``transform`` is rasterio-order ``(a, b, c, d, e, f)`` and maps pixel ``(col, row)`` of the
    window to the geometry's CRS. A lone point keeps its whole window (the one pixel that
    contains it), and so does no geometry.

    Raises:
        GeometryError: ``transform`` cannot be inverted.
    """
    assert geometry is None or isinstance(geometry, BaseGeometry)  # every shapely geometry is one
    if geometry is None or geometry.geom_type == "Point":
        return np.ones((height, width), dtype=bool)
    out = np.zeros((height, width), dtype=bool)
    if height <= 0 or width <= 0 or geometry.is_empty:
        return out
    inv = _inverse_geotransform(transform)
    polygons, lines, points = _split(geometry)
    spans: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row, first col, last col + 1)
    if len(polygons):
        xs, ys, ring_starts, ring_part = _polygon_rings(polygons, inv)
        spans.extend(_fill_spans(xs, ys, ring_starts, ring_part, height, width))
        if all_touched:
            spans.append(_walk_edges(out, *_ring_edges(xs, ys, ring_starts), intersect_only=True))
    if len(lines):
        xs, ys, starts = _line_vertices(lines, inv)
        if all_touched:
            spans.append(_walk_edges(out, *_ring_edges(xs, ys, starts), intersect_only=False))
        else:
            _bresenham(out, *_ring_edges(xs, ys, starts))
    if len(points):
        x, y = _to_pixels(shapely.get_coordinates(points), inv)
        col, row = np.floor(x), np.floor(y)
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        out[row[inside].astype(np.intp), col[inside].astype(np.intp)] = True
    _burn_spans(out, spans)
    return out


# -- vertices ---------------------------------------------------------------------------------


def _inverse_geotransform(transform: Sequence[float]) -> tuple[float, float, float, float, float, float]:
    """GDALInvGeoTransform of the geotransform ``(c, a, b, f, d, e)``, with its float operations."""
    a, b, c, d, e, f = (float(v) for v in transform)
    if b == 0.0 and d == 0.0 and a != 0.0 and e != 0.0:
        return (-c / a, 1.0 / a, 0.0, -f / e, 0.0, 1.0 / e)
    det = a * e - b * d
    magnitude = max(abs(a), abs(b), abs(d), abs(e))
    if not abs(det) > 1e-10 * magnitude * magnitude:
        raise GeometryError(f"the raster transform {tuple(transform)} cannot be inverted")
    inv_det = 1.0 / det
    return ((b * f - c * e) * inv_det, e * inv_det, -b * inv_det, (-a * f + c * d) * inv_det, -d * inv_det, a * inv_det)


def _to_pixels(xy: np.ndarray, inv: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Apply the inverse geotransform to ``[n, 2]`` coordinates, in GDAL's order of operations."""
    x, y = xy[:, 0], xy[:, 1]
    return inv[0] + x * inv[1] + y * inv[2], inv[3] + x * inv[4] + y * inv[5]


def _split(geometry: shapely.Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Polygons, lines and points of ``geometry``, multi-geometries and collections taken apart."""
    parts = np.asarray([geometry], dtype=object)
    done: list[np.ndarray] = []
    while parts.size:
        types = shapely.get_type_id(parts)
        multi = types >= 4  # Multi* and GeometryCollection
        done.append(parts[~multi])
        parts = shapely.get_parts(parts[multi])
    flat = np.concatenate(done)
    flat = flat[~shapely.is_empty(flat)]
    types = shapely.get_type_id(flat)
    return flat[types == 3], flat[(types == 1) | (types == 2)], flat[types == 0]


def _polygon_rings(polygons: np.ndarray, inv: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every ring's closed vertex list in pixel space, each ring clockwise in the geometry's CRS (as OGR judges).

    Returns pixel x, pixel y, the index where each ring starts (plus the end), and each
    ring's polygon.
    """
    rings, ring_part = shapely.get_rings(polygons, return_index=True)
    coords, starts = _coordinates(rings)
    x, y, starts = _vertices(coords, starts, ~_is_clockwise(coords, starts), inv)
    return x, y, starts, ring_part


def _line_vertices(lines: np.ndarray, inv: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every line's vertices in pixel space, ordered as GDAL collects them (Bresenham depends on it).

    A LineString's vertices come reversed; a LinearRing's come clockwise, as a polygon's ring.
    Returns pixel x, pixel y and the index where each line starts (plus the end).
    """
    coords, starts = _coordinates(lines)
    flip = np.ones(len(lines), dtype=bool)
    ring = shapely.get_type_id(lines) == 2
    if ring.any():
        flip[ring] = ~_is_clockwise(*_coordinates(lines[ring]))
    return _vertices(coords, starts, flip, inv)


def _coordinates(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All vertices of ``geoms`` (``[n, 2]``) and the index where each geometry starts (plus the end)."""
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    return coords, np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(geoms)))])


def _vertices(
    coords: np.ndarray, starts: np.ndarray, flip: np.ndarray, inv: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex lists in pixel space, those where ``flip`` reversed."""
    counts = np.diff(starts)
    pos = np.arange(len(coords))
    first, last = np.repeat(starts[:-1], counts), np.repeat(starts[1:] - 1, counts)
    x, y = _to_pixels(coords[np.where(np.repeat(flip, counts), first + last - pos, pos)], inv)
    return x, y, starts


def _is_clockwise(coords: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """OGRLinearRing::isClockwise of each closed ring, as GDAL decides it (also for invalid rings).

    The turn at the lowest (then rightmost) vertex decides, unless that vertex repeats or
    a neighbour lies within 1e-5 of it (CRS units) or the turn is flat; then the sign of
    the shoelace sum, added up in GDAL's order.
    """
    x, y = coords[:, 0], coords[:, 1]
    nring = len(starts) - 1
    counts = np.diff(starts)
    ring = np.repeat(np.arange(nring), counts)
    pos = np.arange(len(x)) - starts[ring]
    idx = np.flatnonzero(pos < counts[ring] - 1)  # the closing vertex is not looked at
    order = idx[np.lexsort((idx, -x[idx], y[idx], ring[idx]))]  # per ring: lowest y, then highest x, first seen
    head = np.ones(len(order), dtype=bool)
    head[1:] = ring[order][1:] != ring[order][:-1]
    v = order[head]
    vring = ring[v]
    begin, size = starts[vring], counts[vring] - 1  # vertices 0 .. size - 1 of the ring
    repeated = np.bincount(ring[idx], weights=(x[idx] == x[v][ring[idx]]) & (y[idx] == y[v][ring[idx]]),
                           minlength=nring)[vring] > 1
    prev = np.where(v - begin == 0, begin + size - 1, v - 1)
    nxt = np.where(v + 1 - begin >= size, begin, v + 1)

    def near(i: np.ndarray) -> np.ndarray:
        close: np.ndarray = (np.abs(x[i] - x[v]) < 1e-5) & (np.abs(y[i] - y[v]) < 1e-5)
        return close

    dx0, dy0, dx1, dy1 = x[prev] - x[v], y[prev] - y[v], x[nxt] - x[v], y[nxt] - y[v]
    cross = dx1 * dy0 - dx0 * dy1
    clockwise: np.ndarray = cross < 0
    for r in np.flatnonzero(repeated | near(prev) | near(nxt) | (cross == 0)):  # degenerate rings only
        rx, ry = x[starts[r] : starts[r + 1]], y[starts[r] : starts[r + 1]]
        terms = np.concatenate([[rx[0] * (ry[1] - ry[-1])], rx[1:-1] * (ry[2:] - ry[:-2]), [rx[-1] * (ry[0] - ry[-2])]])
        clockwise[r] = np.cumsum(terms)[-1] < 0  # a running sum, in GDAL's order
    return clockwise


def _ring_edges(
    xs: np.ndarray, ys: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive vertex pairs within each vertex list (``starts`` ends with the total): x1, y1, x2, y2."""
    tail = np.zeros(len(xs), dtype=bool)
    tail[starts[1:] - 1] = True  # the last vertex of a list starts no edge
    i = np.flatnonzero(~tail)
    return xs[i], ys[i], xs[i + 1], ys[i + 1]


# -- polygons: scanline fill ---------------------------------------------------------------


def _fill_spans(
    xs: np.ndarray, ys: np.ndarray, ring_starts: np.ndarray, ring_part: np.ndarray, height: int, width: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """GDALdllImageFilledPolygon for every polygon at once: the spans it burns."""
    x1, y1, x2, y2 = _ring_edges(xs, ys, ring_starts)
    part = np.repeat(ring_part, np.diff(ring_starts) - 1)
    spans: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # Horizontal edges exactly on a scanline burn on their own when they run towards -x.
    bottom = (y1 == y2) & (x1 > x2)
    hy = y1[bottom]
    row = np.floor(hy)
    on_centre = (row + 0.5 == hy) & (row >= 0) & (row < height)
    a = np.floor(x2[bottom][on_centre] + 0.5)
    b = np.floor(x1[bottom][on_centre] + 0.5)
    keep = (a <= width - 1) & (b > 0)
    spans.append(_clip_spans(row[on_centre][keep], a[keep], b[keep], width))

    # Other edges cross scanlines row + 0.5 with ylo <= row + 0.5 < yhi.
    slanted = y1 != y2
    up = y1[slanted] < y2[slanted]
    ylo = np.where(up, y1[slanted], y2[slanted])
    yhi = np.where(up, y2[slanted], y1[slanted])
    xlo = np.where(up, x1[slanted], x2[slanted])
    xhi = np.where(up, x2[slanted], x1[slanted])
    first = np.maximum(_first_row_at_or_above(ylo), 0)
    last = np.minimum(_first_row_at_or_above(yhi) - 1, height - 1)
    n = np.maximum(last - first + 1, 0).astype(np.int64)
    total = int(n.sum())
    if total == 0:
        return spans
    edge = np.repeat(np.arange(len(n)), n)
    rows = np.arange(total) + np.repeat(first.astype(np.int64) - (np.cumsum(n) - n), n)
    e_ylo, e_xlo = ylo[edge], xlo[edge]
    with np.errstate(all="ignore"):
        cross = ((rows + 0.5) - e_ylo) * (xhi - xlo)[edge] / (yhi - ylo)[edge] + e_xlo
    col = np.clip(np.floor(cross + 0.5), -1, width + 1).astype(np.int64)  # clipping keeps the order

    # Sort crossings by (row, polygon, column). A closed ring crosses a scanline an even number
    # of times, so once sorted the pairs are simply (0, 1), (2, 3), ... .
    npart = int(ring_part.max()) + 1
    group = rows if npart == 1 else rows * npart + part[slanted][edge]
    key = np.sort(group * (width + 3) + (col + 1))
    group, col = np.divmod(key, width + 3)
    a, b = col[0::2] - 1, col[1::2] - 1
    keep = (a <= width - 1) & (b > 0)
    spans.append(_clip_spans((group[0::2] // npart)[keep], a[keep], b[keep], width))
    return spans


def _first_row_at_or_above(y: np.ndarray) -> np.ndarray:
    """Smallest integer row with ``row + 0.5 >= y`` (exactly, as a double compares)."""
    with np.errstate(invalid="ignore"):
        row = np.ceil(y - 0.5)
    row = np.where(row - 1 + 0.5 >= y, row - 1, row)
    return np.where(row + 0.5 < y, row + 1, row)


def _clip_spans(row: np.ndarray, a: np.ndarray, b: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spans of columns ``a .. b - 1`` clipped to the window (empty ones dropped)."""
    a, b = np.maximum(a, 0), np.minimum(b, width)
    keep = a < b
    return row[keep].astype(np.int64), a[keep].astype(np.int64), b[keep].astype(np.int64)


def _burn_spans(out: np.ndarray, spans: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Set every span's pixels: merge the spans, then write them as runs, a block of rows at a time."""
    spans = [s for s in spans if len(s[0])]
    if not spans:
        return
    _height, width = out.shape
    rows, a, b = (np.concatenate(c) for c in zip(*spans, strict=True))
    start, stop = rows * width + a, rows * width + b  # half-open, in the flattened window
    order = np.argsort(start)
    start, reach = start[order], np.maximum.accumulate(stop[order])
    opens = np.ones(len(start), dtype=bool)
    opens[1:] = start[1:] > reach[:-1]
    closes = np.append(opens[1:], True)
    start, stop = start[opens], reach[closes]  # disjoint, sorted
    flat = out.reshape(-1)
    block = max(1, _BLOCK_CELLS // width) * width
    for base in range(int(start[0]) // width * width, int(stop[-1]), block):
        lo = int(np.searchsorted(stop, base, side="right"))
        hi = int(np.searchsorted(start, base + block, side="left"))
        if lo >= hi:
            continue
        s = np.clip(start[lo:hi], base, base + block) - base
        e = np.clip(stop[lo:hi], base, base + block) - base
        size = min(block, flat.size - base)
        runs = np.empty(2 * len(s) + 1, dtype=np.int64)  # outside, inside, outside, ..., outside
        runs[0] = s[0]
        runs[1:-1:2] = e - s
        runs[2:-1:2] = s[1:] - e[:-1]
        runs[-1] = size - e[-1]
        inside = np.zeros(len(runs), dtype=bool)
        inside[1::2] = True
        flat[base : base + size] |= np.repeat(inside, runs)


# -- edges: all_touched walk and Bresenham -----------------------------------------------


def _walk_edges(
    out: np.ndarray, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, *, intersect_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GDALdllImageLineAllTouched: burn single-column edges and walked edges into ``out``.

    Returns the spans of single-row edges, burned later with the fill.
    """
    height, width = out.shape
    off = ((y1 < 0) & (y2 < 0)) | ((y1 > height) & (y2 > height)) | ((x1 < 0) & (x2 < 0)) | (
        (x1 > width) & (x2 > width))
    swap = x1 > x2  # walk left to right
    x1, y1, x2, y2 = (np.where(swap, q, p)[~off] for p, q in ((x1, x2), (y1, y2), (x2, x1), (y2, y1)))

    def on_boundary(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        if not intersect_only:
            return np.zeros(len(p), dtype=bool)
        on: np.ndarray = (np.abs(p - np.rint(p)) < _EPS_INTERSECT) & (np.abs(q - np.rint(q)) < _EPS_INTERSECT)
        return on

    # Within one column: burn that column from floor(ylo) to floor(yhi - eps).
    column = (np.floor(x1) == np.floor(x2)) | (np.abs(x1 - x2) < _AXIS)
    vert = column & ~on_boundary(x1, x2)
    ix = np.floor(x2[vert])
    ylo, yhi = np.minimum(y1[vert], y2[vert]), np.maximum(y1[vert], y2[vert])
    iy0 = np.maximum(np.floor(ylo), 0)
    iy1 = np.minimum(np.floor(yhi - _EPS_INTERSECT), height - 1)
    ok = (ix >= 0) & (ix < width) & (iy1 >= iy0)
    ix, iy0, iy1 = ix[ok].astype(np.int64), iy0[ok].astype(np.int64), iy1[ok].astype(np.int64)
    n = iy1 - iy0 + 1
    out[np.arange(int(n.sum())) + np.repeat(iy0 - (np.cumsum(n) - n), n), np.repeat(ix, n)] = True

    # Within one row: burn that row from floor(x1) to floor(x2 - eps).
    rest = ~column
    x1, y1, x2, y2 = x1[rest], y1[rest], x2[rest], y2[rest]
    row_like = (np.floor(y1) == np.floor(y2)) | (np.abs(y1 - y2) < _AXIS)
    horiz = row_like & ~on_boundary(y1, y2)
    iy = np.floor(y1[horiz])
    ix0 = np.maximum(np.floor(x1[horiz]), 0)
    ix1 = np.minimum(np.floor(x2[horiz] - _EPS_INTERSECT), width - 1)
    ok = (iy >= 0) & (iy < height)
    spans = _clip_spans(iy[ok], ix0[ok], ix1[ok] + 1, width)

    slanted = ~row_like
    _walk(out, x1[slanted], y1[slanted], x2[slanted], y2[slanted])
    return spans


def _walk(out: np.ndarray, x: np.ndarray, y: np.ndarray, x_end: np.ndarray, y_end: np.ndarray) -> None:
    """GDAL's pixel-to-pixel walk of sloped edges (x increasing), every edge one lane of a lockstep loop."""
    if not len(x):
        return
    height, width = out.shape
    with np.errstate(all="ignore"):
        slope = (y_end - y) / (x_end - x)
        # Clip to the window as GDAL does (its arithmetic, its order).
        right = x_end > width
        y_end = np.where(right, y_end - (x_end - width) * slope, y_end)
        x_end = np.where(right, float(width), x_end)
        left = x < 0.0
        y = np.where(left, y + (0.0 - x) * slope, y)
        x = np.where(left, 0.0, x)
        down = y_end > y
        cut = down & (y < 0.0)
        x = np.where(cut, x + (0.0 - y) / slope, x)
        y = np.where(cut, 0.0, y)
        cut = down & (y_end >= height)
        x_end = np.where(cut, np.minimum(x_end + (y_end - height) / slope, float(width)), x_end)
        cut = ~down & (y >= height)
        x = np.where(cut, x + (height - y) / slope, x)
        y = np.where(cut, float(height), y)
        cut = ~down & (y_end < 0.0)
        x_end = np.where(cut, x_end - (y_end - 0) / slope, x_end)

        # Lane state: x, y, end, slope; falling lanes step to iy - y, rising ones to iy + 1 - y,
        # written as sign * max(sign * (iy + up - y), 1e-9) to need no branch.
        live = (x >= 0.0) & (x < x_end)
        x, y, x_end, slope = x[live], y[live], x_end[live], slope[live]
        sign = np.where(slope < 0, -1.0, 1.0)  # GDAL's "else" branch takes slope >= 0
        up = np.where(slope < 0, 0.0, 1.0)
        seen_x: list[np.ndarray] = []
        seen_row: list[np.ndarray] = []
        budget = 4 * (height + width) + 16  # GDAL's walk takes at most about 2 steps per pixel crossed
        while len(x) and budget:
            budget -= 1
            row = np.floor(y)
            seen_x.append(x)
            seen_row.append(row)
            step_x = np.floor(x + 1.0) - x
            next_y = y + step_x * slope
            same_row = np.floor(next_y) == row
            cross_y = sign * np.maximum(sign * ((row + up) - y), _MIN_STEP)
            x = x + np.where(same_row, step_x, cross_y / slope)  # x only grows: every lane stays >= 0
            y = np.where(same_row, next_y, y + cross_y)
            live = x < x_end
            if not live.all():
                x, y, x_end, slope, sign, up = x[live], y[live], x_end[live], slope[live], sign[live], up[live]
    if seen_x:
        # GDAL checks the row only: a column past the right edge lands in the next rows of its
        # buffer (the walk's end can be moved right of the window when clipping to its top).
        rows, cols = np.concatenate(seen_row), np.floor(np.concatenate(seen_x))
        flat = (rows * width + cols)[(rows >= 0) & (rows < height)]
        out.reshape(-1)[flat[flat < height * width].astype(np.intp)] = True


def _bresenham(out: np.ndarray, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> None:
    """GDALdllImageLine: Bresenham's pixels of each segment, from floor of its ends, both ends burned."""
    height: int
    width: int
    height, width = out.shape
    ix0, iy0, ix1, iy1 = (np.floor(v).astype(np.int64) for v in (x1, y1, x2, y2))
    dx, dy = np.abs(ix1 - ix0), np.abs(iy1 - iy0)
    sx, sy = np.where(ix0 > ix1, -1, 1), np.where(iy0 > iy1, -1, 1)
    x_major = dx >= dy
    major = np.where(x_major, dx, dy)
    minor = np.where(x_major, dy, dx)
    # Only the steps whose major coordinate lies in the window can burn.
    start = np.where(x_major, ix0, iy0)
    step = np.where(x_major, sx, sy)
    size = np.where(x_major, width, height)
    k0 = np.maximum(np.where(step > 0, -start, start - (size - 1)), 0)
    k1 = np.minimum(np.where(step > 0, size - 1 - start, start), major)
    n = np.maximum(k1 - k0 + 1, 0)
    seg = np.repeat(np.arange(len(n)), n)
    k = np.arange(int(n.sum())) + np.repeat(k0 - (np.cumsum(n) - n), n)
    big = np.maximum(major[seg], 1)
    # GDAL's error term steps the minor axis when 2 * minor * (k + 1) - major > 2 * major * steps,
    # so before pixel k it has stepped ceil((2 * minor * k - major) / (2 * major)) times.
    steps = (2 * minor[seg] * k + big - 1) // (2 * big)
    xm = x_major[seg]
    cols = ix0[seg] + sx[seg] * np.where(xm, k, steps)
    rows = iy0[seg] + sy[seg] * np.where(xm, steps, k)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    out[rows[inside], cols[inside]] = True

"""The read planner: pure, synchronous, no I/O.

It maps (record assets with parsed headers, a geometry or points) to a frozen
:class:`ReadPlan`: for each record x band a pixel window (or the pixels under
the points) and the tiles it touches, and for the whole read the merged
byte-range requests. The fetcher (`read.fetch.execute_plan`) runs a plan;
``plan.summary()`` tells its cost first.

Conventions: windows are in pixels of the chosen image, half-open; byte ranges
are half-open ``[start, end)``; transforms are rasterio-ordered affines.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from rasteret_core.errors import GeometryError, PlanningError
from rasteret_core.geo.geometry import apply_affine, inverse_affine, reproject, reproject_xy, to_crs
from rasteret_core.tiff.decode import check_supported
from rasteret_core.tiff.header import ImageInfo, TiffHeader

if TYPE_CHECKING:  # annotations only (postponed): no import-time dependence on the alias
    from rasteret_core.tiff.header import ByteOrder

__all__ = [
    "ChunkPlan",
    "ChunkRequest",
    "MaskPlan",
    "PointSet",
    "RangeRequest",
    "ReadPlan",
    "TilePart",
    "Window",
    "coalesce_ranges",
    "plan_mask",
    "plan_read",
    "plan_window",
    "point_pixels",
    "resolve_overview",
    "select_image",
    "select_points",
    "split_plan",
]

_AREAS = (3, 6)  # shapely type ids of Polygon and MultiPolygon: what an AOI may be


@dataclass(frozen=True, slots=True)
class Window:
    """A pixel window: rows ``[row_off, row_off + height)``, cols ``[col_off, col_off + width)``."""

    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def empty(self) -> bool:
        """Whether the window covers no pixel."""
        return self.height <= 0 or self.width <= 0


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ChunkRequest:
    """What to read for one output chunk: one band of one record, within one geometry or at points.

    ``key`` is the caller's handle for the chunk (say ``(aoi, record, band)``);
    ``geometry`` is in ``geometry_crs``; ``sample`` picks a band of a multi-sample file.
    ``points`` (instead of ``geometry``) asks for the pixel under each point ``(x[i], y[i])``
    (arrays in ``geometry_crs``): the chunk gathers one value per point that falls on the raster
    (see :class:`PointSet`), reading each tile those points touch once.
    """

    key: Hashable
    uri: str
    header: TiffHeader
    geometry: shapely.Geometry | None = None
    geometry_crs: CRS
    sample: int = 0
    overview: int | None = None  # index into header.overviews (0 = the finest); None = full resolution
    window: Window | None = None  # read this pixel window whole (clipped; unmasked) instead of the geometry's
    points: tuple[np.ndarray, np.ndarray] | None = None  # (x, y) float64, instead of a geometry

    def __post_init__(self) -> None:
        if (self.geometry is None) == (self.points is None):
            raise PlanningError(f"chunk {self.key!r}: give a geometry or points, not both or neither")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MaskPlan:
    """Where a chunk's valid pixels come from: GDAL's mask band of the image read.

    ``kind`` is ``"ifd"`` (an internal mask image: ``image`` at ``ifd``, valid where
    non-zero), ``"nodata"`` (valid where the pixel is not ``nodata``; NaN matches NaN)
    or ``"alpha"`` (sample ``sample`` of ``image``, the alpha band: valid where non-zero).
    ``tiles`` index ``image``'s tile tables; a sparse mask tile reads as 0 (invalid).
    """

    kind: Literal["ifd", "nodata", "alpha"]
    image: ImageInfo | None = None
    ifd: int | None = None
    sample: int = 0
    tiles: tuple[int, ...] = ()
    nodata: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ChunkPlan:
    """The planned read of one chunk: a window of one image and the tiles it touches."""

    key: Hashable
    uri: str
    image: ImageInfo
    ifd: int
    byte_order: ByteOrder
    sample: int
    window: Window
    transform: tuple[float, ...]  # of the window's pixel (0, 0), in the raster CRS
    crs: str | None
    fill: float
    geometry: shapely.Geometry | None  # in the raster CRS; None keeps the whole window
    tiles: tuple[int, ...]  # indices into the image's tile tables
    mask: MaskPlan | None = None  # None: every pixel of the raster is valid
    points: PointSet | None = None  # a point chunk: gathers these pixels (1-D output) instead of the window


@dataclass(frozen=True, slots=True, eq=False)
class PointSet:
    """The pixels a point chunk gathers; its output holds one value per slot, in slot order.

    Slot ``i`` is pixel ``(rows[i], cols[i])`` of the chunk's image (0-based, absolute, not
    window-relative) and stands for point ``index[i]`` of the request (points off the raster
    have no slot). ``by_tile[(ifd, tile)]`` lists the slots that each tile the chunk reads (data
    tiles and mask tiles) serves: a tile decodes once and gathers all its points at once.
    """

    index: np.ndarray  # int64 indices into the request's points, ascending
    rows: np.ndarray  # int64
    cols: np.ndarray  # int64
    by_tile: Mapping[tuple[int, int], np.ndarray]

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True, slots=True)
class TilePart:
    """One tile's bytes inside a merged request."""

    ifd: int
    tile: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """One GET: bytes ``[start, end)`` of ``uri``, holding ``parts``."""

    uri: str
    start: int
    end: int
    parts: tuple[TilePart, ...]

    @property
    def length(self) -> int:
        """The number of bytes in the range."""
        return self.end - self.start


@dataclass(frozen=True, slots=True, eq=False)
class ReadPlan:
    """A whole read: the chunks to assemble and the requests that feed them."""

    chunks: tuple[ChunkPlan, ...]
    requests: tuple[RangeRequest, ...]
    all_touched: bool = False

    def output_bytes(self) -> int:
        """The memory the executor assembles for this plan: every chunk's pixels and its validity mask."""
        total = 0
        for chunk in self.chunks:
            values = len(chunk.points) if chunk.points is not None else chunk.window.height * chunk.window.width
            total += values * (chunk.image.dtype.itemsize + 1)
        return total

    def summary(self) -> dict[str, int]:
        """Counts before any I/O: chunks, tiles, requests, bytes to read, tile bytes needed, output bytes."""
        tiles = {(c.uri, c.ifd, t) for c in self.chunks for t in c.tiles} | {
            (c.uri, c.mask.ifd, t) for c in self.chunks if c.mask is not None for t in c.mask.tiles
        }
        sizes = {(r.uri, p.ifd, p.tile): p.length for r in self.requests for p in r.parts}
        return {
            "chunks": len(self.chunks),
            "uris": len({c.uri for c in self.chunks}),
            "tiles": len(tiles),
            "requests": len(self.requests),
            "bytes": sum(r.length for r in self.requests),
            "tile_bytes": sum(sizes.values()),
            "output_bytes": self.output_bytes(),
        }


def plan_window(geometry: shapely.Geometry, transform: Sequence[float], width: int, height: int) -> Window:
    """The pixel window rasterio.mask would crop to: the geometry's pixel bounds, floored
    and ceiled, intersected with the raster (may be empty).

    A point's window is the one pixel that contains it (as ``rasterio.sample`` picks it).
    """
    px = apply_affine(inverse_affine(transform), geometry)
    cmin, rmin, cmax, rmax = shapely.bounds(px).tolist()
    assert isinstance(geometry, BaseGeometry)  # every shapely geometry is one (shapely.Geometry lacks geom_type)
    if geometry.geom_type == "Point":
        row, col = math.floor(rmin), math.floor(cmin)
        inside = 0 <= row < height and 0 <= col < width
        return Window(row, col, 1, 1) if inside else Window(0, 0, 0, 0)
    row_start, col_start = math.floor(rmin), math.floor(cmin)
    return _clip(Window(row_start, col_start, math.ceil(rmax) - row_start, math.ceil(cmax) - col_start), width, height)


def resolve_overview(header: TiffHeader, resolution: float | None) -> int | None:
    """The coarsest overview whose pixels are no larger than ``resolution`` (CRS units).

    None (full resolution) when ``resolution`` is None or finer than every overview.
    """
    if resolution is None or header.transform is None:
        return None
    a, b, _, d, e, _ = header.transform
    base = max(math.hypot(a, d), math.hypot(b, e))
    if resolution <= 0:
        raise PlanningError(f"resolution must be positive, got {resolution}")
    chosen = None
    for index, ov in enumerate(header.overviews):
        factor = max(header.image.width / ov.width, header.image.height / ov.height)
        if base * factor <= resolution * (1 + 1e-9):
            chosen = index
    return chosen


def select_image(header: TiffHeader, overview: int | None) -> tuple[ImageInfo, int, tuple[float, ...]]:
    """The image to read (full resolution or an overview), its IFD index and its transform.

    An overview's transform scales the full-resolution one by the size ratio, as GDAL does.
    """
    if header.transform is None:
        raise PlanningError(f"{header.uri}: the raster has no georeferencing (CRS and transform); cannot place an AOI")
    if overview is None:
        return header.image, 0, header.transform
    overviews = header.overviews
    if not 0 <= overview < len(overviews):
        raise PlanningError(f"{header.uri}: overview {overview} asked, the file has {len(overviews)} (0..{len(overviews) - 1})")
    image = overviews[overview]
    sx, sy = header.image.width / image.width, header.image.height / image.height
    a, b, c, d, e, f = header.transform
    return image, header.images.index(image), (a * sx, b * sy, c, d * sx, e * sy, f)


def plan_mask(header: TiffHeader, image: ImageInfo, ifd: int, sample: int, window: Window) -> MaskPlan | None:
    """GDAL's mask band for ``sample`` of ``image`` (an IFD of ``header``) within ``window``.

    The GeoTIFF driver's precedence, checked against GDAL: an internal mask IFD of the
    image's size first (``GDAL_TIFF_INTERNAL_MASK``; it wins over nodata), then the
    nodata value, then an alpha band (ExtraSamples 1 or 2) for the first band of a
    2-band file and the first three of a 4-band file. The alpha band itself, and
    everything else, is all valid (None).
    """
    for index, candidate in enumerate(header.images):
        if (
            candidate.is_mask
            and (candidate.width, candidate.height) == (image.width, image.height)
            and (candidate.subfile_type & 1) == (image.subfile_type & 1)
        ):
            check_supported(candidate, uri=header.uri)
            return MaskPlan(kind="ifd", image=candidate, ifd=index, tiles=_tiles_for(candidate, window, 0))
    if header.nodata is not None:
        return MaskPlan(kind="nodata", nodata=header.nodata)
    alpha = image.alpha_sample
    if (image.samples_per_pixel, alpha) in ((2, 1), (4, 3)) and alpha is not None and sample < alpha:
        return MaskPlan(kind="alpha", image=image, ifd=ifd, sample=alpha, tiles=_tiles_for(image, window, alpha))
    return None


def _clip(window: Window, width: int, height: int) -> Window:
    r0, c0 = max(window.row_off, 0), max(window.col_off, 0)
    r1, c1 = min(window.row_off + window.height, height), min(window.col_off + window.width, width)
    return Window(r0, c0, max(r1 - r0, 0), max(c1 - c0, 0))


def _tiles_for(image: ImageInfo, window: Window, sample: int) -> tuple[int, ...]:
    tr0, tr1 = window.row_off // image.tile_height, (window.row_off + window.height - 1) // image.tile_height
    tc0, tc1 = window.col_off // image.tile_width, (window.col_off + window.width - 1) // image.tile_width
    return tuple(
        image.tile_index(r, c, sample) for r in range(tr0, tr1 + 1) for c in range(tc0, tc1 + 1)
    )


def coalesce_ranges(
    ranges: Iterable[tuple[int, int]], *, gap: int, max_bytes: int
) -> list[tuple[int, int, list[int]]]:
    """Merge half-open byte ranges whose gap is at most ``gap`` bytes.

    Returns ``(start, end, members)`` per merged range, ``members`` being indices into
    ``ranges``. A merged range grows past ``max_bytes`` only when a single input does.
    Every input byte is covered by exactly the merged range that lists it.
    """
    items = sorted(enumerate(ranges), key=lambda kv: (kv[1][0], kv[1][1]))
    merged: list[tuple[int, int, list[int]]] = []
    for idx, (start, end) in items:
        if merged:
            mstart, mend, members = merged[-1]
            if start - mend <= gap and max(end, mend) - mstart <= max_bytes:
                merged[-1] = (mstart, max(mend, end), [*members, idx])
                continue
        merged.append((start, end, [idx]))
    return merged


def plan_read(
    requests: Sequence[ChunkRequest],
    *,
    all_touched: bool = False,
    coalesce_gap: int = 64 * 1024,
    max_request_bytes: int = 16 * 1024 * 1024,
    drop_empty: bool = True,
) -> ReadPlan:
    """Plan the reads of ``requests``: window (or points), tiles, merged byte ranges.

    Chunks whose geometry misses the raster (an empty window), or none of whose points
    fall on it, are left out when ``drop_empty`` (the footprint met the request but no
    pixel does); otherwise planning them is an error.
    """
    chunks: list[ChunkPlan] = []
    projected: dict[tuple[int, str, str], shapely.Geometry] = {}
    moved: dict[tuple[int, int, str, str], tuple[np.ndarray, np.ndarray]] = {}
    for req in requests:
        header = req.header
        image, ifd, transform = select_image(header, req.overview)
        check_supported(image, uri=req.uri)
        if header.crs is None:
            raise PlanningError(f"{req.uri}: the raster has no CRS; cannot place an AOI")
        if req.sample >= image.samples_per_pixel:
            raise PlanningError(f"{req.uri}: sample {req.sample} asked, the file has {image.samples_per_pixel}")
        if req.points is not None:
            xs, ys = req.points
            points_key = (id(xs), id(ys), req.geometry_crs.to_wkt(), header.crs)
            if points_key not in moved:  # one reprojection per point set and raster CRS
                moved[points_key] = reproject_xy(xs, ys, req.geometry_crs, to_crs(header.crs))
            point_chunk = _plan_points(req, image, ifd, transform, *moved[points_key])
            if point_chunk is None:
                if drop_empty:
                    continue
                raise PlanningError(f"{req.uri}: none of the points falls on the raster")
            chunks.append(point_chunk)
            continue
        assert req.geometry is not None  # a request without points has a geometry (ChunkRequest.__post_init__)
        if req.window is None and shapely.get_type_id(req.geometry) not in _AREAS:
            kind = req.geometry.geom_type if isinstance(req.geometry, BaseGeometry) else "geometry"
            raise GeometryError(
                f"an AOI must be a Polygon or MultiPolygon, got a {kind}: for the values at points "
                "use sample_points (or the sample-points flow); to read around it, buffer it into an area first"
            )
        crs_key = (id(req.geometry), req.geometry_crs.to_wkt(), header.crs)
        if crs_key not in projected:  # one reprojection per geometry and raster CRS
            projected[crs_key] = reproject(req.geometry, req.geometry_crs, to_crs(header.crs))
        geom = projected[crs_key]
        window = plan_window(geom, transform, image.width, image.height) if req.window is None else _clip(
            req.window, image.width, image.height)
        if window.empty:
            if drop_empty:
                continue
            raise PlanningError(f"{req.uri}: the geometry does not overlap the raster")
        a, b, c, d, e, f = transform
        wt = (a, b, a * window.col_off + b * window.row_off + c, d, e, d * window.col_off + e * window.row_off + f)
        chunks.append(_chunk_plan(req, image, ifd, window, wt, geometry=geom if req.window is None else None,
                                  tiles=_tiles_for(image, window, req.sample)))
    return ReadPlan(tuple(chunks), _plan_requests(chunks, coalesce_gap, max_request_bytes), all_touched)


def point_pixels(transform: Sequence[float], xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (int64) of the pixels holding points ``(xs, ys)`` (in the raster's CRS).

    Computed as rasterio's ``index`` and ``sample`` compute them (the inverse affine as
    one 3 x 3 matrix product, then floored), so a point on a pixel or tile edge lands on
    the same pixel. Non-finite points get row and column -1 (off every raster).
    """
    ra, rb, rc, rd, re, rf = inverse_affine(transform)
    matrix = np.array([[ra, rb, rc], [rd, re, rf], [0.0, 0.0, 1.0]])
    given = np.isfinite(xs) & np.isfinite(ys)
    xyz = np.empty((3, len(xs)))
    xyz[0], xyz[1], xyz[2] = np.where(given, xs, 0.0), np.where(given, ys, 0.0), 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        matrix.dot(xyz, out=xyz)
    cols, rows = xyz[0], xyz[1]
    finite = given & np.isfinite(cols) & np.isfinite(rows)
    limit = float(2**40)  # far off any raster, and safe to cast
    rows = np.where(finite, np.clip(np.floor(rows), -limit, limit), -1).astype(np.int64)
    cols = np.where(finite, np.clip(np.floor(cols), -limit, limit), -1).astype(np.int64)
    return rows, cols


def _plan_points(
    req: ChunkRequest, image: ImageInfo, ifd: int, transform: Sequence[float], xs: np.ndarray, ys: np.ndarray
) -> ChunkPlan | None:
    """The point chunk of ``req`` (points already in the raster's CRS); None when no point is on the raster."""
    rows, cols = point_pixels(transform, xs, ys)
    on = np.flatnonzero((rows >= 0) & (rows < image.height) & (cols >= 0) & (cols < image.width))
    if not on.size:
        return None
    whole = Window(0, 0, image.height, image.width)
    base = _chunk_plan(req, image, ifd, whole, tuple(transform), geometry=None, tiles=(),
                       mask_window=Window(0, 0, 0, 0))
    return _point_chunk(base, on, rows[on], cols[on])


def _chunk_plan(
    req: ChunkRequest,
    image: ImageInfo,
    ifd: int,
    window: Window,
    transform: Sequence[float],
    *,
    geometry: shapely.Geometry | None,
    tiles: tuple[int, ...],
    mask_window: Window | None = None,
) -> ChunkPlan:
    """The chunk reading ``window`` of ``req``'s image ``ifd``; its mask plan covers ``mask_window`` (default ``window``)."""
    header = req.header
    return ChunkPlan(
        key=req.key,
        uri=req.uri,
        image=image,
        ifd=ifd,
        byte_order=header.byte_order,
        sample=req.sample,
        window=window,
        transform=tuple(transform),
        crs=header.crs,
        fill=header.nodata if header.nodata is not None else 0,
        geometry=geometry,
        tiles=tiles,
        mask=plan_mask(header, image, ifd, req.sample, window if mask_window is None else mask_window),
    )


def _point_chunk(base: ChunkPlan, index: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> ChunkPlan:
    """``base`` gathering pixels ``(rows, cols)`` for the request's points ``index``: its window (their bounds), tiles and mask tiles."""
    r0, c0 = int(rows.min()), int(cols.min())
    window = Window(r0, c0, int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1)
    dr, dc = window.row_off - base.window.row_off, window.col_off - base.window.col_off
    a, b, c, d, e, f = base.transform
    by_tile: dict[tuple[int, int], np.ndarray] = {}
    tiles = _group_by_tile(base.image, base.ifd, base.sample, rows, cols, by_tile)
    mask = base.mask
    if mask is not None and mask.image is not None and mask.ifd is not None:
        mask = replace(mask, tiles=_group_by_tile(mask.image, mask.ifd, mask.sample, rows, cols, by_tile))
    return replace(base, window=window, transform=(a, b, a * dc + b * dr + c, d, e, d * dc + e * dr + f),
                   tiles=tiles, mask=mask, points=PointSet(index, rows, cols, by_tile))


def _group_by_tile(
    image: ImageInfo, ifd: int, sample: int, rows: np.ndarray, cols: np.ndarray,
    into: dict[tuple[int, int], np.ndarray],
) -> tuple[int, ...]:
    """The tiles of ``image`` holding pixels ``(rows, cols)``, ascending; ``into[(ifd, tile)]`` gets each one's slots."""
    tile = (rows // image.tile_height) * image.tiles_across + cols // image.tile_width
    if image.planar_config == 2:
        tile += sample * image.tiles_across * image.tiles_down
    order = np.argsort(tile, kind="stable")
    found, starts = np.unique(tile[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for t, start, end in zip(found.tolist(), starts.tolist(), ends.tolist(), strict=True):
        into[(ifd, t)] = order[start:end]
    return tuple(found.tolist())


def select_points(
    plan: ReadPlan,
    keep: Mapping[Hashable, np.ndarray],
    *,
    coalesce_gap: int = 64 * 1024,
    max_request_bytes: int = 16 * 1024 * 1024,
) -> ReadPlan:
    """The plan of only some points: of each point chunk whose key ``keep`` holds, the slots it lists.

    ``keep[key]`` is a boolean mask over the chunk's slots or their indices. Chunks that
    ``keep`` does not name, or keep no slot of, are left out; tiles, mask tiles and
    merged requests are planned again for what is left (so no tile is read for nothing).
    """
    chunks: list[ChunkPlan] = []
    for chunk in plan.chunks:
        chosen = keep.get(chunk.key)
        if chosen is None or chunk.points is None:
            continue
        chosen = np.asarray(chosen)
        slots = np.flatnonzero(chosen) if chosen.dtype == bool else chosen.astype(np.int64)
        if slots.size:
            pts = chunk.points
            chunks.append(_point_chunk(chunk, pts.index[slots], pts.rows[slots], pts.cols[slots]))
    return ReadPlan(tuple(chunks), _plan_requests(chunks, coalesce_gap, max_request_bytes), plan.all_touched)


def _plan_requests(chunks: Sequence[ChunkPlan], gap: int, max_bytes: int) -> tuple[RangeRequest, ...]:
    by_uri: dict[str, dict[tuple[int, int], TilePart]] = defaultdict(dict)
    for chunk in chunks:
        sources = [(chunk.image, chunk.ifd, chunk.tiles)]
        if chunk.mask is not None and chunk.mask.image is not None and chunk.mask.ifd is not None:
            sources.append((chunk.mask.image, chunk.mask.ifd, chunk.mask.tiles))  # coalesced with the data
        for image, ifd, tiles in sources:
            for tile in tiles:
                length = int(image.tile_byte_counts[tile])
                if length == 0:  # sparse tile: nothing to read, stays fill
                    continue
                by_uri[chunk.uri][(ifd, tile)] = TilePart(ifd, tile, int(image.tile_offsets[tile]), length)
    out: list[RangeRequest] = []
    for uri, parts_by_key in by_uri.items():
        parts = list(parts_by_key.values())
        for start, end, members in coalesce_ranges(
            [(p.offset, p.offset + p.length) for p in parts], gap=gap, max_bytes=max_bytes
        ):
            out.append(RangeRequest(uri, start, end, tuple(parts[i] for i in members)))
    return tuple(out)


def split_plan(plan: ReadPlan, *, max_pixels: int) -> tuple[ReadPlan, ...]:
    """Cut ``plan`` into consecutive batches whose windows hold at most ``max_pixels`` pixels in all.

    Chunks keep their order, each in exactly one batch; a chunk larger than
    ``max_pixels`` is a batch of its own. A batch's requests are the plan's merged
    requests trimmed to the tiles (and mask tiles) its chunks read, so no request
    grows; a tile that chunks of two batches read is fetched by both. Running the
    batches one after another bounds the decoded pixels held at once.
    """
    if max_pixels < 1:
        raise PlanningError(f"max_pixels must be at least 1, got {max_pixels}")
    groups: list[list[ChunkPlan]] = [[]]
    held = 0
    for chunk in plan.chunks:
        pixels = chunk.window.height * chunk.window.width
        if groups[-1] and held + pixels > max_pixels:
            groups.append([])
            held = 0
        groups[-1].append(chunk)
        held += pixels
    if len(groups) == 1:
        return (plan,)
    return tuple(ReadPlan(tuple(g), _trim_requests(plan.requests, g), plan.all_touched) for g in groups)


def _trim_requests(requests: Sequence[RangeRequest], chunks: Sequence[ChunkPlan]) -> tuple[RangeRequest, ...]:
    """``requests`` keeping only the parts ``chunks`` read, each range shrunk to its first and last kept part."""
    needed = {(c.uri, c.ifd, t) for c in chunks for t in c.tiles} | {
        (c.uri, c.mask.ifd, t) for c in chunks if c.mask is not None and c.mask.ifd is not None for t in c.mask.tiles
    }
    out = []
    for req in requests:
        parts = tuple(p for p in req.parts if (req.uri, p.ifd, p.tile) in needed)
        if parts:
            out.append(RangeRequest(req.uri, min(p.offset for p in parts), max(p.offset + p.length for p in parts),
                                    parts))
    return tuple(out)

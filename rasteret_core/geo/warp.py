"""Reprojection of pixel arrays between grids: pure numpy and pyproj, no I/O, no GDAL.

The results match ``rasterio.warp.reproject`` (GDAL's warper) because the steps are
GDAL's:

* Each destination pixel centre ``(col + 0.5, row + 0.5)`` maps to source pixel
  coordinates through the destination affine, pyproj (destination CRS to source
  CRS) and the inverse source affine. Between different CRSs, GDAL's *approximate
  transformer* runs on each destination row: it transforms the ends and the middle
  exactly, interpolates linearly when the middle is off by at most
  ``error_threshold`` source pixels (0.125, gdalwarp's default), and otherwise splits
  the row in halves. Points that land less than one pixel outside the source are
  transformed again exactly. Between equal CRSs the map is a pure affine.
* ``nearest`` takes the source pixel that contains the point: ``floor(x + 1e-10)``.
* ``bilinear`` weighs the 4 source pixel centres around the point. Pixels outside the
  source or on ``src_nodata`` are left out and the weights renormalised. A
  destination pixel whose containing source pixel is nodata stays nodata. Where the
  destination is coarser than the source along an axis (GDAL's scale below 0.95),
  GDAL widens the triangle kernel to ``1 / scale`` source pixels so that it averages
  instead of aliasing. This module does the same.
* The destination is warped in GDAL's chunks, and each chunk has its own kernel scale.

Conventions: transforms are rasterio-ordered affines ``(a, b, c, d, e, f)`` with
``x = a * col + b * row + c`` and ``y = d * col + e * row + f``. ``(col, row) = (0, 0)``
is the outer corner of the top-left pixel, and pixel centres are at ``+ 0.5``.
Arrays are ``(y, x)`` or ``(band, y, x)``. Grids and windows are half-open.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from pyproj import CRS

from rasteret_core.errors import ConfigError, GeometryError

from .geometry import _transformer, inverse_affine, to_crs

__all__ = ["Resampling", "default_resolution", "plan_source_window", "plan_target_grid", "reproject_array"]

logger = logging.getLogger(__name__)

Resampling = Literal["nearest", "bilinear"]
Affine6 = tuple[float, float, float, float, float, float]

_EPS = 1e-10  # GDAL floors source coordinates with this tolerance
_SNAP = 1e-9  # plan_target_grid: a bound this close to a grid line, in pixels, is on it
_BILINEAR_MIN_SCALE = 0.95  # GDAL uses the 4-sample formula only at scales >= 0.95


# --------------------------------------------------------------------------- grids


def plan_target_grid(
    bounds: tuple[float, float, float, float], *, crs: Any, resolution: float | tuple[float, float]
) -> tuple[Affine6, int, int]:
    """Plan the smallest north-up grid that covers ``bounds`` and is aligned to the resolution.

    The grid's edges lie on multiples of the resolution, like ``gdalwarp -tap``. So the
    grids of different reads at one resolution share their pixel edges and stack
    without resampling. A bound within 1e-9 pixel of a grid line counts as lying on it.

    Args:
        bounds: ``(minx, miny, maxx, maxy)`` in ``crs``, with ``min <= max``.
        crs: The target CRS (anything pyproj accepts).
        resolution: The pixel size ``res`` or ``(xres, yres)``, in ``crs`` units, > 0.

    Returns:
        ``(transform, width, height)``: a rasterio-ordered affine
        ``(xres, 0, x0, 0, -yres, y0)`` of the outer top-left corner, and the grid size
        (at least 1 x 1).

    Raises:
        GeometryError: the CRS is unknown, or the bounds are not finite and ordered, or
            they cross the antimeridian (``minx > maxx``; split them first).
        ConfigError: the resolution is not finite and positive.
    """
    target = _require_crs(crs, "crs")
    pair = cast("tuple[float, float]", (resolution, resolution) if np.ndim(resolution) == 0 else resolution)  # 0-d: a number
    xres, yres = (float(v) for v in pair)
    if not (math.isfinite(xres) and math.isfinite(yres) and xres > 0 and yres > 0):
        raise ConfigError(f"resolution {resolution!r} must be positive and finite")
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise GeometryError(f"bounds {tuple(bounds)} are not finite")
    if minx > maxx or miny > maxy:
        raise GeometryError(
            f"bounds {tuple(bounds)} must be (minx, miny, maxx, maxy) with min <= max; "
            "bounds that cross the antimeridian must be split first"
        )
    if target.is_geographic and (miny < -90 or maxy > 90):
        raise GeometryError(f"latitudes {miny}..{maxy} are out of range for {target.name}")
    col0, col1 = math.floor(minx / xres + _SNAP), math.ceil(maxx / xres - _SNAP)
    row0, row1 = math.floor(miny / yres + _SNAP), math.ceil(maxy / yres - _SNAP)
    width, height = max(col1 - col0, 1), max(row1 - row0, 1)
    return (xres, 0.0, col0 * xres, 0.0, -yres, (row0 + height) * yres), width, height


def default_resolution(
    src_transform: Sequence[float], src_crs: Any, dst_crs: Any, src_width: int, src_height: int
) -> float:
    """Suggest a square pixel size in ``dst_crs`` for a raster, like GDAL's suggested warp output.

    This is ``rasterio.warp.calculate_default_transform``'s resolution. The distance
    from the transformed top-left corner to the transformed bottom-right corner keeps
    as many pixels as the source diagonal has. Between equal CRSs it is the source's
    pixel width ``|a|``.

    Args:
        src_transform: The source's rasterio-ordered affine.
        src_crs: The source CRS.
        dst_crs: The target CRS.
        src_width: The source width in pixels.
        src_height: The source height in pixels.

    Returns:
        The pixel size in ``dst_crs`` units.

    Raises:
        GeometryError: the CRSs are unknown, the transform is degenerate, or the raster
            does not transform to ``dst_crs``.
    """
    src, dst = _require_crs(src_crs, "src_crs"), _require_crs(dst_crs, "dst_crs")
    affine = _check_affine(src_transform, "src_transform")
    if src_width <= 0 or src_height <= 0:
        raise ConfigError(f"raster size {src_width} x {src_height} must be positive")
    if src.equals(dst, ignore_axis_order=True) and affine[1] == 0 and affine[3] == 0:
        return abs(affine[0])
    steps = min(max(int(min(src_width, src_height) / 50 + 0.5), 20), 100)
    ratio = np.arange(steps + 1) / steps
    ratio[-1] = 1.0
    zeros, ones = np.zeros_like(ratio), np.ones_like(ratio)
    # GDAL's order: top, bottom, left, right; so the first point is the top-left corner
    # and the last one the bottom-right corner.
    cols = np.concatenate([ratio, ratio, zeros, ones]) * src_width
    rows = np.concatenate([zeros, ones, ratio, ratio]) * src_height
    a, b, c, d, e, f = affine
    x, y = _transformer(src.to_wkt(), dst.to_wkt()).transform(c + cols * a + rows * b, f + cols * d + rows * e)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    dx, dy = (x[-1] - x[0], y[-1] - y[0]) if ok[0] and ok[-1] else (0.0, 0.0)
    if dx == 0 or dy == 0:
        if ok.sum() < 2:
            raise GeometryError(f"the raster does not transform from {src.to_string()} to {dst.to_string()}")
        dx, dy = np.ptp(x[ok]), np.ptp(y[ok])
    return float(math.hypot(dx, dy) / math.hypot(src_width, src_height))


def plan_source_window(
    *, src_transform: Sequence[float], src_crs: Any, dst_transform: Sequence[float], dst_crs: Any,
    dst_shape: tuple[int, int], resampling: Resampling = "nearest",
) -> tuple[int, int, int, int]:
    """Plan the source pixel window a reprojection onto ``(dst_transform, dst_shape)`` reads.

    This is the destination grid's outer footprint in source pixels, floored and
    ceiled, widened by the kernel's reach plus 1 pixel of slack. The reach is 0 for
    nearest, 1 for bilinear, and ``ceil(1 / scale)`` for bilinear where the destination
    is coarser than the source (GDAL's scale below 0.95). Read this window, clamped to
    the raster, and pass it with its own transform to :func:`reproject_array`: the result
    equals a reprojection of the whole raster.

    Args:
        src_transform: The source raster's rasterio-ordered affine.
        src_crs: The source CRS.
        dst_transform: The destination's rasterio-ordered affine.
        dst_crs: The destination CRS.
        dst_shape: ``(height, width)`` of the destination.
        resampling: ``"nearest"`` or ``"bilinear"``.

    Returns:
        ``(row_off, col_off, height, width)`` of the half-open window, in the source's
        pixels. It is not clamped to the raster and may lie partly or wholly outside it.

    Raises:
        GeometryError: as :func:`reproject_array`.
    """
    height, width = _check_shape(dst_shape)
    x0, x1, y0, y1, _ = _PixelMapper(dst_transform, dst_crs, src_transform, src_crs).footprint((0, 0, height, width))

    def reach(n_dst: int, span: float) -> int:
        if resampling == "nearest":
            return 0
        scale = n_dst / span if span > 0 else math.inf
        return math.ceil(1 / scale) if scale < _BILINEAR_MIN_SCALE else 1

    mx, my = reach(width, x1 - x0) + 1, reach(height, y1 - y0) + 1
    col0, col1 = math.floor(x0) - mx, math.ceil(x1) + mx
    row0, row1 = math.floor(y0) - my, math.ceil(y1) + my
    # GDAL sizes the kernel from min(raster size - clamped start, footprint span): where the
    # window starts before the raster, keep as many pixels after the raster's start as the
    # window is wide, so a clamped read gives the kernel the same scale as the whole raster.
    col1 += max(0, -col0)
    row1 += max(0, -row0)
    return row0, col0, row1 - row0, col1 - col0


# ------------------------------------------------------------------ reprojection


def reproject_array(
    source: np.ndarray, *, src_transform: Sequence[float], src_crs: Any, dst_transform: Sequence[float], dst_crs: Any,
    dst_shape: tuple[int, int], resampling: Resampling = "nearest", src_nodata: float | None = None,
    dst_nodata: float | None = None, error_threshold: float = 0.125,
) -> np.ndarray:
    """Reproject ``source`` onto the grid ``(dst_transform, dst_shape)`` in ``dst_crs``.

    The source may be a window of a bigger raster, with the window's transform (see
    "Margins" below).

    Args:
        source: ``(y, x)`` or ``(band, y, x)`` array of an integer or float dtype. A
            ``numpy.ma.MaskedArray`` marks its masked pixels as no data (as GDAL's warper
            takes a source's mask band), and the result is then masked where a
            destination pixel got no data.
        src_transform: The source's rasterio-ordered affine.
        src_crs: The source CRS (anything pyproj accepts).
        dst_transform: The destination's rasterio-ordered affine.
        dst_crs: The destination CRS.
        dst_shape: ``(height, width)`` of the destination.
        resampling: ``"nearest"`` or ``"bilinear"``.
        src_nodata: Source pixels equal to this value (NaN matches NaN) are not data.
        dst_nodata: The fill value of destination pixels that get no data. When None it
            is ``src_nodata``, and when that is None too the fill is 0. These are
            rasterio's defaults.
        error_threshold: The largest interpolation error of the approximate transformer,
            in source pixels. GDAL's default is 0.125. Use 0 for exact transforms, which
            are slower and may differ from GDAL where a sample sits near a pixel edge.

    Returns:
        An array of ``source.dtype`` and shape ``dst_shape`` (with the band axis first
        if ``source`` has one). Bilinear results are rounded half up for integer dtypes
        and clamped to the dtype's range. When ``dst_nodata`` is set, an integer
        bilinear value that equals it is moved one step toward the dtype's middle, as
        GDAL does, so it does not read as nodata.

    Raises:
        GeometryError: a CRS is unknown, a transform is not finite or not invertible,
            or the destination grid does not transform to the source CRS. That is when
            fewer than 5 of the points GDAL samples to find its source window transform.
            GDAL then fills the output without an error. Pixels that fail to transform
            on their own get the fill value.
        ConfigError: a bad shape, dtype, resampling mode or nodata value.

    Chunks:
        Like GDAL, the destination is warped in chunks. It is halved along its longer
        side while a chunk needs more than 64 MB, or while less than half of its source
        window lies on the source (a grid mostly off the source). Each chunk has its own
        source window, kernel scale and interpolation rows.

    Margins:
        Pixels outside ``source`` count as outside the raster. A window cut through
        data clamps the kernel at its edge, where GDAL reads on. Read the window that
        :func:`plan_source_window` plans.

    Bands:
        Each band is warped like a single-band GDAL warp: its nodata mask alone decides
        which of its pixels are data. GDAL warps a multi-band array with a unified mask,
        so results differ only where the bands' nodata areas differ.
    """
    if resampling not in ("nearest", "bilinear"):
        raise ConfigError(f"resampling must be 'nearest' or 'bilinear', not {resampling!r}")
    src_arr = np.asarray(source)
    src_invalid = np.ma.getmask(source) if isinstance(source, np.ma.MaskedArray) else np.ma.nomask
    if src_arr.ndim not in (2, 3) or 0 in src_arr.shape:
        raise ConfigError(f"source must be a non-empty (y, x) or (band, y, x) array, got shape {src_arr.shape}")
    if src_arr.dtype.kind not in "iuf":
        raise ConfigError(f"source dtype {src_arr.dtype} is not an integer or float type")
    height, width = _check_shape(dst_shape)
    if not (math.isfinite(error_threshold) and error_threshold >= 0):
        raise ConfigError(f"error_threshold {error_threshold!r} must be finite and >= 0")
    dtype = src_arr.dtype
    src_nd = _check_nodata(src_nodata, dtype, "src_nodata")
    dst_nd = _check_nodata(dst_nodata, dtype, "dst_nodata") if dst_nodata is not None else src_nd

    bands = src_arr if src_arr.ndim == 3 else src_arr[np.newaxis]
    out = np.full((bands.shape[0], height, width), dst_nd if dst_nd is not None else 0, dtype=dtype)
    mapper = _PixelMapper(dst_transform, dst_crs, src_transform, src_crs)
    src_shape = bands.shape[1:]
    # GDAL's working memory per pixel, in bits: the values plus a validity bit per band.
    bits = 8 * dtype.itemsize * len(bands)
    chunks = _plan_chunks(
        mapper,
        (height, width),
        src_shape,
        resampling=resampling,
        src_bits=bits + (len(bands) if src_nd is not None else 0),
        dst_bits=bits + (len(bands) if dst_nd is not None else 0),
    )
    logger.debug("reproject %s onto %s in %d chunks: %s", src_shape, (height, width), len(chunks), chunks)
    pad = 1 + max((max(_kernel_radius(c.scales)) for c in chunks), default=1)
    invalid = np.broadcast_to(src_invalid, src_arr.shape).reshape(bands.shape) if src_invalid is not np.ma.nomask else None
    prepared = [
        _Band(band, _valid_mask(band, src_nd, None if invalid is None else invalid[i]),
              pad=None if resampling == "nearest" else pad)
        for i, band in enumerate(bands)
    ]
    got = np.zeros(out.shape, dtype=bool) if invalid is not None else None
    for chunk in chunks:
        sx, sy, inside = _source_points(mapper, chunk, src_shape, error_threshold)
        step = max(1, _BLOCK // chunk.width)
        cols = slice(chunk.col_off, chunk.col_off + chunk.width)
        for lo in range(0, chunk.height, step):
            rows = slice(lo, min(lo + step, chunk.height))
            px, py = (sx if sx.shape[0] == 1 else sx[rows]), sy[rows]
            dst_rows = slice(chunk.row_off + rows.start, chunk.row_off + rows.stop)
            for bi, (band, target) in enumerate(zip(prepared, out, strict=True)):
                values, ok = band.sample(px, py, resampling=resampling, scales=chunk.scales, dst_nodata=dst_nd)
                np.copyto(target[dst_rows, cols], values, where=inside[rows] & ok)
                if got is not None:
                    got[bi, dst_rows, cols] |= inside[rows] & ok
    if got is not None:
        out = np.ma.MaskedArray(out, mask=~got)
    return out if src_arr.ndim == 3 else out[0]


# ------------------------------------------------------------------ coordinates

_WARP_MEMORY = 64 * 1024 * 1024  # GDAL's default warp memory, in bytes


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A destination window GDAL warps in one go, and its kernel scales along x and y."""

    row_off: int
    col_off: int
    height: int
    width: int
    scales: tuple[float, float]


class _PixelMapper:
    """Destination pixel coordinates to source pixel coordinates (GDAL's GenImgProj transformer)."""

    def __init__(self, dst_transform: Sequence[float], dst_crs: Any, src_transform: Sequence[float], src_crs: Any) -> None:
        self.dst_crs = _require_crs(dst_crs, "dst_crs")
        self.src_crs = _require_crs(src_crs, "src_crs")
        self.dst = _check_affine(dst_transform, "dst_transform")
        src = _check_affine(src_transform, "src_transform")
        self.inv = _gdal_inverse(src)
        same = self.src_crs.equals(self.dst_crs, ignore_axis_order=True)
        self.transformer = None if same else _transformer(self.dst_crs.to_wkt(), self.src_crs.to_wkt())
        a, b, c, d, e, f = self.dst
        self.separable = same and b == d == self.inv[1] == self.inv[3] == 0
        # GDAL reads no kernel margin for a shift by whole pixels (same CRS and resolution).
        self.pixel_shift = (
            self.separable
            and (a, e) == (src[0], src[4])
            and all(abs(v - round(v)) <= 1e-6 for v in ((c - src[2]) / a, (f - src[5]) / e))
        )

    @property
    def approximate(self) -> bool:
        return self.transformer is not None

    def __call__(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform destination pixel coordinates exactly; failures come back non-finite."""
        a, b, c, d, e, f = self.dst
        x, y = c + col * a + row * b, f + col * d + row * e
        if self.transformer is not None:
            x, y = self.transformer.transform(x, y)
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ia, ib, ic, id_, ie, if_ = self.inv
        with np.errstate(invalid="ignore", over="ignore"):  # failed points are inf: keep them non-finite
            return ic + x * ia + y * ib, if_ + x * id_ + y * ie

    def source_coords(self, chunk: _Chunk, error_threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel coordinates of the chunk's pixel centres.

        Both come back broadcastable to the chunk's shape: ``(1, width)`` and
        ``(height, 1)`` when the map is separable (one CRS, both grids north-up), else
        ``(height, width)``.
        """
        cols = chunk.col_off + np.arange(chunk.width) + 0.5
        rows = chunk.row_off + np.arange(chunk.height) + 0.5
        if self.separable:  # the terms left out are exact zeros
            a, _, c, _, e, f = self.dst
            ia, _, ic, _, ie, if_ = self.inv
            return (ic + (c + cols * a) * ia)[np.newaxis, :], (if_ + (f + rows * e) * ie)[:, np.newaxis]
        if not self.approximate or error_threshold == 0 or chunk.width <= 5:
            return self(*np.meshgrid(cols, rows))
        return _approx_rows(self, chunk, error_threshold)

    def footprint(self, window: tuple[int, int, int, int]) -> tuple[float, float, float, float, bool]:
        """Bounding box ``(x0, x1, y0, y1)``, in source pixels, of a destination window's outer edges.

        ``window`` is ``(row_off, col_off, height, width)``. GDAL samples 21 points along
        each edge to find its source window, or a 23 x 23 grid over the window when an
        edge point fails. The last item says whether any sample failed.

        Raises:
            GeometryError: fewer than 5 samples transform (GDAL gives up too).
        """
        row_off, col_off, height, width = window
        ratio = np.minimum(np.arange(21) * 0.05, 1.0)
        zeros, ones = np.zeros_like(ratio), np.ones_like(ratio)
        cols = np.concatenate([ratio, ratio, zeros, ones]) * width
        rows = np.concatenate([zeros, ones, ratio, ratio]) * height
        sx, sy = self(col_off + cols, row_off + rows)
        ok = np.isfinite(sx) & np.isfinite(sy)
        if not ok.all():
            grid = np.concatenate(
                [[0.5 / width], np.arange(21) * 0.05, [1 - 0.5 / width]]
            )  # GDAL insets both axes by the width
            gc, gr = np.meshgrid(col_off + grid * width, row_off + grid * height)
            sx, sy = self(gc.ravel(), gr.ravel())
            ok = np.isfinite(sx) & np.isfinite(sy)
        if ok.sum() < 5:
            raise GeometryError(
                f"the destination grid does not transform from {self.dst_crs.to_string()} to "
                f"{self.src_crs.to_string()}: it lies outside the area where these CRSs are defined"
            )
        x0, x1, y0, y1 = (_round_if_close(v) for v in (sx[ok].min(), sx[ok].max(), sy[ok].min(), sy[ok].max()))
        return x0, x1, y0, y1, not ok.all()


def _plan_chunks(
    mapper: _PixelMapper,
    dst_shape: tuple[int, int],
    src_shape: tuple[int, int],
    *,
    resampling: Resampling,
    src_bits: int,
    dst_bits: int,
) -> list[_Chunk]:
    """GDAL's chunk list: halve the destination along its longer side while a chunk is too costly.

    A chunk is too costly when its working memory exceeds 64 MB (and it is over 2 x 2
    pixels), or when less than half of its source window lies on the source (and it is
    over 100 pixels on a side). Chunks whose source window is empty are left out, as
    are chunks whose window does not transform (GDAL skips them with a warning). Raises
    GeometryError when the whole grid does not transform.
    """
    radius = 0 if resampling == "nearest" or mapper.pixel_shift else 1
    chunks: list[_Chunk] = []
    todo = [(0, 0, *dst_shape)]
    while todo:
        row_off, col_off, height, width = window = todo.pop()
        try:
            x0, x1, y0, y1, failed = mapper.footprint(window)
        except GeometryError:
            if window == (0, 0, *dst_shape):
                raise
            continue
        src_h, src_w = src_shape
        if x0 > src_w or x1 < 0 or y0 > src_h or y1 < 0:
            continue  # nothing to read
        (size_x, raw_x, rx), (size_y, raw_y, ry) = (
            _axis_window(width, x0, x1, src_w, radius + 10 * failed),
            _axis_window(height, y0, y1, src_h, radius + 10 * failed),
        )
        fill = size_x * size_y / max(1.0, (x1 - x0 + 2 * rx) * (y1 - y0 + 2 * ry))
        memory = (src_bits * size_x * size_y + dst_bits * height * width) / 8
        if (memory > _WARP_MEMORY and (width > 2 or height > 2)) or (0 < fill < 0.5 and max(width, height) > 100):
            if width > height:
                half = width // 2
                todo += [(row_off, col_off, height, half), (row_off, col_off + half, height, width - half)]
            else:
                half = height // 2
                todo += [(row_off, col_off, half, width), (row_off + half, col_off, height - half, width)]
            continue
        scale_x, scale_y = _kernel_scale(width, size_x, raw_x), _kernel_scale(height, size_y, raw_y)
        if scale_x is not None and scale_y is not None:
            chunks.append(_Chunk(row_off, col_off, height, width, (scale_x, scale_y)))
    return chunks


def _axis_window(n_dst: int, lo: float, hi: float, n_src: int, radius: int) -> tuple[int, float, int]:
    """GDAL's source window along one axis from the footprint ``[lo, hi]``: (size, size without margin, margin)."""
    span = hi - lo
    scale = max(1e-3, n_dst / span) if span > 0 else math.inf
    if scale < _BILINEAR_MIN_SCALE:
        radius = math.ceil(radius / scale)
    lo_c, hi_c = int(max(0.0, lo)), int(min(math.ceil(hi), n_src))
    raw = max(0.0, min(n_src - lo_c, span))
    if hi_c - lo_c > 0.9 * n_src:  # GDAL then reads the whole width (for antimeridian wraps)
        size = n_src
    else:
        off = max(0, min(lo_c - radius, n_src))
        size = max(0, min(n_src - off, hi_c - off + radius))
    return size, raw, radius


def _kernel_scale(n_dst: int, size: int, raw: float) -> float | None:
    """GDAL's kernel scale: destination pixels per pixel of the source window; None if it is empty."""
    if size <= 0 or raw <= 0:
        return None
    extra = size - raw
    scale = n_dst / (size - extra)
    if n_dst <= size <= n_dst + extra:
        scale = 1.0
    if scale < 1:  # GDAL snaps to 1/k when the reciprocal is within 0.05 of an integer k
        k = int(1 / scale + 0.5)
        if abs(1 / scale - k) < 0.05:
            scale = 1 / k
    return scale


def _source_points(
    mapper: _PixelMapper, chunk: _Chunk, src_shape: tuple[int, int], error_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source coordinates of a chunk's pixel centres and whether they fall on the source.

    Approximated points less than a pixel off the source are transformed again
    exactly, as GDAL does. Points off the source get the coordinate 0.5, so that the
    kernels read in bounds; the mask excludes them.
    """
    sx, sy = mapper.source_coords(chunk, error_threshold)
    inside = _inside(sx, sy, src_shape)
    if mapper.approximate and error_threshold > 0 and not inside.all():
        off = np.flatnonzero(~inside)
        retry = off[_near_edge(sx.flat[off], sy.flat[off], src_shape)]
        if retry.size:
            rr, cc = np.divmod(retry, chunk.width)
            sx.flat[retry], sy.flat[retry] = mapper(chunk.col_off + cc + 0.5, chunk.row_off + rr + 0.5)
            inside.flat[retry] = _inside(sx.flat[retry], sy.flat[retry], src_shape)
    if not inside.all():
        sx, sy = np.where(_on_axis(sx, src_shape[1]), sx, 0.5), np.where(_on_axis(sy, src_shape[0]), sy, 0.5)
    return sx, sy, inside


def _approx_rows(mapper: _PixelMapper, chunk: _Chunk, max_error: float) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's approximate transformer on every row of a chunk, vectorised over rows.

    Each segment of a row (start ``s``, ``n`` points) is transformed exactly at its
    start, middle ``s + (n - 1) // 2`` and end. If the middle is within ``max_error``
    (x + y error, in source pixels) of the straight line from start to end, the
    segment is interpolated along that line. Otherwise it splits into
    ``[s, s + mid)`` and ``[s + mid, s + n)``, and halves of 5 points or fewer are
    transformed exactly. Segments whose points fail to transform are transformed
    exactly (their failed points come back non-finite).
    """
    done: list[tuple[np.ndarray, ...]] = []  # (row, start, n, value at start, slope); NaN slope: exact

    def finish(
        row: np.ndarray, start: np.ndarray, n: np.ndarray, s: np.ndarray | None = None, slope: np.ndarray | None = None
    ) -> None:
        nan = np.full((row.size, 2), np.nan)
        done.append((row, start, n, nan if s is None else s, nan if slope is None else slope))

    def exact_points(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.stack(mapper(chunk.col_off + cols + 0.5, chunk.row_off + rows + 0.5), axis=1)

    height, width = chunk.height, chunk.width
    row = np.arange(height)
    start, n = np.zeros(height, np.intp), np.full(height, width, np.intp)
    mid = (n - 1) // 2
    s, m, e = np.split(exact_points(np.concatenate([start, mid, n - 1]), np.tile(row, 3)), 3)
    good = np.isfinite(s).all(1) & np.isfinite(m).all(1) & np.isfinite(e).all(1)
    finish(row[~good], start[~good], n[~good])
    row, start, n, s, m, e = (v[good] for v in (row, start, n, s, m, e))
    while row.size:
        mid = (n - 1) // 2
        slope = (e - s) / (n - 1)[:, None]
        fits = ~(np.abs(s + slope * mid[:, None] - m).sum(axis=1) > max_error)
        finish(row[fits], start[fits], n[fits], s[fits], slope[fits])
        row, start, n, s, m, e, mid = (v[~fits] for v in (row, start, n, s, m, e, mid))
        n1, n2 = mid, n - mid
        split1, split2 = n1 > 5, n2 > 5
        # New exact points: the middle and end of each first half, the middle of each second half.
        new = exact_points(
            np.concatenate(
                [(start + (n1 - 1) // 2)[split1], (start + n1 - 1)[split1], (start + mid + (n2 - 1) // 2)[split2]]
            ),
            np.concatenate([row[split1], row[split1], row[split2]]),
        )
        k = int(split1.sum())
        mid1, end1, mid2 = (np.full_like(s, np.nan) for _ in range(3))
        mid1[split1], end1[split1], mid2[split2] = new[:k], new[k : 2 * k], new[2 * k :]
        failed = (split1 & ~np.isfinite(np.hstack([mid1, end1])).all(1)) | (split2 & ~np.isfinite(mid2).all(1))
        finish(row[failed], start[failed], n[failed])
        base1, base2 = ~split1 & ~failed, ~split2 & ~failed
        finish(row[base1], start[base1], n1[base1])
        finish(row[base2], (start + mid)[base2], n2[base2])
        go1, go2 = split1 & ~failed, split2 & ~failed
        row = np.concatenate([row[go1], row[go2]])
        start, n = np.concatenate([start[go1], (start + mid)[go2]]), np.concatenate([n1[go1], n2[go2]])
        s, m, e = (np.concatenate(pair) for pair in ((s[go1], m[go2]), (mid1[go1], mid2[go2]), (end1[go1], e[go2])))

    # The segments tile every row, so sorted by (row, start) they expand in row-major order.
    row, start, n, s, slope = (np.concatenate(v) for v in zip(*done, strict=True))
    order = np.lexsort((start, row))
    n, s, slope = n[order], s[order], slope[order]
    offset = np.arange(height * width) - np.repeat(np.cumsum(n) - n, n)
    sx = np.repeat(s[:, 0], n) + np.repeat(slope[:, 0], n) * offset
    sy = np.repeat(s[:, 1], n) + np.repeat(slope[:, 1], n) * offset
    todo = np.flatnonzero(np.repeat(np.isnan(slope[:, 0]), n))
    if todo.size:
        rr, cc = np.divmod(todo, width)
        sx[todo], sy[todo] = mapper(chunk.col_off + cc + 0.5, chunk.row_off + rr + 0.5)
    return sx.reshape(height, width), sy.reshape(height, width)


def _on_axis(p: np.ndarray, size: int) -> np.ndarray:
    """GDAL's test that a coordinate falls on the source: ``0 <= p`` and ``p + 1e-10 <= size``."""
    on: np.ndarray = (p >= 0) & (p + _EPS <= size)
    return on


def _inside(sx: np.ndarray, sy: np.ndarray, src_shape: tuple[int, int]) -> np.ndarray:
    inside: np.ndarray = _on_axis(sx, src_shape[1]) & _on_axis(sy, src_shape[0])
    return inside


def _near_edge(sx: np.ndarray, sy: np.ndarray, src_shape: tuple[int, int]) -> np.ndarray:
    """Points GDAL transforms again exactly: the first failed bound test misses by under a pixel."""
    src_h, src_w = src_shape
    low_x = sx < 0
    low_y = ~low_x & (sy < 0)
    high_x = ~low_x & ~low_y & (sx + _EPS > src_w)
    high_y = ~low_x & ~low_y & ~high_x & (sy + _EPS > src_h)
    return (low_x & (sx > -1)) | (low_y & (sy > -1)) | (high_x & (sx < src_w + 1)) | (high_y & (sy < src_h + 1))


def _round_if_close(v: float) -> float:
    r = round(v)
    return float(r) if abs(r - v) < 1e-6 else float(v)


# --------------------------------------------------------------------- kernels

_BLOCK = 1 << 16  # destination pixels per kernel pass: keeps the temporaries in cache


def _valid_mask(band: np.ndarray, nodata: float | None, invalid: np.ndarray | None = None) -> np.ndarray | None:
    """True where ``band`` holds data (not ``nodata``, not ``invalid``); None when every pixel does."""
    valid = np.ones(band.shape, bool) if invalid is None else ~invalid
    if nodata is not None:
        valid &= ~np.isnan(band) if math.isnan(nodata) else band != nodata
    return None if valid.all() else valid


def _kernel_radius(scales: tuple[float, float]) -> tuple[int, int]:
    """Taps on each side of the bilinear kernel: 1, or ``ceil(1 / scale)`` for GDAL's general kernel."""
    if min(scales) >= _BILINEAR_MIN_SCALE:
        return 1, 1
    return tuple(math.ceil(1 / s) if s < 1 else 1 for s in scales)  # type: ignore[return-value]


class _Band:
    """One source band ready to resample: its data mask and, for bilinear, a padded float64 copy."""

    def __init__(self, band: np.ndarray, valid: np.ndarray | None, *, pad: int | None) -> None:
        self.band, self.valid = band, valid
        self.padded = None if pad is None else _Padded(band, valid, pad)

    def sample(
        self,
        px: np.ndarray,
        py: np.ndarray,
        *,
        resampling: Resampling,
        scales: tuple[float, float],
        dst_nodata: float | None,
    ) -> tuple[np.ndarray, np.ndarray | bool]:
        """Values at points on the source, cast to the band's dtype, and where they are data."""
        keep: np.ndarray | bool = True
        if resampling == "nearest" or self.valid is not None:
            centre = _containing(px, py, self.band.shape)
            if self.valid is not None:  # GDAL skips points whose containing pixel is nodata
                keep = self.valid.ravel().take(centre)
            if resampling == "nearest":
                return self.band.ravel().take(centre), keep
        assert self.padded is not None
        if min(scales) >= _BILINEAR_MIN_SCALE:
            values, ok = _bilinear4(self.padded, px, py)
        else:
            radius, k = _kernel_radius(scales), (min(scales[0], 1.0), min(scales[1], 1.0))
            # GDAL's masked code path runs when the destination has a nodata value.
            values, ok = _triangle(self.padded, px, py, radius=radius, k=k, masked=dst_nodata is not None)
        return _to_dtype(values, self.band.dtype, dst_nodata), ok & keep


def _containing(px: np.ndarray, py: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Flat index of the source pixel that contains each point (GDAL: ``int(x + 1e-10)``, clamped)."""
    src_h, src_w = shape
    cx = np.clip((px + _EPS).astype(np.intp), 0, src_w - 1)
    cy = np.clip((py + _EPS).astype(np.intp), 0, src_h - 1)
    return cy * src_w + cx


class _Padded:
    """A band as float64 with its data mask, padded by ``pad`` pixels of no data, flattened.

    The padding lets a kernel tap read out-of-range pixels as weight 0 without tests.
    """

    def __init__(self, band: np.ndarray, valid: np.ndarray | None, pad: int) -> None:
        src_h, src_w = band.shape
        self.shape, self.pad, self.stride = (src_h, src_w), pad, src_w + 2 * pad
        values = np.zeros((src_h + 2 * pad, self.stride))
        values[pad : pad + src_h, pad : pad + src_w] = band if valid is None else np.where(valid, band, 0)
        self.values = values.ravel()
        self.mask: np.ndarray | None = None  # None: every in-range pixel is data
        if valid is not None:
            mask = np.zeros_like(values)
            mask[pad : pad + src_h, pad : pad + src_w] = valid
            self.mask = mask.ravel()

    def corner(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kernel's top-left pixel ``floor(p - 0.5)`` on each axis and its flat index."""
        ix, iy = np.floor(px - 0.5).astype(np.intp), np.floor(py - 0.5).astype(np.intp)
        return ix, iy, (iy + self.pad) * self.stride + (ix + self.pad)

    def in_range(self, i: np.ndarray, axis: int) -> np.ndarray:
        """1.0 where pixel ``i`` along ``axis`` (0: x, 1: y) is in the source, else 0.0."""
        inside: np.ndarray = ((i >= 0) & (i < self.shape[1 - axis])).astype(float)
        return inside


def _bilinear4(src: _Padded, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's 4-sample bilinear: the 4 pixel centres around each point, weighted by 1 - distance per axis.

    Returns the float64 values and where their weights sum to at least 1e-5.
    """
    ix, iy, base = src.corner(px, py)
    wx0, wy0 = 1.5 - (px - ix), 1.5 - (py - iy)  # GDAL's expression for 1 - fraction
    # Within half a pixel of the left (top) edge GDAL uses the edge pixel alone on that axis.
    left, top = ix == -1, iy == -1
    wx0, wy0 = np.where(left, 1.0, wx0), np.where(top, 1.0, wy0)
    ix, iy = np.where(left, 0, ix), np.where(top, 0, iy)
    base = base + left + top * src.stride
    acc: np.ndarray | float = 0.0
    div: np.ndarray | float = 0.0
    for dy, wy in ((0, wy0), (1, 1.0 - wy0)):
        for dx, wx in ((0, wx0), (1, 1.0 - wx0)):
            idx = base + (dy * src.stride + dx)
            data = src.in_range(ix + dx, 0) * src.in_range(iy + dy, 1) if src.mask is None else src.mask.take(idx)
            w = wx * wy * data
            acc = acc + src.values.take(idx) * w
            div = div + w
    assert isinstance(div, np.ndarray)  # four taps of array weights were added
    ok = div >= 1e-5
    return np.where(div == 1.0, acc, acc / np.where(ok, div, 1.0)), ok


def _triangle(
    src: _Padded,
    px: np.ndarray,
    py: np.ndarray,
    *,
    radius: tuple[int, int],
    k: tuple[float, float],
    masked: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's general bilinear kernel: weights ``1 - |distance| * k`` over ``2 * radius`` taps per axis.

    Returns the float64 values and where their weights sum to at least 1e-6.
    """
    ix, iy, base = src.corner(px, py)
    fx, fy = px - 0.5 - ix, py - 0.5 - iy

    def taps(
        i0: np.ndarray, frac: np.ndarray, r: int, kk: float, axis: int
    ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        return [
            (t, np.maximum(0.0, 1.0 - np.abs((t - frac) * kk)), src.in_range(i0 + t, axis)) for t in range(1 - r, r + 1)
        ]

    taps_x, taps_y = taps(ix, fx, radius[0], k[0], 0), taps(iy, fy, radius[1], k[1], 1)
    acc: np.ndarray | float = 0.0
    wsum: np.ndarray | float = 0.0
    for j, wy, in_y in taps_y:
        row_acc: np.ndarray | float = 0.0
        row_w: np.ndarray | float = 0.0
        for i, wx, in_x in taps_x:
            idx = base + (j * src.stride + i)
            row_acc = row_acc + src.values.take(idx) * wx
            row_w = row_w + wx * (in_x * in_y if src.mask is None else src.mask.take(idx))
        acc = acc + row_acc * wy
        wsum = wsum + row_w * wy
    assert isinstance(wsum, np.ndarray)  # 2 * radius >= 2 taps of array weights per axis were added
    ok = wsum >= 1e-6
    if masked:  # GDAL leaves sums within 1e-5 of 1 undivided
        return np.where((wsum < 0.99999) | (wsum > 1.00001), acc / np.where(ok, wsum, 1.0), acc), ok
    # Without masks GDAL divides by (sum of the x weights) * (sum of the y weights).
    sum_x = sum(wx * in_x for _, wx, in_x in taps_x)
    sum_y = sum(wy * in_y for _, wy, in_y in taps_y)
    return acc / np.where(ok, sum_x * sum_y, 1.0), ok


def _to_dtype(values: np.ndarray, dtype: np.dtype, dst_nodata: float | None) -> np.ndarray:
    """Cast bilinear results like GDAL: integers clamped and rounded half up, kept off ``dst_nodata``."""
    if dtype.kind == "f":
        floats: np.ndarray = values.astype(dtype)
        return floats
    info = np.iinfo(dtype)
    out: np.ndarray = np.floor(np.clip(values, info.min, info.max) + 0.5).astype(dtype)
    if dst_nodata is not None:
        out[out == dst_nodata] = info.min + 1 if dst_nodata == info.min else dtype.type(dst_nodata) - 1
    return out


# ---------------------------------------------------------------------- inputs


def _require_crs(value: Any, name: str) -> CRS:
    if value is None:
        raise GeometryError(f"{name} is required")
    return to_crs(str(value) if isinstance(value, str) else value)  # pyproj misreads numpy.str_


def _check_affine(transform: Sequence[float], name: str) -> Affine6:
    try:  # 6 numbers, or the 9 of an affine.Affine whose last row is (0, 0, 1)
        items = tuple(float(v) for v in transform)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{name} {transform!r} is not an affine (a, b, c, d, e, f)") from exc
    values = items[:6]
    if len(items) not in (6, 9) or not all(math.isfinite(v) for v in values):
        raise GeometryError(f"{name} {transform!r} must be 6 finite numbers (a, b, c, d, e, f)")
    if values[0] * values[4] - values[1] * values[3] == 0:
        raise GeometryError(f"{name} {values} is degenerate (not invertible)")
    return values  # type: ignore[return-value]


def _gdal_inverse(t: Affine6) -> Affine6:
    """The inverse affine, computed as GDAL's GDALInvGeoTransform does for north-up grids."""
    a, b, c, d, e, f = t
    if b == 0 and d == 0:
        return (1.0 / a, 0.0, -c / a, 0.0, 1.0 / e, -f / e)
    return inverse_affine(t)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in shape)
    if height <= 0 or width <= 0:
        raise ConfigError(f"dst_shape {tuple(shape)} must be positive (height, width)")
    return height, width


def _check_nodata(value: float | None, dtype: np.dtype, name: str) -> float | None:
    """Check that a nodata value is representable in ``dtype`` (rasterio refuses others too)."""
    if value is None:
        return None
    v = float(value)
    if math.isnan(v):
        if dtype.kind != "f":
            raise ConfigError(f"{name} NaN cannot occur in a {dtype} array")
        return v
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (info.min <= v <= info.max and v == int(v)):
            raise ConfigError(f"{name} {value!r} is not a {dtype} value")
        return int(v)
    if math.isfinite(v) and abs(v) > np.finfo(dtype).max:
        raise ConfigError(f"{name} {value!r} is out of range for {dtype}")
    return v

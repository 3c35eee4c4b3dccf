"""Reprojection (pure numpy + pyproj) against rasterio.warp.reproject, GDAL's warper.

The source is synthetic smooth data (a sum of sinusoids plus a little noise) on a
10 m UTM 32N grid, with a nodata rectangle and a nodata disc. Measured on the
development machine (pyproj 3.7.2 with PROJ 9.5.1, rasterio 1.4.4 with GDAL 3.10.3
and PROJ 9.7.1), results are identical to rasterio pixel for pixel, with two
exceptions:

* Bilinear downsampling without nodata is one rounding step off (1 ulp before the
  cast) in about 0.04% of the pixels. GDAL sums that kernel in SIMD lanes, in
  another order.
* For EPSG:3035 the two PROJ versions disagree by 0.5 mm, which moves about 0.01% of
  the nearest samples across a pixel edge.

The asserts leave room for such last-bit and PROJ-build effects.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

from rasteret_core.errors import ConfigError, GeometryError
from rasteret_core.geo.warp import default_resolution, plan_source_window, plan_target_grid, reproject_array

SRC_CRS = "EPSG:32632"
SRC_TRANSFORM = (10.0, 0.0, 600000.0, 0.0, -10.0, 5100000.0)  # about 10.3 E, 46 N
SRC_SHAPE = (300, 320)


def smooth(dtype: str, *, nodata: float | None = None, seed: int = 0, shape: tuple[int, int] = SRC_SHAPE) -> np.ndarray:
    """Sum of sinusoids (2000..4000) plus noise of 2 DN; nodata in a rectangle and a disc."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(float)
    v = 3000 + 500 * np.sin(x / 23) + 300 * np.cos(y / 31) + 200 * np.sin((x + y) / 47)
    v += np.random.default_rng(seed).normal(0, 2, shape)
    a = v.astype(dtype) if np.dtype(dtype).kind == "f" else np.round(v).astype(dtype)
    if nodata is not None:
        a[h // 3 : h // 3 + 30, w // 4 : w // 4 + 50] = nodata
        a[(x - 0.7 * w) ** 2 + (y - 0.6 * h) ** 2 < 25**2] = nodata
    return a


def rio(source: np.ndarray, dst_transform, dst_crs: str, shape, resampling: str, **kw) -> np.ndarray:
    """rasterio.warp.reproject into a fresh array (dst_nodata defaults to src_nodata, as ours)."""
    out = np.zeros((*source.shape[:-2], *shape), source.dtype)
    reproject(
        source,
        out,
        src_transform=Affine(*kw.pop("src_transform", SRC_TRANSFORM)),
        src_crs=kw.pop("src_crs", SRC_CRS),
        dst_transform=Affine(*dst_transform),
        dst_crs=dst_crs,
        resampling=getattr(Resampling, resampling),
        **kw,
    )
    return out


def ours(source: np.ndarray, dst_transform, dst_crs: str, shape, resampling: str, **kw) -> np.ndarray:
    return reproject_array(
        source,
        src_transform=kw.pop("src_transform", SRC_TRANSFORM),
        src_crs=kw.pop("src_crs", SRC_CRS),
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_shape=shape,
        resampling=resampling,
        **kw,
    )


def target_grid(dst_crs: str, *, coarser: float = 1.0, grow: float = 0.0) -> tuple[tuple[float, ...], int, int]:
    """The source footprint on an aligned grid at GDAL's suggested resolution (plus off-source pixels).

    ``coarser`` multiplies the resolution; ``grow`` widens the bounds by that share of
    their size on every side.
    """
    h, w = SRC_SHAPE
    a, _, c, _, e, f = SRC_TRANSFORM
    xs, ys = np.meshgrid(np.linspace(c, c + w * a, 21), np.linspace(f, f + h * e, 21))
    x, y = Transformer.from_crs(SRC_CRS, dst_crs, always_xy=True).transform(xs.ravel(), ys.ravel())
    res = default_resolution(SRC_TRANSFORM, SRC_CRS, dst_crs, w, h) * coarser
    dx, dy = grow * np.ptp(x), grow * np.ptp(y)
    return plan_target_grid((x.min() - dx, y.min() - dy, x.max() + dx, y.max() + dy), crs=dst_crs, resolution=res)


def data_mask(a: np.ndarray, fill: float) -> np.ndarray:
    return ~np.isnan(a) if isinstance(fill, float) and math.isnan(fill) else a != fill


# ------------------------------------------------------------- same CRS: exact


ALIGNED = {  # dst transform, shape: integer shifts and 2x / 0.5x resolutions, some past the source edges
    "shift": ((10.0, 0.0, 600000.0 + 370, 0.0, -10.0, 5100000.0 - 210), (280, 300)),
    "shift-out": ((10.0, 0.0, 600000.0 - 150, 0.0, -10.0, 5100000.0 + 90), (320, 340)),
    "2x": ((20.0, 0.0, 600000.0 - 200, 0.0, -20.0, 5100000.0 + 100), (160, 175)),
    "0.5x": ((5.0, 0.0, 600000.0 + 15, 0.0, -5.0, 5100000.0 - 35), (610, 650)),
}


@pytest.mark.parametrize("grid", ALIGNED)
@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", None), ("uint16", 0), ("float32", None), ("float32", -9999.0)])
def test_same_crs_aligned_nearest_is_exact(grid: str, dtype: str, nodata: float | None) -> None:
    src = smooth(dtype, nodata=nodata)
    transform, shape = ALIGNED[grid]
    expected = rio(src, transform, SRC_CRS, shape, "nearest", src_nodata=nodata)
    np.testing.assert_array_equal(ours(src, transform, SRC_CRS, shape, "nearest", src_nodata=nodata), expected)


@pytest.mark.parametrize("grid", ALIGNED)
@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", None), ("int16", -32768), ("float32", float("nan"))])
def test_same_crs_aligned_bilinear(grid: str, dtype: str, nodata: float | None) -> None:
    src = smooth(dtype, nodata=nodata)
    transform, shape = ALIGNED[grid]
    expected = rio(src, transform, SRC_CRS, shape, "bilinear", src_nodata=nodata)
    got = ours(src, transform, SRC_CRS, shape, "bilinear", src_nodata=nodata)
    fill = nodata if nodata is not None else 0
    np.testing.assert_array_equal(data_mask(got, fill), data_mask(expected, fill))
    both = data_mask(got, fill)
    np.testing.assert_allclose(got[both].astype(float), expected[both].astype(float), rtol=1e-6, atol=1)
    assert np.mean(got[both] == expected[both]) >= 0.999  # measured: 100%, or 99.96% for "2x" without nodata


# ---------------------------------------------------------- other CRSs: GDAL's sampling


@pytest.mark.parametrize("dst_crs", ["EPSG:32633", "EPSG:4326", "EPSG:3857", "EPSG:3035"])
@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", None), ("uint16", 0), ("float32", -9999.0)])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_reprojection_matches_rasterio(dst_crs: str, dtype: str, nodata: float | None, resampling: str) -> None:
    """Nearest: >= 99.9% identical; bilinear: within one value step; data masks >= 99.9% identical.

    Measured: 100% identical for the WGS 84 based CRSs. We run GDAL's approximate
    transformer (0.125 px) the way GDAL does, so samples land on the same pixels. For
    EPSG:3035 (ETRS89) pyproj's PROJ 9.5 and rasterio's PROJ 9.7 disagree by 0.5 mm.
    That flips about 0.01% of the nearest samples, and float bilinear values differ
    by about 1e-6 relative.
    """
    src = smooth(dtype, nodata=nodata)
    transform, width, height = target_grid(dst_crs)
    expected = rio(src, transform, dst_crs, (height, width), resampling, src_nodata=nodata)
    got = ours(src, transform, dst_crs, (height, width), resampling, src_nodata=nodata)
    fill = nodata if nodata is not None else 0
    assert np.mean(data_mask(got, fill) == data_mask(expected, fill)) >= 0.999
    assert data_mask(expected, fill).mean() > 0.5  # the grid does cover the data
    if resampling == "nearest":
        assert np.mean(got == expected) >= 0.999
    else:
        both = data_mask(got, fill) & data_mask(expected, fill)
        diff = np.abs(got[both].astype(float) - expected[both].astype(float))
        assert diff.max() <= (1 if np.dtype(dtype).kind in "iu" else 1e-5 * 4000)


@pytest.mark.parametrize("dst_crs", ["EPSG:32633", "EPSG:4326"])
def test_a_grid_mostly_off_the_source_is_warped_in_chunks_like_gdal(dst_crs: str) -> None:
    """GDAL halves a destination while less than half its source window is on the source.

    Each half gets its own kernel scale, so downsampled bilinear values depend on the
    split. Without the split (SRC_FILL_RATIO_HEURISTICS=NO) GDAL's values differ.
    """
    src = smooth("uint16", nodata=0)
    transform, width, height = target_grid(dst_crs, coarser=2.5, grow=0.6)
    kw = {"src_nodata": 0}
    expected = rio(src, transform, dst_crs, (height, width), "bilinear", **kw)
    unsplit = rio(src, transform, dst_crs, (height, width), "bilinear", SRC_FILL_RATIO_HEURISTICS="NO", **kw)
    assert (unsplit != expected).any()
    np.testing.assert_array_equal(ours(src, transform, dst_crs, (height, width), "bilinear", **kw), expected)


def test_exact_transform_differs_from_gdal_only_at_pixel_edges() -> None:
    """Exact transforms (error_threshold=0) pick other pixels than GDAL for a few percent of samples.

    Those are the samples that GDAL's approximation (up to about 0.125 px) moves
    across a pixel edge. Measured: 1.3% of the pixels, all within 0.14 px of an edge.
    """
    src = smooth("uint16")
    transform, width, height = target_grid("EPSG:4326")
    expected = rio(src, transform, "EPSG:4326", (height, width), "nearest")
    exact = ours(src, transform, "EPSG:4326", (height, width), "nearest", error_threshold=0)
    differ = exact != expected
    assert 0 < differ.mean() < 0.05
    rows, cols = np.nonzero(differ)
    lon, lat = transform[2] + (cols + 0.5) * transform[0], transform[5] + (rows + 0.5) * transform[4]
    x, y = Transformer.from_crs("EPSG:4326", SRC_CRS, always_xy=True).transform(lon, lat)
    px, py = (x - SRC_TRANSFORM[2]) / SRC_TRANSFORM[0], (y - SRC_TRANSFORM[5]) / SRC_TRANSFORM[4]
    to_edge = np.minimum(np.abs(px - np.round(px)), np.abs(py - np.round(py)))
    assert to_edge.max() < 0.2


# ------------------------------------------------------------- nodata and edges


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
@pytest.mark.parametrize(("src_nodata", "dst_nodata"), [(0, None), (0, 9), (None, 7), (None, None), (65535, 65535)])
def test_nodata_and_outside_match_rasterio(resampling: str, src_nodata: int | None, dst_nodata: int | None) -> None:
    """Fill where rasterio fills: off the source, on src_nodata, with rasterio's default dst_nodata."""
    src = smooth("uint16", nodata=src_nodata if src_nodata is not None else 0)
    transform, width, height = target_grid("EPSG:32633")
    kw = {"src_nodata": src_nodata, "dst_nodata": dst_nodata}
    expected = rio(src, transform, "EPSG:32633", (height, width), resampling, **kw)
    np.testing.assert_array_equal(ours(src, transform, "EPSG:32633", (height, width), resampling, **kw), expected)


def test_bilinear_keeps_values_off_dst_nodata_like_gdal() -> None:
    """GDAL moves an integer bilinear result that equals dst_nodata one step (2999 -> 2998)."""
    src = smooth("uint16")
    transform, width, height = target_grid("EPSG:3857")
    expected = rio(src, transform, "EPSG:3857", (height, width), "bilinear", dst_nodata=2999)
    got = ours(src, transform, "EPSG:3857", (height, width), "bilinear", dst_nodata=2999)
    np.testing.assert_array_equal(got, expected)
    assert (got == 2999).sum() == (expected == 2999).sum() > 0  # only the fill


def test_bands_match_rasterio() -> None:
    src = np.stack([smooth("float32", nodata=-9999.0, seed=s) for s in range(3)])
    transform, width, height = target_grid("EPSG:3857")
    for resampling in ("nearest", "bilinear"):
        expected = rio(src, transform, "EPSG:3857", (height, width), resampling, src_nodata=-9999.0)
        got = ours(src, transform, "EPSG:3857", (height, width), resampling, src_nodata=-9999.0)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dst_crs", ["EPSG:32633", "EPSG:4326", "EPSG:3857"])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_the_planned_source_window_reads_like_the_whole_raster(dst_crs: str, resampling: str) -> None:
    """A destination over the middle of the source, read from the planned window only."""
    src = smooth("uint16", nodata=0)
    a, _, c, _, e, f = SRC_TRANSFORM
    xs, ys = np.meshgrid(c + a * np.array([90.0, 210.0]), f + e * np.array([80.0, 200.0]))
    x, y = Transformer.from_crs(SRC_CRS, dst_crs, always_xy=True).transform(xs.ravel(), ys.ravel())
    res = default_resolution(SRC_TRANSFORM, SRC_CRS, dst_crs, *SRC_SHAPE[::-1])
    transform, width, height = plan_target_grid((x.min(), y.min(), x.max(), y.max()), crs=dst_crs, resolution=res)
    grid = {"dst_transform": transform, "dst_crs": dst_crs, "dst_shape": (height, width)}
    row0, col0, h, w = plan_source_window(src_transform=SRC_TRANSFORM, src_crs=SRC_CRS, resampling=resampling, **grid)
    assert row0 > 0 and row0 + h < SRC_SHAPE[0] and col0 > 0 and col0 + w < SRC_SHAPE[1]
    window = src[row0 : row0 + h, col0 : col0 + w]
    window_transform = (a, 0.0, c + col0 * a, 0.0, e, f + row0 * e)
    expected = rio(src, transform, dst_crs, (height, width), resampling, src_nodata=0)
    got = ours(window, transform, dst_crs, (height, width), resampling, src_nodata=0, src_transform=window_transform)
    np.testing.assert_array_equal(got, expected)
    # Control: a window cut inside the footprint loses pixels.
    cut = ours(
        window[6:-6, 6:-6],
        transform,
        dst_crs,
        (height, width),
        resampling,
        src_nodata=0,
        src_transform=(a, 0.0, c + (col0 + 6) * a, 0.0, e, f + (row0 + 6) * e),
    )
    assert (cut != expected).any()


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_a_window_clamped_at_the_rasters_start_reads_like_the_whole_raster(resampling: str) -> None:
    """A 2x coarser destination hanging off the source's top-left corner: the clamped
    planned window must leave GDAL's (wide) kernel the same scale as the whole raster."""
    src = smooth("uint16", nodata=0)
    a, _, c, _, e, f = SRC_TRANSFORM
    bounds = (c - 40 * a, f + 150 * e, c + 120 * a, f - 30 * e)
    transform, width, height = plan_target_grid(bounds, crs=SRC_CRS, resolution=2 * a)
    grid = {"dst_transform": transform, "dst_crs": SRC_CRS, "dst_shape": (height, width)}
    row0, col0, h, w = plan_source_window(src_transform=SRC_TRANSFORM, src_crs=SRC_CRS, resampling=resampling, **grid)
    assert row0 < 0 and col0 < 0
    r0, c0 = max(row0, 0), max(col0, 0)
    window = src[r0 : row0 + h, c0 : col0 + w]
    window_transform = (a, 0.0, c + c0 * a, 0.0, e, f + r0 * e)
    expected = rio(src, transform, SRC_CRS, (height, width), resampling, src_nodata=0)
    got = ours(window, transform, SRC_CRS, (height, width), resampling, src_nodata=0, src_transform=window_transform)
    np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------- errors


def test_a_grid_that_does_not_transform_is_an_error() -> None:
    off_globe = "+proj=ortho +lat_0=45 +lon_0=9 +ellps=WGS84"
    with pytest.raises(GeometryError, match="does not transform"):
        ours(smooth("uint16"), (1000.0, 0.0, 7.0e6, 0.0, -1000.0, 1.0e6), off_globe, (50, 50), "nearest")


def test_pixels_that_fail_alone_get_the_fill() -> None:
    """A grid partly off the globe: those pixels are fill, like GDAL's."""
    grid = ((1000.0, 0.0, 6.3e6, 0.0, -1000.0, 50000.0), (100, 100))
    ortho = "+proj=ortho +lat_0=45 +lon_0=9 +ellps=WGS84"
    got = ours(smooth("uint16"), *grid[:1], ortho, grid[1], "nearest", src_nodata=1)
    np.testing.assert_array_equal(got, rio(smooth("uint16"), grid[0], ortho, grid[1], "nearest", src_nodata=1))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dst_transform": (math.nan, 0, 0, 0, -1, 0)}, GeometryError),
        ({"dst_transform": (1, 0, 0, 0, 0, 0)}, GeometryError),
        ({"src_transform": (1, 2, 3)}, GeometryError),
        ({"dst_crs": "EPSG:999999"}, GeometryError),
        ({"dst_crs": None}, GeometryError),
        ({"resampling": "cubic"}, ConfigError),
        ({"dst_shape": (0, 10)}, ConfigError),
        ({"src_nodata": -1}, ConfigError),
        ({"dst_nodata": 0.5}, ConfigError),
        ({"error_threshold": -1}, ConfigError),
    ],
)
def test_bad_arguments_raise_rasteret_errors(kwargs: dict, error: type[Exception]) -> None:
    args = {
        "src_transform": SRC_TRANSFORM,
        "src_crs": SRC_CRS,
        "dst_transform": SRC_TRANSFORM,
        "dst_crs": SRC_CRS,
        "dst_shape": (10, 10),
        **kwargs,
    }
    with pytest.raises(error):
        reproject_array(smooth("uint16"), **args)


def test_unsupported_dtype_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dtype"):
        reproject_array(
            np.zeros((4, 4), bool),
            src_transform=SRC_TRANSFORM,
            src_crs=SRC_CRS,
            dst_transform=SRC_TRANSFORM,
            dst_crs=SRC_CRS,
            dst_shape=(4, 4),
        )


# -------------------------------------------------------------- grid planning


@pytest.mark.parametrize(
    ("src_crs", "transform", "dst_crs"),
    [
        (SRC_CRS, SRC_TRANSFORM, "EPSG:4326"),
        (SRC_CRS, SRC_TRANSFORM, "EPSG:3857"),
        (SRC_CRS, SRC_TRANSFORM, "EPSG:32633"),
        (SRC_CRS, SRC_TRANSFORM, SRC_CRS),
        ("EPSG:4326", (0.001, 0.0, 10.0, 0.0, -0.001, 50.0), SRC_CRS),
        ("EPSG:3413", (100.0, 0.0, -500000.0, 0.0, -100.0, 500000.0), "EPSG:4326"),
    ],
)
def test_default_resolution_matches_calculate_default_transform(src_crs: str, transform, dst_crs: str) -> None:
    width, height = 1000, 700
    a, _, c, _, e, f = transform
    expected, _, _ = calculate_default_transform(src_crs, dst_crs, width, height, c, f + height * e, c + width * a, f)
    got = default_resolution(transform, src_crs, dst_crs, width, height)
    # Measured: equal to 1e-15, except 0.08% off rasterio's y size around the pole.
    assert got == pytest.approx(expected.a, rel=0.01)
    assert got == pytest.approx(-expected.e, rel=0.01)


def test_plan_target_grid_examples() -> None:
    assert plan_target_grid((0, 0, 100, 50), crs=SRC_CRS, resolution=10) == ((10.0, 0.0, 0.0, 0.0, -10.0, 50.0), 10, 5)
    assert plan_target_grid((1, 1, 99, 49), crs=SRC_CRS, resolution=10) == ((10.0, 0.0, 0.0, 0.0, -10.0, 50.0), 10, 5)
    assert plan_target_grid((5, 5, 5, 5), crs=SRC_CRS, resolution=10) == ((10.0, 0.0, 0.0, 0.0, -10.0, 10.0), 1, 1)
    assert plan_target_grid((-0.3, 0.1, 0.3, 0.2), crs="EPSG:4326", resolution=(0.25, 0.1))[1:] == (4, 1)
    with pytest.raises(GeometryError, match="antimeridian"):
        plan_target_grid((179, 0, -179, 1), crs="EPSG:4326", resolution=0.1)
    with pytest.raises(ConfigError):
        plan_target_grid((0, 0, 1, 1), crs=SRC_CRS, resolution=0)


coordinate = st.floats(-2e7, 2e7, allow_nan=False)
resolution = st.floats(0.01, 1000.0)


@given(coordinate, coordinate, st.floats(0, 1e5), st.floats(0, 1e5), resolution, resolution)
def test_planned_grid_covers_the_bounds_minimally_on_multiples_of_the_resolution(
    x: float, y: float, dx: float, dy: float, xres: float, yres: float
) -> None:
    bounds = (x, y, x + dx, y + dy)
    (a, b, x0, d, e, y0), width, height = plan_target_grid(bounds, crs=SRC_CRS, resolution=(xres, yres))
    assert (a, b, d, e) == (xres, 0.0, 0.0, -yres)
    for origin, res in ((x0, xres), (y0, yres)):  # aligned: the origin is a whole number of pixels
        assert abs(origin / res - round(origin / res)) < 1e-6
    tol_x, tol_y = 1e-9 * xres + 1e-15 * abs(x), 1e-9 * yres + 1e-15 * abs(y)
    x1, y1 = x0 + width * xres, y0 - height * yres
    assert x0 <= bounds[0] + tol_x and x1 >= bounds[2] - tol_x  # covers
    assert y1 <= bounds[1] + tol_y and y0 >= bounds[3] - tol_y
    assert width == 1 or (x0 + xres > bounds[0] - tol_x and x1 - xres < bounds[2] + tol_x)  # minimal
    assert height == 1 or (y1 + yres > bounds[1] - tol_y and y0 - yres < bounds[3] + tol_y)


@given(coordinate, coordinate, coordinate, coordinate, resolution)
def test_planned_grids_of_one_resolution_share_pixel_edges(
    x1: float, y1: float, x2: float, y2: float, res: float
) -> None:
    (_, _, ax, _, _, ay), _, _ = plan_target_grid((x1, y1, x1 + 1, y1 + 1), crs=SRC_CRS, resolution=res)
    (_, _, bx, _, _, by), _, _ = plan_target_grid((x2, y2, x2 + 1, y2 + 1), crs=SRC_CRS, resolution=res)
    assert abs((ax - bx) / res - round((ax - bx) / res)) < 1e-6
    assert abs((ay - by) / res - round((ay - by) / res)) < 1e-6

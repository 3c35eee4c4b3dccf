"""rasterize_mask against rasterio.features.geometry_mask (GDAL's rasterizer), pixel for pixel.

Vertices are drawn on pixel centres, pixel edges and quarter positions in pixel space,
then mapped through real-world transforms (10 m UTM with big offsets, 0.0001 degree
lon/lat, next to the antimeridian, rotated, sheared, south-up), so the CRS coordinates
carry the rounding that decides the exact-edge ties.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rasterio.features import geometry_mask

from rasteret_core.errors import GeometryError
from rasteret_core.geo.rasterize import rasterize_mask

TRANSFORMS = {
    "unit": (1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
    "utm-10m": (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0),
    "utm-30m": (30.0, 0.0, 399960.0, 0.0, -30.0, 4200000.0),
    "lonlat-0.0001": (0.0001, 0.0, 12.3456, 0.0, -0.0001, 45.6789),
    "antimeridian": (0.0001, 0.0, 179.995, 0.0, -0.0001, -16.79),
    "rotated": (8.0, 6.0, 500000.0, 6.0, -8.0, 5000000.0),
    "sheared": (10.0, 3.0, 500000.0, 0.0, -10.0, 5000000.0),
    "south-up": (10.0, 0.0, 500000.0, 0.0, 10.0, 4990000.0),
}


def expected(geom: shapely.Geometry, transform: tuple[float, ...], height: int, width: int, all_touched: bool) -> np.ndarray:
    return geometry_mask([geom], out_shape=(height, width), transform=Affine(*transform), all_touched=all_touched,
                         invert=True)


def assert_same_as_rasterio(geom: shapely.Geometry, transform: tuple[float, ...], height: int, width: int) -> None:
    for all_touched in (False, True):
        want = expected(geom, transform, height, width, all_touched)
        got = rasterize_mask(geom, transform, height, width, all_touched)
        diff = np.argwhere(want != got)
        assert not len(diff), f"all_touched={all_touched}: (row, col) {diff[:5].tolist()} differ for {geom.wkt}"


def to_crs(transform: tuple[float, ...], pixels: shapely.Geometry) -> shapely.Geometry:
    """Map a geometry in window pixel space (col, row) to the transform's CRS."""
    a, b, c, d, e, f = transform
    return shapely.transform(pixels, lambda p: np.column_stack([a * p[:, 0] + b * p[:, 1] + c,
                                                                d * p[:, 0] + e * p[:, 1] + f]))


# -- strategies, in pixel space ----------------------------------------------------------

SIZE = 16


@st.composite
def coord(draw: st.DrawFn) -> float:
    """A pixel coordinate on a centre (.5), an edge (integer) or a quarter, a little beyond the window."""
    step = draw(st.sampled_from([1.0, 0.5, 0.25]))
    return draw(st.integers(int(-2 / step), int((SIZE + 2) / step))) * step


@st.composite
def boxes(draw: st.DrawFn) -> shapely.Polygon:
    x0, x1 = sorted((draw(coord()), draw(coord())))
    y0, y1 = sorted((draw(coord()), draw(coord())))
    assume(x0 < x1 and y0 < y1)
    return shapely.box(x0, y0, x1, y1, ccw=draw(st.booleans()))


@st.composite
def triangles(draw: st.DrawFn) -> shapely.Polygon:
    poly = shapely.Polygon([(draw(coord()), draw(coord())) for _ in range(3)])
    assume(poly.area > 0)
    return poly


@st.composite
def stars(draw: st.DrawFn) -> shapely.Polygon:
    """A simple polygon of 4 to 9 vertices (sorted by angle), with horizontal and vertical runs likely."""
    points = np.array([(draw(coord()), draw(coord())) for _ in range(draw(st.integers(4, 9)))])
    centre = points.mean(axis=0)
    order = np.argsort(np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]))
    poly = shapely.Polygon(points[order])
    assume(poly.is_valid and poly.area > 0)
    return poly


@st.composite
def with_holes(draw: st.DrawFn) -> shapely.Polygon:
    outer = draw(st.one_of(boxes(), stars()))
    holes = [draw(st.one_of(boxes(), triangles())) for _ in range(draw(st.integers(1, 2)))]
    poly = shapely.Polygon(outer.exterior, [h.exterior for h in holes])
    assume(poly.is_valid)
    return poly


@st.composite
def multipolygons(draw: st.DrawFn) -> shapely.MultiPolygon:
    """Two or three parts; they may touch or overlap (GDAL burns each part on its own)."""
    return shapely.MultiPolygon(draw(st.lists(st.one_of(boxes(), triangles(), stars()), min_size=2, max_size=3)))


shapes = st.one_of(boxes(), triangles(), stars(), with_holes(), multipolygons())


@settings(max_examples=400, deadline=None)
@given(shapes, st.sampled_from(sorted(TRANSFORMS)), st.integers(1, SIZE), st.integers(1, SIZE))
def test_mask_equals_gdal_on_exact_pixel_positions(pixels, transform_name, height, width):
    transform = TRANSFORMS[transform_name]
    assert_same_as_rasterio(to_crs(transform, pixels), transform, height, width)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(coord(), coord()), min_size=3, max_size=6), st.booleans(),
       st.lists(st.tuples(coord(), coord()), max_size=3), st.sampled_from(sorted(TRANSFORMS)))
def test_lines_and_points_in_a_collection_equal_gdal(line, ring, points, transform_name):
    # GDAL collects a LineString's vertices reversed and a LinearRing's clockwise; Bresenham sees the order.
    transform = TRANSFORMS[transform_name]
    path = shapely.LinearRing(line) if ring else shapely.LineString(line)
    pixels = shapely.GeometryCollection([path, *map(shapely.Point, points)])
    assert_same_as_rasterio(to_crs(transform, pixels), transform, SIZE, SIZE)


# -- cases seen in the field ---------------------------------------------------------------


def test_bottom_edge_on_pixel_centres_keeps_its_row():
    # A 10 m UTM grid from y = 5,000,000: row 79's pixel centres lie at y = 4,999,205.
    transform = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
    aoi = shapely.box(500003.0, 4999205.0, 500500.0, 4999997.0)
    mask = rasterize_mask(aoi, transform, 100, 60)
    assert mask[79, 1:50].all() and not mask[80].any()
    assert_same_as_rasterio(aoi, transform, 100, 60)


def test_triangle_by_the_antimeridian():
    transform = TRANSFORMS["antimeridian"]
    tri = shapely.Polygon([(179.9965, -16.79375), (179.99845, -16.7908), (179.99735, -16.79385)])
    assert rasterize_mask(tri, transform, 40, 40)[38, 23]  # a centre on the edge, kept as GDAL keeps it
    assert_same_as_rasterio(tri, transform, 40, 40)


def test_hole_bottom_edge_on_pixel_centres_is_burned():
    # GDAL makes every ring clockwise, so a hole's bottom edge on a row of centres burns too.
    transform = TRANSFORMS["utm-10m"]
    pixels = shapely.Polygon(shapely.box(0, 0, 12, 12).exterior, [shapely.box(3, 3.5, 9, 8.5).exterior])
    aoi = to_crs(transform, pixels)
    mask = rasterize_mask(aoi, transform, 12, 12)
    assert mask[8, 3:9].all() and not mask[4:8, 3:9].any()
    assert_same_as_rasterio(aoi, transform, 12, 12)


def test_line_past_the_top_right_corner_spills_as_gdal_does():
    # GDAL's all_touched walk checks only the row; a column past the right edge lands on the next row.
    transform = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    line = shapely.LineString([(5, -2), (7, 4)])
    mask = rasterize_mask(line, transform, 3, 5, all_touched=True)
    assert np.argwhere(mask).tolist() == [[1, 0]]
    assert_same_as_rasterio(line, transform, 3, 5)


def test_large_window_equals_gdal():
    transform = TRANSFORMS["utm-10m"]
    rng = np.random.default_rng(7)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 200))
    radius = rng.uniform(600, 1000, 200)
    pixels = shapely.Polygon(np.column_stack([1500 + radius * np.cos(angles), 1400 + radius * np.sin(angles)]))
    assert_same_as_rasterio(to_crs(transform, pixels), transform, 2900, 3000)


def test_edges():
    transform = TRANSFORMS["utm-10m"]
    box = to_crs(transform, shapely.box(1, 1, 3, 3))
    assert rasterize_mask(box, transform, 0, 5).shape == (0, 5)
    assert not rasterize_mask(shapely.Polygon(), transform, 4, 4).any()
    assert rasterize_mask(None, transform, 2, 3).all()
    with pytest.raises(GeometryError):
        rasterize_mask(box, (10.0, 10.0, 0.0, 10.0, 10.0, 0.0), 4, 4)

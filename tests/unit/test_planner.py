"""Pure planning: coalescing, windows, tiles."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given
from hypothesis import strategies as st

from rasteret_core.geo.geometry import CRS84
from rasteret_core.geo.rasterize import rasterize_mask
from rasteret_core.read.planner import ChunkRequest, Window, coalesce_ranges, plan_read, plan_window
from rasteret_core.tiff.header import ImageInfo, TiffHeader

ranges_st = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(1, 2_000)).map(lambda t: (t[0], t[0] + t[1])), min_size=1, max_size=60
)


@given(ranges_st, st.integers(0, 3_000), st.integers(1, 20_000))
def test_coalesced_ranges_cover_every_input_byte_once(ranges, gap, max_bytes):
    merged = coalesce_ranges(ranges, gap=gap, max_bytes=max_bytes)
    listed = sorted(i for _, _, members in merged for i in members)
    assert listed == list(range(len(ranges)))  # every input in exactly one merged range
    for start, end, members in merged:
        for i in members:
            assert start <= ranges[i][0] and ranges[i][1] <= end
        assert end - start <= max(max_bytes, *(ranges[i][1] - ranges[i][0] for i in members))
    starts = [m[0] for m in merged]
    assert starts == sorted(starts)


def test_coalesce_merges_only_small_gaps():
    merged = coalesce_ranges([(0, 10), (15, 20), (100, 110)], gap=5, max_bytes=1_000)
    assert [(s, e) for s, e, _ in merged] == [(0, 20), (100, 110)]


def _image(width=1000, height=700, tile=256, planar=1, spp=1) -> ImageInfo:
    across, down = -(-width // tile), -(-height // tile)
    n = across * down * (spp if planar == 2 else 1)
    counts = np.full(n, 100, dtype=np.int64)
    counts[1] = 0  # a sparse tile
    return ImageInfo(
        width=width, height=height, tile_width=tile, tile_height=tile, tiled=True, samples_per_pixel=spp,
        bits_per_sample=16, sample_format=1, planar_config=planar, compression=8, predictor=2, photometric=1,
        subfile_type=0, tile_offsets=np.arange(n, dtype=np.int64) * 100 + 1000, tile_byte_counts=counts,
    )


def _header(image: ImageInfo) -> TiffHeader:
    return TiffHeader(uri="mem://x.tif", byte_order="<", bigtiff=False, images=(image,), crs="EPSG:32632",
                      transform=(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0), nodata=0.0)


@given(st.floats(-500, 1500), st.floats(-500, 1000), st.floats(1, 900), st.floats(1, 900))
def test_plan_tiles_cover_the_window_exactly_once(col, row, w, h):
    image = _image()
    header = _header(image)
    a, _, c, _, e, f = header.transform
    geom = shapely.box(c + col * a, f + (row + h) * e, c + (col + w) * a, f + row * e)
    req = ChunkRequest(key=0, uri="mem://x.tif", header=header, geometry=geom, geometry_crs=header_crs())
    plan = plan_read([req])
    if not plan.chunks:
        return
    chunk = plan.chunks[0]
    win = chunk.window
    covered = np.zeros((image.height, image.width), dtype=int)
    for t in chunk.tiles:
        r, cc = divmod(t, image.tiles_across)
        covered[r * 256 : (r + 1) * 256, cc * 256 : (cc + 1) * 256] += 1
    sub = covered[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width]
    assert (sub == 1).all()
    assert len(set(chunk.tiles)) == len(chunk.tiles)
    # merged requests read every non-sparse tile touched, once
    parts = [p.tile for r in plan.requests for p in r.parts]
    assert sorted(parts) == sorted(t for t in chunk.tiles if image.tile_byte_counts[t] > 0)


def header_crs():
    from pyproj import CRS

    return CRS.from_epsg(32632)


def test_window_is_clipped_to_the_raster():
    t = (10.0, 0.0, 0.0, 0.0, -10.0, 100.0)
    assert plan_window(shapely.box(-50, 50, 35, 150), t, 10, 10) == Window(0, 0, 5, 4)
    assert plan_window(shapely.box(500, 500, 600, 600), t, 10, 10).empty


def test_planar_separate_sample_picks_its_plane():
    image = _image(planar=2, spp=3)
    header = _header(image)
    geom = shapely.box(500_000, 4_999_000, 500_100, 5_000_000)
    plan = plan_read([ChunkRequest(key=0, uri="m", header=header, geometry=geom, geometry_crs=header_crs(), sample=2)])
    per_plane = image.tiles_across * image.tiles_down
    assert all(t >= 2 * per_plane for t in plan.chunks[0].tiles)


def test_plan_summary_counts_before_io():
    image = _image()
    header = _header(image)
    geom = shapely.box(500_000, 4_995_000, 505_000, 5_000_000)  # 500 x 500 px: 4 tiles, one sparse
    plan = plan_read([ChunkRequest(key=0, uri="m", header=header, geometry=geom, geometry_crs=header_crs())])
    s = plan.summary()
    assert s["tiles"] == 4 and s["requests"] >= 1 and s["tile_bytes"] == 300


def test_mask_uses_pixel_centres_and_all_touched():
    t = (1.0, 0.0, 0.0, 0.0, -1.0, 10.0)
    tri = shapely.Polygon([(0.1, 9.9), (4.9, 9.9), (0.1, 5.1)])
    inside = rasterize_mask(tri, t, 10, 10)
    touched = rasterize_mask(tri, t, 10, 10, all_touched=True)
    assert inside[0, 0] and not inside[4, 4]
    assert (touched >= inside).all() and touched.sum() > inside.sum()
    assert touched[0, 4] and not touched[5, 0]


def test_crs84_constant_is_lon_lat():
    assert CRS84.axis_info[0].direction == "east"


def test_a_point_reads_the_pixel_that_contains_it():
    t = (10.0, 0.0, 0.0, 0.0, -10.0, 100.0)
    assert plan_window(shapely.Point(25.0, 75.0), t, 10, 10) == Window(2, 2, 1, 1)
    assert plan_window(shapely.Point(20.0, 80.0), t, 10, 10) == Window(2, 2, 1, 1)  # on a corner: down-right
    assert plan_window(shapely.Point(-1.0, 75.0), t, 10, 10).empty
    assert rasterize_mask(shapely.Point(25.0, 75.0), (10.0, 0.0, 20.0, 0.0, -10.0, 80.0), 1, 1).all()

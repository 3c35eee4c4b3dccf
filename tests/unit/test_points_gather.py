"""Point sampling, pure parts and the gather: pixels as rasterio picks them, points grouped by tile,
record picks per match mode, inputs normalised once; the fetcher's gather against rasterio's ``sample``
on local files (nodata, an internal mask with its own tiling, alpha)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS
from rasterio.transform import from_origin, rowcol

import rasteret_core as rc
from rasteret_core.errors import GeometryError, PlanningError, SchemaError
from rasteret_core.geo.geometry import CRS84
from rasteret_core.read.fetch import read_plan
from rasteret_core.read.planner import ChunkRequest, plan_read, point_pixels, select_points
from rasteret_core.read.points import pick_records, to_points
from rasteret_core.tiff.header import ImageInfo, TiffHeader
from rasteret_core.tiff.parser import read_headers

UTM = CRS.from_epsg(32632)
TRANSFORMS = {
    "utm-10m": (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0),
    "utm-30m": (30.0, 0.0, 399960.0, 0.0, -30.0, 4200000.0),
    "lonlat": (0.0001, 0.0, 12.3456, 0.0, -0.0001, 45.6789),
    "rotated": (8.0, 6.0, 500000.0, 6.0, -8.0, 5000000.0),
    "south-up": (10.0, 0.0, 500000.0, 0.0, 10.0, 4990000.0),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_point_pixels_equal_rasterio_rowcol_on_edges_and_inside(name):
    t = TRANSFORMS[name]
    rng = np.random.default_rng(1)
    # pixel corners, edge midpoints, tile edges (every 256 px) and random positions, in pixel space
    cols = np.concatenate([np.arange(0, 1025, 0.5), [255.0, 256.0, 511.999999, 512.0], rng.uniform(-5, 1030, 3000)])
    rows = np.concatenate([np.arange(0, 1025, 0.5)[::-1], [256.0, 255.0, 512.0, 511.999999], rng.uniform(-5, 1030, 3000)])
    a, b, c, d, e, f = t
    xs, ys = a * cols + b * rows + c, d * cols + e * rows + f
    want_r, want_c = rowcol(Affine(*t), xs, ys)
    got_r, got_c = point_pixels(t, xs, ys)
    np.testing.assert_array_equal(got_r, want_r)
    np.testing.assert_array_equal(got_c, want_c)


def test_non_finite_points_fall_off_every_raster():
    r, c = point_pixels(TRANSFORMS["utm-10m"], np.array([np.inf, 500005.0]), np.array([4999995.0, np.nan]))
    assert r.tolist() == [-1, -1] and c.tolist() == [-1, -1]


def _image(width=1000, height=700, tile=256, planar=1, spp=1, subfile=0, sparse=(1,)) -> ImageInfo:
    across, down = -(-width // tile), -(-height // tile)
    n = across * down * (spp if planar == 2 else 1)
    counts = np.full(n, 100, dtype=np.int64)
    counts[list(sparse)] = 0
    return ImageInfo(
        width=width, height=height, tile_width=tile, tile_height=tile, tiled=True, samples_per_pixel=spp,
        bits_per_sample=16 if subfile == 0 else 8, sample_format=1, planar_config=planar, compression=8,
        predictor=1, photometric=1 if subfile == 0 else 4, subfile_type=subfile,
        tile_offsets=np.arange(n, dtype=np.int64) * 100 + 1000 + subfile * 100_000, tile_byte_counts=counts,
    )


def _header(*images: ImageInfo, nodata: float | None = 0.0) -> TiffHeader:
    return TiffHeader(uri="mem://x.tif", byte_order="<", bigtiff=False, images=images, crs="EPSG:32632",
                      transform=TRANSFORMS["utm-10m"], nodata=nodata)


def _request(header: TiffHeader, cols: np.ndarray, rows: np.ndarray, *, key=0, sample=0) -> ChunkRequest:
    a, _, c, _, e, f = header.transform
    return ChunkRequest(key=key, uri="mem://x.tif", header=header, geometry_crs=UTM, sample=sample,
                        points=(c + a * cols, f + e * rows))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-40, 1040), st.floats(-40, 740)), min_size=1, max_size=300),
       st.sampled_from([(1, 1, 0), (2, 3, 2), (1, 3, 1)]))
def test_a_point_chunk_reads_each_touched_tile_once_and_serves_each_point_once(pts, layout):
    planar, spp, sample = layout
    image = _image(planar=planar, spp=spp)
    header = _header(image)
    cols = np.array([p[0] for p in pts])
    rows = np.array([p[1] for p in pts])
    req = _request(header, cols, rows, sample=sample)
    plan = plan_read([req])
    r, c = (np.asarray(v) for v in rowcol(Affine(*header.transform), *req.points))
    on = (r >= 0) & (r < image.height) & (c >= 0) & (c < image.width)
    if not on.any():
        assert plan.chunks == ()
        return
    (chunk,) = plan.chunks
    pts_set = chunk.points
    assert pts_set is not None and pts_set.index.tolist() == np.flatnonzero(on).tolist()
    np.testing.assert_array_equal(pts_set.rows, r[on])
    np.testing.assert_array_equal(pts_set.cols, c[on])
    plane = sample * image.tiles_across * image.tiles_down if planar == 2 else 0
    want_tiles = sorted({int(rr // 256 * image.tiles_across + cc // 256 + plane) for rr, cc in zip(r[on], c[on], strict=True)})
    assert list(chunk.tiles) == want_tiles  # each touched tile once, no other
    served = np.sort(np.concatenate([pts_set.by_tile[(0, t)] for t in chunk.tiles]))
    np.testing.assert_array_equal(served, np.arange(len(pts_set)))  # every slot served by exactly one tile
    for t in chunk.tiles:
        slots = pts_set.by_tile[(0, t)]
        local = t - plane
        assert ((pts_set.rows[slots] // 256) * image.tiles_across + pts_set.cols[slots] // 256 == local).all()
    parts = sorted(p.tile for req in plan.requests for p in req.parts)
    assert parts == [t for t in want_tiles if image.tile_byte_counts[t] > 0]  # sparse tiles are not fetched
    assert plan.summary()["tiles"] == len(want_tiles)
    w = chunk.window
    assert (w.row_off, w.col_off) == (r[on].min(), c[on].min())
    assert (w.height, w.width) == (r[on].max() - r[on].min() + 1, c[on].max() - c[on].min() + 1)


def test_an_internal_mask_with_its_own_tiling_groups_the_points_on_its_tiles():
    data = _image(tile=256)
    mask = _image(tile=128, subfile=4, sparse=())
    header = _header(data, mask, nodata=None)
    cols, rows = np.array([10.0, 130.0, 300.0, 999.0]), np.array([10.0, 10.0, 600.0, 699.0])
    (chunk,) = plan_read([_request(header, cols, rows)]).chunks
    assert chunk.mask is not None and chunk.mask.kind == "ifd" and chunk.mask.ifd == 1
    assert chunk.tiles == (0, 9, 11) and chunk.mask.tiles == (0, 1, 34, 47)
    assert [chunk.points.by_tile[(1, t)].tolist() for t in chunk.mask.tiles] == [[0], [1], [2], [3]]
    assert [chunk.points.by_tile[(0, t)].tolist() for t in chunk.tiles] == [[0, 1], [2], [3]]


def test_select_points_keeps_the_chosen_slots_and_plans_only_their_tiles():
    header = _header(_image())
    cols, rows = np.array([10.0, 300.0, 600.0, 900.0]), np.array([10.0, 10.0, 600.0, 10.0])
    plan = plan_read([_request(header, cols, rows, key="a"), _request(header, cols[:2], rows[:2], key="b")])
    kept = select_points(plan, {"a": np.array([False, True, True, False])})
    (chunk,) = kept.chunks
    assert chunk.key == "a" and chunk.points.index.tolist() == [1, 2] and chunk.tiles == (1, 10)
    assert [p.tile for r in kept.requests for p in r.parts] == [10]  # tile 1 is sparse
    assert select_points(plan, {"a": np.array([], dtype=np.int64)}).chunks == ()


def test_a_request_gives_a_geometry_or_points():
    header = _header(_image())
    with pytest.raises(PlanningError, match="geometry or points"):
        ChunkRequest(key=0, uri="m", header=header, geometry_crs=UTM)
    with pytest.raises(PlanningError, match="geometry or points"):
        ChunkRequest(key=0, uri="m", header=header, geometry_crs=UTM, geometry=shapely.Point(1, 2),
                     points=(np.zeros(1), np.zeros(1)))


# ---------------------------------------------------------------- the gather, against rasterio on local files

W, H = 203, 157
TRANSFORM = from_origin(600000.0, 5000000.0, 10.0, 10.0)


def _validity() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.where((xx + 0.6 * yy > 40) & ((xx - 120) ** 2 + (yy - 70) ** 2 > 18**2), 255, 0).astype("uint8")


FILES = {
    # name: (bands, dtype, creation options, mask kind)
    "nodata": (1, "uint16", dict(compress="deflate", predictor=2, tiled=True, blockxsize=32, blockysize=32,
                                 nodata=0), "nodata"),
    "mask": (1, "uint16", dict(compress="lzw", tiled=True, blockxsize=64, blockysize=32), "mask"),
    "mask_strips": (2, "uint8", dict(compress="deflate", interleave="band"), "mask"),
    "rgba": (4, "uint8", dict(photometric="RGB", alpha="YES", tiled=True, blockxsize=32, blockysize=32,
                              compress="zstd"), "alpha"),
}


def _write(folder: Path, name: str) -> Path:
    count, dtype, opts, kind = FILES[name]
    rng = np.random.default_rng(len(name))
    data = rng.integers(1, 250, (count, H, W)).astype(dtype)
    valid = _validity()
    if kind == "nodata":
        data[0][valid == 0] = 0
    if kind == "alpha":
        data[-1] = valid
    path = folder / f"{name}.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=count, dtype=dtype, crs="EPSG:32633",
                           transform=TRANSFORM, **opts) as dst:
            dst.write(data)
            if kind == "mask":
                dst.write_mask(valid)
    return path


@pytest.fixture(scope="module")
def local_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("points")
    return {name: _write(folder, name) for name in FILES}


def _edge_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points, points on pixel and tile corners and edges, and points just off the raster."""
    a, _, c, _, e, f = TRANSFORM[:6]
    cols = np.concatenate([rng.uniform(-3, W + 3, n), rng.integers(0, W + 1, n // 4).astype(float),
                           np.arange(0, W + 1, 32, dtype=float)])
    rows = np.concatenate([rng.uniform(-3, H + 3, n), rng.integers(0, H + 1, n // 4).astype(float),
                           np.minimum(np.arange(0, W + 1, 32, dtype=float), H)])
    return c + a * cols, f + e * rows


@pytest.mark.parametrize("name", FILES)
def test_gathered_values_and_validity_equal_rasterio_sample(local_files, name):
    path = str(local_files[name])
    headers, _ = read_headers([path], rc.Settings())
    header = headers[path][0]
    xs, ys = _edge_points(np.random.default_rng(5), 1500)
    utm33 = CRS.from_epsg(32633)
    with rasterio.open(path) as src:
        for band in range(1, src.count + 1):
            req = ChunkRequest(key=band, uri=path, header=header, geometry_crs=utm33, sample=band - 1, points=(xs, ys))
            plan = plan_read([req])
            (values,), stats = read_plan(plan, rc.Settings(), masked=True)
            (chunk,) = plan.chunks
            slots = chunk.points.index
            r, c = rowcol(src.transform, xs, ys)
            assert slots.tolist() == np.flatnonzero((r >= 0) & (r < H) & (c >= 0) & (c < W)).tolist()
            want = np.ma.array(list(src.sample(list(zip(xs[slots], ys[slots], strict=True)), indexes=band, masked=True)))
            np.testing.assert_array_equal(np.ma.getmaskarray(values), np.ma.getmaskarray(want)[:, 0])
            ok = ~np.ma.getmaskarray(values)
            np.testing.assert_array_equal(values.data[ok], want.data[:, 0][ok])
            assert (values.data[~ok] == chunk.fill).all()  # invalid pixels hold the fill, as get_numpy does
            touched = {(t,) for t in chunk.tiles} | ({(t, 1) for t in chunk.mask.tiles} if chunk.mask and
                                                     chunk.mask.ifd not in (None, 0) else set())
            assert stats.requests <= len(touched)


# ---------------------------------------------------------------- record picks


def _pick_case():
    """Three records over one 1000 x 700 raster grid: points 0-3 on all, 4 only on the first two."""
    header = _header(_image(sparse=()))
    cols = np.array([10.0, 300.0, 600.0, 900.0, 950.0])
    rows = np.array([10.0, 10.0, 600.0, 10.0, 650.0])
    inside = {0: np.arange(5), 1: np.arange(5), 2: np.arange(4)}
    reqs = [_request(header, cols[idx], rows[idx], key=(ri, b)) for ri, idx in inside.items() for b in ("x", "y")]
    times = np.array([dt.datetime(2024, m, 1, tzinfo=dt.UTC).timestamp() * 1e6 for m in (3, 1, 5)],
                     dtype=np.int64)
    rank = np.argsort(np.argsort(times))  # records ordered by datetime: 1, 0, 2
    return plan_read(reqs), inside, rank, times


def _brute(inside, rank, times, dates, match):
    picks = {}
    for p in range(5):
        covering = [ri for ri, idx in inside.items() if p in idx]
        if match == "first":
            picks[p] = min(covering, key=lambda ri: rank[ri])
        elif match == "latest":
            picks[p] = max(covering, key=lambda ri: rank[ri])
        else:
            picks[p] = min(covering, key=lambda ri: (abs(int(times[ri]) - int(dates[p])), rank[ri]))
    return picks


@pytest.mark.parametrize("match", ["first", "latest", "nearest-date"])
def test_pick_records_keeps_one_record_per_point_and_band(match):
    plan, inside, rank, times = _pick_case()
    day = 86_400_000_000
    # point dates: near March, tie between January and March (Feb 1 + half), near May, far future, exactly January
    dates = np.array([times[0] + 2 * day, (times[1] + times[0]) // 2, times[2] - day, times[2] + 999 * day, times[1]])
    keep = pick_records(plan, inside, rank, times, dates if match == "nearest-date" else None, match)
    want = _brute(inside, rank, times, dates, match)
    for band in ("x", "y"):
        got = {}
        for ri in inside:
            for slot in keep[(ri, band)]:
                point = int(inside[ri][plan.chunks[[c.key for c in plan.chunks].index((ri, band))].points.index[slot]])
                assert point not in got
                got[point] = ri
        assert got == want
    if match == "nearest-date":
        assert want[1] == 1  # the tie goes to the earlier record


# ---------------------------------------------------------------- inputs, normalised once


def _wkb_table(geoms, **extra):
    return pa.table({"geometry": [shapely.to_wkb(g) if g is not None else None for g in geoms], **extra})


def test_point_geometries_in_every_encoding_give_the_same_coordinates():
    xy = np.array([[11.5, 45.25], [12.75, 46.0], [-3.0, 0.5]])
    geoms = shapely.points(xy)
    tables = {
        "wkb 2-D little-endian": _wkb_table(geoms),
        "wkb big-endian": pa.table({"geometry": [shapely.to_wkb(g, byte_order=0) for g in geoms]}),
        "wkb 3-D": pa.table({"geometry": [shapely.to_wkb(shapely.Point(x, y, 7.0)) for x, y in xy]}),
        "wkt": pa.table({"geometry": shapely.to_wkt(geoms).tolist()}),
        "geoarrow struct": pa.table({"geometry": pa.array([{"x": x, "y": y} for x, y in xy])}),
        "geoarrow interleaved": pa.table({"geometry": pa.array(xy.tolist(), pa.list_(pa.float64(), 2))}),
        "sliced": pa.concat_tables([_wkb_table(shapely.points([[0.0, 0.0]])), _wkb_table(geoms)]).slice(1),
    }
    for name, table in tables.items():
        pts = to_points(table, CRS84)
        np.testing.assert_array_equal(np.column_stack([pts.x, pts.y]), xy, err_msg=name)
        np.testing.assert_array_equal(np.column_stack([pts.lon, pts.lat]), xy, err_msg=name)


def test_x_y_columns_are_read_loosely_and_projected_once():
    table = pa.table({"e": pa.array([600005, 600015], pa.int32()), "n": ["4999995.5", "4999985"]})
    pts = to_points(table, CRS.from_epsg(32633), x_column="e", y_column="n")
    assert pts.x.tolist() == [600005.0, 600015.0] and pts.y.tolist() == [4999995.5, 4999985.0]
    assert (pts.lon > 10).all() and (pts.lon < 20).all() and (pts.lat > 44).all() and (pts.lat < 46).all()


def test_dates_are_read_as_utc_microseconds():
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    us = int(when.timestamp() * 1e6)
    midnight = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1e6)
    geometry = [shapely.to_wkb(shapely.Point(1, 1))]
    for column, want in [
        (pa.array([when], pa.timestamp("us", tz="UTC")), us),
        (pa.array([when.replace(tzinfo=None)], pa.timestamp("ns")), us),  # naive: UTC
        (pa.array([when], pa.timestamp("s", tz="Europe/Rome")), us),
        (pa.array([when.date()], pa.date32()), midnight),
        (pa.array(["2024-05-01T14:00:00+02:00"]), us),
        (pa.array(["2024-05-01T12:00:00Z"]), us),
    ]:
        table = pa.table({"geometry": geometry, "when": column})
        assert to_points(table, CRS84, match="nearest-date", date_column="when").dates.tolist() == [want], column.type


@pytest.mark.parametrize(("table", "options", "error", "message"), [
    (_wkb_table([shapely.box(0, 0, 1, 1)]), {}, GeometryError, "Point geometries.*row 0.*get_table"),
    (_wkb_table([shapely.Point(1, 1), None]), {}, GeometryError, "row 1 .*no geometry"),
    (_wkb_table([shapely.Point(1, 1), shapely.Point()]), {}, GeometryError, "row 1 holds an empty point"),
    (_wkb_table([shapely.Point(500000, 1)]), {}, GeometryError, "out of range for lon/lat.*geometry_crs="),
    (pa.table({"x": [1.0, None], "y": [1.0, 2.0]}), {"x_column": "x", "y_column": "y"}, GeometryError,
     "row 1 of 'x' has no coordinate"),
    (pa.table({"x": [1.0, np.nan], "y": [1.0, 2.0]}), {"x_column": "x", "y_column": "y"}, GeometryError,
     "row 1 of 'x' has a non-finite"),
    (pa.table({"x": ["a"], "y": [1.0]}), {"x_column": "x", "y_column": "y"}, SchemaError, "does not hold numbers"),
    (pa.table({"x": [1.0]}), {"x_column": "x"}, SchemaError, "both x_column= and y_column="),
    (pa.table({"x": [1.0], "y": [1.0]}), {"x_column": "x", "y_column": "lat"}, SchemaError, "no column 'lat'"),
    (_wkb_table([shapely.Point(1, 1)]), {"match": "median"}, SchemaError, "match='median'; use one of"),
    (_wkb_table([shapely.Point(1, 1)]), {"match": "nearest-date"}, SchemaError, "needs date_column="),
    (_wkb_table([shapely.Point(1, 1)], when=[1]), {"date_column": "when"}, SchemaError, "only by match="),
    (_wkb_table([shapely.Point(1, 1)], when=pa.array([None], pa.date32())),
     {"match": "nearest-date", "date_column": "when"}, SchemaError, "row 0 of 'when' has no date"),
    (_wkb_table([shapely.Point(1, 1)], when=[1.5]), {"match": "nearest-date", "date_column": "when"}, SchemaError,
     "does not hold dates"),
    (_wkb_table([shapely.Point(1, 1)], when=["May 1st"]), {"match": "nearest-date", "date_column": "when"},
     SchemaError, "not ISO 8601"),
    (_wkb_table([shapely.Point(1, 1)], band=["x"]), {}, SchemaError, r"\['band'\] that the output needs"),
    (pa.table({"geom": [1]}), {"geometry_column": "geom"}, SchemaError, "cannot read points from column 'geom'"),
    (pa.table({"geom": [1]}), {}, SchemaError, "no geometry column 'geometry'.*x_column="),
])
def test_bad_point_inputs_are_refused_with_what_to_do(table, options, error, message):
    with pytest.raises(error, match=message):
        to_points(table, CRS84, **options)

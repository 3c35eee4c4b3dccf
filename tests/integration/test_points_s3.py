"""Point sampling at scale through S3: values and validity equal rasterio's ``sample`` (points at random, on
pixel and tile edges, off the rasters, on masked pixels), match modes (nearest-date included), x/y columns,
and each touched tile read once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.session import AWSSession
from rasterio.transform import from_origin, rowcol

import rasteret_core as rc

BANDS = ["red", "swir16"]  # a 10 m (3 x 3 tiles) and a 20 m band (2 x 2 tiles) per record
UTM32 = CRS.from_epsg(32632)


def _rasterio_env(s3):
    session = AWSSession(aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                         region_name=s3.region, endpoint_url=urlparse(s3.endpoint_url).netloc)
    return rasterio.Env(session=session, AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE")


def _oracle(col, xs, ys, crs, bands, s3):
    """(point, record_id, band) -> (value, masked) from rasterio's ``sample`` and ``sample(masked=True)``.

    A record covers a point when the point is in its footprint and on its raster.
    """
    lon, lat = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True).transform(xs, ys)
    want = {}
    with _rasterio_env(s3):
        for row in col.to_arrow().to_pylist():
            inside = np.flatnonzero(shapely.intersects_xy(shapely.from_wkb(row["geometry"]), lon, lat))
            for band in bands:
                asset = row["assets"][band]
                with rasterio.open("/vsis3/" + asset["href"].removeprefix("s3://")) as src:
                    x, y = Transformer.from_crs(crs, src.crs, always_xy=True).transform(xs[inside], ys[inside])
                    r, c = rowcol(src.transform, x, y)
                    on = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
                    index = (asset.get("band_index") or 1)
                    xy = list(zip(x[on], y[on], strict=True))
                    raw = [v[0] for v in src.sample(xy, indexes=index)]
                    masked = [bool(np.ma.getmaskarray(v)[0]) for v in src.sample(xy, indexes=index, masked=True)]
                    for i, value, m in zip(inside[on], raw, masked, strict=True):
                        want[(int(i), row["id"], band)] = (value, m)
    return want


def _check(got: pa.Table, want: dict, *, masked: bool, fill: float = 0) -> None:
    keys = list(zip(got["i"].to_pylist(), got["record_id"].to_pylist(), got["band"].to_pylist(), strict=True))
    assert len(set(keys)) == len(keys) and set(keys) == set(want)
    invalid = np.array([want[k][1] for k in keys], dtype=bool)
    raw = np.array([want[k][0] for k in keys])
    if masked:
        np.testing.assert_array_equal(got["value"].is_null().to_numpy(zero_copy_only=False), invalid)
        np.testing.assert_array_equal(np.asarray(got["value"].drop_null()), raw[~invalid])
    else:
        np.testing.assert_array_equal(np.asarray(got["value"]), np.where(invalid, fill, raw))


def _random_points(col, n, seed):
    """Random lon/lat points over the collection's footprints' bounds, a margin around them, and far away."""
    rng = np.random.default_rng(seed)
    feet = shapely.from_wkb(col.to_arrow()["geometry"].to_pylist())
    xmin, ymin, xmax, ymax = shapely.total_bounds(feet)
    lon = np.concatenate([rng.uniform(xmin - 0.05, xmax + 0.05, n), [-70.0, 12.0]])
    lat = np.concatenate([rng.uniform(ymin - 0.05, ymax + 0.05, n), [-10.0, 80.0]])
    return lon, lat


@pytest.mark.parametrize("masked", [False, True])
def test_random_points_equal_rasterio_sample(s3_collection, s3, masked):
    lon, lat = _random_points(s3_collection, 1500, seed=11)
    points = pa.table({"i": np.arange(len(lon)), "geometry": shapely.to_wkb(shapely.points(lon, lat)).tolist()})
    got = s3_collection.sample_points(points, BANDS, masked=masked)
    want = _oracle(s3_collection, lon, lat, "OGC:CRS84", BANDS, s3)
    assert len(want) > 1000 and len({k[0] for k in want}) < len(lon)  # some points are off every raster
    _check(got, want, masked=masked)
    order = list(zip(got["i"].to_pylist(), got["datetime"].to_pylist(), got["record_id"].to_pylist(),
                     [BANDS.index(b) for b in got["band"].to_pylist()], strict=True))
    assert order == sorted(order)  # by point, then record (datetime, id), then band


def _edge_points():
    """UTM 32N points exactly on pixel corners, pixel edges and tile edges of the 32N scenes, and just off them."""
    x0, y0 = 717360.0, 5081220.0  # the 32N scenes' upper-left corner (10 m pixels, 512 px tiles)
    k = np.arange(0, 1537, 64)
    xs = [x0 + 10.0 * k, x0 + 10.0 * k + 5.0, np.full(len(k), x0 + 5120.0), np.full(len(k), x0 - 1e-6),
          np.full(len(k), x0 + 15360.0), x0 + 10.0 * k]
    ys = [y0 - 10.0 * k[::-1], np.full(len(k), y0 - 10240.0), y0 - 10.0 * k, y0 - 10.0 * k,
          y0 - 10.0 * k, np.full(len(k), y0 - 15360.0 + 1e-6)]
    return np.concatenate(xs), np.concatenate(ys)


def test_points_on_pixel_and_tile_edges_as_x_y_columns(s3_collection, s3):
    xs, ys = _edge_points()
    points = pa.table({"i": np.arange(len(xs)), "e": xs, "n": ys})
    got = s3_collection.sample_points(points, BANDS, x_column="e", y_column="n", geometry_crs="EPSG:32632",
                                      masked=True)
    want = _oracle(s3_collection, xs, ys, UTM32, BANDS, s3)
    assert len(want) > 200
    _check(got, want, masked=True)
    assert got.schema.names == ["i", "e", "n", "record_id", "datetime", "band", "value"]
    # the same points as geometries (with the CRS in geometry_crs) sample the same values
    as_geoms = pa.table({"i": np.arange(len(xs)), "geometry": shapely.to_wkb(shapely.points(xs, ys)).tolist()})
    same = s3_collection.sample_points(as_geoms, BANDS, geometry_crs="EPSG:32632", masked=True)
    assert same.drop_columns(["geometry"]).equals(got.drop_columns(["e", "n"]))


def test_nearest_date_picks_per_point_the_record_nearest_in_time(s3_collection):
    lon, lat = _random_points(s3_collection, 400, seed=5)
    rng = np.random.default_rng(5)
    start = datetime(2023, 12, 20, tzinfo=UTC)
    dates = [start + timedelta(seconds=float(s)) for s in rng.uniform(0, 100 * 86400, len(lon))]
    # ties: halfway between two dates of the 32N scenes, and exactly on a scene's date
    t = [datetime.fromisoformat(s)
         for s in ("2024-01-05T10:17:41.024Z", "2024-02-14T10:17:39.512Z")]
    dates[::3] = [t[0] + (t[1] - t[0]) / 2] * len(dates[::3])
    dates[1::7] = [t[1]] * len(dates[1::7])
    points = pa.table({"i": np.arange(len(lon)), "when": pa.array(dates, pa.timestamp("us", tz="UTC")),
                       "geometry": shapely.to_wkb(shapely.points(lon, lat)).tolist()})
    every = s3_collection.sample_points(points, BANDS).to_pylist()
    nearest = s3_collection.sample_points(points, BANDS, match="nearest-date", date_column="when")
    want = {}
    for r in every:
        key = (r["i"], r["band"])
        rank = (abs(r["datetime"] - r["when"]), r["datetime"], r["record_id"])
        if key not in want or rank < want[key][0]:
            want[key] = (rank, r["record_id"], r["value"])
    got = {(r["i"], r["band"]): (r["record_id"], r["value"]) for r in nearest.to_pylist()}
    assert got == {k: v[1:] for k, v in want.items()} and len(got) == nearest.num_rows
    ties = [r for r in nearest.to_pylist() if r["when"] == t[0] + (t[1] - t[0]) / 2 and "32TQR" in r["record_id"]]
    assert ties and all(r["datetime"] == t[0] for r in ties)  # equally near: the earlier record
    assert nearest.schema.equals(s3_collection.sample_points(points, BANDS).schema)


def test_nearest_date_with_iso_strings_and_dates_equals_timestamps(s3_collection):
    lon, lat = _random_points(s3_collection, 60, seed=9)
    days = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=int(d)) for d in np.arange(60) % 75]
    geometry = shapely.to_wkb(shapely.points(lon[:60], lat[:60])).tolist()
    as_ts = pa.table({"when": pa.array(days, pa.timestamp("us", tz="UTC")), "geometry": geometry})
    as_text = pa.table({"when": [d.strftime("%Y-%m-%dT%H:%M:%SZ") for d in days], "geometry": geometry})
    as_date = pa.table({"when": pa.array([d.date() for d in days], pa.date32()), "geometry": geometry})
    want = s3_collection.sample_points(as_ts, ["red"], match="nearest-date", date_column="when")
    for table in (as_text, as_date):
        got = s3_collection.sample_points(table, ["red"], match="nearest-date", date_column="when")
        assert got.drop_columns(["when"]).equals(want.drop_columns(["when"]))


def _touched_tiles(href, xs, ys, crs, s3):
    """The (band, block) of every non-empty tile holding a point on the raster, and their byte counts, by rasterio."""
    with _rasterio_env(s3), rasterio.open("/vsis3/" + href.removeprefix("s3://")) as src:
        x, y = Transformer.from_crs(crs, src.crs, always_xy=True).transform(xs, ys)
        r, c = rowcol(src.transform, x, y)
        on = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        bh, bw = src.block_shapes[0]
        blocks = {(int(i), int(j)) for i, j in zip(r[on] // bh, c[on] // bw, strict=True)}
        sizes = {b: src.block_size(1, *b) for b in blocks}
    return {b for b, n in sizes.items() if n}, sum(sizes.values())


def test_many_points_over_one_record_read_each_touched_tile_once(s3_collection, s3):
    record = next(r for r in s3_collection.to_arrow().to_pylist() if "32TQR" in r["id"])
    x0, y0 = 717360.0, 5081220.0
    rng = np.random.default_rng(2)
    n = 20_000
    # most points in the upper-right 2 x 2 tiles of the 10 m grid (inside the footprint), some on tile edges,
    # one in the bottom-right tile and one off the footprint (the nodata corner): some tiles stay untouched
    xs = np.concatenate([rng.uniform(x0 + 5120, x0 + 15200, n), x0 + 5120.0 * np.arange(1, 3), [x0 + 12000, x0 + 500]])
    ys = np.concatenate([rng.uniform(y0 - 10240, y0 - 100, n), y0 - 5120.0 * np.arange(1, 3), [y0 - 14000, y0 - 14000]])
    lon, lat = Transformer.from_crs(UTM32, "OGC:CRS84", always_xy=True).transform(xs, ys)
    covered = shapely.intersects_xy(shapely.from_wkb(record["geometry"]), lon, lat)
    assert covered.sum() == n + 3
    points = pa.table({"e": xs, "n": ys})
    one = rc.load(s3_collection.uri, settings=rc.Settings.from_env(max_request_bytes=1)).subset(ids=[record["id"]])
    out, io = one.sample_table(points, BANDS, x_column="e", y_column="n", geometry_crs="EPSG:32632")
    touched, tile_bytes = zip(*(_touched_tiles(record["assets"][b]["href"], xs[covered], ys[covered], UTM32, s3)
                                for b in BANDS), strict=True)
    n_tiles = sum(len(t) for t in touched)
    assert (len(touched[0]), len(touched[1])) == (5, 3)  # of 9 and 4 tiles: the check means something
    assert out.num_rows == 2 * (n + 3)
    assert io.requests == n_tiles and io.bytes == sum(tile_bytes)  # each touched tile once, nothing else
    merged = rc.load(s3_collection.uri).subset(ids=[record["id"]])  # default settings: adjacent tiles merged
    again, io_merged = merged.sample_table(points, BANDS, x_column="e", y_column="n", geometry_crs="EPSG:32632")
    assert again.equals(out)
    assert io_merged.requests <= n_tiles and io_merged.bytes >= sum(tile_bytes)


# ---------------------------------------------------------------- masked pixels: nodata, internal mask, alpha

BUCKET = "rasteret-point-masks"
W, H = 203, 157
TRANSFORM = from_origin(600000.0, 5000000.0, 10.0, 10.0)
FILES = {
    "nodata": (1, "uint16", dict(compress="deflate", predictor=2, tiled=True, blockxsize=32, blockysize=32, nodata=7)),
    "mask": (1, "uint16", dict(compress="lzw", tiled=True, blockxsize=64, blockysize=32)),
    "rgba": (4, "uint8", dict(photometric="RGB", alpha="YES", tiled=True, blockxsize=32, blockysize=32,
                              compress="zstd")),
}


def _validity() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx + 0.6 * yy > 40) & ((xx - 120) ** 2 + (yy - 70) ** 2 > 18**2)).astype(bool)


@pytest.fixture(scope="module")
def masked_collections(s3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("point-masks")
    valid = _validity()
    for name, (count, dtype, opts) in FILES.items():
        data = np.random.default_rng(len(name)).integers(1, 250, (count, H, W)).astype(dtype)
        if name == "nodata":
            data[0][~valid] = 7
        if name == "rgba":
            data[-1] = np.where(valid, 255, 0)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
                folder / f"{name}.tif", "w", driver="GTiff", width=W, height=H, count=count, dtype=dtype,
                crs="EPSG:32633", transform=TRANSFORM, **opts) as dst:
            dst.write(data)
            if name == "mask":
                dst.write_mask(np.where(valid, 255, 0).astype("uint8"))
    s3.create_bucket(BUCKET)
    s3.upload_dir(folder, BUCKET)
    to84 = Transformer.from_crs("EPSG:32633", "OGC:CRS84", always_xy=True)
    box = shapely.box(*rasterio.transform.array_bounds(H, W, TRANSFORM)).buffer(5.0, join_style="mitre")
    footprint = shapely.transform(box, lambda xy: np.column_stack(to84.transform(xy[:, 0], xy[:, 1])))
    out = {}
    for name, (count, _, _) in FILES.items():
        asset = {"image": {"href": f"s3://{BUCKET}/{name}.tif", "type": "image/tiff; application=geotiff",
                           "roles": ["data"]}}
        table = pa.table({"id": [name], "datetime": ["2024-05-01T10:00:00Z"],
                          "geometry": [shapely.to_wkb(footprint)], "assets": [asset]})
        out[name] = rc.build_from_table(table, bands={f"b{i}": f"image:{i}" for i in range(1, count + 1)})
    return out


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("masked", [False, True])
def test_points_on_masked_pixels_follow_gdal_mask_band(masked_collections, s3, name, masked):
    col = masked_collections[name]
    rng = np.random.default_rng(3)
    a, _, c, _, e, f = TRANSFORM[:6]
    rows, cols = np.nonzero(~_validity())
    pick = rng.choice(len(rows), 300, replace=False)
    pc = np.concatenate([cols[pick] + rng.uniform(0, 1, 300), rng.uniform(-2, W + 2, 700), np.arange(0, W + 1, 32)])
    pr = np.concatenate([rows[pick] + rng.uniform(0, 1, 300), rng.uniform(-2, H + 2, 700),
                         np.minimum(np.arange(0, W + 1, 32), H)])
    xs, ys = c + a * pc, f + e * pr
    points = pa.table({"i": np.arange(len(xs)), "x": xs, "y": ys})
    bands = col.bands
    got = col.sample_points(points, bands, x_column="x", y_column="y", geometry_crs="EPSG:32633", masked=masked)
    want = _oracle(col, xs, ys, CRS.from_epsg(32633), bands, s3)
    assert sum(m for _, m in want.values()) >= 300 * (3 if name == "rgba" else 1)  # masked pixels are sampled
    _check(got, want, masked=masked, fill=7 if name == "nodata" else 0)

"""get_xarray mosaics and dask-lazy Datasets through SeaweedFS S3, against rasterio and the eager read.

Mosaics ("first", "latest") equal ``rasterio.merge.merge`` of the same records' files
(methods "first" and "last", in our record order, on the read's bounds and resolution)
masked with the geometry as ``rasterio.mask`` masks it; "median" equals ``numpy.nanmedian``
over ``rasterio.mask``'s masked arrays. Records on two UTM zones mosaic through
``target_crs=`` and equal the same rules over ``rasterio.warp.reproject``. Lazy Datasets
(``chunks=``) send no request when built and compute to the eager Dataset exactly, on
dask's threaded scheduler and on a ``distributed`` cluster of two worker processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import rasterio.mask
import rasterio.merge
import shapely
import xarray as xr
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask
from rasterio.transform import from_origin

import rasteret_core as rc
from rasteret_core.io.store import Stores

BUCKET = "rasteret-mosaic"
W, H = 300, 260
TRANSFORM = from_origin(700000.0, 5080000.0, 10.0, 10.0)
UTM = CRS.from_epsg(32632)

# id: (datetime, how the file marks invalid pixels); records "a" and "b" tie on datetime (id decides),
# "c" is late on 1 May UTC and "d" just past midnight UTC: two date layers of 3 and 1 records.
RECORDS = {
    "a": ("2024-05-01T10:00:00Z", "nodata"),
    "b": ("2024-05-01T10:00:00Z", "nodata"),
    "c": ("2024-05-01T23:30:00Z", "mask"),
    "d": ("2024-05-02T00:10:00Z", "nodata"),
}


def _validity(name: str) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return {
        "a": xx < 170,                                     # the west part
        "b": yy > 0.8 * xx - 40,                           # south of a diagonal
        "c": (xx - 150) ** 2 + (yy - 120) ** 2 > 60 ** 2,  # all but a disk
        "d": yy > 90,                                      # the south part
    }[name]


def _write(folder: Path, name: str) -> Path:
    rng = np.random.default_rng(ord(name))
    data = rng.integers(1, 5000, (H, W)).astype("uint16")
    valid = _validity(name)
    kind = RECORDS[name][1]
    opts = dict(tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    if kind == "nodata":
        data[~valid] = 0
        opts["nodata"] = 0
    path = folder / f"{name}.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=1, dtype="uint16", crs=UTM,
                           transform=TRANSFORM, **opts) as dst:
            dst.write(data, 1)
            if kind == "mask":
                dst.write_mask(np.where(valid, 255, 0).astype("uint8"))
    return path


@pytest.fixture(scope="module")
def mosaic_files(s3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mosaic")
    paths = {name: _write(folder, name) for name in RECORDS}
    s3.create_bucket(BUCKET)
    s3.upload_dir(folder, BUCKET)
    return paths


@pytest.fixture(scope="module")
def mosaic_collection(mosaic_files):
    feet = Transformer.from_crs(UTM, "OGC:CRS84", always_xy=True)
    box = shapely.box(*rasterio.transform.array_bounds(H, W, TRANSFORM))
    footprint = shapely.to_wkb(shapely.transform(box, lambda xy: np.column_stack(feet.transform(xy[:, 0], xy[:, 1]))))
    names = list(reversed(RECORDS))  # the table's order is not the read's
    table = pa.table({
        "id": names,
        "datetime": [RECORDS[n][0] for n in names],
        "geometry": [footprint] * len(names),
        "assets": [{"image": {"href": f"s3://{BUCKET}/{n}.tif", "type": "image/tiff; application=geotiff",
                              "roles": ["data"]}} for n in names],
    })
    return rc.build_from_table(table, bands={"b1": "image"})


def _aoi() -> shapely.Geometry:
    a, _, c, _, e, f = TRANSFORM[:6]

    def px(col: float, row: float) -> tuple[float, float]:
        return (c + col * a, f + row * e)

    ring = [px(12.3, 8.2), px(291.7, 20.1), px(270.2, 251.6), px(25.8, 230.4)]
    hole = [px(200.1, 150.3), px(240.6, 152.2), px(230.4, 190.8)]
    return shapely.Polygon(ring, [hole])


def _grid(ds):
    a, b, c, d, e, f = (float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split())
    return rasterio.Affine(b, c, a, e, f, d), (ds.sizes["y"], ds.sizes["x"])


def _merge_oracle(paths, ds, method, geom):
    """rasterio.merge.merge of ``paths`` (in order) on the Dataset's grid, masked with ``geom`` there."""
    transform, shape = _grid(ds)
    bounds = rasterio.transform.array_bounds(*shape, transform)
    west, south, east, north = bounds
    out, out_transform = rasterio.merge.merge([str(p) for p in paths], bounds=(west, south, east, north),
                                              res=(transform.a, -transform.e), nodata=0, method=method)
    assert out_transform == transform and out.shape[1:] == shape
    out = out[0]
    out[geometry_mask([geom], out_shape=shape, transform=transform)] = 0
    return out


def _mask_oracle(paths, geom):
    """rasterio.mask's masked arrays of ``paths`` as floats, NaN where masked."""
    layers = []
    for path in paths:
        with rasterio.open(path) as src:
            data, _ = rasterio.mask.mask(src, [geom], crop=True, filled=False)
        layers.append(np.ma.filled(data[0].astype("float64"), np.nan))
    return np.stack(layers)


ORDER = ["a", "b", "c", "d"]  # datetime, then id
BY_DATE = {"2024-05-01": ["a", "b", "c"], "2024-05-02": ["d"]}


@pytest.mark.parametrize(("mosaic", "method"), [("first", "first"), ("latest", "last")])
def test_first_and_latest_per_date_equal_rasterio_merge(mosaic_files, mosaic_collection, mosaic, method):
    geom = _aoi()
    ds = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic=mosaic)
    assert ds["b1"].dims == ("time", "y", "x") and ds["b1"].dtype == np.uint16
    assert list(ds["time"].values) == [np.datetime64(d, "ns") for d in BY_DATE]
    assert "id" not in ds.coords and ds.attrs["mosaic"] == mosaic
    assert ds["b1"].attrs["nodata"] == 0 and ds["b1"].encoding["_FillValue"] == 0
    for ti, names in enumerate(BY_DATE.values()):
        want = _merge_oracle([mosaic_files[n] for n in names], ds, method, geom)
        np.testing.assert_array_equal(ds["b1"].values[ti], want)
    # the first date's layers differ: the records overlap, and their order decides
    first = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic="first")["b1"].values[0]
    latest = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic="latest")["b1"].values[0]
    assert (first != latest).mean() > 0.3


def test_every_date_in_one_layer_equals_rasterio_merge(mosaic_files, mosaic_collection):
    geom = _aoi()
    for mosaic, method in (("first", "first"), ("latest", "last")):
        ds = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic=mosaic, group_by="all")
        assert ds["b1"].dims == ("y", "x") and "time" not in ds.dims
        want = _merge_oracle([mosaic_files[n] for n in ORDER], ds, method, geom)
        np.testing.assert_array_equal(ds["b1"].values, want)


@pytest.mark.parametrize("group_by", ["date", "all"])
def test_median_equals_nanmedian_over_rasterio_mask(mosaic_files, mosaic_collection, group_by):
    geom = _aoi()
    ds = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic="median", group_by=group_by)
    assert ds["b1"].dtype == np.float32 and np.isnan(ds["b1"].encoding["_FillValue"])
    groups = list(BY_DATE.values()) if group_by == "date" else [ORDER]
    got = ds["b1"].values if group_by == "date" else ds["b1"].values[np.newaxis]
    for ti, names in enumerate(groups):
        stack = _mask_oracle([mosaic_files[n] for n in names], geom)
        valid = ~np.isnan(stack)
        want = np.full(stack.shape[1:], np.nan)
        some = valid.any(axis=0)
        want[some] = np.nanmedian(stack[:, some], axis=0)
        np.testing.assert_array_equal(got[ti], want)
    assert np.isnan(got).any() and (got % 1 == 0.5).any()  # holes stay NaN; even counts average


def test_masked_mosaic_is_nan_where_no_record_is_valid(mosaic_files, mosaic_collection):
    geom = _aoi()
    filled = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic="first")["b1"]
    masked = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic="first", masked=True)["b1"]
    assert masked.dtype == np.float32 and "nodata" not in masked.attrs
    stack = _mask_oracle([mosaic_files[n] for n in BY_DATE["2024-05-01"]], geom)
    np.testing.assert_array_equal(np.isnan(masked.values[0]), np.isnan(stack).all(axis=0))
    np.testing.assert_array_equal(np.nan_to_num(masked.values, nan=0), filled.values)


def _warped(path, ds, geom84):
    """rasterio.warp.reproject (nearest) of the whole band onto the Dataset's grid, NaN where invalid or outside."""
    from rasterio.warp import Resampling, reproject

    transform, shape = _grid(ds)
    crs = CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"])
    with rasterio.open(path) as src:
        out = np.zeros(shape, dtype=src.dtypes[0])
        reproject(rasterio.band(src, 1), out, dst_transform=transform, dst_crs=crs.to_wkt(),
                  resampling=Resampling.nearest, src_nodata=src.nodata, dst_nodata=0)
    tr = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
    geom = shapely.transform(geom84, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    values = out.astype("float64")
    values[(out == 0) | geometry_mask([geom], out_shape=shape, transform=transform)] = np.nan
    return values


ACROSS_ZONES = shapely.box(11.93, 45.74, 11.99, 45.78)  # in the scenes of both UTM zones


def test_records_on_two_zones_mosaic_onto_the_target_grid(s3_collection, local_path_of):
    rows = sorted(s3_collection.subset(geometries=ACROSS_ZONES).to_arrow().to_pylist(),
                  key=lambda r: (r["datetime"], r["id"]))
    assert {r["crs"] for r in rows} == {"EPSG:32632", "EPSG:32633"}
    with pytest.raises(rc.GridMismatchError, match="target_crs="):
        s3_collection.get_xarray(ACROSS_ZONES, ["red"], mosaic="first", group_by="all")
    kwargs = dict(target_crs="EPSG:32633", resolution=20.0, group_by="all")
    first = s3_collection.get_xarray(ACROSS_ZONES, ["red"], mosaic="first", masked=True, **kwargs)
    stack = np.stack([_warped(local_path_of(r["assets"]["red"]["href"]), first, ACROSS_ZONES) for r in rows])
    valid = ~np.isnan(stack)
    pick_first = np.take_along_axis(stack, np.argmax(valid, axis=0)[None], axis=0)[0]
    pick_last = np.take_along_axis(stack, (len(rows) - 1 - np.argmax(valid[::-1], axis=0))[None], axis=0)[0]
    np.testing.assert_array_equal(first["red"].values, pick_first)
    latest = s3_collection.get_xarray(ACROSS_ZONES, ["red"], mosaic="latest", masked=True, **kwargs)
    np.testing.assert_array_equal(latest["red"].values, pick_last)
    median = s3_collection.get_xarray(ACROSS_ZONES, ["red"], mosaic="median", **kwargs)
    some = valid.any(axis=0)
    want = np.full(stack.shape[1:], np.nan)
    want[some] = np.nanmedian(stack[:, some], axis=0)
    np.testing.assert_array_equal(median["red"].values, want)
    assert (pick_first != pick_last).any()
    # one record per date in the sample archive: per-date mosaics are the records themselves
    per_date = s3_collection.get_xarray(ACROSS_ZONES, ["red"], mosaic="first", target_crs="EPSG:32633",
                                        resolution=20.0)
    plain = s3_collection.get_xarray(ACROSS_ZONES, ["red"], target_crs="EPSG:32633", resolution=20.0)
    np.testing.assert_array_equal(per_date["red"].values, plain["red"].values)
    np.testing.assert_array_equal(per_date["time"].values, plain["time"].values.astype("datetime64[D]"))


def test_mosaic_options_are_checked_before_any_read(mosaic_collection):
    geom = _aoi()
    with pytest.raises(rc.PlanningError, match="mosaic must be"):
        mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, mosaic="max")
    with pytest.raises(rc.PlanningError, match="pass mosaic="):
        mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, group_by="all")
    with pytest.raises(rc.PlanningError, match="unknown dimension"):
        mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, chunks={"band": 1})


# ------------------------------------------------------------------ lazy


def _lazy_cases(mosaic_collection, s3_collection):
    geom = _aoi()
    native = dict(geometry_crs=UTM)
    warp = dict(target_crs="EPSG:32633", resolution=20.0)
    return {
        "native": (mosaic_collection, geom, ["b1"], native, {"time": 1, "y": 100, "x": 128}),
        "native masked": (mosaic_collection, geom, ["b1"], dict(native, masked=True), {"time": 2, "y": 100}),
        "first per date": (mosaic_collection, geom, ["b1"], dict(native, mosaic="first"), {"y": 64, "x": 100}),
        "latest per date": (mosaic_collection, geom, ["b1"], dict(native, mosaic="latest"), {"time": 1, "x": 33}),
        "median of all": (mosaic_collection, geom, ["b1"], dict(native, mosaic="median", group_by="all"),
                          {"y": 77, "x": 77}),
        "auto": (mosaic_collection, geom, ["b1"], native, "auto"),
        "sample, two bands": (s3_collection, shapely.box(11.81, 45.712, 11.87, 45.75), ["red", "nir"],
                              dict(all_touched=True), {"time": 2, "y": 200, "x": 256}),
        "two zones warped": (s3_collection, ACROSS_ZONES, ["red", "swir16"], warp, {"time": 4, "y": 40, "x": 50}),
        "two zones median": (s3_collection, ACROSS_ZONES, ["red"], dict(warp, mosaic="median", masked=True,
                                                                         group_by="all"), {"y": 40}),
    }


def _eager_without_io(col, geom, bands, kwargs):
    ds = col.get_xarray(geom, bands, **kwargs)
    del ds.attrs["requests"], ds.attrs["bytes_read"]
    return ds


@pytest.fixture
def requests_sent(monkeypatch):
    """Counts the byte-range and HEAD requests this process sends."""
    sent = {"get": 0, "head": 0, "bytes": 0}
    get_range, head = Stores.get_range, Stores.head

    async def counted_get(self, uri, start, end):
        sent["get"] += 1
        sent["bytes"] += end - start
        return await get_range(self, uri, start, end)

    async def counted_head(self, uri):
        sent["head"] += 1
        return await head(self, uri)

    monkeypatch.setattr(Stores, "get_range", counted_get)
    monkeypatch.setattr(Stores, "head", counted_head)
    return sent


@pytest.mark.parametrize("case", ["native", "native masked", "first per date", "latest per date", "median of all",
                                  "auto", "sample, two bands", "two zones warped", "two zones median"])
def test_lazy_reads_equal_the_eager_reads_on_threads(mosaic_collection, s3_collection, requests_sent, case):
    col, geom, bands, kwargs, chunks = _lazy_cases(mosaic_collection, s3_collection)[case]
    lazy = col.get_xarray(geom, bands, chunks=chunks, **kwargs)
    assert requests_sent == {"get": 0, "head": 0, "bytes": 0}  # built, nothing read
    assert all(lazy[b].chunks is not None for b in bands)
    if isinstance(chunks, dict) and "y" in chunks and lazy.sizes["y"] > chunks["y"]:
        assert lazy[bands[0]].chunksizes["y"][0] == chunks["y"]
    eager = _eager_without_io(col, geom, bands, kwargs)
    computed = lazy.compute(scheduler="threads")
    assert requests_sent["get"] > 0
    xr.testing.assert_identical(computed, eager)
    for band in bands:
        assert computed[band].dtype == eager[band].dtype
        assert computed[band].encoding["_FillValue"] is eager[band].encoding["_FillValue"] or (
            computed[band].encoding["_FillValue"] == eager[band].encoding["_FillValue"])


def test_lazy_blocks_read_only_their_tiles(mosaic_collection, requests_sent):
    geom = _aoi()
    lazy = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM, chunks={"time": 1, "y": 64, "x": 64})
    one = lazy["b1"][0, :64, :64].compute(scheduler="sync")
    # the window starts at pixel (8, 12): the block touches 2 x 2 of the 25 tiles of one file
    block = dict(requests_sent)
    assert block["head"] == 0 and block["get"] >= 1  # freshness is checked on the GETs' answers: no HEAD
    eager = mosaic_collection.get_xarray(geom, ["b1"], geometry_crs=UTM)
    np.testing.assert_array_equal(one.values, eager["b1"].values[0, :64, :64])
    assert eager.attrs["bytes_read"] > 4 * block["bytes"]


@pytest.fixture(scope="module")
def dask_client(s3):
    """A distributed cluster of two worker processes on loopback."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        yield client


# the scheduler's HTTP server (metrics only, loopback) moves on when another cluster holds its default port
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
@pytest.mark.parametrize("case", ["native", "first per date", "two zones warped"])
def test_lazy_reads_equal_the_eager_reads_on_worker_processes(mosaic_collection, s3_collection, dask_client, case):
    from distributed import get_task_stream

    col, geom, bands, kwargs, chunks = _lazy_cases(mosaic_collection, s3_collection)[case]
    lazy = col.get_xarray(geom, bands, chunks=chunks, **kwargs)
    with get_task_stream(client=dask_client) as stream:
        computed = dask_client.compute(lazy).result()
    xr.testing.assert_identical(computed, _eager_without_io(col, geom, bands, kwargs))
    if case == "native":
        assert len({t["worker"] for t in stream.data}) == 2  # both processes read blocks

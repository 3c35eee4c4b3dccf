"""get_numpy through SeaweedFS S3 equals rasterio.mask on the same files, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.mask
import shapely
from pyproj import CRS, Transformer

import rasteret_core as rc

ZONE32 = CRS.from_epsg(32632)


def _to_crs(geom, src, dst):
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _oracle(col, geom, geom_crs, bands, local_path_of, all_touched=False):
    rows = sorted(col.subset(geometries=geom, geometry_crs=geom_crs).to_arrow().to_pylist(),
                  key=lambda r: (r["datetime"], r["id"]))
    out = []
    for row in rows:
        per_band = []
        for band in bands:
            with rasterio.open(local_path_of(row["assets"][band]["href"])) as src:
                shape = _to_crs(geom, geom_crs, src.crs)
                fill = src.nodata if src.nodata is not None else 0
                data, _ = rasterio.mask.mask(src, [shape], crop=True, all_touched=all_touched, filled=True, nodata=fill)
                per_band.append(data[0])
        out.append(per_band)
    return np.array(out)


def _scene_grid(col, crs="EPSG:32632", band="red"):
    row = next(r for r in col.to_arrow().to_pylist() if r["crs"] == crs)
    header = row["assets"][band]["header"]
    return header["transform"], header["images"][0]["width"]


def _pixel_box(transform, c0, r0, c1, r1):
    a, _, c, _, e, f = transform
    return shapely.box(c + c0 * a, f + r1 * e, c + c1 * a, f + r0 * e)


CASES = {
    "inside one tile": (100.3, 50.2, 300.7, 200.9),
    "across tile boundaries": (400.5, 450.1, 700.2, 1100.6),
    "partly outside the raster": (-100.4, -150.2, 200.3, 100.8),
    "across the nodata edge": (200.2, 800.3, 500.7, 1100.6),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("in_crs84", [False, True], ids=["raster-crs", "crs84"])
def test_get_numpy_equals_rasterio_mask(s3_collection, local_path_of, case, in_crs84):
    transform, _ = _scene_grid(s3_collection)
    geom = _pixel_box(transform, *CASES[case])
    crs = ZONE32
    if in_crs84:
        geom, crs = _to_crs(geom, ZONE32, CRS.from_user_input("OGC:CRS84")), None
    bands = ["red", "nir"]
    got = s3_collection.get_numpy(geom, bands, geometry_crs=crs)
    want = _oracle(s3_collection, geom, crs or "OGC:CRS84", bands, local_path_of)
    assert got.shape == want.shape and got.shape[0] >= 3
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)
    assert (got != 0).any()


@pytest.mark.parametrize("all_touched", [False, True])
def test_polygon_aoi_on_20m_band_with_all_touched(s3_collection, local_path_of, all_touched):
    transform, _ = _scene_grid(s3_collection, band="swir16")
    a, _, c, _, e, f = transform
    # a skewed quadrilateral in the last, partial tile column of the 768 px band, reaching past
    # the raster's edge (north of the neighbouring zone's scenes)
    tri = shapely.Polygon([(c + 430.3 * a, f + 30.1 * e), (c + 790.2 * a, f + 20.7 * e),
                           (c + 760.9 * a, f + 190.4 * e), (c + 460.6 * a, f + 170.2 * e)])
    geom84 = _to_crs(tri, ZONE32, CRS.from_user_input("OGC:CRS84"))
    got = s3_collection.get_numpy(geom84, ["swir16", "swir22"], all_touched=all_touched)
    want = _oracle(s3_collection, geom84, "OGC:CRS84", ["swir16", "swir22"], local_path_of, all_touched=all_touched)
    np.testing.assert_array_equal(got, want)


def test_explain_counts_requests_and_bytes_before_reading(s3_collection):
    transform, _ = _scene_grid(s3_collection)
    summary = s3_collection.explain(_pixel_box(transform, *CASES["across tile boundaries"]), ["red"],
                                    geometry_crs=ZONE32)
    assert summary["records"] == 3
    assert summary["tiles"] == 3 * 6  # 3 x 2 tiles per record
    assert 1 <= summary["requests"] <= summary["tiles"]
    assert summary["bytes"] >= summary["tile_bytes"] > 0


def test_unknown_band_is_a_clear_error(s3_collection):
    with pytest.raises(rc.BandError, match=r"unknown band.*'B99'.*red"):
        s3_collection.get_numpy((11.8, 45.7, 11.81, 45.71), ["red", "B99"])


def test_aoi_meeting_no_record_is_a_clear_error(s3_collection):
    with pytest.raises(rc.NoRecordsError, match="no record's footprint meets"):
        s3_collection.get_numpy((-70.0, -10.0, -69.9, -9.9), ["red"])


def test_aoi_in_the_wrong_crs_is_caught_as_no_records(s3_collection):
    transform, _ = _scene_grid(s3_collection)
    utm_box = _pixel_box(transform, *CASES["inside one tile"])
    with pytest.raises(rc.RasteretError, match="geometry_crs"):
        s3_collection.get_numpy(utm_box, ["red"])  # UTM metres read as lon/lat


def test_invalid_geometry_is_a_clear_error(s3_collection):
    bowtie = shapely.Polygon([(11.8, 45.7), (11.81, 45.71), (11.81, 45.7), (11.8, 45.71)])
    with pytest.raises(rc.GeometryError, match=r"invalid.*make_valid"):
        s3_collection.get_numpy(bowtie, ["red"])


def test_records_on_two_grids_do_not_stack(s3_collection):
    with pytest.raises(rc.GridMismatchError, match=r"target_crs=.*get_gdf"):
        s3_collection.get_numpy((11.0, 45.0, 13.0, 46.5), ["red"])


def test_missing_object_is_a_clear_error(s3_collection):
    import pyarrow as pa

    table = s3_collection.to_arrow()
    rows = table.to_pylist()
    for row in rows:
        row["assets"]["red"]["href"] = row["assets"]["red"]["href"].replace(".tif", "-gone.tif")
    broken = rc.Collection(pa.Table.from_pylist(rows, schema=table.schema))
    transform, _ = _scene_grid(s3_collection)
    with pytest.raises(rc.ObjectNotFoundError, match=r"-gone\.tif.*no such object"):
        broken.get_numpy(_pixel_box(transform, *CASES["inside one tile"]), ["red"], geometry_crs=ZONE32)


@pytest.mark.parametrize("level", [0, 1])
def test_overview_reads_equal_gdal_overview_datasets(s3_collection, local_path_of, level):
    transform, _ = _scene_grid(s3_collection)
    geom = _pixel_box(transform, *CASES["across the nodata edge"])
    got = s3_collection.get_numpy(geom, ["red"], geometry_crs=ZONE32, overview=level)
    rows = sorted(s3_collection.subset(geometries=geom, geometry_crs=ZONE32).to_arrow().to_pylist(),
                  key=lambda r: (r["datetime"], r["id"]))
    want = []
    for row in rows:
        with rasterio.open(local_path_of(row["assets"]["red"]["href"]), overview_level=level) as src:
            data, _ = rasterio.mask.mask(src, [geom], crop=True, filled=True, nodata=src.nodata)
            want.append(data[:1])
    np.testing.assert_array_equal(got, np.array(want))
    full = s3_collection.get_numpy(geom, ["red"], geometry_crs=ZONE32)
    assert got.shape[-1] < full.shape[-1] / (2 ** level) + 2


def test_resolution_picks_the_coarsest_overview_not_coarser_than_asked(s3_collection):
    transform, _ = _scene_grid(s3_collection)
    geom = _pixel_box(transform, *CASES["across tile boundaries"])
    by_level = s3_collection.get_numpy(geom, ["red"], geometry_crs=ZONE32, overview=0)
    np.testing.assert_array_equal(s3_collection.get_numpy(geom, ["red"], geometry_crs=ZONE32, resolution=30.0), by_level)
    full = s3_collection.get_numpy(geom, ["red"], geometry_crs=ZONE32)
    np.testing.assert_array_equal(s3_collection.get_numpy(geom, ["red"], geometry_crs=ZONE32, resolution=10.0), full)
    with pytest.raises(rc.PlanningError, match="overview 5 asked, the file has 2"):
        s3_collection.get_numpy(geom, ["red"], geometry_crs=ZONE32, overview=5)


def test_get_xarray_has_cf_spatial_ref_and_the_numpy_pixels(s3_collection):
    transform, _ = _scene_grid(s3_collection)
    geom = _pixel_box(transform, *CASES["inside one tile"])
    ds = s3_collection.get_xarray(geom, ["red", "nir"], geometry_crs=ZONE32)
    arr = s3_collection.get_numpy(geom, ["red", "nir"], geometry_crs=ZONE32)
    assert list(ds.data_vars) == ["red", "nir"] and ds["red"].dims == ("time", "y", "x")
    np.testing.assert_array_equal(ds["nir"].values, arr[:, 1])
    assert CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]).to_epsg() == 32632
    assert ds["red"].attrs["grid_mapping"] == "spatial_ref"
    assert ds.sizes["time"] == 3 and bool((ds["time"].diff("time") > np.timedelta64(0)).all())
    # pixel centres: x of column 0 is the window origin plus half a pixel
    a, _, c, _, e, f = transform
    assert ds["x"].values[0] == pytest.approx(c + 100 * a + a / 2)
    assert ds["y"].values[0] == pytest.approx(f + 50 * e + e / 2)


def _warp_oracle(path, grid_ds, geom84, resampling, all_touched=False):
    """rasterio.warp.reproject of the whole band onto the read's grid, masked with the geometry there."""
    from rasterio.features import geometry_mask
    from rasterio.warp import Resampling, reproject

    a, b, c, d, e, f = (float(v) for v in grid_ds["spatial_ref"].attrs["GeoTransform"].split())
    dst_transform = rasterio.Affine(b, c, a, e, f, d)
    dst_crs = CRS.from_wkt(grid_ds["spatial_ref"].attrs["crs_wkt"])
    shape = (grid_ds.sizes["y"], grid_ds.sizes["x"])
    with rasterio.open(path) as src:
        fill = src.nodata if src.nodata is not None else 0
        out = np.full(shape, fill, dtype=src.dtypes[0])
        reproject(rasterio.band(src, 1), out, dst_transform=dst_transform, dst_crs=dst_crs.to_wkt(),
                  resampling=getattr(Resampling, resampling), src_nodata=src.nodata, dst_nodata=fill)
    geom = _to_crs(geom84, "OGC:CRS84", dst_crs)
    outside = geometry_mask([geom], out_shape=shape, transform=dst_transform, all_touched=all_touched)
    out[outside] = fill
    return out


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_two_zones_reprojected_onto_one_grid_match_gdal_warp(s3_collection, local_path_of, resampling):
    aoi = shapely.box(11.93, 45.74, 11.99, 45.78)  # in both zones' scenes
    ds = s3_collection.get_xarray(aoi, ["red", "swir16"], target_crs="EPSG:32633", resolution=20.0,
                                  resampling=resampling)
    assert ds.sizes["time"] == 6 and ds["red"].shape[1:] == ds["swir16"].shape[1:]
    rows = sorted(s3_collection.subset(geometries=aoi).to_arrow().to_pylist(), key=lambda r: (r["datetime"], r["id"]))
    assert {r["crs"] for r in rows} == {"EPSG:32632", "EPSG:32633"}
    for ti, row in enumerate(rows):
        for band in ("red", "swir16"):
            want = _warp_oracle(local_path_of(row["assets"][band]["href"]), ds, aoi, resampling)
            got = ds[band].values[ti]
            if resampling == "nearest":
                np.testing.assert_array_equal(got, want)
            else:  # within one value step on smooth data
                assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
            assert (got != 0).any()


def test_same_crs_reprojection_at_a_coarser_aligned_grid_is_exact(s3_collection, local_path_of):
    transform, _ = _scene_grid(s3_collection)
    geom = _to_crs(_pixel_box(transform, *CASES["across tile boundaries"]), ZONE32, "OGC:CRS84")
    ds = s3_collection.get_xarray(geom, ["red"], target_crs="EPSG:32632", resolution=30.0)
    assert float(ds["spatial_ref"].attrs["GeoTransform"].split()[1]) == 30.0
    rows = sorted(s3_collection.subset(geometries=geom).to_arrow().to_pylist(), key=lambda r: (r["datetime"], r["id"]))
    for ti, row in enumerate(rows):
        np.testing.assert_array_equal(ds["red"].values[ti],
                                      _warp_oracle(local_path_of(row["assets"]["red"]["href"]), ds, geom, "nearest"))

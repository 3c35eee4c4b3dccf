"""GDAL's mask band through S3: internal masks (and their overviews), alpha, nodata, as rasterio reads them.

Files are written by GDAL in the shapes aerial and drone archives take; each read
(`get_numpy`, masked or filled, at full resolution and on an overview; `get_table`
with null values; `get_xarray` with NaN; a reprojected read) is compared with
rasterio on the same file, pixel for pixel and mask for mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import rasterio.features
import rasterio.mask
import rasterio.warp
import shapely
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.transform import from_origin

import rasteret_core as rc

# GDAL's own words for the precedence the alpha_and_nodata file checks
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")

BUCKET = "rasteret-masks"
W, H = 203, 157
TRANSFORM = from_origin(600000.0, 5000000.0, 10.0, 10.0)
UTM = CRS.from_epsg(32633)


def _content(count: int, dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    top = 250 if dtype == "uint8" else 4000
    field = (np.sin(xx / 17.0)[None] + np.cos(yy / 23.0)[None] + np.arange(count)[:, None, None]) * top / 6 + top / 2
    return np.clip(field + rng.integers(0, 9, (count, H, W)), 1, top).astype(dtype)


def _validity() -> np.ndarray:
    """A rotated-footprint collar and a hole, as orthomosaics have: 255 valid, 0 not."""
    yy, xx = np.mgrid[0:H, 0:W]
    inside = (xx + 0.6 * yy > 40) & (xx - 0.5 * yy < 170) & (yy > 6)
    inside &= (xx - 120) ** 2 + (yy - 70) ** 2 > 18**2
    return np.where(inside, 255, 0).astype("uint8")


CASES = {
    # name: (bands, dtype, creation options, mask kind)
    "mask_deflate_ovr": (1, "uint16", dict(compress="deflate", predictor=2, tiled=True, blockxsize=32, blockysize=32), "mask"),
    "mask_over_nodata": (1, "uint8", dict(compress="lzw", tiled=True, blockxsize=64, blockysize=64, nodata=5), "mask"),
    "mask_strips": (3, "uint8", dict(compress="deflate", interleave="band"), "mask"),
    "rgba_tiled": (4, "uint8", dict(photometric="RGB", alpha="YES", tiled=True, blockxsize=32, blockysize=32,
                                    compress="zstd"), "alpha"),
    "rgba_planar_strips": (4, "uint16", dict(photometric="RGB", alpha="YES", interleave="band",
                                             compress="deflate"), "alpha"),
    "gray_alpha": (2, "uint8", dict(alpha="YES", compress="packbits"), "alpha"),
    "alpha_and_nodata": (4, "uint8", dict(photometric="RGB", alpha="YES", nodata=7, compress="lzw"), "alpha"),
}


def _write(folder: Path, name: str) -> Path:
    count, dtype, opts, kind = CASES[name]
    path = folder / f"{name}.tif"
    valid = _validity()
    data = _content(count, dtype, seed=len(name))
    if "nodata" in opts:
        data[:, 60:70, 20:200] = opts["nodata"]  # nodata pixels the mask (or alpha) still calls valid
    if kind == "alpha":
        alpha = valid.astype(dtype) * (257 if dtype == "uint16" else 1)
        alpha[valid > 0] = np.where(np.arange((valid > 0).sum()) % 7 == 0, 3, alpha[valid > 0])  # partial opacity
        data[-1] = alpha
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=count, dtype=dtype, crs=UTM,
                           transform=TRANSFORM, **opts) as dst:
            dst.write(data)
            if kind == "mask":
                dst.write_mask(valid)
            if name.endswith("_ovr"):
                dst.build_overviews([2, 4], Resampling.nearest)
    return path


@pytest.fixture(scope="module")
def masked_files(s3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("masks")
    paths = {name: _write(folder, name) for name in CASES}
    s3.create_bucket(BUCKET)
    s3.upload_dir(folder, BUCKET)
    return paths


@pytest.fixture(scope="module")
def masked_collection(masked_files):
    feet = Transformer.from_crs(UTM, "OGC:CRS84", always_xy=True)
    box = shapely.box(*rasterio.transform.array_bounds(H, W, TRANSFORM))
    footprint = shapely.transform(box, lambda xy: np.column_stack(feet.transform(xy[:, 0], xy[:, 1])))
    tables = {}
    for name in CASES:
        count = CASES[name][0]
        asset = {"image": {"href": f"s3://{BUCKET}/{name}.tif", "type": "image/tiff; application=geotiff",
                           "roles": ["data"]}}
        table = pa.table({"id": [name], "datetime": ["2024-05-01T10:00:00Z"],
                          "geometry": [shapely.to_wkb(footprint)], "assets": [asset]})
        tables[name] = rc.build_from_table(table, bands={f"b{i}": f"image:{i}" for i in range(1, count + 1)})
    return tables


def _aois() -> dict[str, shapely.Geometry]:
    a, _, c, _, e, f = TRANSFORM[:6]

    def px(col: float, row: float) -> tuple[float, float]:
        return (c + col * a, f + row * e)

    ring = [px(15.3, 3.2), px(190.7, 12.1), px(180.2, 150.6), px(9.8, 140.4)]
    hole = [px(100.1, 60.3), px(140.6, 62.2), px(130.4, 90.8)]
    return {
        "whole": shapely.Polygon(ring),
        "with a hole": shapely.Polygon(ring, [hole]),
        "on the hole's edge": shapely.box(*px(95.0, 80.0), *px(150.0, 45.0)),  # pixel edges
        "partly outside": shapely.box(*px(-20.4, 170.2), *px(60.3, 100.1)),
    }


def _oracle(path: Path, geom: shapely.Geometry, band: int, *, overview: int | None = None) -> np.ma.MaskedArray:
    with rasterio.open(path, overview_level=overview) as src:
        fill = src.nodata if src.nodata is not None else 0
        data, _ = rasterio.mask.mask(src, [geom], crop=True, filled=False, indexes=[band], nodata=fill)
        return np.ma.MaskedArray(np.where(data.mask, fill, data.data), mask=data.mask)[0]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("aoi", list(_aois()))
def test_masked_reads_equal_rasterio(masked_files, masked_collection, name, aoi):
    col = masked_collection[name]
    geom = _aois()[aoi]
    bands = col.bands
    got = col.get_numpy(geom, bands, geometry_crs=UTM, masked=True)
    filled = col.get_numpy(geom, bands, geometry_crs=UTM)
    for bi in range(len(bands)):
        want = _oracle(masked_files[name], geom, bi + 1)
        np.testing.assert_array_equal(got.mask[0, bi], want.mask, err_msg=f"{name} b{bi + 1} mask")
        np.testing.assert_array_equal(got.data[0, bi], want.data, err_msg=f"{name} b{bi + 1} pixels")
        np.testing.assert_array_equal(filled[0, bi], want.data)
    assert got.mask.any() and not got.mask.all()


def test_the_mask_wins_over_nodata_and_nodata_over_alpha(masked_files):
    with rasterio.open(masked_files["mask_over_nodata"]) as src:
        assert src.mask_flag_enums[0][0].name == "per_dataset"
    with rasterio.open(masked_files["alpha_and_nodata"]) as src:
        assert src.mask_flag_enums[0][0].name == "nodata"
        assert src.mask_flag_enums[3][0].name == "nodata"


@pytest.mark.parametrize("overview", [0, 1])
def test_overview_reads_use_the_overview_mask(masked_files, masked_collection, overview):
    col = masked_collection["mask_deflate_ovr"]
    geom = _aois()["with a hole"]
    got = col.get_numpy(geom, ["b1"], geometry_crs=UTM, overview=overview, masked=True)
    want = _oracle(masked_files["mask_deflate_ovr"], geom, 1, overview=overview)
    np.testing.assert_array_equal(got.mask[0, 0], want.mask)
    np.testing.assert_array_equal(got.data[0, 0], want.data)


def test_mask_tiles_ride_in_the_data_requests(masked_collection):
    col = masked_collection["mask_deflate_ovr"]
    plan = col.explain(_aois()["whole"], ["b1"], geometry_crs=UTM)
    # every data tile has its mask tile: twice the tiles, in as few requests as data alone would take
    data_tiles = 6 * 5  # 32 px tiles over the AOI's window: columns 9..190, rows 3..150
    assert plan["tiles"] == 2 * data_tiles
    assert plan["requests"] == 1


def test_get_table_and_xarray_carry_validity(masked_files, masked_collection):
    col = masked_collection["rgba_tiled"]
    geom = _aois()["with a hole"]
    want = _oracle(masked_files["rgba_tiled"], geom, 1)
    table, _ = col.get_table(pa.table({"geometry": [shapely.to_wkb(geom)], "name": ["a"]}), ["b1"],
                             geometry_crs=UTM, masked=True)
    values = table["data"][0].values
    assert values.null_count == int(want.mask.sum())
    np.testing.assert_array_equal(np.asarray(values.is_null()).reshape(want.shape), want.mask)
    ds = col.get_xarray(geom, ["b1"], geometry_crs=UTM, masked=True)
    np.testing.assert_array_equal(np.isnan(ds["b1"].values[0]), want.mask)
    np.testing.assert_array_equal(ds["b1"].values[0][~want.mask], want.data[~want.mask])


def test_a_reprojected_read_warps_only_valid_pixels(masked_files, masked_collection):
    """Nearest warping of a masked raster equals GDAL's warp of the dataset band (which takes its mask)."""
    col = masked_collection["mask_deflate_ovr"]
    geom = _aois()["whole"]
    target = CRS.from_epsg(3857)
    got = col.get_numpy(geom, ["b1"], geometry_crs=UTM, target_crs=target, resolution=15.0, masked=True)[0, 0]
    to3857 = Transformer.from_crs(UTM, target, always_xy=True)
    geom3857 = shapely.transform(geom, lambda xy: np.column_stack(to3857.transform(xy[:, 0], xy[:, 1])))
    x0, y0, x1, y1 = geom3857.bounds
    dst_transform = from_origin(np.floor(x0 / 15) * 15, np.ceil(y1 / 15) * 15, 15.0, 15.0)
    assert got.shape == (int(np.ceil(y1 / 15) - np.floor(y0 / 15)), int(np.ceil(x1 / 15) - np.floor(x0 / 15)))
    want = np.zeros(got.shape, np.uint16)
    with rasterio.open(masked_files["mask_deflate_ovr"]) as src:
        rasterio.warp.reproject(rasterio.band(src, 1), want, dst_transform=dst_transform, dst_crs=target.to_wkt(),
                                resampling=Resampling.nearest, dst_nodata=0)
        src_valid = src.read_masks(1) > 0
    inside = rasterio.features.geometry_mask([geom3857], got.shape, dst_transform, invert=True)
    np.testing.assert_array_equal(np.where(inside, want, 0), got.data)
    assert got.mask.sum() > (~inside).sum()  # the collar and the hole are masked too
    assert not src_valid.all()

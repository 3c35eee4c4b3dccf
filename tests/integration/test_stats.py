"""Statistics through S3 (get_table/get_gdf(stats=...), the extraction flow, ``rasteret extract --stats``)
equal numpy over rasterio.mask's masked arrays of the same files.

The oracle for every AOI x record x band is ``rasterio.mask.mask(src, [aoi], crop=True,
filled=False)``: its unmasked values (NaN left out) are what ``count``, ``mean``, ``std``
(``ddof=0``), ``min``, ``max`` and ``median`` reduce; ``pixels`` is the count of pixels
``rasterio.mask.raster_geometry_mask`` puts inside the AOI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import rasterio.mask
import shapely
from deltalake import DeltaTable
from pyproj import CRS, Transformer
from rasterio.transform import from_origin

import rasteret_core as rc

# GDAL's own words for a nodata value an alpha band shadows
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")

STATS = ["count", "mean", "min", "max", "std", "median"]
BANDS = ["red", "swir16"]  # a 10 m and a 20 m band: two grids per record
ZONE32 = CRS.from_epsg(32632)
CRS84 = CRS.from_user_input("OGC:CRS84")
RED_32N = (10.0, 0.0, 717360.0, 0.0, -10.0, 5081220.0)  # the sample archive's 32N red grid


def _to_crs(geom, src, dst):
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _pixels(transform, c0, r0, c1, r1):
    a, _, c, _, e, f = transform
    return shapely.box(c + c0 * a, f + r1 * e, c + c1 * a, f + r0 * e)


def _pixel(transform, col, row):
    a, _, c, _, e, f = transform
    return (c + col * a, f + row * e)


def _sample_aois() -> pa.Table:
    """AOIs over the 32N scenes (in CRS84): inside a tile, across the nodata edge, in the nodata corner (outside
    the footprints), past the raster's edge, nowhere."""
    geoms = {
        "tile": _pixels(RED_32N, 100.3, 50.2, 300.7, 200.9),
        "edge": shapely.Polygon([_pixel(RED_32N, 200.2, 800.3), _pixel(RED_32N, 900.7, 820.6),
                                 _pixel(RED_32N, 350.4, 1100.6)]),
        "nodata": _pixels(RED_32N, 20.2, 1400.1, 80.7, 1500.3),
        "past": _pixels(RED_32N, -100.4, -150.2, 200.3, 100.8),
    }
    crs84 = [_to_crs(g, ZONE32, CRS84) for g in geoms.values()] + [shapely.box(-70, -10, -69.9, -9.9)]
    return pa.table({
        "field_id": [*list(geoms), "nowhere"],
        "area_ha": [1.5, 2.0, 3.25, 0.5, 0.0],
        "geometry": [shapely.to_wkb(g) for g in crs84],
    })


def _oracle(path: str, geom: shapely.Geometry, geom_crs: CRS, index: int) -> tuple[int, np.ndarray] | None:
    """(pixels inside the AOI, valid values) for one file and band, or None when the AOI misses the raster."""
    with rasterio.open(path) as src:
        shape = _to_crs(geom, geom_crs, src.crs)
        try:
            data, _ = rasterio.mask.mask(src, [shape], crop=True, filled=False, indexes=[index])
            outside, _, _ = rasterio.mask.raster_geometry_mask(src, [shape], crop=True)
        except ValueError:  # "Input shapes do not overlap raster."
            return None
    values = data[0].compressed()
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    return int((~outside).sum()), values


def _check_row(row: dict, pixels: int, values: np.ndarray, stats=STATS) -> None:
    where = f"{row.get('field_id', row.get('name'))} {row['record_id']} {row['band']}"
    assert row["pixels"] == pixels, where
    assert row["count"] == values.size, where
    if values.size == 0:
        assert all(row[s] is None for s in stats if s != "count"), where
        return
    exact = {"min": values.min(), "max": values.max(), "median": np.median(values)}
    for name in ("min", "max", "median"):
        if name in stats:
            assert row[name] == exact[name], f"{where} {name}: {row[name]} != {exact[name]}"
    if "mean" in stats:
        np.testing.assert_allclose(row["mean"], np.mean(values.astype(np.float64)), rtol=1e-12, err_msg=where)
    if "std" in stats:
        np.testing.assert_allclose(row["std"], np.std(values.astype(np.float64)), rtol=1e-9, err_msg=where)


def _expected(col: rc.Collection, aois: pa.Table, bands, local_path_of, geom_crs: CRS, *, key: str = "field_id"):
    """(aoi, record, band) -> (pixels, valid values) for every AOI x record x band whose window is not empty."""
    out = {}
    rows = col.to_arrow().to_pylist()
    for name, wkb in zip(aois[key].to_pylist(), aois["geometry"].to_pylist(), strict=True):
        geom = shapely.from_wkb(wkb)
        for row in rows:
            if not shapely.intersects(shapely.from_wkb(row["geometry"]), _to_crs(geom, geom_crs, CRS84)):
                continue
            for band in bands:
                asset = row["assets"][band]
                found = _oracle(local_path_of(asset["href"]), geom, geom_crs, asset.get("band_index") or 1)
                if found is not None:
                    out[(name, row["id"], band)] = found
    return out


@pytest.fixture(scope="module")
def sample_stats(s3_collection):
    return s3_collection.get_table(_sample_aois(), BANDS, stats=STATS)


def test_statistics_equal_numpy_over_rasterio_mask(s3_collection, local_path_of, sample_stats):
    table, io = sample_stats
    want = _expected(s3_collection, _sample_aois(), BANDS, local_path_of, CRS84)
    rows = table.to_pylist()
    assert {(r["field_id"], r["record_id"], r["band"]) for r in rows} == set(want)
    for row in rows:
        _check_row(row, *want[(row["field_id"], row["record_id"], row["band"])])
    assert {r["field_id"] for r in rows} == {"tile", "edge", "past"}  # "nodata" lies outside the footprints
    edge = next(r for r in rows if r["field_id"] == "edge" and r["record_id"].startswith("S2A_32TQR"))
    assert 0 < edge["count"] < edge["pixels"]  # nodata left out
    assert io.requests > 0 and io.bytes > 0


def test_the_statistics_table_schema(sample_stats):
    table, _ = sample_stats
    assert [(f.name, f.type) for f in table.schema] == [
        ("field_id", pa.string()), ("area_ha", pa.float64()), ("geometry", pa.binary()),
        ("record_id", pa.string()), ("datetime", pa.timestamp("us", tz="UTC")), ("band", pa.string()),
        ("crs", pa.string()), ("transform", pa.list_(pa.float64())), ("height", pa.int32()), ("width", pa.int32()),
        ("pixels", pa.int64()), ("count", pa.int64()), ("mean", pa.float64()),
        ("min", pa.int32()), ("max", pa.int32()),  # uint16 pixels, widened as Delta stores them
        ("std", pa.float64()), ("median", pa.float64()),
    ]


def test_batches_stay_bounded_and_give_the_same_table(s3_collection, sample_stats, monkeypatch):
    from rasteret_core.read import fetch as _fetch

    held = []
    real = _fetch.execute_plan

    async def spy(plan, stores, *, masked=False):
        held.append((len(plan.chunks), sum(c.window.height * c.window.width for c in plan.chunks)))
        return await real(plan, stores, masked=masked)

    monkeypatch.setattr(_fetch, "execute_plan", spy)
    limit = 20_000
    small = rc.load(s3_collection.uri, settings=rc.Settings.from_env(batch_pixels=limit))
    table, io = small.get_table(_sample_aois(), BANDS, stats=STATS)
    assert len(held) > 3
    assert all(pixels <= limit or chunks == 1 for chunks, pixels in held)
    assert table.equals(sample_stats[0])
    assert io.bytes >= sample_stats[1].bytes  # tiles two batches share are read by both


def test_order_and_subset_of_statistics_and_get_gdf(s3_collection, sample_stats):
    table, _ = s3_collection.get_table(_sample_aois(), ["red"], stats=["median", "count"])
    assert table.schema.names[-3:] == ["pixels", "median", "count"]
    full = sample_stats[0].filter(pa.compute.equal(sample_stats[0]["band"], "red"))
    assert table["median"].equals(full["median"]) and table["count"].equals(full["count"])
    gdf = s3_collection.get_gdf(_sample_aois(), ["red"], stats=["mean", "max"])
    assert "data" not in gdf.columns and list(gdf.columns[-4:]) == ["pixels", "mean", "max", "geometry"]
    assert gdf.crs.equals(CRS84)
    np.testing.assert_array_equal(gdf["max"].to_numpy(dtype=float, na_value=np.nan),
                                  full["max"].to_numpy(zero_copy_only=False).astype(float))


def test_unknown_statistics_are_refused_before_any_read(s3_collection):
    with pytest.raises(rc.StatisticError, match="the valid ones are count, mean, min, max, std, median"):
        s3_collection.get_table(_sample_aois(), ["red"], stats=["mean", "p90"])
    with pytest.raises(rc.StatisticError):
        s3_collection.get_gdf(_sample_aois(), ["red"], stats=["sum"])


# ---------------------------------------------------------------- GDAL's mask band: internal masks, alpha, NaN

BUCKET = "rasteret-stats-masks"
W, H = 150, 110
TRANSFORM = from_origin(600000.0, 5000000.0, 10.0, 10.0)
UTM = CRS.from_epsg(32633)
MASK_CASES = {
    # name: (bands, dtype, creation options, validity from)
    "mask_over_nodata": (1, "uint16", dict(compress="deflate", tiled=True, blockxsize=32, blockysize=32, nodata=5),
                         "mask"),
    "rgba": (4, "uint8", dict(photometric="RGB", alpha="YES", tiled=True, blockxsize=64, blockysize=64,
                              compress="zstd"), "alpha"),
    "float_nan_nodata": (1, "float32", dict(compress="lzw", predictor=3, nodata=float("nan")), "nan"),
    "float_nan_no_nodata": (1, "float32", dict(compress="deflate", tiled=True, blockxsize=64, blockysize=64), "nan"),
    "int16_nodata": (1, "int16", dict(compress="deflate", predictor=2, nodata=-9999), "nodata"),
}


def _validity() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    inside = (xx + 0.6 * yy > 30) & (xx - 0.5 * yy < 120) & (yy > 5)
    inside &= (xx - 80) ** 2 + (yy - 50) ** 2 > 12**2
    return inside


def _write(folder: Path, name: str) -> Path:
    count, dtype, opts, kind = MASK_CASES[name]
    rng = np.random.default_rng(len(name))
    path = folder / f"{name}.tif"
    valid = _validity()
    if dtype.startswith("float"):
        data = rng.normal(100.0, 30.0, (count, H, W)).astype(dtype)
    else:
        top = 250 if dtype == "uint8" else 4000
        data = rng.integers(-top if dtype == "int16" else 1, top, (count, H, W)).astype(dtype)
    if kind == "nan":
        data[:, ~valid] = np.nan
    if kind == "nodata":
        data[:, ~valid] = opts["nodata"]
    if "nodata" in opts and kind == "mask":
        data[:, 40:50, 10:140] = opts["nodata"]  # nodata the internal mask still calls valid
    if kind == "alpha":
        data[-1] = np.where(valid, 255, 0)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=count, dtype=dtype, crs=UTM,
                           transform=TRANSFORM, **opts) as dst:
            dst.write(data)
            if kind == "mask":
                dst.write_mask(np.where(valid, 255, 0).astype("uint8"))
    return path


@pytest.fixture(scope="module")
def masked_files(s3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stats-masks")
    paths = {name: _write(folder, name) for name in MASK_CASES}
    s3.create_bucket(BUCKET)
    s3.upload_dir(folder, BUCKET)
    return paths


def _masked_aois() -> pa.Table:
    a, _, c, _, e, f = TRANSFORM[:6]

    def px(col, row):
        return (c + col * a, f + row * e)

    ring = [px(10.3, 2.2), px(140.7, 9.1), px(135.2, 105.6), px(6.8, 100.4)]
    hole = [px(60.1, 40.3), px(100.6, 42.2), px(90.4, 70.8)]
    geoms = {"with a hole": shapely.Polygon(ring, [hole]), "invalid corner": shapely.box(*px(0.2, 24.6), *px(10.4, 0.3)),
             "partly outside": shapely.box(*px(-20.4, 130.2), *px(60.3, 70.1))}
    return pa.table({"name": list(geoms), "geometry": [shapely.to_wkb(g) for g in geoms.values()]})


@pytest.mark.parametrize("name", list(MASK_CASES))
def test_masked_files_statistics_equal_numpy_over_rasterio_mask(masked_files, name):
    feet = _to_crs(shapely.box(*rasterio.transform.array_bounds(H, W, TRANSFORM)), UTM, CRS84)
    count = MASK_CASES[name][0]
    asset = {"image": {"href": f"s3://{BUCKET}/{name}.tif", "type": "image/tiff; application=geotiff",
                       "roles": ["data"]}}
    col = rc.build_from_table(pa.table({"id": [name], "datetime": ["2024-05-01T10:00:00Z"],
                                        "geometry": [shapely.to_wkb(feet)], "assets": [asset]}),
                              bands={f"b{i}": f"image:{i}" for i in range(1, count + 1)})
    bands = col.bands
    table, _ = col.get_table(_masked_aois(), bands, geometry_crs=UTM, stats=STATS)
    rows = table.to_pylist()
    assert len(rows) == 3 * count
    for row in rows:
        geom = shapely.from_wkb(next(g for n, g in zip(_masked_aois()["name"].to_pylist(),
                                                      _masked_aois()["geometry"].to_pylist(), strict=True) if n == row["name"]))
        pixels, values = _oracle(str(masked_files[name]), geom, UTM, bands.index(row["band"]) + 1)
        _check_row(row, pixels, values)
    first = {r["name"]: r for r in rows if r["band"] == "b1"}
    assert first["invalid corner"]["count"] == 0 and first["invalid corner"]["pixels"] > 0
    assert 0 < first["with a hole"]["count"] < first["with a hole"]["pixels"]
    if name.startswith("float"):
        assert table.schema.field("min").type == pa.float32()


# ---------------------------------------------------------------- the flow and the command line

@pytest.fixture(scope="module")
def aoi_file(tmp_path_factory) -> Path:
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    path = tmp_path_factory.mktemp("stats-aois") / "aois.parquet"
    table = _sample_aois()
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)
    return path


def _delta(uri: str, col: rc.Collection) -> pa.Table:
    return DeltaTable(uri, storage_options=col.settings.delta_storage_options()).to_pyarrow_table()


ORDER = [("field_id", "ascending"), ("record_id", "ascending"), ("band", "ascending")]


def test_the_flow_writes_the_table_the_library_returns(prefect_api, staging_dir, s3_collection, aoi_file):
    from rasteret_flows import extract_aois

    out_uri = "s3://rasteret-tables/extraction-stats"
    result = extract_aois(s3_collection.uri, str(aoi_file), BANDS, out_uri, batch_size=2, stats=STATS)
    assert result.batches == 3 and result.failed_batches == 0
    out = _delta(out_uri, s3_collection)
    want, _ = s3_collection.get_table(str(aoi_file), BANDS, stats=STATS)
    assert [(f.name, f.type) for f in out.schema] == [(f.name, f.type) for f in want.schema]
    assert out.num_rows == result.rows == want.num_rows
    assert out.sort_by(ORDER).equals(want.sort_by(ORDER))


def test_cli_extract_with_stats(prefect_api, staging_dir, s3_collection, aoi_file):
    from typer.testing import CliRunner

    from rasteret_flows.cli import app

    out_uri = "s3://rasteret-tables/cli-extraction-stats"
    done = CliRunner().invoke(app, ["extract", s3_collection.uri, "--aois", str(aoi_file), "--bands", "red",
                                    "--out", out_uri, "--stats", "count, mean,max"])
    assert done.exit_code == 0, done.output
    out = _delta(out_uri, s3_collection)
    want, _ = s3_collection.get_table(str(aoi_file), ["red"], stats=["count", "mean", "max"])
    assert out.schema.names[-4:] == ["pixels", "count", "mean", "max"]
    assert out.sort_by(ORDER).equals(want.sort_by(ORDER))

    bad = CliRunner().invoke(app, ["extract", s3_collection.uri, "--aois", str(aoi_file), "--bands", "red",
                                   "--out", out_uri, "--stats", "count,p90"])
    assert bad.exit_code == 2
    assert "count, mean, min, max, std, median" in " ".join(bad.output.split())

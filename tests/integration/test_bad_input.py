"""Bad input, each refused with a clear error: what went wrong, where, and what to do.

Geometries (invalid, empty, non-polygonal AOIs; points for AOIs and the reverse),
CRS strings, AOIs outside every footprint, unknown bands, reads larger than the
memory cap (``RASTERET_MAX_READ_BYTES``), corrupt TIFFs, huge strips, missing and
forbidden objects (404, 403), Delta tables written by a newer protocol or another
tool, and GeoParquet files without CRS metadata. Each case asserts the error's
type and the words that make it actionable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from deltalake import DeltaTable, write_deltalake
from rasterio.transform import from_origin

import rasteret_core as rc

BANDS = ["red", "nir"]


@pytest.fixture(scope="module")
def scene(s3_collection):
    """A box inside one scene (its CRS), and that scene's CRS84 footprint centre."""
    row = next(r for r in s3_collection.to_arrow().to_pylist() if r["crs"] == "EPSG:32632")
    a, _, c, _, e, f = row["assets"]["red"]["header"]["transform"]
    box = shapely.box(c + 100 * a, f + 300 * e, c + 300 * a, f + 100 * e)
    centre = shapely.from_wkb(row["geometry"]).centroid
    return {"box": box, "centre": centre, "crs": row["crs"], "row": row}


def _refusal(call, kind, *words):
    """Run ``call``; it must raise ``kind`` with every one of ``words`` in its message. Return the message."""
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    print(f"{kind.__name__}: {message}")  # the closing report quotes these
    return message


# --- geometries and CRS --------------------------------------------------------------------------------------------


def test_invalid_aoi(s3_collection, scene):
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # self-intersecting
    _refusal(lambda: s3_collection.get_numpy(bowtie, BANDS, geometry_crs=scene["crs"]), rc.GeometryError, "valid")


def test_empty_aoi(s3_collection):
    _refusal(lambda: s3_collection.get_numpy(shapely.Polygon(), BANDS), rc.GeometryError, "empty")


@pytest.mark.parametrize("kind", ["line", "point", "multipoint"])
def test_non_polygon_aois(s3_collection, scene, kind):
    box = scene["box"]
    aoi = {"line": shapely.LineString(box.exterior.coords[:2]), "point": box.centroid,
           "multipoint": shapely.MultiPoint(box.exterior.coords[:3])}[kind]
    _refusal(lambda: s3_collection.get_numpy(aoi, BANDS, geometry_crs=scene["crs"]), rc.GeometryError,
             "Polygon or MultiPolygon", aoi.geom_type, "sample_points", "buffer")


def test_polygons_where_points_are_needed(s3_collection, scene):
    table = pa.table({"geometry": [shapely.to_wkb(scene["box"])]})
    _refusal(lambda: s3_collection.sample_points(table, BANDS, geometry_crs=scene["crs"]), rc.GeometryError,
             "Point geometries", "Polygon", "get_table")


def test_points_where_polygons_are_needed(s3_collection, scene):
    table = pa.table({"geometry": [shapely.to_wkb(scene["box"]), shapely.to_wkb(scene["box"].centroid)]})
    _refusal(lambda: s3_collection.get_table(table, BANDS, geometry_crs=scene["crs"]), rc.GeometryError,
             "Polygon or MultiPolygon", "got a Point", "sample_points")


@pytest.mark.parametrize("crs", ["EPSG:999999", "not a crs", "ESRI:0"])
def test_unknown_crs_strings(s3_collection, scene, crs):
    _refusal(lambda: s3_collection.get_numpy(scene["box"], BANDS, geometry_crs=crs), rc.GeometryError, crs)


def test_an_aoi_outside_every_footprint(s3_collection):
    far = shapely.box(-60.0, -30.0, -59.9, -29.9)  # South America; the archive is in the Alps
    _refusal(lambda: s3_collection.get_numpy(far, BANDS), rc.NoRecordsError, "no record")


def test_an_unknown_band(s3_collection, scene):
    _refusal(lambda: s3_collection.get_numpy(scene["box"], ["red", "B99"], geometry_crs=scene["crs"]),
             rc.BandError, "B99", "red")


# --- the memory cap ------------------------------------------------------------------------------------------------


def test_a_read_over_the_memory_cap_is_refused_with_its_size_before_any_fetch(s3, s3_collection, scene):
    settings = rc.Settings.from_env(max_read_bytes=1_000_000)
    capped = rc.Collection(s3_collection.to_arrow(), settings=settings)
    big = scene["box"].buffer(2000)
    start = time.monotonic()
    message = _refusal(lambda: capped.read_numpy(big, BANDS, geometry_crs=scene["crs"]), rc.ReadTooLargeError,
                       "RASTERET_MAX_READ_BYTES=1000000", "nothing was fetched", "overview")
    assert time.monotonic() - start < 5
    with pytest.raises(rc.ReadTooLargeError) as info:
        capped.get_numpy(big, BANDS, geometry_crs=scene["crs"])
    assert info.value.limit == 1_000_000 and info.value.size > 1_000_000 and f"({info.value.size} bytes" in message
    small = scene["box"].buffer(-950)  # 10 x 10 px a record and band: under the cap, read as usual
    result = capped.read_numpy(small, BANDS, geometry_crs=scene["crs"])
    assert result.data.size and result.stats.requests > 0
    assert rc.Settings.from_env({"RASTERET_MAX_READ_BYTES": "123"}).max_read_bytes == 123
    with pytest.raises(rc.ConfigError, match="RASTERET_MAX_READ_BYTES must be at least 1"):
        rc.Settings.from_env({"RASTERET_MAX_READ_BYTES": "0"})


# --- files: corrupt, huge strips, missing, forbidden ---------------------------------------------------------------


def _tiff(path: Path, **profile: object) -> str:
    data = (np.arange(256 * 256).reshape(256, 256) % 251).astype("uint8")
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8",
                       crs="EPSG:32632", transform=from_origin(650000, 5100000, 10, 10), **profile) as dst:
        dst.write(data, 1)
    return str(path)


def _records(hrefs: dict[str, str]) -> pa.Table:
    footprint = shapely.to_wkb(shapely.box(10.9, 45.9, 11.1, 46.1))
    return pa.table({"id": list(hrefs), "datetime": ["2024-05-01T00:00:00Z"] * len(hrefs),
                     "geometry": [footprint] * len(hrefs), "image_href": list(hrefs.values())})


def test_a_corrupt_tiff_is_refused_at_build_naming_it(tmp_path):
    good = _tiff(tmp_path / "good.tif", tiled=True, blockxsize=64, blockysize=64)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\xff" * 60)  # a TIFF signature, then an IFD offset past the end
    garbage = tmp_path / "notatiff.tif"
    garbage.write_bytes(b"<html>404 Not Found</html>")
    message = _refusal(lambda: rc.build_from_table(_records({"good": good, "corrupt": str(corrupt),
                                                            "garbage": str(garbage)})),
                       rc.CollectionError, "2 asset header(s)", "corrupt.tif", "truncated or corrupt",
                       "notatiff.tif", "not a TIFF file", "partial=True")
    assert "good.tif" not in message


def test_a_huge_strip_is_refused_with_its_size(tmp_path):
    # one strip holding the whole 256 x 256 image: reading any pixel means the whole strip
    striped = _tiff(tmp_path / "strip.tif", tiled=False, BLOCKYSIZE=256, compress="deflate")
    with rasterio.open(striped) as src:
        assert src.block_shapes == [(256, 256)]
    col = rc.build_from_table(_records({"strip": striped}), settings=rc.Settings.from_env(max_read_bytes=10_000))
    window = shapely.box(650000 + 10, 5100000 - 60, 650000 + 60, 5100000 - 10)  # 5 x 5 pixels: 25 bytes out
    message = _refusal(lambda: col.get_numpy(window, ["image"], geometry_crs="EPSG:32632"), rc.ReadTooLargeError,
                       "strip.tif", "one strip of this file is 256 x 256 px", "64.0 KiB decoded", "tiled COG")
    assert "nothing was fetched" in message


def test_a_missing_object_404(s3, s3_collection, scene):
    table = s3_collection.to_arrow()
    rows = table.to_pylist()
    for row in rows:
        for band in BANDS:
            row["assets"][band]["href"] = row["assets"][band]["href"].replace("/cogs/", "/gone/")
    gone = rc.Collection(pa.Table.from_pylist(rows, schema=table.schema))
    _refusal(lambda: gone.get_numpy(scene["box"], BANDS, geometry_crs=scene["crs"]), rc.ObjectNotFoundError,
             "s3://rasteret-sample/gone/", "no such object", "check the href")


def test_a_forbidden_object_403(s3, s3_collection, scene):
    wrong = rc.Settings.from_env(aws_secret_access_key="not-the-secret")  # noqa: S106 - a wrong key on purpose
    col = rc.Collection(s3_collection.to_arrow(), settings=wrong)
    message = _refusal(lambda: col.get_numpy(scene["box"], BANDS, geometry_crs=scene["crs"]), rc.FetchError,
                       "s3://rasteret-sample/", "access denied", "credentials")
    assert "not-the-secret" not in message


# --- tables ----------------------------------------------------------------------------------------------------------


def test_a_delta_table_of_a_newer_protocol(tmp_path, s3_collection):
    uri = str(tmp_path / "newer")
    rc.Collection(s3_collection.to_arrow()).export(str(tmp_path / "records.parquet"))
    rc.build_from_table(str(tmp_path / "records.parquet"), uri=uri, enrich=False)
    log = sorted((Path(uri) / "_delta_log").glob("*.json"))
    newer = log[-1].with_name(f"{int(log[-1].stem) + 1:020d}.json")
    newer.write_text(json.dumps({"protocol": {"minReaderVersion": 9, "minWriterVersion": 9}}) + "\n")
    _refusal(lambda: rc.load(uri).to_arrow(), rc.CollectionError, uri)


def test_a_delta_table_written_by_another_tool(tmp_path):
    uri = str(tmp_path / "other")
    write_deltalake(uri, pa.table({"name": ["a", "b"], "value": [1.0, 2.0]}))
    assert DeltaTable(uri).version() == 0
    _refusal(lambda: rc.load(uri).to_arrow(), rc.SchemaError, "id")


def test_geoparquet_without_crs_metadata(tmp_path, s3_collection, scene):
    path = tmp_path / "aois.parquet"
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}}}  # no "crs": CRS84 by spec
    table = pa.table({"geometry": [shapely.to_wkb(scene["box"])]})
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), path)
    plain = tmp_path / "plain.parquet"  # no GeoParquet metadata at all
    pq.write_table(table, plain)
    for source in (path, plain):  # coordinates in metres, read as lon/lat: refused, saying how to fix it
        _refusal(lambda source=source: s3_collection.get_table(str(source), BANDS), rc.GeometryError,
                 "out of range for lon/lat", "geometry_crs=")
        got, _ = s3_collection.get_table(str(source), BANDS, geometry_crs=scene["crs"])
        assert got.num_rows > 0
    stated = {**geo, "columns": {"geometry": {**geo["columns"]["geometry"], "crs": "EPSG:32632"}}}
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(stated).encode()}), path)
    _refusal(lambda: s3_collection.get_table(str(path), BANDS, geometry_crs="EPSG:4326"), rc.SchemaError,
             "contradicts", "drop one")

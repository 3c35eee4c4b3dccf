"""Sharing a collection: GeoParquet export read by GeoPandas, DuckDB and Polars, and reloaded from each."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import CRS

import rasteret_core as rc

AOI = (11.86, 45.80, 11.875, 45.81)
CRS84 = CRS.from_user_input("OGC:CRS84")


@pytest.fixture(scope="module")
def exported(s3_collection, tmp_path_factory):
    path = tmp_path_factory.mktemp("share") / "collection.parquet"
    assert s3_collection.export(path) == str(path)
    return path


def _same_records(col: rc.Collection, original: rc.Collection) -> None:
    got = {r["id"]: r for r in col.to_arrow().to_pylist()}
    want = {r["id"]: r for r in original.to_arrow().to_pylist()}
    assert got.keys() == want.keys()
    for rid, row in want.items():
        assert shapely.from_wkb(got[rid]["geometry"]).equals(shapely.from_wkb(row["geometry"]))
        assert got[rid]["datetime"] == row["datetime"] and got[rid]["crs"] == row["crs"]
        assert got[rid]["assets"] == row["assets"]  # headers (tile tables, ETags) intact
    np.testing.assert_array_equal(col.get_numpy(AOI, ["red", "nir"]), original.get_numpy(AOI, ["red", "nir"]))


def test_the_export_is_geoparquet_1_1(exported, s3_collection):
    meta = json.loads(pq.read_schema(exported).metadata[b"geo"])
    column = meta["columns"]["geometry"]
    assert meta["version"] == "1.1.0" and meta["primary_column"] == "geometry" and column["encoding"] == "WKB"
    assert CRS.from_json_dict(column["crs"]) == CRS84 and column["geometry_types"] == ["Polygon"]
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    bounds = shapely.union_all(shapely.from_wkb(s3_collection.to_arrow()["geometry"].to_pylist())).bounds
    assert column["bbox"] == pytest.approx(list(bounds))
    assert "rasteret:record_hash" not in pq.read_schema(exported).names


def test_geopandas_reads_it_and_its_frame_reloads(exported, s3_collection, tmp_path):
    import geopandas as gpd

    gdf = gpd.read_parquet(exported)
    assert gdf.crs == CRS84 and gdf.geometry.name == "geometry" and len(gdf) == len(s3_collection)
    assert set(gdf.geom_type) == {"Polygon"}
    _same_records(rc.build_from_table(gdf), s3_collection)
    gdf.to_parquet(tmp_path / "from-geopandas.parquet")
    _same_records(rc.load(tmp_path / "from-geopandas.parquet"), s3_collection)


def test_duckdb_reads_it_and_its_tables_reload(exported, s3_collection, tmp_path):
    import duckdb

    con = duckdb.connect()
    kind = {r[0]: r[1] for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{exported}')").fetchall()}
    assert kind["geometry"].upper().startswith(("GEOMETRY", "BLOB")) and "CRS84" in kind["geometry"]
    rows = con.sql(f"SELECT id, geometry, bbox.xmin AS xmin FROM read_parquet('{exported}') ORDER BY id").fetchall()
    want = {r["id"]: r for r in s3_collection.to_arrow().to_pylist()}
    for rid, wkb, xmin in rows:  # DuckDB hands the footprints back as WKB blobs
        assert shapely.from_wkb(bytes(wkb)).equals(shapely.from_wkb(want[rid]["geometry"]))
        assert xmin == want[rid]["bbox"]["xmin"]
    red = con.sql(f"SELECT assets.red.header.images[1].tile_offsets FROM read_parquet('{exported}') ORDER BY id")
    assert red.limit(1).fetchall()[0][0] == min(want.items())[1]["assets"]["red"]["header"]["images"][0]["tile_offsets"]
    reader = con.sql(f"SELECT * FROM read_parquet('{exported}')").arrow()
    _same_records(rc.build_from_table(reader), s3_collection)
    copy = tmp_path / "from-duckdb.parquet"
    con.sql(f"COPY (SELECT * FROM read_parquet('{exported}')) TO '{copy}' (FORMAT parquet)")
    _same_records(rc.load(copy), s3_collection)


def test_polars_reads_it_and_its_frame_reloads(exported, s3_collection, tmp_path):
    import polars as pl

    df = pl.read_parquet(exported)
    assert df.schema["geometry"] == pl.Binary and df.height == len(s3_collection)
    want = {r["id"]: r["geometry"] for r in s3_collection.to_arrow().to_pylist()}
    assert all(shapely.from_wkb(g).equals(shapely.from_wkb(want[i])) for i, g in zip(df["id"], df["geometry"], strict=True))
    _same_records(rc.build_from_table(df), s3_collection)  # through __arrow_c_stream__
    df.write_parquet(tmp_path / "from-polars.parquet")  # no geo metadata: footprints are taken as OGC:CRS84
    _same_records(rc.load(tmp_path / "from-polars.parquet"), s3_collection)


def test_an_export_on_s3_reloads_into_a_new_versioned_collection(s3_collection, s3):
    path = "s3://rasteret-tables/exports/collection.parquet"
    s3_collection.export(path)
    copy = rc.build_from_table(path, uri="s3://rasteret-tables/reimported")
    assert copy.version == 0 and copy.history()[0]["metadata"]["headers_parsed"] == 0  # headers came along
    _same_records(copy, s3_collection)
    with pytest.raises(rc.CollectionError, match="no versions"):
        rc.load(path, version=0)  # the version every table has
    assert rc.build_from_table(pa.table(s3_collection.to_arrow()), uri="s3://rasteret-tables/reimported").version == 0


@pytest.mark.parametrize("where", ["local", "s3"])
def test_cli_export_writes_what_collection_export_writes(s3_collection, tmp_path, where):
    from typer.testing import CliRunner

    from rasteret_flows.cli import app

    path = str(tmp_path / "cli.parquet") if where == "local" else "s3://rasteret-tables/exports/cli.parquet"
    done = CliRunner().invoke(app, ["export", s3_collection.uri, path])
    assert done.exit_code == 0, done.output
    assert "wrote 6 records" in done.output
    filesystem, key = s3_collection.settings.arrow_filesystem(path)
    schema = pq.read_schema(key, filesystem=filesystem)
    assert not {"rasteret:record_hash", "rasteret_month"} & set(schema.names)  # no internal column leaks
    assert json.loads(schema.metadata[b"geo"])["primary_column"] == "geometry"
    _same_records(rc.load(path), s3_collection)

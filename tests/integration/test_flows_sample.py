"""Point sampling: Collection.sample_points equals rasterio's ``sample`` through S3; the flow keeps every column."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from deltalake import DeltaTable
from pyproj import Transformer
from rasterio.session import AWSSession

import rasteret_core as rc

BANDS = ["red", "swir16"]  # a 10 m and a 20 m band: two grids per record


@pytest.fixture(scope="module")
def points(s3_collection) -> pa.Table:
    """Points with business columns: spread over every footprint, a few in two zones' overlap, one far away."""
    rng = np.random.default_rng(7)
    rows = s3_collection.to_arrow().to_pylist()
    geoms = []
    for row in rows[::2]:
        b = row["bbox"]
        for _ in range(3):
            geoms.append(shapely.Point(rng.uniform(b["xmin"], b["xmax"]), rng.uniform(b["ymin"], b["ymax"])))
    geoms.append(shapely.Point(-70.0, -10.0))
    n = len(geoms)
    return pa.table({
        "pid": [f"p{i:02d}" for i in range(n)],
        "weight": pa.array(rng.uniform(0, 1, n), pa.float32()),
        "visits": pa.array([i if i % 4 else None for i in range(n)], pa.int64()),
        "geometry": [shapely.to_wkb(g) for g in geoms],
    })


def _rasterio_env(s3):
    host = urlparse(s3.endpoint_url).netloc
    session = AWSSession(aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                         region_name=s3.region, endpoint_url=host)
    return rasterio.Env(session=session, AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE")


def _oracle(col, points: pa.Table, bands, s3) -> dict[tuple[str, str, str], float]:
    """(pid, record_id, band) -> value, from rasterio's ``sample`` on each COG through /vsis3/."""
    rows = col.to_arrow().to_pylist()
    geoms = shapely.from_wkb(points["geometry"].to_pylist())
    pids = points["pid"].to_pylist()
    want = {}
    with _rasterio_env(s3):
        for row in rows:
            inside = [i for i, g in enumerate(geoms) if shapely.intersects(shapely.from_wkb(row["geometry"]), g)]
            for band in bands:
                href = row["assets"][band]["href"]
                with rasterio.open("/vsis3/" + href.removeprefix("s3://")) as src:
                    tr = Transformer.from_crs("OGC:CRS84", src.crs, always_xy=True)
                    for i in inside:
                        x, y = tr.transform(geoms[i].x, geoms[i].y)
                        r, c = src.index(x, y)
                        if 0 <= r < src.height and 0 <= c < src.width:
                            want[(pids[i], row["id"], band)] = next(src.sample([(x, y)], indexes=1))[0]
    return want


def test_sample_points_equals_rasterio_sample(s3_collection, points, s3):
    got = s3_collection.sample_points(points, BANDS)
    want = _oracle(s3_collection, points, BANDS, s3)
    assert len(want) >= 20
    keys = list(zip(got["pid"].to_pylist(), got["record_id"].to_pylist(), got["band"].to_pylist(), strict=True))
    assert sorted(keys) == sorted(want) and len(set(keys)) == len(keys)
    assert got["value"].type == pa.uint16()
    np.testing.assert_array_equal(np.asarray(got["value"]), np.array([want[k] for k in keys], dtype=np.uint16))
    # every point column is kept, with its type, and matches the point it came from
    for name in points.schema.names:
        assert got.schema.field(name).type == points.schema.field(name).type
    by_pid = {r["pid"]: r for r in points.to_pylist()}
    assert all(r["weight"] == by_pid[r["pid"]]["weight"] for r in got.select(["pid", "weight"]).to_pylist())
    assert f"p{points.num_rows - 1:02d}" not in set(got["pid"].to_pylist())  # the far point: no row


@pytest.mark.parametrize("match", ["first", "latest"])
def test_match_keeps_one_record_per_point_and_band(s3_collection, points, match):
    every = s3_collection.sample_points(points, BANDS).to_pylist()
    one = s3_collection.sample_points(points, BANDS, match=match).to_pylist()
    pick = max if match == "latest" else min
    want = {}
    for pid, band in {(r["pid"], r["band"]) for r in every}:
        rows = [r for r in every if r["pid"] == pid and r["band"] == band]
        best = pick(rows, key=lambda r: (r["datetime"], r["record_id"]))
        want[(pid, band)] = (best["record_id"], best["value"])
    assert {(r["pid"], r["band"]): (r["record_id"], r["value"]) for r in one} == want


def test_sample_points_needs_points(s3_collection):
    with pytest.raises(rc.GeometryError, match=r"Point geometries.*get_table"):
        s3_collection.sample_points([shapely.box(11.8, 45.7, 11.81, 45.71)], ["red"])


def test_sampling_flow_writes_every_point_column(prefect_api, staging_dir, s3_collection, points, tmp_path):
    from rasteret_flows import sample_points

    path = tmp_path / "points.parquet"
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    pq.write_table(points.replace_schema_metadata({"geo": json.dumps(geo)}), path)
    out_uri = "s3://rasteret-tables/samples"
    result = sample_points(s3_collection.uri, str(path), BANDS, out_uri, batch_size=4)
    assert result.batches == -(-points.num_rows // 4) and result.failed_batches == 0
    assert result.inputs == points.num_rows and result.requests > 0
    out = DeltaTable(out_uri, storage_options=s3_collection.settings.delta_storage_options()).to_pyarrow_table()
    for name in points.schema.names:
        assert out.schema.field(name).type == points.schema.field(name).type
    want = s3_collection.sample_points(points, BANDS)
    assert out.num_rows == result.rows == want.num_rows
    assert out.schema.field("value").type == pa.int32()  # uint16 pixels, widened: Delta has no unsigned types
    order = [("pid", "ascending"), ("record_id", "ascending"), ("band", "ascending")]
    want = want.set_column(want.schema.get_field_index("value"), "value", want["value"].cast(pa.int32()))
    assert out.select(want.schema.names).sort_by(order).equals(want.sort_by(order))
    assert DeltaTable(out_uri, storage_options=s3_collection.settings.delta_storage_options()).history(1)[0][
        "rasteret.operation"] == "sample"


def test_cli_sample_runs_the_flow(prefect_api, staging_dir, s3_collection, points, tmp_path):
    from typer.testing import CliRunner

    from rasteret_flows.cli import app

    path = tmp_path / "points.parquet"
    pq.write_table(points, path)
    out_uri = "s3://rasteret-tables/cli-samples"
    done = CliRunner().invoke(app, ["sample", s3_collection.uri, "--points", str(path), "--bands", "red,nir",
                                    "--out", out_uri, "--match", "latest", "--batch-size", "5"])
    assert done.exit_code == 0, done.output
    assert "sampled" in done.output and "batches" in done.output
    out = DeltaTable(out_uri, storage_options=s3_collection.settings.delta_storage_options()).to_pyarrow_table()
    want = s3_collection.sample_points(points, ["red", "nir"], match="latest")
    assert out.num_rows == want.num_rows and set(points.schema.names) <= set(out.schema.names)


def _xy_points(col) -> pa.Table:
    """Points as UTM 32N x/y columns with a date each (some far from every record) and a business column."""
    rng = np.random.default_rng(4)
    to_utm = Transformer.from_crs("OGC:CRS84", "EPSG:32632", always_xy=True)
    xmin, ymin, xmax, ymax = shapely.total_bounds(shapely.from_wkb(col.to_arrow()["geometry"].to_pylist()))
    lon, lat = rng.uniform(xmin, xmax, 40), rng.uniform(ymin, ymax, 40)
    x, y = to_utm.transform(lon, lat)
    days = rng.integers(0, 90, 40)
    return pa.table({"site": [f"s{i:02d}" for i in range(40)], "x": x, "y": y,
                     "when": pa.array([f"2024-01-{1 + d % 28:02d}T12:00:00Z" for d in days])})


def _same_rows(out: pa.Table, want: pa.Table) -> None:
    """The flow's Delta rows and schema are the library's (unsigned values widened: Delta has no unsigned types)."""
    want = want.set_column(want.schema.get_field_index("value"), "value", want["value"].cast(pa.int32()))
    assert out.schema.names == want.schema.names
    for field in want.schema:
        assert out.schema.field(field.name).type == field.type, field.name
    order = [("site", "ascending"), ("record_id", "ascending"), ("band", "ascending")]
    assert out.sort_by(order).equals(want.sort_by(order))


def test_sampling_flow_takes_x_y_columns_nearest_date_and_masked(prefect_api, staging_dir, s3_collection, tmp_path):
    from rasteret_flows import sample_points

    points = _xy_points(s3_collection)
    path = tmp_path / "xy.parquet"
    pq.write_table(points, path)
    options = {"x_column": "x", "y_column": "y", "geometry_crs": "EPSG:32632", "match": "nearest-date",
               "date_column": "when", "masked": True}
    out_uri = "s3://rasteret-tables/samples-xy"
    result = sample_points(s3_collection.uri, str(path), BANDS, out_uri, batch_size=16, **options)
    assert result.failed_batches == 0 and result.batches == 3
    out = DeltaTable(out_uri, storage_options=s3_collection.settings.delta_storage_options()).to_pyarrow_table()
    want = s3_collection.sample_points(points, BANDS, **options)
    assert want.num_rows > 20 and len(set(want["site"].to_pylist())) * 2 == want.num_rows  # one record per band
    _same_rows(out, want)


def test_cli_sample_takes_the_new_options(prefect_api, staging_dir, s3_collection, tmp_path):
    from typer.testing import CliRunner

    from rasteret_flows.cli import app

    points = _xy_points(s3_collection)
    path = tmp_path / "xy.parquet"
    pq.write_table(points, path)
    out_uri = "s3://rasteret-tables/cli-samples-xy"
    args = ["sample", s3_collection.uri, "--points", str(path), "--bands", "red,nir", "--out", out_uri,
            "--x-column", "x", "--y-column", "y", "--geometry-crs", "EPSG:32632", "--batch-size", "25"]
    refused = CliRunner().invoke(app, [*args, "--match", "nearest-date"])
    assert refused.exit_code != 0 and "needs date_column" in refused.output
    done = CliRunner().invoke(app, [*args, "--match", "nearest-date", "--date-column", "when", "--masked"])
    assert done.exit_code == 0, done.output
    out = DeltaTable(out_uri, storage_options=s3_collection.settings.delta_storage_options()).to_pyarrow_table()
    _same_rows(out, s3_collection.sample_points(points, ["red", "nir"], x_column="x", y_column="y",
                                                geometry_crs="EPSG:32632", match="nearest-date",
                                                date_column="when", masked=True))


def test_a_failing_batch_is_reported_and_the_others_commit(prefect_api, staging_dir, s3, s3_items, tmp_path):
    """The 33N scenes' red files vanish after enrichment: their batch fails (not retryable), the 32N batch commits."""
    import copy

    from rasteret_core.table.delta import merge_table
    from rasteret_flows import sample_points

    client = s3.client()
    items = copy.deepcopy(s3_items)
    for item in items:
        if item["properties"].get("proj:code", item["properties"].get("proj:epsg")) in ("EPSG:32633", 32633):
            key = item["assets"]["red"]["href"].removeprefix("s3://rasteret-sample/")
            client.copy_object(Bucket="rasteret-sample", Key=f"vanishing/{key}",
                               CopySource={"Bucket": "rasteret-sample", "Key": key})
            item["assets"]["red"]["href"] = f"s3://rasteret-sample/vanishing/{key}"
    uri = "s3://rasteret-tables/vanishing"
    table = rc.engine.enrich_records(rc.engine.records_from_items(items, bands={"red": "red"}), settings=rc.Settings.from_env()).table
    merge_table(table, uri, settings=rc.Settings.from_env(), operation="build")
    rows = table.to_pylist()
    moved = [r for r in rows if "/vanishing/" in r["assets"]["red"]["href"]]
    assert moved and len(moved) < len(rows)
    for row in moved:
        key = row["assets"]["red"]["href"].removeprefix("s3://rasteret-sample/")
        client.delete_object(Bucket="rasteret-sample", Key=key)
    client.close()
    zone = {r["id"]: shapely.from_wkb(r["geometry"]) for r in rows}
    only_kept = shapely.difference(shapely.union_all([zone[r["id"]] for r in rows if r not in moved]),
                                   shapely.union_all([zone[r["id"]] for r in moved]))
    only_moved = shapely.difference(shapely.union_all([zone[r["id"]] for r in moved]),
                                    shapely.union_all([zone[r["id"]] for r in rows if r not in moved]))
    geoms = [only_kept.representative_point(), only_kept.buffer(-0.02).representative_point(),
             only_moved.representative_point()]
    path = tmp_path / "points.parquet"
    pq.write_table(pa.table({"n": [0, 1, 2], "geometry": [shapely.to_wkb(g) for g in geoms]}), path)

    result = sample_points(uri, str(path), ["red"], "s3://rasteret-tables/vanishing-samples", batch_size=2)
    assert result.batches == 2 and result.failed_batches == 1
    (failure,) = result.failures
    assert failure.unit == "point batch [2, 3)" and "ObjectNotFoundError" in failure.error
    out = DeltaTable("s3://rasteret-tables/vanishing-samples",
                     storage_options=rc.Settings.from_env().delta_storage_options()).to_pyarrow_table()
    assert set(out["n"].to_pylist()) == {0, 1} and out.num_rows == result.rows > 0

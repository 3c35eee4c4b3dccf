"""The Prefect flows against the real services: STAC API -> Delta on S3 -> extraction output table."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from deltalake import DeltaTable

import rasteret_core as rc


@pytest.fixture(scope="session")
def ingested(prefect_api, staging_dir, stac_api, s3):
    from rasteret_flows import ingest_collection

    uri = "s3://rasteret-tables/flow-collection"
    result = ingest_collection(stac_api, "sentinel-2-l2a", uri, bbox=[10.0, 44.0, 14.0, 47.0],
                               datetime="2024-01-01/2024-12-31", bands={"red": "red", "nir": "nir"},
                               partition_size=2)
    return uri, result


def test_ingestion_builds_a_collection_on_s3(ingested, s3_items):
    uri, result = ingested
    assert result.records == result.changed == result.inserted == len(s3_items) == 6
    assert result.partitions == 3 and result.committed
    assert result.header_failures == 0 and result.headers_parsed == 12
    col = rc.load(uri)
    assert len(col) == 6 and col.bands == ["red", "nir"]
    rows = col.to_arrow().to_pylist()
    assert all(r["assets"][b]["header"] is not None for r in rows for b in ("red", "nir"))
    assert {r["crs"] for r in rows} == {"EPSG:32632", "EPSG:32633"}
    assert col.history()[0]["operation"] == "ingest"


def test_reingesting_the_same_search_adds_nothing(ingested, stac_api):
    from rasteret_flows import ingest_collection

    uri, first = ingested
    again = ingest_collection(stac_api, "sentinel-2-l2a", uri, bbox=[10.0, 44.0, 14.0, 47.0],
                              datetime="2024-01-01/2024-12-31", bands={"red": "red", "nir": "nir"})
    assert again.unchanged == 6 and again.changed == again.partitions == again.headers_parsed == 0
    assert not again.committed and again.version == first.version == rc.load(uri).version
    assert len(rc.load(uri)) == 6


def test_extraction_flow_keeps_every_aoi_column(ingested, tmp_path, s3):
    from rasteret_flows import extract_aois

    uri, _ = ingested
    col = rc.load(uri)
    aois = [shapely.box(11.90, 45.77, 11.91, 45.777), shapely.box(11.86, 45.80, 11.875, 45.81),
            shapely.Point(11.93, 45.83).buffer(0.004), shapely.box(-70, -10, -69.9, -9.9)]
    table = pa.table({
        "field_id": ["a", "b", "c", "nowhere"],
        "area_ha": [1.5, 2.0, 3.25, 0.0],
        "planted": pa.array([20240101, 20240102, None, 20240104], pa.int64()),
        "geometry": [shapely.to_wkb(g) for g in aois],
    })
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    path = tmp_path / "aois.parquet"
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)

    out_uri = "s3://rasteret-tables/extraction"
    result = extract_aois(uri, str(path), ["red", "nir"], out_uri, batch_size=2)
    assert result.batches == 2 and result.inputs == 4 and result.failed_batches == 0
    out = DeltaTable(out_uri, storage_options=col.settings.delta_storage_options()).to_pyarrow_table()
    for name in table.schema.names:
        assert name in out.schema.names and out.schema.field(name).type == table.schema.field(name).type
    assert out.num_rows == result.rows == 3 * 3 * 2  # three AOIs x three 32N dates x two bands
    assert "nowhere" not in out["field_id"].to_pylist()
    # the rows hold the same pixels get_numpy reads
    want = col.get_numpy(aois[1], ["red", "nir"])
    rows = [r for r in out.to_pylist() if r["field_id"] == "b"]
    rows.sort(key=lambda r: (r["datetime"], r["record_id"], ["red", "nir"].index(r["band"])))
    got = np.array([np.asarray(r["data"], dtype=np.uint16).reshape(r["height"], r["width"]) for r in rows])
    np.testing.assert_array_equal(got, want.reshape(-1, *want.shape[2:]))


def test_core_never_imports_prefect():
    code = "import sys, rasteret_core, rasteret_core.collection; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

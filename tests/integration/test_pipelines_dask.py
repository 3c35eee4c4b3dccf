"""The same flows on prefect-dask's DaskTaskRunner (two worker processes) give the default runner's output."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from deltalake import DeltaTable

import rasteret_core as rc
from rasteret_core.table.delta import merge_table

BANDS = {"red": "red", "nir": "nir"}


@pytest.fixture(scope="module")
def dask_address(prefect_api, staging_dir, s3):
    """A LocalCluster of two worker processes, started after AWS_*, PREFECT_API_URL and the staging folder are set."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        yield cluster.scheduler_address


def _run_on(address, flow, *args, **kwargs):
    """Run ``flow`` on the cluster at ``address``; return its result and the workers that ran its tasks."""
    from distributed import Client, get_task_stream

    from rasteret_flows import with_runner

    with Client(address) as client, get_task_stream(client=client) as stream:
        result = with_runner(flow, address)(*args, **kwargs)
    return result, {t["worker"] for t in stream.data}


def test_sampling_on_two_dask_workers_equals_the_default_runner(dask_address, s3_collection, tmp_path):
    from rasteret_flows import sample_points

    rng = np.random.default_rng(3)
    geoms = [shapely.Point(rng.uniform(11.75, 12.1), rng.uniform(45.6, 45.95)) for _ in range(24)]
    path = tmp_path / "points.parquet"
    table = pa.table({"site": [f"s{i}" for i in range(len(geoms))], "geometry": [shapely.to_wkb(g) for g in geoms]})
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)
    options = s3_collection.settings.delta_storage_options()

    default = sample_points(s3_collection.uri, str(path), ["red", "nir"], "s3://rasteret-tables/dask-default",
                            batch_size=3)
    on_dask, workers = _run_on(dask_address, sample_points, s3_collection.uri, str(path), ["red", "nir"],
                               "s3://rasteret-tables/dask-sampled", batch_size=3)
    assert len(workers) == 2  # both worker processes ran batches
    assert on_dask.batches == default.batches == 8 and on_dask.rows == default.rows > 0
    order = [("site", "ascending"), ("record_id", "ascending"), ("band", "ascending")]
    a = DeltaTable("s3://rasteret-tables/dask-default", storage_options=options).to_pyarrow_table().sort_by(order)
    b = DeltaTable("s3://rasteret-tables/dask-sampled", storage_options=options).to_pyarrow_table().sort_by(order)
    assert a.equals(b)


def test_enrichment_on_two_dask_workers_equals_the_default_runner(dask_address, s3_items):
    from rasteret_flows import enrich_collection

    settings = rc.Settings.from_env()
    for uri in ("s3://rasteret-tables/dask-enrich-default", "s3://rasteret-tables/dask-enrich"):
        merge_table(rc.engine.records_from_items(s3_items, bands=BANDS), uri, settings=settings, operation="build")
    default = enrich_collection("s3://rasteret-tables/dask-enrich-default", partition_size=1)
    on_dask, workers = _run_on(dask_address, enrich_collection, "s3://rasteret-tables/dask-enrich", partition_size=1)
    assert len(workers) == 2
    assert on_dask.partitions == default.partitions == 6
    assert on_dask.headers_parsed == default.headers_parsed == 12
    a = rc.load("s3://rasteret-tables/dask-enrich-default").to_arrow().sort_by("id")
    b = rc.load("s3://rasteret-tables/dask-enrich").to_arrow().sort_by("id")
    assert a.drop_columns(["assets"]).equals(b.drop_columns(["assets"]))
    assert a["assets"].to_pylist() == b["assets"].to_pylist()

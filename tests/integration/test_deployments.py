"""prefect.yaml deployed to the session's local Prefect server and run through a process worker."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from deltalake import DeltaTable

from infra.local.deploy import (
    LOCAL_DEPLOYMENTS,
    LOCAL_POOL,
    create_process_pool,
    deploy,
    run_deployment,
    run_worker_once,
    wait_for_flow_run,
)


def test_a_deployment_runs_through_the_local_process_worker(prefect_api, staging_dir, s3_collection, tmp_path):
    from prefect.client.orchestration import get_client

    create_process_pool(prefect_api, LOCAL_POOL)
    deploy(prefect_api, names=LOCAL_DEPLOYMENTS,
           variables={"RASTERET_STAC_API": "http://127.0.0.1:9/", "RASTERET_COLLECTION_URI": s3_collection.uri})
    with get_client(sync_client=True) as client:
        ingestion = client.read_deployment_by_name("ingest-collection/scheduled-ingestion")
        assert ingestion.schedules[0].schedule.cron == "0 3 * * *"
        assert ingestion.parameters["uri"] == s3_collection.uri and ingestion.work_pool_name == LOCAL_POOL
        assert client.read_deployment_by_name("sample-points/on-demand-sampling").work_pool_name == LOCAL_POOL

    points = [shapely.Point(11.9, 45.8), shapely.Point(12.005, 45.685), shapely.Point(11.93, 45.83)]
    path = tmp_path / "points.parquet"
    table = pa.table({"station": ["a", "b", "c"], "elevation_m": [12.5, 80.0, 3.0],
                      "geometry": [shapely.to_wkb(p) for p in points]})
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)
    out_uri = "s3://rasteret-tables/deployed-samples"
    run_id = run_deployment(prefect_api, "sample-points/on-demand-sampling",
                            {"collection_uri": s3_collection.uri, "points": str(path), "bands": ["red", "nir"],
                             "out_uri": out_uri, "batch_size": 2})

    worker = run_worker_once(prefect_api, env=os.environ, timeout=240)
    assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
    state = wait_for_flow_run(prefect_api, run_id, timeout=60)
    assert state.is_completed(), state
    out = DeltaTable(out_uri, storage_options=s3_collection.settings.delta_storage_options()).to_pyarrow_table()
    want = s3_collection.sample_points(table, ["red", "nir"])
    assert out.num_rows == want.num_rows > 0
    for name in table.schema.names:
        assert out.schema.field(name).type == table.schema.field(name).type

"""The enrichment flow against the real services, with faults a fault-injecting S3 proxy produces.

One flow run (module fixture) parses a collection of seven scenes in four
partitions through the proxy, which answers one file's HEADs with ``503 SlowDown``
until its partition's first attempt has failed; one scene's files are corrupt TIFFs. A second collection is enriched by a flow run
in a subprocess that is killed mid-run, then by a re-run.
"""

from __future__ import annotations

import copy
import glob
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

import rasteret_core as rc
from infra.local.faults import Fault, fault_proxy
from rasteret_core.table.delta import merge_table

PROJECT_DIR = Path(__file__).resolve().parents[2]
BANDS = {"red": "red", "nir": "nir"}
POISONED = "poisoned-scene"


def _build_unenriched(uri: str, items: list[dict]) -> int:
    """A collection whose rows have no header metadata yet; return its version."""
    table = rc.engine.records_from_items(items, bands=BANDS)
    version, _ = merge_table(table, uri, settings=rc.Settings.from_env(), operation="build")
    return version


def _enrich_commits(uri: str) -> list[dict]:
    return [h for h in rc.load(uri).history() if h["operation"] == "enrich"]


@pytest.fixture(scope="module")
def faulty(prefect_api, staging_dir, s3, s3_items, sample_archive):
    """Enrich seven scenes (one poisoned) in partitions of two through a proxy that fails one header read once."""
    from rasteret_flows import enrich_collection

    cog = sample_archive.root / s3_items[0]["assets"]["red"]["href"].removeprefix("s3://rasteret-sample/")
    client = s3.client()
    for band in BANDS:  # a COG cut short inside its header: a corrupt TIFF
        client.put_object(Bucket="rasteret-sample", Key=f"poison/{band}.tif", Body=Path(cog).read_bytes()[:300])
    client.close()
    poisoned = copy.deepcopy(s3_items[0])
    poisoned["id"] = POISONED
    for band in BANDS:
        poisoned["assets"][band]["href"] = f"s3://rasteret-sample/poison/{band}.tif"
    uri = "s3://rasteret-tables/enrich-faults"
    pinned = _build_unenriched(uri, [*s3_items, poisoned])
    target = sorted(s3_items, key=lambda i: i["id"])[2]  # the first scene of the second partition
    key = target["assets"]["red"]["href"].removeprefix("s3:/")
    # 503s for every request-level attempt (RASTERET_REQUEST_RETRIES, default 3), so the partition's task
    # fails once and its Prefect retry succeeds
    with fault_proxy(s3.endpoint_url, [Fault(method="GET", path=re.escape(key) + "$", times=3)]) as proxy, \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", proxy.url)
        state = enrich_collection(uri, partition_size=2, max_in_flight=2, return_state=True)
        injected = proxy.injected()
    return {"uri": uri, "pinned": pinned, "result": state.result(), "flow_run": state.state_details.flow_run_id,
            "injected": injected, "target": target["id"]}


def _task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_enrichment_fans_out_over_partitions(faulty):
    result = faulty["result"]
    assert result.records_lacking_headers == 7 and result.partitions == 4
    parses = [t for t in _task_runs(faulty["flow_run"]) if t.name.startswith("parse-scene-headers")]
    assert len(parses) == 4 and all(t.state.is_completed() for t in parses)
    assert result.headers_parsed == 12 and result.rows_updated == 7
    col = rc.load(faulty["uri"])
    assert col.version == faulty["pinned"] + 1 and len(_enrich_commits(faulty["uri"])) == 1  # one commit


def test_a_partition_failing_once_succeeds_on_retry(faulty):
    assert faulty["injected"] == 3
    assert faulty["result"].partitions_retried == 1
    parses = [t for t in _task_runs(faulty["flow_run"]) if t.name.startswith("parse-scene-headers")]
    assert sorted(t.run_count for t in parses) == [1, 1, 1, 2]
    row = next(r for r in rc.load(faulty["uri"]).to_arrow().to_pylist() if r["id"] == faulty["target"])
    assert all(row["assets"][b]["header"] is not None for b in BANDS)


def test_a_poisoned_scene_is_quarantined_while_the_rest_commit(faulty, s3):
    result = faulty["result"]
    assert result.quarantined_scenes == 1 and result.failed_partitions == 0
    assert {(f.record_id, f.band) for f in result.failures} == {(POISONED, "red"), (POISONED, "nir")}
    rows = {r["id"]: r for r in rc.load(faulty["uri"]).to_arrow().to_pylist()}
    assert len(rows) == 7
    assert all(rows[POISONED]["assets"][b]["header"] is None for b in BANDS)
    assert all(r["assets"][b]["header"] is not None for i, r in rows.items() if i != POISONED for b in BANDS)
    quarantine = DeltaTable(result.quarantine, storage_options=rc.Settings.from_env().delta_storage_options())
    table = quarantine.to_pyarrow_table().to_pylist()
    assert {(q["record_id"], q["band"]) for q in table} == {(POISONED, "red"), (POISONED, "nir")}
    assert all(q["href"].startswith("s3://rasteret-sample/poison/") and q["error"] and not q["retryable"]
               and q["collection_version"] == faulty["pinned"] and q["flow_run"] == str(faulty["flow_run"])
               for q in table)


def test_the_run_publishes_a_markdown_report(faulty):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[faulty["flow_run"]])))
    (report,) = [a for a in artifacts if a.key == "enrich-collection"]
    assert report.type == "markdown"
    for line in ("| headers parsed | 12 |", "| partitions retried | 1 |", "| quarantined scenes | 1 |",
                 "| rows updated | 7 |", "| requests |", "| bytes read |", "| seconds |", POISONED):
        assert line in report.data


def test_a_rerun_after_a_kill_resumes_and_adds_no_duplicates(prefect_api, staging_dir, s3, s3_items):
    from rasteret_flows import enrich_collection
    from rasteret_tasks import stage_folder

    uri = "s3://rasteret-tables/enrich-killed"
    pinned = _build_unenriched(uri, s3_items)
    stage = stage_folder(rc.Settings.from_env(), "enrich", uri, pinned, 1, False)
    code = f"from rasteret_flows import enrich_collection; enrich_collection({uri!r}, partition_size=1, max_in_flight=1)"
    slow = Fault(method="GET", path=r"^/rasteret-sample/", times=0, delay=0.5)  # a slow store, no errors
    with fault_proxy(s3.endpoint_url, [slow]) as proxy:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_DIR, start_new_session=True,
                                env={**os.environ, "AWS_ENDPOINT_URL": proxy.url},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180
            while len(glob.glob(f"{stage}/part-*.json")) < 2:
                assert proc.poll() is None, "the flow run ended before it could be killed"
                assert time.monotonic() < deadline, "no partition was staged in time"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    staged = len(glob.glob(f"{stage}/part-*.json"))
    assert 2 <= staged < 6
    assert rc.load(uri).version == pinned  # the killed run committed nothing

    result = enrich_collection(uri, partition_size=1, max_in_flight=3)
    assert result.partitions == 6 and result.partitions_resumed == staged
    assert result.headers_parsed == 12 and result.rows_updated == 6 and not result.failures
    col = rc.load(uri)
    ids = col.to_arrow()["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 6
    assert all(r["assets"][b]["header"] is not None for r in col.to_arrow().to_pylist() for b in BANDS)
    assert col.version == pinned + 1 and len(_enrich_commits(uri)) == 1
    assert not os.path.exists(stage)


def test_cli_enrich_runs_the_flow_and_reports_the_quarantine(faulty):
    from typer.testing import CliRunner

    from rasteret_flows.cli import app

    done = CliRunner().invoke(app, ["enrich", faulty["uri"], "--partition-size", "1"])
    assert done.exit_code == 1, done.output  # the poisoned scene is tried again, and quarantined again
    assert "enriched" in done.output and "quarantined" in done.output and "rasteret enrich" in done.output
    options = rc.Settings.from_env().delta_storage_options()
    quarantine = DeltaTable(faulty["result"].quarantine, storage_options=options)
    rows = quarantine.to_pyarrow_table().to_pylist()
    assert len(rows) == 4 and {r["record_id"] for r in rows} == {POISONED}  # two runs, two assets each
    assert len({r["flow_run"] for r in rows}) == 2

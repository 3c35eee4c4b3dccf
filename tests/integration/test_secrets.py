"""Secrets never leak: every flow runs with known credentials and signed hrefs, then everything is scanned.

A SeaweedFS of this module's own enforces a secret key no other test uses; its
STAC API (``rustac serve``) lists scenes whose ``red`` assets are ``s3://`` objects
and whose ``nir`` assets are pre-signed ``http://`` URLs (their query holds the
signature). The ingestion, enrichment, extraction and sampling flows run on the
session's Prefect server; one more run fails on purpose with a wrong secret key and
a session token. Then the secret key, the token and the signatures are looked for in
the logs (caplog at DEBUG, this process's stdout and stderr, the Prefect server's
logs), the errors' messages, every Delta commit's metadata, the Prefect flow runs'
parameters, states and results, the artifacts, and every output table.

The collection itself keeps each href as given (a pre-signed URL must be stored to be
read); it is the one place a signature may be, and it is not scanned.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import secrets
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from deltalake import DeltaTable

import rasteret_core as rc
from infra.local.seaweedfs import seaweedfs
from rasteret_demo.stac import stac_api as serve_stac

ACCESS_KEY = "AKIALEAKCANARY"
SECRET_KEY = "sk-leak-canary-" + secrets.token_hex(12)
SESSION_TOKEN = "st-leak-canary-" + secrets.token_hex(12)
WRONG_SECRET = "sk-wrong-canary-" + secrets.token_hex(12)
SAMPLE, TABLES = "leak-sample", "leak-tables"
BANDS = {"red": "red", "nir": "nir"}


def _presign(client: Any, bucket: str, key: str) -> str:
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, sample_archive, prefect_api, staging_dir):
    """Our own SeaweedFS (secret key enforced) and STAC API; ``AWS_*`` point at it for the module."""
    import boto3
    from botocore.config import Config

    folder = tmp_path_factory.mktemp("secrets")
    with seaweedfs(folder / "weed", access_key=ACCESS_KEY, secret_key=SECRET_KEY) as service:
        service.create_bucket(SAMPLE)
        service.create_bucket(TABLES)
        items = sorted(sample_archive.items_with_href_base(f"s3://{SAMPLE}/"), key=lambda i: i["id"])[:2]
        signer = boto3.client("s3", endpoint_url=service.endpoint_url, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name=service.region,
                              config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
        signatures = []
        for item in items:
            item["assets"] = {band: item["assets"][band] for band in BANDS}
            for band, asset in item["assets"].items():
                key = asset["href"].removeprefix(f"s3://{SAMPLE}/")
                signer.upload_file(str(sample_archive.root / key), SAMPLE, key)
                if band == "nir":
                    asset["href"] = _presign(signer, SAMPLE, key)
                    signatures.append(re.search(r"X-Amz-Signature=([0-9a-f]+)", asset["href"]).group(1))
        signer.close()
        items_path = folder / "items.json"
        items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        collection_path = sample_archive.write_collection(folder / "collection.json")
        with serve_stac(items_path, collection_path=collection_path) as api, pytest.MonkeyPatch.context() as patch:
            for key, value in service.env().items():
                patch.setenv(key, value)
            yield {"service": service, "stac_api": api, "items": items, "signatures": signatures, "folder": folder}


def _needles(guarded) -> dict[str, str]:
    return {"secret key": SECRET_KEY, "session token": SESSION_TOKEN, "wrong secret": WRONG_SECRET,
            **{f"signature {i}": sig for i, sig in enumerate(guarded["signatures"])}}


def _without_headers(table: pa.Table) -> pa.Table:
    rows = table.to_pylist()
    for row in rows:
        for asset in row["assets"].values():
            asset["header"] = None
    return pa.Table.from_pylist(rows, schema=table.schema)


def _leaks(text: str, needles: dict[str, str]) -> list[str]:
    return [name for name, value in needles.items() if value in text]


def test_seaweedfs_enforces_credentials_and_refuses_wrong_keys_clearly(guarded):
    needles = _needles(guarded)
    good = rc.build_from_stac(stac_api=guarded["stac_api"], collection="sentinel-2-l2a", uri=None, bands=BANDS)
    assert len(good) == 2  # the right key (and the signed URLs) read every header
    row = good.to_arrow().to_pylist()[0]
    aoi = shapely.from_wkb(row["geometry"]).centroid.buffer(0.002)
    wrong = rc.Settings.from_env(aws_secret_access_key=WRONG_SECRET)
    with pytest.raises(rc.AccessDeniedError) as info:
        rc.Collection(good.to_arrow(), settings=wrong).get_numpy(aoi, ["red"])
    message = str(info.value)
    assert message.startswith(f"s3://{SAMPLE}/") and re.search(r"S3 (403|SignatureDoesNotMatch)", message), message
    assert "access denied; check AWS_* credentials" in message and not _leaks(message, needles)
    with pytest.raises(rc.CollectionError) as built:
        rc.build_from_table(_without_headers(good.to_arrow()), settings=wrong)
    assert "access denied" in str(built.value) and not _leaks(str(built.value), needles)
    anonymous = rc.Settings.from_env(aws_no_sign_request=True)
    with pytest.raises(rc.AccessDeniedError, match="access denied"):
        rc.Collection(good.to_arrow(), settings=anonymous).get_numpy(aoi, ["red"])


@pytest.fixture(scope="module")
def runs(guarded, tmp_path_factory):
    """Every flow, once, with the known secrets; and one that fails with a wrong key and a session token."""
    from rasteret_flows import enrich_collection, extract_aois, ingest_collection, sample_points

    folder = tmp_path_factory.mktemp("secret-runs")
    out: dict[str, Any] = {"tables": {}, "errors": [], "states": []}
    col_uri, bare_uri = f"s3://{TABLES}/ingested", f"s3://{TABLES}/enriched"
    out["ingest"] = ingest_collection(guarded["stac_api"], "sentinel-2-l2a", col_uri, bands=BANDS, partition_size=1)
    rc.build_from_stac(stac_api=guarded["stac_api"], collection="sentinel-2-l2a", uri=bare_uri, bands=BANDS,
                       enrich=False)
    out["enrich"] = enrich_collection(bare_uri, partition_size=1)
    col = rc.load(col_uri)
    boxes = [shapely.from_wkb(row["geometry"]).centroid.buffer(0.003) for row in col.to_arrow().to_pylist()]
    pq.write_table(pa.table({"site": ["a", "b"], "geometry": [shapely.to_wkb(b) for b in boxes]}),
                   folder / "aois.parquet")
    pq.write_table(pa.table({"site": ["a", "b"], "geometry": [shapely.to_wkb(b.centroid) for b in boxes]}),
                   folder / "points.parquet")
    out["extract"] = extract_aois(col_uri, str(folder / "aois.parquet"), list(BANDS), f"s3://{TABLES}/aois-out")
    out["sample"] = sample_points(col_uri, str(folder / "points.parquet"), list(BANDS), f"s3://{TABLES}/points-out")
    with pytest.MonkeyPatch.context() as patch:  # a failing run: wrong key, a session token
        patch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
        patch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
        state = extract_aois(col_uri, str(folder / "aois.parquet"), list(BANDS), f"s3://{TABLES}/aois-fail",
                             return_state=True)
        out["states"].append(state)
        try:
            rc.load(col_uri).get_numpy(boxes[0], list(BANDS))
        except rc.RasteretError as exc:
            out["errors"].append(exc)
    forged = col.to_arrow().to_pylist()  # a signed URL whose signature no longer holds (its expiry changed)
    forged[0]["assets"]["nir"]["href"] = forged[0]["assets"]["nir"]["href"].replace("X-Amz-Expires=3600",
                                                                                  "X-Amz-Expires=7")
    forged_table = _without_headers(pa.Table.from_pylist(forged, schema=col.to_arrow().schema))
    try:
        rc.Collection(col.to_arrow()).get_numpy(boxes[0], ["nir"])  # fine
        rc.build_from_table(forged_table)
    except rc.RasteretError as exc:
        out["errors"].append(exc)
    rc.build_from_table(forged_table, uri=f"s3://{TABLES}/partial", partial=True)
    out["tables"] = [col_uri, bare_uri, f"s3://{TABLES}/aois-out", f"s3://{TABLES}/points-out",
                     f"s3://{TABLES}/partial"]
    return out


def test_every_flow_ran(guarded, runs):
    assert runs["ingest"].committed and runs["ingest"].headers_parsed == 4
    assert runs["enrich"].version > runs["enrich"].pinned_version and runs["enrich"].headers_parsed == 4
    assert runs["extract"].rows > 0 and runs["sample"].rows > 0
    assert runs["states"][0].is_failed(), runs["states"][0]
    assert [type(e).__name__ for e in runs["errors"]] == ["AccessDeniedError", "CollectionError"]
    assert "access denied" in str(runs["states"][0].message).lower() or runs["states"][0].message
    hrefs = json.dumps(rc.load(f"s3://{TABLES}/ingested").to_arrow()["assets"].to_pylist())
    assert _leaks(hrefs, _needles(guarded)) == ["signature 0", "signature 1"]  # the scan finds what is there


def test_no_secret_in_error_messages(guarded, runs):
    needles = _needles(guarded)
    texts = [str(e) for e in runs["errors"]] + [repr(e) for e in runs["errors"]]
    texts += [str(s.message) for s in runs["states"]]
    assert "[redacted]" in str(runs["errors"][-1]), str(runs["errors"][-1])
    for text in texts:
        assert not _leaks(text, needles), text


def test_no_secret_in_logs(guarded, runs, caplog, capfd):
    """The logs of a read and a partial build at DEBUG, this process's output, and the Prefect server's logs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    needles = _needles(guarded)
    table = rc.load(f"s3://{TABLES}/ingested").to_arrow()
    with caplog.at_level(logging.DEBUG):
        rc.Collection(table).get_numpy(shapely.from_wkb(table["geometry"][0].as_py()).centroid.buffer(0.002),
                                       list(BANDS))
        rc.build_from_table(table.select(["id", "datetime", "geometry", "assets"]), partial=True)
    out, err = capfd.readouterr()
    assert "GET " in caplog.text  # DEBUG lines were captured
    assert not _leaks(caplog.text, needles) and not _leaks(out + err, needles)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(), limit=200)
        while len(logs) % 200 == 0 and logs:
            more = client.read_logs(log_filter=LogFilter(), limit=200, offset=len(logs))
            if not more:
                break
            logs += more
    assert logs
    assert not _leaks("\n".join(log.message for log in logs), needles)


def test_no_secret_in_delta_metadata_or_outputs(guarded, runs):
    needles = _needles(guarded)
    for uri in runs["tables"]:
        history = DeltaTable(uri, storage_options=rc.Settings.from_env().delta_storage_options()).history()
        assert not _leaks(json.dumps(history, default=str), needles), uri
    skipped = rc.load(f"s3://{TABLES}/partial").history()[0]["metadata"]["skipped"]
    assert skipped and all("[redacted]" in s["error"] for s in skipped), skipped
    for uri in (f"s3://{TABLES}/aois-out", f"s3://{TABLES}/points-out"):
        table = DeltaTable(uri, storage_options=rc.Settings.from_env().delta_storage_options()).to_pyarrow_table()
        assert table.num_rows
        assert not _leaks(json.dumps(table.to_pylist(), default=str), needles), uri


def test_no_secret_in_prefect_runs_results_or_artifacts(guarded, runs):
    from prefect.client.orchestration import get_client

    needles = _needles(guarded)
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(limit=200)
        task_runs = client.read_task_runs(limit=200)
        artifacts = client.read_artifacts(limit=200)
    assert {"ingest-collection", "enrich-collection", "extract-aois", "sample-points"} <= set(_flow_names(flow_runs))
    for run in flow_runs:
        text = json.dumps(run.parameters, default=str) + str(run.state.message if run.state else "")
        assert not _leaks(text, needles), run.name
    for run in task_runs:
        assert not _leaks(str(run.state.message if run.state else "") + json.dumps(
            {k: str(v) for k, v in (run.task_inputs or {}).items()}), needles), run.name
    assert artifacts
    for artifact in artifacts:
        assert not _leaks(f"{artifact.data} {artifact.description}", needles), artifact.key
    for name in ("ingest", "enrich", "extract", "sample"):  # the flows' return values
        assert not _leaks(repr(runs[name]), needles), name


def _flow_names(flow_runs) -> set[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {client.read_flow(run.flow_id).name for run in flow_runs}


def test_settings_never_show_or_ship_secrets(guarded, monkeypatch):
    settings = rc.Settings.from_env(aws_session_token=SESSION_TOKEN)
    needles = _needles(guarded)
    for text in (repr(settings), str(settings), f"{settings}", json.dumps(settings.to_json())):
        assert not _leaks(text, needles), text
    shipped = pickle.loads(pickle.dumps(settings))  # a Dask/TorchGeo worker's copy: secrets from its own environment
    assert not _leaks(str(pickle.dumps(settings)), needles)
    assert shipped.aws_secret_access_key == SECRET_KEY and shipped.aws_session_token is None
    assert shipped.aws_endpoint_url == settings.aws_endpoint_url and shipped.max_concurrency == settings.max_concurrency


def test_no_flow_takes_settings_as_a_parameter():
    """Prefect stores flow parameters as JSON, a dataclass field by field: settings are built inside tasks instead."""
    import inspect

    from prefect import Flow

    import rasteret_flows

    flows = [obj for name in dir(rasteret_flows) if isinstance(obj := getattr(rasteret_flows, name), Flow)]
    assert len(flows) >= 4
    for flow in flows:
        for parameter in inspect.signature(flow.fn).parameters.values():
            assert "Settings" not in str(parameter.annotation), (flow.name, parameter.name)
            assert "secret" not in parameter.name and "token" not in parameter.name, (flow.name, parameter.name)

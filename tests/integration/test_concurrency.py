"""Concurrent writers and readers on real Delta tables (SeaweedFS S3 and local): no lost write, one version per read.

How commits stay safe on S3: deltalake (delta-rs 1.x) writes each commit
``_delta_log/<version>.json`` with a conditional PUT (``If-None-Match: *``), so of two
writers racing for one version the store accepts one and refuses the other (412), which
rebases on the new version and tries again; no locking provider (DynamoDB) is needed,
and ``aws_conditional_put=etag`` (If-Match overwrites) is not used for commits. The tests
check every link: SeaweedFS honours ``If-None-Match`` (one winner among racing PUTs),
deltalake sends it on every commit, and concurrent writers through the library and the
flows lose nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from botocore.exceptions import ClientError
from crash_run import CrashServer

import rasteret_core as rc
from rasteret_core.engine import Changes, merge_changes, records_from_items, write_table

BANDS = {"red": "red", "nir": "nir"}
GEO = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}


@pytest.fixture(scope="module")
def runs(prefect_api, staging_dir, s3, tmp_path_factory):
    """A fork server for flow runs in their own processes, in the session's environment."""
    server = CrashServer(tmp_path_factory.mktemp("concurrency-runs") / "stderr.log")
    yield server
    server.close()


def test_seaweedfs_lets_one_of_racing_conditional_puts_win(s3):
    client = s3.client()
    key = f"races/{time.time_ns()}.json"

    def put(i: int) -> bool:
        try:
            client.put_object(Bucket="rasteret-tables", Key=key, Body=f"writer {i}".encode(), IfNoneMatch="*")
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] in (409, 412), exc.response
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        won = [i for i, ok in enumerate(pool.map(put, range(8))) if ok]
    assert len(won) == 1
    assert client.get_object(Bucket="rasteret-tables", Key=key)["Body"].read() == f"writer {won[0]}".encode()
    client.close()


def test_delta_commits_on_s3_are_conditional_puts(s3, tmp_path, monkeypatch):
    log = tmp_path / "requests.jsonl"
    # in its own process: delta-rs holds the GIL in some calls, which would stall a proxy thread of ours
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("record_proxy.py")), s3.endpoint_url,
                              str(log)], stdout=subprocess.PIPE, text=True)
    try:
        assert proxy.stdout is not None
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.stdout.readline().strip())
        settings = rc.Settings.from_env()
        uri = f"s3://rasteret-tables/conditional-{time.time_ns()}"
        for i in range(3):
            write_table(pa.table({"n": [i]}), uri, settings=settings, operation="test")
    finally:
        proxy.terminate()
        proxy.wait()
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    commits = [r for r in seen if r["method"] == "PUT" and re.search(r"/_delta_log/\d{20}\.json$", r["path"])]
    assert [r["path"].rsplit("/", 1)[1] for r in commits] == [f"{v:020d}.json" for v in range(3)]
    assert all(r["conditions"].get("if-none-match") == "*" and r["status"] == 200 for r in commits), commits


def test_concurrent_writers_on_s3_lose_nothing(s3, s3_items):
    """Eight appends and four merges (a collection's commit) of distinct records at once into one S3 collection."""
    settings = rc.Settings.from_env()
    uri = f"s3://rasteret-tables/writers-{time.time_ns()}"
    record = records_from_items(s3_items[:1], bands=BANDS)
    merge_changes(record, uri, changes=Changes(records=1), settings=settings, operation="build")

    def renamed(name: str) -> pa.Table:
        return record.set_column(record.schema.get_field_index("id"), "id", pa.array([name]))

    def append(i: int) -> int:
        return write_table(renamed(f"append-{i}"), uri, settings=settings, operation="append")

    def merge(i: int) -> int:
        merged = merge_changes(renamed(f"merge-{i}"), uri, changes=Changes(records=1), settings=settings,
                               operation="merge")
        assert merged.inserted == 1 and merged.updated == 0
        return merged.version

    with ThreadPoolExecutor(6) as pool:
        versions = list(pool.map(lambda f: f[0](f[1]), [(append, i) for i in range(8)] + [(merge, i) for i in range(4)]))
    assert len(set(versions)) == 12  # each write its own version
    col = rc.load(uri)
    ids = col.to_arrow()["id"].to_pylist()
    assert col.version == max(versions)
    assert sorted(ids) == sorted([record["id"][0].as_py(), *(f"append-{i}" for i in range(8)),
                                  *(f"merge-{i}" for i in range(4))])


def test_two_ingestions_into_one_s3_collection_at_once(runs, stac_api, s3_items, tmp_path):
    """Two ingestion flows in two processes, started together into a collection that does not exist yet.

    They overlap in four scenes: the collection ends with the six scenes once each, headers parsed.
    """
    uri = f"s3://rasteret-tables/two-ingestions-{time.time_ns()}"
    common = {"stac_api": stac_api, "collection": "sentinel-2-l2a", "uri": uri, "bands": BANDS,
              "partition_size": 2, "max_in_flight": 1}
    ends = runs.run_at_once([{"flow": "ingest_collection", "kwargs": {**common, "max_items": 4}},
                             {"flow": "ingest_collection", "kwargs": common}])
    assert ends == [{"code": 0}, {"code": 0}], runs.log.read_text()[-3000:]
    col = rc.load(uri)
    rows = col.to_arrow().to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in s3_items)
    assert all(r["assets"][b]["header"] is not None for r in rows for b in BANDS)
    # the first to commit created the table holding its scenes (version 0); the other merged its new scenes on top,
    # or committed nothing when it had none left
    history = [(h["version"], h["operation"]) for h in col.history()]
    assert history in ([(0, "ingest")], [(1, "ingest"), (0, "ingest")]), history


def test_a_pinned_reader_survives_optimize_and_vacuum_within_the_retention(s3, s3_items):
    """Small commits, a reader pinned on the last, then optimize and vacuum (one hour's retention) run during its read."""
    settings = rc.Settings.from_env()
    uri = f"s3://rasteret-tables/optimize-{time.time_ns()}"
    records = records_from_items(s3_items, bands=BANDS)
    for i in range(records.num_rows):  # one commit per record: many small files
        merge_changes(records.slice(i, 1), uri, changes=Changes(records=1), settings=settings, operation="build")
    pinned = rc.load(uri)
    expected = rc.load(uri).to_arrow().sort_by("id").to_pylist()
    assert len(expected) == records.num_rows

    def maintain() -> list[str]:
        compacted = rc.load(uri).optimize()
        assert compacted.version == pinned.version + 1
        return compacted.vacuum(retention_hours=1, dry_run=False, enforce_retention_duration=False)

    with ThreadPoolExecutor(1) as pool:
        maintenance = pool.submit(maintain)
        read = pinned.to_arrow()  # reads the pinned version's files while they are compacted and vacuumed
        removed = maintenance.result()
    assert read.sort_by("id").to_pylist() == expected
    assert removed == []  # the files the pinned version needs were tombstoned less than an hour ago: kept
    again = rc.load(uri, version=pinned.version).to_arrow()  # and after the vacuum, the old version still reads
    assert again.sort_by("id").to_pylist() == expected
    assert rc.load(uri).to_arrow().sort_by("id").to_pylist() == expected
    # past the retention (0 hours) the old files go: the pinned version can no longer be read, the latest can
    assert rc.load(uri).vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    with pytest.raises(rc.CollectionError):
        rc.load(uri, version=pinned.version).to_arrow()
    assert rc.load(uri).to_arrow().sort_by("id").to_pylist() == expected


def test_an_extraction_reads_one_version_while_an_ingestion_commits(runs, stac_api, s3_items, staging_dir, tmp_path):
    """An extraction pinned on a version of four scenes runs in its own process while an ingestion adds two more.

    Its output is the extraction of the pinned version, as a run alone gives it: no row of the new scenes.
    """
    from rasteret_flows import extract_aois, ingest_collection

    uri = f"s3://rasteret-tables/read-while-ingest-{time.time_ns()}"
    common = {"stac_api": stac_api, "collection": "sentinel-2-l2a", "uri": uri, "bands": BANDS, "partition_size": 3}
    ingest_collection(**common, max_items=4)
    pinned = rc.load(uri)
    geoms = []
    for item in s3_items:  # AOIs in every scene, the two the ingestion adds included
        x0, y0, x1, y1 = shapely.bounds(shapely.geometry.shape(item["geometry"]))
        geoms += [shapely.box(x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, x0 + (x1 - x0) * (f + 0.01),
                              y0 + (y1 - y0) * (f + 0.01)) for f in (0.3, 0.5, 0.7)]
    aois = pa.table({"site": [f"s{i:02d}" for i in range(len(geoms))], "geometry": [shapely.to_wkb(g) for g in geoms]})
    pq.write_table(aois.replace_schema_metadata({"geo": json.dumps(GEO)}), tmp_path / "aois.parquet")
    job: dict[str, Any] = {"collection_uri": uri, "aois": str(tmp_path / "aois.parquet"), "bands": ["red"],
                           "batch_size": 3, "max_in_flight": 1, "stats": ["count", "mean"]}
    result: dict[str, Any] = {}

    def extract() -> None:  # in its own process; it pins the version when it starts
        result["ends"] = runs.run_at_once([{"flow": "extract_aois", "kwargs": {**job, "out_uri": str(tmp_path / "during")}}])

    thread = threading.Thread(target=extract)
    thread.start()
    deadline = time.monotonic() + 120
    while not list(staging_dir.glob("*/aois-*.parquet")):  # the extraction is reading its batches
        assert thread.is_alive() and time.monotonic() < deadline, "the extraction ended before the ingestion began"
        time.sleep(0.05)
    ingested = ingest_collection(**common)
    thread.join()
    assert ingested.committed and ingested.inserted == 2
    assert result["ends"] == [{"code": 0}], runs.log.read_text()[-3000:]
    alone = extract_aois(**job, out_uri=str(tmp_path / "alone"), version=pinned.version)
    during = rc.engine.read_table(str(tmp_path / "during"), settings=rc.Settings.from_env())[0]
    expected = rc.engine.read_table(str(tmp_path / "alone"), settings=rc.Settings.from_env())[0]
    order = [("site", "ascending"), ("record_id", "ascending"), ("band", "ascending")]
    assert during.sort_by(order).to_pylist() == expected.sort_by(order).to_pylist()
    assert set(during["record_id"].to_pylist()) <= set(pinned.to_arrow()["id"].to_pylist())
    assert alone.collection_version == pinned.version

"""Versions of a collection on S3: concurrent writers, time travel, history, optimize and vacuum."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import rasteret_core as rc
from bench.synthetic import synthetic_batches

WRITER = textwrap.dedent("""
    import os, sys, time
    import pyarrow as pa
    import rasteret_core as rc
    from bench.synthetic import synthetic_batches

    part, uri, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    records = pa.concat_tables(synthetic_batches(230, tiles=23, batch=230, seed=3))
    # each writer has 100 records of its own and the same 30 shared records
    mine = pa.concat_tables([records.slice(part * 100, 100), records.slice(200, 30)])
    while not os.path.exists(go):
        time.sleep(0.01)
    col = rc.build_from_table(mine, uri=uri, enrich=False)
    print(col.version, flush=True)
""")


def test_two_processes_writing_at_once_lose_nothing(s3, tmp_path):
    uri = "s3://rasteret-tables/concurrent"
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(part), uri, str(go)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for part in (0, 1)]
    time.sleep(1.5)  # both imported and waiting
    go.touch()
    outputs = [w.communicate(timeout=180) for w in writers]
    for writer, (_out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err[-3000:]
    col = rc.load(uri)
    ids = col.to_arrow()["id"]
    assert len(col) == len(ids) == 230 and pc.count_distinct(ids).as_py() == 230
    records = pa.concat_tables(synthetic_batches(230, tiles=23, batch=230, seed=3))
    assert sorted(ids.to_pylist()) == sorted(records["id"].to_pylist())
    history = col.history()
    # one commit each: the winner created the table holding its rows (version 0), the loser merged on top (1)
    assert [(h["version"], h["operation"]) for h in history] == [(1, "build_from_table"), (0, "build_from_table")]
    assert sorted(int(o.strip()) for o, _ in outputs) == [0, 1]


@pytest.fixture(scope="module")
def versions(s3):
    """A collection on S3 with three versions: created holding 60 records, then 40 and 20 more; and its records."""
    uri = "s3://rasteret-tables/versions"
    records = pa.concat_tables(synthetic_batches(120, tiles=12, batch=120, seed=5))
    rc.build_from_table(records.slice(0, 60), uri=uri, enrich=False)
    time.sleep(0.05)
    rc.build_from_table(records.slice(60, 40), uri=uri, enrich=False)
    time.sleep(0.05)
    rc.build_from_table(records.slice(100), uri=uri, enrich=False)
    return uri, records


def test_history_and_time_travel_by_version_and_timestamp(versions):
    uri, _records = versions
    col = rc.load(uri)
    history = col.history()
    assert [h["version"] for h in history] == [2, 1, 0]
    assert [h["operation"] for h in history] == ["build_from_table"] * 3
    assert [h["metadata"]["inserted"] for h in history] == [20, 40, 60]
    assert all(h["metadata"]["source"] == "Table" for h in history)
    assert [len(rc.load(uri, version=v)) for v in (0, 1, 2)] == [60, 100, 120]
    for older, newer in itertools.pairwise(history[::-1]):
        between = older["timestamp"] + (newer["timestamp"] - older["timestamp"]) / 2
        assert rc.load(uri, as_of=between).version == older["version"]
    assert rc.load(uri, as_of=history[0]["timestamp"] + timedelta(hours=1)).version == 2
    with pytest.raises(rc.CollectionError):
        rc.load(uri, as_of=history[-1]["timestamp"] - timedelta(days=1))


def test_optimize_then_vacuum_on_s3(versions):
    uri, records = versions
    col = rc.load(uri)
    optimized = col.optimize()
    assert optimized.version == col.version + 1
    assert sorted(optimized.to_arrow()["id"].to_pylist()) == sorted(records["id"].to_pylist())
    metrics = optimized.history()[0]["metrics"]
    months = len(set(pc.strftime(records["datetime"], "%Y-%m").to_pylist()))
    assert 0 < int(metrics["numFilesAdded"]) <= months < int(metrics["numFilesRemoved"])  # at most a file a month
    assert optimized.vacuum() == []
    stale = optimized.vacuum(retention_hours=0, enforce_retention_duration=False)
    assert len(stale) == int(metrics["numFilesRemoved"])
    assert len(rc.load(uri, version=1).to_arrow()) == 100  # a dry run removes nothing
    assert sorted(optimized.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)) == sorted(stale)
    assert len(rc.load(uri)) == 120
    sub = rc.load(uri).subset(bbox=(-180, -90, 180, 90), datetime="2023-01-01/2023-12-31")
    assert len(sub) == len(rc.Collection(records).subset(datetime="2023-01-01/2023-12-31"))

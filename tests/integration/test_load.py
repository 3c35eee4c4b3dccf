"""Sustained load: a sampling run's peak memory stays flat as its input grows tenfold.

A small edition of ``python -m bench.load`` (whose figures are for 1,000,000 points and
10,000 AOIs): 10,000 and 100,000 points sampled in batches of 5,000, each run in a fresh
process on the session's Prefect server, its peak RSS (``VmHWM``) measured. Batches bound
what a read holds; the output is streamed into its commit a part at a time (it was
concatenated whole, and grew with the input).
"""

from __future__ import annotations

import pytest

import rasteret_core as rc
from bench.load import run_child, write_inputs
from rasteret_core.engine import ingest_records, records_from_items

# Measured here with 20,000 / 200,000 points in batches of 4,000: 413 MiB at 1x, 471 MiB at 10x (ten times the
# batches: Prefect's per-task-run state grows with them); with the output concatenated whole before its commit,
# the bench's 50,000 -> 500,000 points grew 1.71x.
RATIO = 1.25


@pytest.fixture(scope="module")
def local_collection(sample_archive, tmp_path_factory) -> rc.Collection:
    uri = str(tmp_path_factory.mktemp("load") / "collection")
    records = records_from_items(sample_archive.items, bands={"red": "red"})
    ingest_records(records, uri, settings=rc.Settings.from_env(), operation="build")
    return rc.load(uri)


def test_sampling_memory_is_flat_at_ten_times_the_points(prefect_api, staging_dir, local_collection, tmp_path):
    peaks = {}
    for scale in (1, 10):
        points = write_inputs(local_collection, tmp_path / f"points-{scale}.parquet", 10_000 * scale, polygons=False,
                              seed=scale)
        result = run_child({"flow": "sample_points", "kwargs": {
            "collection_uri": local_collection.uri, "points": str(points), "bands": ["red"],
            "out_uri": str(tmp_path / f"out-{scale}"), "batch_size": 5_000, "max_in_flight": 2}})
        assert result["inputs"] == 10_000 * scale and result["failed_batches"] == 0
        assert result["batches"] == 2 * scale
        peaks[scale] = result["peak_rss_mib"]
        rows = rc.engine.read_table(str(tmp_path / f"out-{scale}"), settings=rc.Settings.from_env())[0].num_rows
        assert rows == result["rows"] >= 10_000 * scale
    print(f"peak RSS: {peaks[1]} MiB at 1x, {peaks[10]} MiB at 10x")
    assert peaks[10] <= peaks[1] * RATIO, peaks

"""Crash safety: every flow SIGKILLed at seeded checkpoints, then re-run, equals a clean run.

Each flow runs in a subprocess (``crash_run.py``) that kills itself with SIGKILL at a
checkpoint it observes from outside the flow's code: the Nth staged partition (N drawn
from a seeded generator), the last one (everything staged, nothing committed), the
first data file a Delta commit writes before its log entry (during the commit), and
the log entry itself (committed, staging not yet cleaned). The kills are chained,
each run starting from what the last one left. After every kill each version committed
so far still reads back exactly as before, and a new version (a kill after the commit)
holds exactly the clean run's rows. The last, unkilled run completes; its table has
the rows of a clean run of the same job (no row lost, none duplicated) and no staging
folder is left. The collections and outputs killed are local Delta tables (watched for
the commit checkpoints); the COGs, the STAC API and the collection the batched reads
read are on the real services (SeaweedFS S3, ``rustac serve``). Crashes of S3 tables:
``test_flows_enrich`` (a killed enrichment of an S3 collection) and ``test_concurrency``.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from crash_run import CrashServer

import rasteret_core as rc

BANDS = {"red": "red", "nir": "nir"}
SEED = 12
STAGE = re.compile(r"^[0-9a-f]{20}(\.lease)?$")
GEO = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}


@pytest.fixture(scope="module")
def crashes(prefect_api, staging_dir, s3, tmp_path_factory):
    """The fork server of this module's killed runs, in the session's environment (Prefect, S3, staging)."""
    server = CrashServer(tmp_path_factory.mktemp("crash-server") / "stderr.log")
    yield server
    server.close()


def _rows(uri: str, *, version: int | None = None, key: tuple[str, ...]) -> list[dict]:
    """The rows of a Delta table (a collection or an output) sorted by ``key``, internal columns included."""
    from deltalake import DeltaTable

    options = rc.Settings.from_env().delta_storage_options() if uri.startswith("s3://") else None
    dt = DeltaTable(uri, version=version, storage_options=options)
    table = dt.to_pyarrow_table()
    del dt
    return table.sort_by([(k, "ascending") for k in key]).to_pylist()


def _version(uri: str) -> int:
    from deltalake import DeltaTable

    options = rc.Settings.from_env().delta_storage_options() if uri.startswith("s3://") else None
    dt = DeltaTable(uri, storage_options=options)
    version = dt.version()
    del dt
    return version


def _stages(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root) if STAGE.match(n))


class Chain:
    """Kills chained on one table: checks what each left, then the re-run against a clean run."""

    def __init__(self, server: CrashServer, flow: str, kwargs: dict[str, Any], uri: str, *, key: tuple[str, ...],
                 expected: list[dict], staging: Path) -> None:
        self.server, self.flow, self.kwargs, self.uri = server, flow, kwargs, uri
        self.key, self.expected, self.staging = key, expected, staging
        self.versions = {v: _rows(uri, version=v, key=key) for v in range(_version(uri) + 1)}
        self.outcomes: list[str] = []
        self.committed = False

    def kill(self, name: str, kill: dict[str, Any]) -> str:
        before = max(self.versions)
        if self.committed and kill["root"].endswith("_delta_log"):
            # the kill "during" the commit came a moment after the commit: the job is done, and a re-run
            # commits nothing (checked by rerun), so there is no commit left to kill after
            self.outcomes.append(f"{name}: skipped (the previous kill came after the commit)")
            return self.outcomes[-1]
        self.server.kill_run(self.flow, self.kwargs, kill)
        for version, rows in self.versions.items():  # every earlier version intact and readable
            assert _rows(self.uri, version=version, key=self.key) == rows, f"{name}: version {version} changed"
        latest = _version(self.uri)
        assert latest in (before, before + 1), f"{name}: {latest - before} versions committed by one run"
        if latest > before:  # the kill came after the commit: the new version is the whole job, once
            assert _rows(self.uri, key=self.key) == self.expected, f"{name}: committed rows differ from a clean run"
            self.versions[latest] = self.expected
            self.committed = True
        outcome = f"{name}: {'committed' if latest > before else 'nothing committed'}"
        self.outcomes.append(outcome)
        return outcome

    def rerun(self) -> None:
        import rasteret_flows

        getattr(rasteret_flows, self.flow)(**self.kwargs)
        rows = _rows(self.uri, key=self.key)
        assert len(rows) == len(self.expected), f"{len(rows)} rows after the re-run, {len(self.expected)} in a clean run"
        assert rows == self.expected
        for version, old in self.versions.items():
            assert _rows(self.uri, version=version, key=self.key) == old
        assert _stages(self.staging) == [], "staging left behind"


def _comparable(rows: list[dict], drop: tuple[str, ...] = ()) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _data_kill(uri: str) -> dict[str, Any]:
    """The first data file of the next commit (written before its log entry): a kill during the commit."""
    return {"root": uri, "pattern": "*.parquet*", "exclude": "_delta_log", "count": 1}


def _log_kill(uri: str) -> dict[str, Any]:
    """The next commit's log entry: a kill after the commit, before the run cleans its staging."""
    return {"root": os.path.join(uri, "_delta_log"), "pattern": "0*.json", "count": 1}


def test_ingestion_survives_kills(crashes, prefect_api, staging_dir, stac_api, s3, tmp_path):
    from rasteret_flows import ingest_collection

    rng = random.Random(SEED)
    base = {"stac_api": stac_api, "collection": "sentinel-2-l2a", "bands": BANDS, "partition_size": 1,
            "max_in_flight": 1}
    clean, uri = str(tmp_path / "clean"), str(tmp_path / "killed")
    for target in (clean, uri):  # the previous version: the first two scenes
        ingest_collection(uri=target, max_items=2, **base)
    ingest_collection(uri=clean, **base)
    expected = _rows(clean, key=("id",))
    assert len(expected) == 6
    job = {**base, "uri": uri}
    chain = Chain(crashes, "ingest_collection", job, uri, key=("id",), expected=expected, staging=staging_dir)
    nth = rng.randint(1, 3)  # 4 changed scenes: 4 partition manifests
    chain.kill(f"partition {nth} of 4 staged", {"root": str(staging_dir), "pattern": "part-*.json", "count": nth})
    assert _stages(staging_dir), "the killed run left no staging (the checkpoint came too early)"
    chain.kill("all 4 partitions staged", {"root": str(staging_dir), "pattern": "part-*.json", "count": 4})
    chain.kill("during the merge commit", _data_kill(uri))
    chain.kill("after the commit", _log_kill(uri))
    chain.rerun()
    print(chain.outcomes)  # shown with -s: where each kill landed


def test_enrichment_survives_kills(crashes, prefect_api, staging_dir, s3, s3_items, tmp_path):
    from rasteret_core.engine import Changes, records_from_items

    rng = random.Random(SEED + 1)
    clean, uri = str(tmp_path / "clean"), str(tmp_path / "killed")
    settings = rc.Settings.from_env()
    for target in (clean, uri):  # the previous version: six rows without header metadata
        rc.engine.merge_changes(records_from_items(s3_items, bands=BANDS), target, changes=Changes(records=6),
                                settings=settings, operation="build")
    from rasteret_flows import enrich_collection

    enrich_collection(clean, partition_size=1, max_in_flight=1)
    expected = _rows(clean, key=("id",))
    job = {"uri": uri, "partition_size": 1, "max_in_flight": 1}
    chain = Chain(crashes, "enrich_collection", job, uri, key=("id",), expected=expected, staging=staging_dir)
    nth = rng.randint(1, 5)
    chain.kill(f"partition {nth} of 6 staged", {"root": str(staging_dir), "pattern": "part-*.json", "count": nth})
    resumed = len(list(staging_dir.glob("*/part-*.json")))  # the re-run resumes what the killed run staged
    chain.kill("all 6 partitions staged", {"root": str(staging_dir), "pattern": "part-*.json", "count": 6 - resumed})
    chain.kill("during the merge commit", _data_kill(uri))
    chain.kill("after the commit", _log_kill(uri))
    chain.rerun()
    print(chain.outcomes)  # shown with -s: where each kill landed


def _sites(col: rc.Collection, n: int, *, seed: int, polygons: bool) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = col.to_arrow().to_pylist()
    geoms = []
    for i in range(n):
        b = rows[i % len(rows)]["bbox"]
        x, y = rng.uniform(b["xmin"] + 0.01, b["xmax"] - 0.01), rng.uniform(b["ymin"] + 0.01, b["ymax"] - 0.01)
        geoms.append(shapely.box(x, y, x + 0.002, y + 0.002) if polygons else shapely.Point(x, y))
    table = pa.table({"site": [f"s{seed}-{i:04d}" for i in range(n)], "geometry": [shapely.to_wkb(g) for g in geoms]})
    return table.replace_schema_metadata({"geo": json.dumps(GEO)})


@pytest.mark.parametrize(("flow", "polygons", "name"), [("extract_aois", True, "aois"),
                                                        ("sample_points", False, "points")])
def test_batched_reads_survive_kills_in_append_mode(flow, polygons, name, crashes, prefect_api, staging_dir,
                                                    s3_collection, tmp_path):
    """Appends are the hard case: a re-run after a kill past the commit must not append the rows again."""
    import rasteret_flows

    rng = random.Random(SEED + (2 if polygons else 3))
    run = getattr(rasteret_flows, flow)
    earlier, todo = tmp_path / "earlier.parquet", tmp_path / "todo.parquet"
    pq.write_table(_sites(s3_collection, 6, seed=1, polygons=polygons), earlier)
    pq.write_table(_sites(s3_collection, 20, seed=2, polygons=polygons), todo)
    clean, uri = str(tmp_path / "clean"), str(tmp_path / "killed")
    source = "aois" if polygons else "points"
    options = {"stats": ["count", "mean"]} if polygons else {}
    common = {"collection_uri": s3_collection.uri, "bands": ["red"], "batch_size": 5, "max_in_flight": 1,
              **options}
    for target in (clean, uri):  # the previous version: an earlier extraction
        run(**{**common, source: str(earlier), "out_uri": target, "mode": "append"})
    job = {**common, source: str(todo), "out_uri": uri, "mode": "append"}
    run(**{**job, "out_uri": clean})
    key = ("site", "record_id", "band")
    expected = _rows(clean, key=key)
    chain = Chain(crashes, flow, job, uri, key=key, expected=expected, staging=staging_dir)
    nth = rng.randint(1, 4)  # 4 batches: one seeded kill while staging (the 4th: between staging and commit)
    chain.kill(f"batch {nth} of 4 staged", {"root": str(staging_dir), "pattern": f"{name}-*.parquet", "count": nth})
    chain.kill("during the output commit", _data_kill(uri))
    chain.kill("after the output commit", _log_kill(uri))
    chain.rerun()
    print(chain.outcomes)  # shown with -s: where each kill landed

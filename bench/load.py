"""Sustained-load benchmark: the extraction and sampling flows at 1x and 10x input, peak memory of each run.

Run: ``python -m bench.load [--aois 10000] [--points 1000000] [--scales 1,10]``. It writes
the synthetic sample archive (6 scenes, local COGs), builds a local collection of it, and
for each scale writes ``aois x scale`` small AOIs and ``points x scale`` points (GeoParquet,
row groups of 10,000) inside the footprints. Each flow run (``sample_points`` of one band
in batches of ``--point-batch``, ``extract_aois`` of two bands with ``stats=["count", "mean"]``
in batches of ``--aoi-batch``) runs in a fresh process against one
Prefect server started for the benchmark, so its peak RSS (``VmHWM``) is the run's own.
It prints, per flow and scale, the input rows, output rows, batches, seconds and peak
RSS, and the ratio of the 10x peak to the 1x peak (flat memory: close to 1).

``--child SPEC`` runs one flow (used by the benchmark and by ``tests/integration/test_load.py``)
and prints its figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

GEO = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB (``VmHWM``: unlike ``ru_maxrss``, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_inputs(collection: Any, path: Path, n: int, *, polygons: bool, seed: int) -> Path:
    """``n`` points (or AOIs of about 30 m) inside the collection's footprints, GeoParquet, row groups of 10,000."""
    rng = np.random.default_rng(seed)
    boxes = [r["bbox"] for r in collection.to_arrow().select(["bbox"]).to_pylist()]
    writer = None
    for start in range(0, n, 10_000):
        size = min(10_000, n - start)
        pick = rng.integers(0, len(boxes), size)
        lo = np.array([[boxes[i]["xmin"], boxes[i]["ymin"]] for i in pick])
        hi = np.array([[boxes[i]["xmax"], boxes[i]["ymax"]] for i in pick])
        xy = lo + (hi - lo) * rng.uniform(0.05, 0.95, (size, 2))
        geoms = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + 3e-4, xy[:, 1] + 3e-4) if polygons else shapely.points(xy)
        table = pa.table({"site": pa.array(np.arange(start, start + size), pa.int64()),
                          "geometry": shapely.to_wkb(geoms)}).replace_schema_metadata({"geo": json.dumps(GEO)})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=10_000)
    assert writer is not None
    writer.close()
    return path


def build_collection(folder: Path) -> str:
    """The synthetic sample archive (local COGs) indexed as a local collection; return its URI."""
    import rasteret_core as rc
    from rasteret_core.engine import ingest_records, records_from_items
    from rasteret_demo.archive import make_sample_archive

    archive = make_sample_archive(folder / "archive", scale=1, seed=0)
    uri = str(folder / "collection")
    records = records_from_items(archive.items, bands={"red": "red", "nir": "nir"})
    ingest_records(records, uri, settings=rc.Settings.from_env(), operation="build")
    return uri


@contextlib.contextmanager
def flow_sandbox(prefix: str) -> Iterator[tuple[Path, str]]:
    """A temporary folder with a Prefect server of its own and the synthetic collection built in it.

    ``PREFECT_HOME``, ``PREFECT_API_URL`` and ``RASTERET_STAGING_DIR`` point this process and
    the flow runs it starts there; yield (folder, collection URI). The server stops on exit.
    """
    from infra.local.prefect_server import prefect_server
    from rasteret_demo.process import Background

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp)
        os.environ["PREFECT_HOME"] = str(folder / "prefect-home")
        os.environ["RASTERET_STAGING_DIR"] = str(folder / "staging")
        server = Background(lambda: prefect_server(folder / "prefect-server"))
        try:
            os.environ["PREFECT_API_URL"] = server.wait()
            yield folder, build_collection(folder)
        finally:
            server.stop()


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one flow in a fresh process; return its figures (``peak_rss_mib``, ``rows``, ``batches``, ``seconds``)."""
    done = subprocess.run([sys.executable, "-m", "bench.load", "--child", json.dumps(spec)], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"flow run failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(spec: dict[str, Any]) -> None:
    import logging

    import rasteret_flows

    logging.getLogger("prefect").setLevel(logging.WARNING)
    started = time.perf_counter()
    summary = getattr(rasteret_flows, spec["flow"])(**spec["kwargs"])
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "rows": summary.rows, "inputs": summary.inputs,
                      "batches": summary.batches, "failed_batches": summary.failed_batches,
                      "seconds": round(time.perf_counter() - started, 1)}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aois", type=int, default=10_000, help="AOIs at 1x")
    parser.add_argument("--points", type=int, default=1_000_000, help="points at 1x")
    parser.add_argument("--scales", default="1,10", help="input multipliers")
    parser.add_argument("--aoi-batch", type=int, default=500)
    parser.add_argument("--point-batch", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return 0
    import rasteret_core as rc

    scales = [int(s) for s in args.scales.split(",")]
    with flow_sandbox("rasteret-bench-load-") as (folder, uri):
        collection = rc.load(uri)
        figures: dict[str, dict[int, dict[str, Any]]] = {"extract_aois": {}, "sample_points": {}}
        inputs = {}
        for scale in scales:
            inputs[scale] = (
                write_inputs(collection, folder / f"aois-{scale}.parquet", args.aois * scale, polygons=True,
                             seed=scale),
                write_inputs(collection, folder / f"points-{scale}.parquet", args.points * scale, polygons=False,
                             seed=100 + scale),
            )
        runs = [("sample_points", scale, {"points": str(inputs[scale][1]), "batch_size": args.point_batch,
                                          "bands": ["red"]}) for scale in scales]
        runs += [("extract_aois", scale, {"aois": str(inputs[scale][0]), "batch_size": args.aoi_batch,
                                          "stats": ["count", "mean"], "bands": ["red", "nir"]}) for scale in scales]
        for flow, scale, kwargs in runs:
            out = str(folder / f"out-{flow}-{scale}")
            figures[flow][scale] = result = run_child(
                {"flow": flow, "kwargs": {"collection_uri": uri, "out_uri": out, "max_in_flight": 2, **kwargs}})
            print(f"{flow:14s} {scale:>3d}x: {result['inputs']:>10,d} inputs  {result['rows']:>11,d} rows  "
                  f"{result['batches']:>5d} batches  {result['seconds']:>7.1f} s  "
                  f"peak RSS {result['peak_rss_mib']:>7.1f} MiB", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        for flow, by_scale in figures.items():
            low, high = by_scale[min(scales)], by_scale[max(scales)]
            print(f"{flow}: peak RSS {max(scales) // min(scales)}x input / 1x input = "
                  f"{high['peak_rss_mib'] / low['peak_rss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

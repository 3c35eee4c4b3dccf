"""Load a 100,000-record, 10-band collection and answer a bbox + datetime subset: time and memory.

The collection is synthetic (:mod:`bench.synthetic`: headers generated, not
parsed, shaped like Earth Search Sentinel-2 records with 984 tiles each) and
written once with the library's own writer (clustered layout, record digests).
The measurement runs in a fresh process so its peak RSS is the reader's alone::

    python -m bench.collection_subset [--records 100000] [--workdir DIR] [--keep]

Prints the write time, the table's size on disk, then for each query the
time of ``rc.load(uri)``, of ``subset(...)``, the records matched and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

QUERIES = {
    "0.6-degree bbox, March 2024": {"bbox": "small", "datetime": "2024-03-01/2024-03-31"},
    "10-degree bbox, March 2024": {"bbox": "large", "datetime": "2024-03-01/2024-03-31"},
    "0.6-degree bbox, Q1 2024": {"bbox": "small", "datetime": "2024-01-01/2024-03-31"},
}


def _bbox(kind: str) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(0)  # the synthetic footprints' first draws (see synthetic.py)
    lon0, lat0 = rng.uniform(-179.0, 178.0, 1000), rng.uniform(-56.0, 70.0, 1000)
    x, y = float(lon0[7]), float(lat0[7])
    return (x + 0.2, y + 0.2, x + 0.8, y + 0.8) if kind == "small" else (x - 5, y - 5, x + 5, y + 5)


def write(uri: str, records: int) -> float:
    """Write the synthetic collection to ``uri`` in one commit; return the seconds it took."""
    import pyarrow as pa

    from rasteret_core import Settings
    from rasteret_core.table.delta import write_table

    from .synthetic import synthetic_batches

    start = time.perf_counter()
    table = pa.concat_tables(synthetic_batches(records))
    write_table(table, uri, settings=Settings.from_env(), operation="bench", mode="error",
                metadata={"records": records})
    return time.perf_counter() - start


def _peak_rss_mib() -> int:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(uri: str) -> list[dict]:
    """Run each query three times (each from ``rc.load``); report the median and the peak RSS."""
    import rasteret_core as rc

    rss_start = _peak_rss_mib()
    out = []
    for name, query in QUERIES.items():
        loads, subsets, n = [], [], 0
        for _ in range(3):
            t0 = time.perf_counter()
            col = rc.load(uri)
            t1 = time.perf_counter()
            sub = col.subset(bbox=_bbox(query["bbox"]), datetime=query["datetime"])
            n = len(sub)
            t2 = time.perf_counter()
            loads.append(t1 - t0)
            subsets.append(t2 - t1)
            del col, sub
        out.append({
            "query": name,
            "load_s": round(float(np.median(loads)), 3),
            "subset_s": round(float(np.median(subsets)), 3),
            "total_s": round(float(np.median(np.add(loads, subsets))), 3),
            "records": n,
            "peak_rss_mib": _peak_rss_mib(),
        })
    out.append({"query": "(after imports, before any query)", "peak_rss_mib": rss_start})
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the collection (unless it exists), measure in a fresh process, print the results."""
    parser = argparse.ArgumentParser(prog="python -m bench.collection_subset", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the table here (reused when present)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rasteret-bench-"))
    uri = str(root / f"synthetic-{args.records}")
    try:
        if not Path(uri, "_delta_log").exists():
            seconds = write(uri, args.records)
            print(f"wrote {args.records} records x 10 bands in {seconds:.1f} s")
        size = sum(p.stat().st_size for p in Path(uri).rglob("*.parquet"))
        files = sum(1 for _ in Path(uri).rglob("*.parquet"))
        print(f"table: {uri}: {files} files, {size / 2**20:.0f} MiB "
              f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
        child = subprocess.run([sys.executable, "-m", "bench.collection_subset", "--measure", uri],
                               capture_output=True, text=True, check=True)
        rows = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{'query':32} {'load s':>7} {'subset s':>9} {'total s':>8} {'records':>8} {'peak RSS MiB':>13}")
        for row in rows:
            print(f"{row['query']:32} {row.get('load_s', ''):>7} {row.get('subset_s', ''):>9} "
                  f"{row.get('total_s', ''):>8} {row.get('records', ''):>8} {row['peak_rss_mib']:>13}")
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure Delta layouts of a 100,000-record collection: which one answers subsets fastest.

Each layout is written to a fresh local table, then four queries run against it
through the same pruned read the library uses (:meth:`rasteret_core.table.delta.Snapshot.read`):
a small bbox in one month, a 10-degree bbox in one month, one month, and a small
bbox over both years. Timings are the median of three runs, each opening the
table afresh. Writes use deltalake directly so the layouts differ only in what is
measured. Run::

    python -m bench.layouts [--records 100000] [--layouts A,B,C,D,E,F] [--workdir DIR]

Needs about 1.5 GB of disk per layout (one layout at a time) and 4 GB of memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties, write_deltalake

from rasteret_core.settings import Settings
from rasteret_core.table.delta import (
    COLLECTION_CONFIGURATION,
    ROW_GROUP_ROWS,
    TARGET_FILE_SIZE,
    cluster_order,
    open_snapshot,
    write_table,
)
from rasteret_core.table.schema import RECORD_HASH, record_hashes

from .synthetic import synthetic_batches

MiB = 1024 * 1024


def _with_hash(t: pa.Table) -> pa.Table:
    return t.add_column(t.schema.get_field_index("assets"), RECORD_HASH, record_hashes(t))


def _write_appends(uri: str, n: int) -> None:
    """Ten commits of shuffled rows, as ten unsorted ingestions would leave them."""
    for batch in synthetic_batches(n, batch=max(1, n // 10)):
        write_deltalake(uri, batch, mode="append", configuration=COLLECTION_CONFIGURATION)


def _write_sorted(uri: str, n: int, *, key: str, target: int, row_group: int | None = ROW_GROUP_ROWS,
                  compression: str = "SNAPPY") -> None:
    table = pa.concat_tables(synthetic_batches(n))
    table = table.take(pc.sort_indices(table["datetime"])) if key == "datetime" else table.take(cluster_order(table))
    write_deltalake(uri, table, configuration=COLLECTION_CONFIGURATION, target_file_size=target,
                    writer_properties=WriterProperties(compression=compression, max_row_group_size=row_group))


def _write_library(uri: str, n: int) -> None:
    write_table(pa.concat_tables(synthetic_batches(n)), uri, settings=Settings.from_env(), operation="bench",
                mode="error")


def _write_appends_then_zorder(uri: str, n: int) -> None:
    _write_appends(uri, n)
    dt = DeltaTable(uri)
    dt.optimize.z_order(["datetime", "bbox.xmin", "bbox.ymin"], target_size=TARGET_FILE_SIZE,
                        writer_properties=WriterProperties(compression="SNAPPY", max_row_group_size=ROW_GROUP_ROWS))
    del dt


LAYOUTS: dict[str, tuple[str, Callable[[str, int], None]]] = {
    "A": ("10 unsorted appends, defaults", _write_appends),
    "B": ("sorted by datetime, 100 MiB files", lambda u, n: _write_sorted(u, n, key="datetime", target=100 * MiB,
                                                                          row_group=None)),
    "C": ("month + Z-order, 16 MiB files, 128-row groups",
          lambda u, n: _write_sorted(u, n, key="cluster", target=16 * MiB)),
    "C1": ("month + Z-order, 16 MiB files, one row group per file",
           lambda u, n: _write_sorted(u, n, key="cluster", target=16 * MiB, row_group=None)),
    "D": ("month + Z-order, 64 MiB files, 128-row groups",
          lambda u, n: _write_sorted(u, n, key="cluster", target=64 * MiB)),
    "E": ("partitioned by month, Z-order, 16 MiB, 128-row groups (chosen: the library's writer)", _write_library),
    "F": ("month + Z-order, 16 MiB, 128-row groups, zstd",
          lambda u, n: _write_sorted(u, n, key="cluster", target=16 * MiB, compression="ZSTD")),
    "G": ("10 unsorted appends, then optimize z_order", _write_appends_then_zorder),
}


def _queries() -> dict[str, dict]:
    rng = np.random.default_rng(0)  # the synthetic footprints' first draws (see synthetic.py)
    lon0, lat0 = rng.uniform(-179.0, 178.0, 1000), rng.uniform(-56.0, 70.0, 1000)
    x, y = lon0[7], lat0[7]
    march = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 31, 23, 59, 59, tzinfo=UTC))
    return {
        "small bbox + month": {"bbox": (x + 0.2, y + 0.2, x + 0.8, y + 0.8), "start": march[0], "end": march[1]},
        "10-degree bbox + month": {"bbox": (x - 5, y - 5, x + 5, y + 5), "start": march[0], "end": march[1]},
        "month": {"start": march[0], "end": march[1]},
        "small bbox, 2 years": {"bbox": (x + 0.2, y + 0.2, x + 0.8, y + 0.8)},
    }


def measure(uri: str) -> dict:
    """Open the table and run the queries; return timings, files read and rows."""
    settings = Settings.from_env()
    files = list(Path(uri).rglob("*.parquet"))
    out: dict = {"files": len(files), "MiB": round(sum(p.stat().st_size for p in files) / MiB)}
    opens = []
    for _ in range(3):
        t0 = time.perf_counter()
        snapshot = open_snapshot(uri, settings=settings)
        opens.append(time.perf_counter() - t0)
    out["open_s"] = round(statistics.median(opens), 3)
    for name, query in _queries().items():
        runs, cpu = [], []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            snapshot = open_snapshot(uri, settings=settings)
            table = snapshot.read(**query)
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        dt = DeltaTable(uri)
        sql = []
        if "start" in query:
            sql.append(f"datetime >= '{query['start'].isoformat()}' AND datetime <= '{query['end'].isoformat()}'")
        if "bbox" in query:
            x0, y0, x1, y1 = query["bbox"]
            sql.append(f"bbox.xmin <= {x1} AND bbox.xmax >= {x0} AND bbox.ymin <= {y1} AND bbox.ymax >= {y0}")
        read = len(dt.file_uris(file_pruning_predicate=" AND ".join(sql)))
        del dt
        out[name] = {"s": round(statistics.median(runs), 3), "cpu_s": round(statistics.median(cpu), 3),
                     "files read": read, "rows": table.num_rows}
    return out


def main(argv: list[str] | None = None) -> int:
    """Write each layout, measure it, print one JSON line per layout."""
    parser = argparse.ArgumentParser(prog="python -m bench.layouts", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rasteret-layouts-"))
    try:
        for name in args.layouts.split(","):
            title, write = LAYOUTS[name]
            uri = str(root / f"layout-{name}")
            shutil.rmtree(uri, ignore_errors=True)
            t0 = time.perf_counter()
            write(uri, args.records)
            written = round(time.perf_counter() - t0, 1)
            result = {"layout": name, "what": title, "records": args.records, "write_s": written,
                      **measure(uri)}
            print(json.dumps(result), flush=True)
            shutil.rmtree(uri, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

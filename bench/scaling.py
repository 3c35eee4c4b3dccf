"""How read time grows with scenes, bands and AOI size: the complexity ``make bench`` states (issue 11).

Run: ``python -m bench.scaling [--repeat 3] [--json PATH]``. It reads the cached benchmark archive
(:mod:`bench.archive`, built under ``build/bench/`` by ``make bench`` or here) from local files,
so that the network does not blur the curve, through a local collection of it, and times
``Collection.read_numpy`` (warm, median of ``--repeat``) along three axes, one at a time:

- **scenes**: 1, 2, 3 ... all dates x one band, the 1 km disc on a tile corner (4 tiles each);
- **bands**: 1, 2 and 4 bands x every date, the same disc;
- **AOI size**: squares of 0.2 to 80 km in the middle of the scene, one date x one band (1 to 81 tiles).

For each axis it fits ``time = a + b * tiles`` (least squares; ``a`` the fixed cost of a read,
``b`` the cost of one tile) and the exponent ``k`` of ``time ~ n^k`` (log-log slope over the
points past the first); ``k`` near 1 is linear growth. It prints one Markdown table and writes
JSON with ``table`` and ``rows``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.archive import BANDS, CRS, PIXEL, TILE, X0, Y0, build_archive, stac_items

BUILD = Path(__file__).resolve().parents[1] / "build" / "bench"


def collection_of(archive: Any, folder: Path) -> Any:
    """The archive indexed as a local collection (hrefs rewritten from the bucket to the local files)."""
    import rasteret_core as rc
    from rasteret_core.engine import ingest_records, records_from_items

    items = stac_items(archive, "bench")["features"]
    records = records_from_items(items, bands={b: b for b in archive.bands},
                                 href_rewrites={"s3://bench/": f"{archive.root}/"})
    return ingest_records(records, str(folder / "collection"), settings=rc.Settings.from_env(), operation="build")


def corner(size: int) -> tuple[float, float]:
    """The corner shared by four tiles near the middle of the scene (as B3's)."""
    k = min(5, size // TILE // 2)
    return X0 + k * TILE * PIXEL + 3.3, Y0 - k * TILE * PIXEL - 2.7


def timed(col: Any, aoi: Any, bands: list[str], repeat: int) -> tuple[float, int, int]:
    """Median warm seconds of ``read_numpy``, and the requests and tiles it took (bytes are not the point)."""
    result = col.read_numpy(aoi, bands, geometry_crs=CRS)  # warm-up: page cache, runtime, plan caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        col.read_numpy(aoi, bands, geometry_crs=CRS)
        times.append(time.perf_counter() - started)
    plan = col.explain(aoi, bands, geometry_crs=CRS)
    return statistics.median(times), result.stats.requests, int(plan["tiles"])


def fit(points: Sequence[dict[str, Any]], axis: str) -> dict[str, float]:
    """``a + b * tiles`` by least squares, and the log-log slope of time against the axis value."""
    tiles = np.array([p["tiles"] for p in points], float)
    seconds = np.array([p["seconds"] for p in points], float)
    b, a = np.polyfit(tiles, seconds, 1)
    values = np.array([p[axis] for p in points], float)
    k = float(np.polyfit(np.log(values[1:]), np.log(seconds[1:]), 1)[0]) if len(points) > 2 else float("nan")
    return {"fixed_s": float(a), "per_tile_ms": float(b) * 1000, "exponent": k}


def measure(col: Any, scenes: list[str], size: int, repeat: int) -> list[dict[str, Any]]:
    import pyarrow.compute as pc
    import shapely

    cx, cy = corner(size)
    disc = shapely.Point(cx, cy).buffer(500.0, quad_segs=32)
    rows: list[dict[str, Any]] = []
    counts = sorted({1, 2, 3, len(scenes) // 2, len(scenes)} - {0})
    for n in counts:
        sub = col.where(pc.field("id").isin(scenes[:n]))
        seconds, requests, tiles = timed(sub, disc, ["B04"], repeat)
        rows.append({"axis": "scenes", "scenes": n, "bands": 1, "aoi_km": 1.0, "tiles": tiles,
                     "requests": requests, "seconds": seconds})
    for nb in (1, 2, 4):
        seconds, requests, tiles = timed(col, disc, list(BANDS[:nb]), repeat)
        rows.append({"axis": "bands", "scenes": len(scenes), "bands": nb, "aoi_km": 1.0, "tiles": tiles,
                     "requests": requests, "seconds": seconds})
    one = col.where(pc.field("id") == scenes[0])
    mx, my = X0 + size * PIXEL / 2, Y0 - size * PIXEL / 2
    for side_km in (0.2, 5.0, 20.0, 40.0, 80.0):  # about 1, 4, 9, 25 and 81 tiles
        half = side_km * 500.0
        square = shapely.box(mx - half, my - half, mx + half, my + half)
        seconds, requests, tiles = timed(one, square, ["B04"], repeat)
        rows.append({"axis": "aoi", "scenes": 1, "bands": 1, "aoi_km": side_km, "tiles": tiles,
                     "requests": requests, "seconds": seconds})
    return rows


def table(rows: list[dict[str, Any]], fits: dict[str, dict[str, float]]) -> str:
    lines = ["| axis | scenes | bands | AOI (km) | tiles | requests | seconds | ms per tile |", "|---|---|---|---|---|---|---|---|"]
    lines.extend(f"| {r['axis']} | {r['scenes']} | {r['bands']} | {r['aoi_km']:g} | {r['tiles']} | {r['requests']} | "
                 f"{r['seconds']:.3f} | {1000 * r['seconds'] / max(r['tiles'], 1):.1f} |" for r in rows)
    lines += ["", "| axis | fixed cost s (a) | per tile ms (b) | exponent k (time ~ n^k) |", "|---|---|---|---|"]
    lines.extend(f"| {axis} | {f['fixed_s']:.3f} | {f['per_tile_ms']:.1f} | {f['exponent']:.2f} |"
                 for axis, f in fits.items())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=6, help="dates in the archive (built once if missing)")
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=BUILD / "scaling.json")
    args = parser.parse_args(argv)
    archive = build_archive(BUILD, scenes=args.scenes, size=args.size)
    with tempfile.TemporaryDirectory(prefix="rasteret-scaling-") as tmp:
        col = collection_of(archive, Path(tmp))
        rows = measure(col, list(archive.scenes), archive.size, args.repeat)
    axis_key = {"scenes": "scenes", "bands": "bands", "aoi": "tiles"}
    fits = {axis: fit([r for r in rows if r["axis"] == axis], key) for axis, key in axis_key.items()}
    text = table(rows, fits)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"table": text, "rows": rows, "fits": fits}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

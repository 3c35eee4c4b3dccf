"""``make bench``: this project against async-geotiff, a 16-thread rasterio loop and rasteret 0.4.1 (issue 11).

Run: ``python -m bench.suite [--scenes 6] [--full] [--latencies 0,20,50] [--repeat 3] [--cases B1,B2,B3,points]``
(``RASTERET_BENCH_FULL=1`` is ``--full``: the issue's 24 scenes x 4 bands).

1. Builds the archive once (:mod:`bench.archive`, cached under ``build/bench/``): ``--scenes``
   Sentinel-2-like scenes (one tile revisited) x 4 bands, 10980 px, uint16, DEFLATE + predictor 2,
   1024 px tiles.
2. Serves it from SeaweedFS on loopback, behind one fault proxy per latency (every request delayed
   by 0, 20 or 50 ms); the STAC items from ``rustac serve``, behind proxies too.
3. Runs every case with every reader, each in a fresh process (:mod:`bench.peers`;
   :mod:`bench.legacy_rasteret` on Python 3.12 for rasteret 0.4.1, in a venv cached under
   ``build/bench/``): the first run is cold (from process start: imports, clients), the next
   ``--repeat`` warm (their median is the number compared).

   - **B1** cold build: STAC search + every header + Delta commit, into a new table on S3 (behind
     the same proxy) and into a local one (peers: bare header opens, no index kept; rasteret 0.4.1
     builds its Parquet index locally).
   - **B2** 200 m AOI inside one tile, every date x 4 bands.
   - **B3** 1 km AOI across a tile corner (4 tiles per date and band).
   - **gap**: B3 by this project alone with ``RASTERET_COALESCE_GAP`` at 64 KiB (the default) and
     16 MiB (one request per file, reading the 9 tiles between the two pairs too), at 0 and 50 ms:
     what merging ranges across a gap costs or buys at each latency.
   - **points**: 10,000 and 1,000,000 random points over one band of one scene.

4. Checks every array equals rasterio's (``rasterio.mask.mask(crop=True, filled=True)``; for
   points, the pixel holding each point in the local file), measures the decode limit
   (imagecodecs decoding the same tiles from memory on 2 threads), counts requests (at the
   proxy) and bytes (ours) against the minimum, and peak RSS against the output size.
5. Prints one table, writes ``build/bench/results.json``, deletes what it uploaded and stops
   every service.
6. Runs the sections (:data:`SECTIONS`), each a module in its own process with its own services:
   the 10,000-AOI extraction flow against the library (:mod:`bench.flow_overhead`), ingestion
   at 1,000 and 10,000 simulated scenes (:mod:`bench.ingest_scale`) and how read time grows
   with scenes, bands and AOI size (:mod:`bench.scaling`); their tables follow the main one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.archive import COLLECTION, CRS, PIXEL, TILE, X0, Y0, Archive, build_archive, write_items

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench"
BUCKET = "bench"
TABLES = "bench-tables"
LEGACY_VERSION = "0.4.1"
PEERS = ("rasterio", "rasteret-0.4.1", "async-geotiff", "rasteret")
GOALS = {  # case -> (ratio to the best peer our time must reach, latency the issue states it at)
    "B1": (1.5, 50),
    "B2": (2.0, 50),
    "B3": (1.5, 0),
}
DECODE_GOAL = 1.15  # B3 within this factor of the decode limit
GAPS = (64 * 1024, 16 * 1024 * 1024)  # RASTERET_COALESCE_GAP values the "gap" case compares
SECTIONS = {  # case -> (module run after the readers' table, with its services stopped; what it measures)
    "flow": ("bench.flow_overhead", "a 10,000-AOI extraction: the flow against the library on the same work"),
    "ingest": ("bench.ingest_scale", "ingestion throughput at 1,000 and 10,000 simulated STAC scenes"),
    "scaling": ("bench.scaling", "how read time grows with scenes, bands and AOI size"),
}


# ---------------------------------------------------------------- AOIs and minimums


def aois(size: int) -> dict[str, Any]:
    """The AOIs in the rasters' CRS: B2 a 200 m square turned 30 degrees inside tile (k, k); B3 a
    1 km disc centred on the corner of tiles (k-1..k, k-1..k); k = 5 at 10980 px.
    """
    import shapely
    from shapely import affinity

    k = min(5, size // TILE // 2)
    inner_x, inner_y = X0 + (k + 0.5) * TILE * PIXEL + 3.3, Y0 - (k + 0.5) * TILE * PIXEL - 2.7
    b2 = affinity.rotate(shapely.box(inner_x - 100, inner_y - 100, inner_x + 100, inner_y + 100), 30)
    corner_x, corner_y = X0 + k * TILE * PIXEL + 3.3, Y0 - k * TILE * PIXEL - 2.7
    b3 = shapely.Point(corner_x, corner_y).buffer(500.0, quad_segs=32)
    return {"B2": b2, "B3": b3}


def _tile_ranges(path: Path) -> tuple[list[int], list[int], int]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return list(page.dataoffsets), list(page.databytecounts), -(-page.imagewidth // TILE)


def touched_tiles(archive: Archive, aoi: Any) -> list[tuple[int, int]]:
    """(row, col) of the tiles the AOI's crop window touches (the same in every file)."""
    from affine import Affine

    from bench.peers import mask_window

    transform = Affine(PIXEL, 0, X0, 0, -PIXEL, Y0)
    (col, row, w, h), _ = mask_window(transform, archive.size, archive.size, aoi)
    return [(r, c) for r in range(row // TILE, (row + h - 1) // TILE + 1)
            for c in range(col // TILE, (col + w - 1) // TILE + 1)]


def minimum_io(archive: Archive, tiles: list[tuple[int, int]], scenes: list[str], bands: list[str]) -> dict[str, int]:
    """The fewest requests (byte-adjacent tiles in one; GDAL's 4-byte block leaders/trailers
    between tiles count as adjacent) and bytes (each tile once) a reader with the index needs.
    """
    requests = nbytes = 0
    for scene in scenes:
        for band in bands:
            offsets, counts, across = _tile_ranges(archive.path(scene, band))
            ranges = sorted((offsets[r * across + c], offsets[r * across + c] + counts[r * across + c])
                            for r, c in tiles if counts[r * across + c])
            nbytes += sum(e - s for s, e in ranges)
            end = -(10**18)
            for s, e in ranges:
                if s - end > 16:
                    requests += 1
                end = e
    return {"requests": requests, "bytes": nbytes, "tiles": len(tiles) * len(scenes) * len(bands)}


def decode_limit(archive: Archive, tiles: list[tuple[int, int]], scenes: list[str], bands: list[str],
                 threads: int = 2, repeat: int = 3) -> float:
    """Seconds imagecodecs takes to decode these tiles (DEFLATE + predictor 2) from memory on
    ``threads`` threads, each into a preallocated array: the best of ``repeat``.
    """
    import imagecodecs

    blobs = []
    for scene in scenes:
        for band in bands:
            offsets, counts, across = _tile_ranges(archive.path(scene, band))
            with archive.path(scene, band).open("rb") as f:
                for r, c in tiles:
                    if counts[r * across + c]:  # 0: a sparse tile, nothing to decode
                        f.seek(offsets[r * across + c])
                        blobs.append(f.read(counts[r * across + c]))
    local = threading.local()  # one output tile per thread (libdeflate reads back what it wrote)

    def decode(k: int) -> None:
        if not hasattr(local, "out"):
            local.out = np.empty((TILE, TILE), dtype=np.uint16)
        out = local.out
        imagecodecs.deflate_decode(blobs[k], out=out.reshape(-1).view(np.uint8))
        imagecodecs.delta_decode(out, axis=-1, out=out)

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat):
            started = time.perf_counter()
            list(pool.map(decode, range(len(blobs))))
            best = min(best, time.perf_counter() - started)
    return best


def rasterio_points(archive: Archive, scene: str, band: str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The oracle for points: the local file's pixel holding each point (as ``src.sample``)."""
    import rasterio
    from rasterio.transform import rowcol

    with rasterio.open(archive.path(scene, band)) as src:
        rows, cols = rowcol(src.transform, xs, ys)
        return src.read(1)[np.asarray(rows), np.asarray(cols)]


def point_tiles(xs: np.ndarray, ys: np.ndarray) -> list[tuple[int, int]]:
    rows = np.floor((Y0 - ys) / PIXEL).astype(np.int64) // TILE
    cols = np.floor((xs - X0) / PIXEL).astype(np.int64) // TILE
    return sorted({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)})


# ---------------------------------------------------------------- rasteret 0.4.1's interpreter


def legacy_python() -> tuple[str | None, str]:
    """The venv python for rasteret 0.4.1 (built once under build/bench/), or None and why not."""
    venv = BUILD / f"venv-rasteret{LEGACY_VERSION.replace('.', '')}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists():
        return str(python), ""
    candidates: list[str | None] = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python"))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(["pyenv", "which", "python3.12"], capture_output=True, text=True, check=False)
        candidates.append(found.stdout.strip() if found.returncode == 0 else None)
    candidates.append(shutil.which("python3.12"))
    base = next((c for c in candidates if c and _runs(c)), None)
    if base is None:
        return None, "no Python 3.12 here (rasteret 0.4.1 needs it; pyenv install 3.12)"
    print(f"building the rasteret {LEGACY_VERSION} venv with {base} (once)", flush=True)
    steps = [[base, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "--quiet", f"rasteret=={LEGACY_VERSION}", "obstore"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode:
            return None, f"could not install rasteret {LEGACY_VERSION}: {done.stderr.strip().splitlines()[-1:]}"
    stamp.touch()
    return str(python), ""


def _runs(python: str) -> bool:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([python, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                              capture_output=True, check=False).returncode == 0
    return False


# ---------------------------------------------------------------- services


@contextlib.contextmanager
def services(archive: Archive, run_dir: Path, latencies: list[int]) -> Iterator[dict[str, Any]]:
    """SeaweedFS with the archive, STAC, and one proxy per latency; everything uploaded is deleted on exit."""
    from infra.local.faults import Fault, fault_proxy
    from infra.local.seaweedfs import seaweedfs
    from rasteret_demo.stac import stac_api

    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(seaweedfs(run_dir / "s3"))
        for bucket in (BUCKET, TABLES):
            s3.create_bucket(bucket)
        stack.callback(_empty_buckets, s3)
        started = time.perf_counter()
        s3.upload_dir(archive.root, BUCKET)
        print(f"uploaded {archive.nbytes() / 2**30:.1f} GiB to SeaweedFS in {time.perf_counter() - started:.0f} s",
              flush=True)
        items = write_items(archive, BUCKET, run_dir / "items.json")
        stac = stack.enter_context(stac_api(items))
        s3_proxies, stac_proxies = {}, {}
        for ms in latencies:
            delay = [Fault(path="", times=0, delay=ms / 1000)]
            s3_proxies[ms] = stack.enter_context(fault_proxy(s3.endpoint_url, delay, log_path=run_dir / f"s3-{ms}.log"))
            stac_proxies[ms] = stack.enter_context(fault_proxy(stac.rstrip("/"), delay,
                                                               log_path=run_dir / f"stac-{ms}.log"))
        yield {"s3": s3, "stac": stac, "s3_proxies": s3_proxies, "stac_proxies": stac_proxies}


def _empty_buckets(s3: Any) -> None:
    client = s3.client()
    try:
        for bucket in (BUCKET, TABLES):
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            client.delete_bucket(Bucket=bucket)
    finally:
        client.close()


def _hits(proxy: Any) -> int:
    return sum(int(f["hits"]) for f in proxy.counters()["faults"])


# ---------------------------------------------------------------- running one case


def run_worker(peer: str, spec: dict[str, Any], run_dir: Path, legacy: str | None, proxy: Any,
               timeout: float) -> dict[str, Any]:
    """Run one case by one reader in a fresh process; add the requests the proxy saw per run."""
    spec_path = run_dir / f"spec-{uuid.uuid4().hex[:8]}.json"
    spec_path.write_text(json.dumps({**spec, "peer": peer}))
    if peer == "rasteret-0.4.1":
        if legacy is None:
            return {"skipped": spec["legacy_skip"]}
        argv = [legacy, "-m", "bench.legacy_rasteret", str(spec_path)]
    else:
        argv = [sys.executable, "-m", "bench.peers", str(spec_path)]
    env = {**os.environ, **spec["env"], "PYTHONPATH": str(ROOT)}
    failures: list[str] = []
    for _attempt in range(2):  # a reader that crashes now and then gets a second process; the row says so
        before = _hits(proxy)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            return {"skipped": f"timed out after {timeout:.0f} s"}
        if not done.returncode:
            break
        failures.append(_failure(done, f"{spec['case']}-{peer}"))
    else:
        return {"skipped": f"failed: {failures[-1]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if failures:
        result["note"] = f"first process failed: {failures[0]}"
    runs = 1 + spec.get("repeat", 3)
    if "skipped" not in result:
        result["proxy_requests_per_run"] = round((_hits(proxy) - before) / runs, 1)
    return result


def _failure(done: subprocess.CompletedProcess[str], name: str) -> str:
    """Why a reader's process failed, in one line; its stderr is kept under build/bench/logs/."""
    logs = BUILD / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{name}.stderr").write_text(done.stderr)
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("Fatal Python error", "thread '", "Segmentation fault"))]
    if fatal:
        return fatal[0][:160]
    if done.returncode < 0:
        return f"crashed ({signal.Signals(-done.returncode).name})"
    return lines[-1][:160] if lines else f"exit {done.returncode}"


def _equal(path: Path, oracle: Path) -> bool | None:
    if not path.exists() or not oracle.exists():
        return None
    with np.load(path) as got, np.load(oracle) as want:
        if len(got.files) != len(want.files):
            return False
        return all(got[k].shape == want[k].shape and np.array_equal(got[k], want[k])
                   for k in got.files)


# ---------------------------------------------------------------- the table


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def table(results: dict[str, Any]) -> str:
    """The one table of times and ratios, as Markdown."""
    head = ["case", *[f"{p} s (cold)" for p in PEERS], "lead over best peer", "goal",
            "decode limit s", "us / decode limit", "requests us (proxy) / min", "bytes us / min",
            "peak RSS MiB / output MiB", "equal to rasterio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["rows"]:
        cells = [row["label"]]
        for peer in PEERS:
            r = row["peers"].get(peer, {"skipped": "not run"})
            cells.append(f"skipped: {r['skipped']}" if "skipped" in r
                         else f"{_fmt(r['warm_median'])} ({_fmt(r['cold'])})" + (" [2nd process]" if "note" in r else ""))
        ours = row["peers"].get("rasteret", {})
        cells.append(f"{row['lead']:.2f}x" if row.get("lead") else "-")
        cells.append(row.get("goal_text", "-"))
        cells.append(_fmt(row.get("decode_limit")))
        cells.append(f"{row['vs_decode']:.2f}x" if row.get("vs_decode") else "-")
        minimum = row.get("minimum") or {}
        if minimum and ours.get("requests") is not None:
            cells.append(f"{ours['requests']} ({ours.get('proxy_requests_per_run', '-')}) / {minimum['requests']}")
            cells.append(f"{ours['bytes'] / minimum['bytes']:.3f}x")
        else:
            cells.append(f"({ours.get('proxy_requests_per_run', '-')})" if ours else "-")
            cells.append("-")
        if ours.get("output_bytes"):
            cells.append(f"{ours['peak_rss_mib']:.0f} / {ours['output_bytes'] / 2**20:.2f}")
        else:
            cells.append(f"{ours['peak_rss_mib']:.0f} / -" if ours.get("peak_rss_mib") else "-")
        eq = row.get("equal", {})
        cells.append(", ".join(f"{p}: {'yes' if v else 'NO'}" for p, v in eq.items() if v is not None) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    notes = sorted({f"{p}: {r['note']}" for row in results["rows"] for p, r in row["peers"].items() if "note" in r})
    if notes:
        lines += ["", "[2nd process]: the first process of that reader crashed and a second one was timed (" +
                  "; ".join(notes) + ")"]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    full = os.environ.get("RASTERET_BENCH_FULL", "") not in ("", "0")
    parser.add_argument("--full", action="store_true", default=full, help="the issue's 24 scenes (default 6)")
    parser.add_argument("--scenes", type=int, default=None, help="scenes (dates) in the archive")
    parser.add_argument("--size", type=int, default=10980, help="scene width and height in pixels")
    parser.add_argument("--latencies", default="0,20,50", help="proxy delays per request, ms")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs per process (median reported)")
    parser.add_argument("--cases", default="B1,B2,B3,gap,points," + ",".join(SECTIONS),
                        help="B1, B2, B3, gap, points (one table) and the sections " + ", ".join(SECTIONS))
    parser.add_argument("--points", default="10000,1000000", help="point counts")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per process")
    parser.add_argument("--json", type=Path, default=BUILD / "results.json")
    args = parser.parse_args(argv)
    scenes_n = args.scenes or (24 if args.full else 6)
    latencies = [int(v) for v in args.latencies.split(",")]
    cases = args.cases.split(",")
    peers = [p for p in PEERS if p in args.peers.split(",")]
    BUILD.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    archive = build_archive(BUILD, scenes=scenes_n, size=args.size)
    print(f"archive: {len(archive.scenes)} scenes x {len(archive.bands)} bands, {archive.size} px, "
          f"{archive.nbytes() / 2**30:.1f} GiB ({time.perf_counter() - started:.0f} s)", flush=True)
    legacy, legacy_skip = legacy_python() if "rasteret-0.4.1" in peers else (None, "not asked for")
    run_dir = BUILD / f"run-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    scenes, bands = list(archive.scenes), list(archive.bands)
    shapes = aois(archive.size)
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": f"{os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}", "scenes": len(scenes), "bands": len(bands),
        "size_px": archive.size, "repeat": args.repeat, "rows": rows}
    try:
        with services(archive, run_dir, sorted({*latencies, 0, 50})) as svc:
            s3 = svc["s3"]

            def env_for(ms: int) -> dict[str, str]:
                return {**s3.env(), "AWS_ENDPOINT_URL": svc["s3_proxies"][ms].url,
                        "RASTERET_STAGING_DIR": str(run_dir / "staging")}

            base = {"bucket": BUCKET, "tables_bucket": TABLES, "collection": COLLECTION, "scenes": scenes,
                    "bands": bands, "aoi_crs": CRS, "repeat": args.repeat, "legacy_skip": legacy_skip,
                    "legacy_workspace": str(run_dir / "legacy-index"), "run_id": run_dir.name,
                    "table": str(run_dir / "table"),
                    "bbox": [9.0, 44.0, 12.0, 47.0]}

            def spec_for(case: str, ms: int) -> dict[str, Any]:
                proxy = svc["s3_proxies"][ms]
                return {**base, "case": case, "env": env_for(ms), "stac_api": svc["stac_proxies"].get(
                    ms, svc["stac_proxies"][0]).url + "/",
                    "s3": {"endpoint": proxy.url, "key": s3.access_key, "secret": s3.secret_key,
                           "region": s3.region}}

            # the indexes the reads use: ours (local Delta), rasteret 0.4.1's (local Parquet); at 0 ms
            _index_ours(spec_for("B1", 0), base["table"], run_dir)
            if legacy is not None and "rasteret-0.4.1" in peers:
                done = run_worker("rasteret-0.4.1", {**spec_for("index", 0), "repeat": 0}, run_dir, legacy,
                                  svc["s3_proxies"][0], args.timeout)
                if "skipped" in done:
                    legacy, base["legacy_skip"] = None, f"index build {done['skipped']}"

            def run_row(label: str, case: str, ms: int, spec: dict[str, Any], extra: dict[str, Any],
                        only: list[str] | None = None) -> dict[str, Any]:
                row: dict[str, Any] = {"label": label, "case": case, "latency_ms": ms, "peers": {}, **extra}
                for peer in peers:
                    if only is not None and peer not in only:
                        row["peers"][peer] = {"skipped": extra.get("why_not", {}).get(peer, "not in this case")}
                        continue
                    out = run_dir / f"{label.replace(' ', '_')}-{peer}.npz"
                    spec_peer = {**spec, "out": str(out) if case != "B1" else None}
                    row["peers"][peer] = run_worker(peer, spec_peer, run_dir, legacy, svc["s3_proxies"][ms],
                                                    args.timeout)
                    r = row["peers"][peer]
                    print(f"  {label:<22} {peer:<16} " + (f"skipped: {r['skipped']}" if "skipped" in r else
                          f"warm {_fmt(r['warm_median'])} s, cold {_fmt(r['cold'])} s, "
                          f"{r.get('proxy_requests_per_run')} requests/run, peak RSS {r['peak_rss_mib']:.0f} MiB"),
                          flush=True)
                _score(row)
                rows.append(row)
                return row

            if "B1" in cases:  # the collection in a new Delta table on S3 (behind the same proxy), or local
                for ms in sorted({0, 50} & set(latencies)) or latencies[:1]:
                    on_s3 = run_row(f"B1 {ms} ms", "B1", ms, spec_for("B1", ms), {})
                    local = run_row(f"B1 {ms} ms, local table", "B1", ms,
                                    {**spec_for("B1", ms), "table_on": "local"}, {}, only=["rasteret"])
                    # the peers keep no index, so where it goes is ours alone: compare with their runs above
                    local["peers"].update({p: r for p, r in on_s3["peers"].items() if p != "rasteret"})
                    _score(local)
            for case in ("B2", "B3"):
                if case not in cases:
                    continue
                aoi = shapes[case]
                tiles = touched_tiles(archive, aoi)
                extra = {"minimum": minimum_io(archive, tiles, scenes, bands),
                         "decode_limit": decode_limit(archive, tiles, scenes, bands)}
                for ms in latencies:
                    spec = {**spec_for(case, ms), "aoi_wkb": aoi.wkb_hex}
                    row = run_row(f"{case} {ms} ms", case, ms, spec, extra)
                    oracle = run_dir / f"{row['label'].replace(' ', '_')}-rasterio.npz"
                    row["equal"] = {p: _equal(run_dir / f"{row['label'].replace(' ', '_')}-{p}.npz", oracle)
                                    for p in peers if p != "rasterio"}
            if "gap" in cases:  # the coalescing gap against latency, on B3's AOI (per file: two pairs of adjacent
                aoi = shapes["B3"]  # tiles, a tile row apart, 13.5 MB between them)
                extra = {"minimum": minimum_io(archive, touched_tiles(archive, aoi), scenes, bands)}
                for ms in sorted({0, 50} & set(latencies)):
                    for gap in GAPS:
                        spec = {**spec_for("B3", ms), "aoi_wkb": aoi.wkb_hex}
                        spec["env"] = {**spec["env"], "RASTERET_COALESCE_GAP": str(gap),
                                       "RASTERET_MAX_REQUEST_BYTES": str(64 * 2**20)}  # a merge may span 20 MB
                        run_row(f"B3 {ms} ms, gap {gap // 1024} KiB", "gap", ms, spec, extra, only=["rasteret"])
            if "points" in cases:
                for n in (int(v) for v in args.points.split(",")):
                    _points_row(n, archive, spec_for("points", 0), run_row, run_dir, peers, args.full)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)  # SeaweedFS's volumes, indexes, arrays
    results["sections"] = {case: run_section(case, args, scenes_n) for case in SECTIONS if case in cases}
    text = table(results)
    print(f"\n{results['machine']}; {results['date']}; {len(scenes)} scenes x {len(bands)} bands, "
          f"{archive.size} px; warm = median of {args.repeat}\n")
    print(text)
    for case, section in results["sections"].items():
        print(f"\n### {case}: {SECTIONS[case][1]} (python -m {SECTIONS[case][0]})\n")
        print(section.get("table") or f"failed: {section.get('error')}")
    results["table"] = text
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {args.json}")
    return 0


def run_section(case: str, args: argparse.Namespace, scenes: int) -> dict[str, Any]:
    """Run one section's module in its own process (it starts and stops its own services); its JSON, or the error."""
    module = SECTIONS[case][0]
    out = BUILD / f"{case}.json"
    argv = [sys.executable, "-m", module, "--json", str(out)]
    if case == "scaling":
        argv += ["--scenes", str(scenes), "--size", str(args.size)]
    if case == "flow":  # 4 runs a batch size, no profiled run: about 8 minutes on 2 cores
        argv += ["--repeat", "2", "--no-profile"]
    print(f"section {case}: python -m {module}", flush=True)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=args.timeout * 6, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout * 6:.0f} s"}
    if done.returncode:
        return {"error": _failure(done, f"section-{case}")}
    return dict(json.loads(out.read_text()))


def _index_ours(spec: dict[str, Any], uri: str, run_dir: Path) -> None:
    """Build the collection the read cases use (through the 0 ms proxy, in this process)."""
    saved = dict(os.environ)
    try:
        os.environ.update(spec["env"])
        import rasteret_core as rc

        rc.build_from_stac(stac_api=spec["stac_api"], collection=spec["collection"], uri=uri,
                           bands={b: b for b in spec["bands"]}, settings=rc.Settings.from_env())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    del run_dir


def _points_row(n: int, archive: Archive, spec: dict[str, Any], run_row: Any, run_dir: Path, peers: list[str],
                full: bool) -> None:
    scene, band, seed = archive.scenes[0], "B04", 7
    points = {"n": n, "seed": seed, "scene": scene, "band": band, "x0": X0, "y0": Y0,
              "extent": archive.size * PIXEL}
    from bench.peers import _points

    xs, ys = _points({"points": points})
    tiles = point_tiles(xs, ys)
    extra: dict[str, Any] = {"minimum": minimum_io(archive, tiles, [scene], [band]),
                             "decode_limit": decode_limit(archive, tiles, [scene], [band])}
    only = [p for p in peers if p != "async-geotiff"]
    why = {"async-geotiff": "no point-sampling API"}
    if n > 100_000 and not full:
        only.remove("rasterio")
        why["rasterio"] = "src.sample takes ~145 s per 1M points (bench.points); run with --full"
    extra["why_not"] = why
    label = f"points {n:,}"
    row = run_row(label, "points", 0, {**spec, "points": points}, extra, only=only)
    oracle = rasterio_points(archive, scene, band, xs, ys)
    row["equal"] = {}
    for peer in peers:
        path = run_dir / f"{label.replace(' ', '_')}-{peer}.npz"
        if path.exists():
            with np.load(path) as got:
                row["equal"][peer] = bool(np.array_equal(got[got.files[0]], oracle))


def _score(row: dict[str, Any]) -> None:
    """Lead over the best peer, the goal, and our time against the decode limit."""
    def warm(peer: str) -> float | None:
        r = row["peers"].get(peer, {})
        return None if "skipped" in r or r.get("warm_median") is None else float(r["warm_median"])

    ours = warm("rasteret")
    others = [t for p in PEERS if p != "rasteret" and (t := warm(p)) is not None]
    if ours and others:
        row["lead"] = min(others) / ours
    goal = GOALS.get(row["case"])
    if goal and goal[1] == row["latency_ms"] and row.get("lead"):
        factor = goal[0]
        met = row["lead"] >= factor
        row["goal_text"] = f">= {factor}x: {'met' if met else 'missed'}"
        if row["case"] == "B3":
            within = ours / row["decode_limit"] <= DECODE_GOAL if ours else False
            row["goal_text"] += f"; <= {DECODE_GOAL}x decode: {'met' if within else 'missed'}"
    if ours and row.get("decode_limit"):
        row["vs_decode"] = ours / row["decode_limit"]


if __name__ == "__main__":
    raise SystemExit(main())

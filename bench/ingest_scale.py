"""Ingestion throughput at 1,000 and 10,000 simulated scenes: the ingestion flow and ``build_from_stac``.

The archive is simulated: ``--tiles`` (40) UTM tiles in six zones near 45°N, each
revisited every 5 days, ``--bands`` (2) bands per scene; every asset is its own S3
object in SeaweedFS on loopback. The objects are small real COGs: one template per
tile and band (1024 px uint16, DEFLATE + predictor 2, 256 px tiles, two overviews;
GDAL's COG driver), uploaded under each scene's own key by 16 threads (the upload
is timed and printed apart, never counted). ``rustac serve`` (memory backend) serves
one STAC collection per scale, ``sim-s2-N``, holding the first N scenes (items with
datetime, bbox and geometry, ``proj:epsg``, the bands' assets), so a search returns
exactly N items (pystac-client pages of 100).

Each measured run is a fresh process (``--child``) against a new Delta table in the
same SeaweedFS, so its peak RSS (``VmHWM``) is its own:

- ``library``: ``rasteret_core.build_from_stac`` (``bands`` the two assets), timed from
  the call (imports excluded); the split comes from timers wrapped around the steps
  ``rasteret_core.ingest`` calls: STAC search (``records_from_stac``), stored digests
  (``read_digests``), header fetch + parse (``enrich_records``), Delta commit
  (``merge_changes``), re-opening the committed version (``load``).
- ``flow``: ``rasteret_flows.ingest_collection`` with its defaults (partitions of 16
  scenes, 4 in flight, Prefect's thread-pool runner) against a local Prefect server
  started for the benchmark; the split comes from the task runs' start and end times
  the server recorded (search-records, parse-scene-headers from the first start to the
  last end, commit-collection); "other" is the rest of the flow's wall time (selection,
  staging sweep, Prefect's own work).

Requests per header are the library's own counters (header GETs and HEADs, as
``enrich_records`` reports them). At the smallest scale each path also runs once more
through a fault proxy with no fault and no delay (``infra/local/faults.py``) in front of
SeaweedFS, which counts every S3 request of the run, the Delta commit's included (the
proxy's own cost, a Python process per request, would distort the timed runs, so they
go straight to SeaweedFS). ``--profile`` runs the largest library build once more under
cProfile and prints its top functions. Everything uploaded and every temporary folder
is deleted at the end, and every service stopped. Run::

    python -m bench.ingest_scale [--scenes 1000,10000] [--bands 2] [--repeat 1] [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = "ingest-scale-archive"
TABLES = "ingest-scale-tables"
BAND_NAMES = ("red", "nir", "green", "blue", "swir16", "swir22", "rededge1", "rededge2")
SIZE, BLOCK, PIXEL = 1024, 256, 10.0
REVISIT_DAYS = 5
START = datetime(2021, 1, 1, 10, 30, tzinfo=UTC)
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


# ---------------------------------------------------------------- the simulated archive


def _tile_grid(tile: int) -> tuple[int, float, float]:
    """EPSG code and upper-left corner of a tile: zones 31-36 N, 20 km apart, near 45°N."""
    zone = 31 + tile % 6
    return 32600 + zone, 300_000.0 + 20_480.0 * (tile // 6 % 10), 5_000_000.0 + 20_480.0 * (tile // 60)


def write_templates(folder: Path, tiles: int, bands: Sequence[str]) -> dict[tuple[int, str], bytes]:
    """One small COG per tile and band (a field of 32 px cells: DEFLATE keeps it to about 40 KiB); their bytes."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    cells = SIZE // 32
    yy, xx = np.mgrid[0:cells, 0:cells].astype(np.float32) / cells
    out = {}
    for tile in range(tiles):
        epsg, x0, y0 = _tile_grid(tile)
        for b, band in enumerate(bands):
            field = (1000 + 400 * b + 300 * np.sin(6 * xx + tile) * np.cos(4 * yy + b)).astype(np.uint16)
            data = np.kron(field, np.ones((32, 32), np.uint16))  # 32 px cells: about 40 KiB per file
            path = folder / f"t{tile:03d}-{band}.tif"
            with rasterio.open(path, "w", driver="COG", width=SIZE, height=SIZE, count=1, dtype="uint16",
                               crs=f"EPSG:{epsg}", transform=from_origin(x0, y0, PIXEL, PIXEL), nodata=0,
                               compress="DEFLATE", predictor=2, blocksize=BLOCK, overviews="AUTO") as dst:
                dst.write(data, 1)
            out[tile, band] = path.read_bytes()
    return out


def _footprints(tiles: int) -> list[tuple[dict[str, Any], list[float]]]:
    """Each tile's footprint in lon/lat (GeoJSON polygon, counter-clockwise) and bbox."""
    from pyproj import Transformer

    out = []
    for tile in range(tiles):
        epsg, x0, y0 = _tile_grid(tile)
        to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
        x1, y1 = x0 + SIZE * PIXEL, y0 - SIZE * PIXEL
        ring = [to_lonlat.transform(x, y) for x, y in ((x0, y1), (x1, y1), (x1, y0), (x0, y0))]
        ring = [(round(x, 7), round(y, 7)) for x, y in ring]
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        out.append(({"type": "Polygon", "coordinates": [[*map(list, ring), list(ring[0])]]},
                    [min(xs), min(ys), max(xs), max(ys)]))
    return out


def scene_key(i: int, tiles: int, band: str) -> str:
    """The S3 key of scene ``i``'s ``band``."""
    day = (START + timedelta(days=REVISIT_DAYS * (i // tiles))).strftime("%Y/%m/%d")
    return f"scenes/t{i % tiles:03d}/{day}/sim-{i:06d}/{band}.tif"


def make_items(n: int, tiles: int, bands: Sequence[str], collection: str) -> list[dict[str, Any]]:
    """The first ``n`` scenes as STAC items of ``collection`` (tile-major within each revisit date)."""
    shapes = _footprints(tiles)
    items = []
    for i in range(n):
        tile = i % tiles
        epsg, x0, y0 = _tile_grid(tile)
        when = START + timedelta(days=REVISIT_DAYS * (i // tiles), minutes=2 * (tile % 6))
        geometry, bbox = shapes[tile]
        items.append({
            "type": "Feature", "stac_version": "1.0.0",
            "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "id": f"sim-{i:06d}", "collection": collection, "geometry": geometry, "bbox": bbox,
            "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "platform": "sentinel-2a",
                           "constellation": "sentinel-2", "gsd": 10,
                           "eo:cloud_cover": round(float((i * 37) % 1000) / 10, 1),
                           "proj:epsg": epsg, "proj:code": f"EPSG:{epsg}"},
            "links": [],
            "assets": {band: {"href": f"s3://{ARCHIVE}/{scene_key(i, tiles, band)}", "type": COG_TYPE,
                              "roles": ["data"], "proj:shape": [SIZE, SIZE],
                              "proj:transform": [PIXEL, 0.0, x0, 0.0, -PIXEL, y0]} for band in bands},
        })
    return items


def upload(s3: Any, templates: dict[tuple[int, str], bytes], n: int, tiles: int, bands: Sequence[str]) -> float:
    """Put every scene's band objects (a template's bytes under the scene's key), 16 at once; return seconds."""
    client = s3.client(max_pool_connections=16)
    started = time.perf_counter()

    def put(job: tuple[int, str]) -> None:
        i, band = job
        client.put_object(Bucket=ARCHIVE, Key=scene_key(i, tiles, band), Body=templates[i % tiles, band])

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(put, [(i, band) for i in range(n) for band in bands]))  # list() re-raises a failure
    finally:
        client.close()
    return time.perf_counter() - started


def empty_buckets(s3: Any) -> None:
    """Delete every object and both buckets."""
    client = s3.client()
    try:
        for bucket in (ARCHIVE, TABLES):
            with contextlib.suppress(client.exceptions.NoSuchBucket):
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                    if keys:
                        client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                client.delete_bucket(Bucket=bucket)
    finally:
        client.close()


# ---------------------------------------------------------------- one measured run (a fresh process)


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def _timed_steps(module: Any, names: Sequence[str], into: dict[str, float],
                 extra: Callable[[str, Any], None]) -> None:
    """Wrap ``module.name`` for each name present so that its seconds add up in ``into[name]``."""
    for name in names:
        fn = getattr(module, name, None)
        if fn is None:
            continue

        def wrapped(*args: Any, _fn: Any = fn, _name: str = name, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                out = _fn(*args, **kwargs)
            finally:
                into[_name] = into.get(_name, 0.0) + time.perf_counter() - started
            extra(_name, out)
            return out

        setattr(module, name, wrapped)


def _profile_threads() -> list[cProfile.Profile]:
    """Profile this thread and every thread started from now on (the library's I/O loop runs in one)."""
    profilers = [cProfile.Profile()]

    def start(*_args: Any) -> None:
        sys.setprofile(None)
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()

    threading.setprofile(start)
    profilers[0].enable()
    return profilers


def _library(spec: dict[str, Any]) -> dict[str, Any]:
    import rasteret_core as rc
    import rasteret_core.ingest as core_ingest

    steps: dict[str, float] = {}
    io_stats = {"requests": 0, "parsed": 0, "bytes": 0}

    def count(name: str, out: Any) -> None:
        if name == "enrich_records":
            io_stats["requests"] += out.stats.requests
            io_stats["bytes"] += out.stats.bytes
            io_stats["parsed"] += out.parsed

    _timed_steps(core_ingest, ("records_from_stac", "read_digests", "enrich_records", "merge_changes", "load"),
                 steps, count)
    profilers = _profile_threads() if spec.get("profile") else []
    started = time.perf_counter()
    col = rc.build_from_stac(stac_api=spec["stac"], collection=spec["collection"], uri=spec["uri"],
                             bands=spec["bands"])
    seconds = time.perf_counter() - started
    if profilers:
        threading.setprofile(None)  # type: ignore[arg-type]
        merged = pstats.Stats(profilers[0])
        for profiler in profilers[1:]:
            merged.add(profiler)  # the I/O thread's profiler is snapshot while its loop idles
        merged.dump_stats(spec["profile"])
    assert len(col) == spec["scenes"], (len(col), spec["scenes"])
    search, headers = steps.get("records_from_stac", 0.0), steps.get("enrich_records", 0.0)
    commit = steps.get("merge_changes", 0.0)
    return {"seconds": seconds, "search_s": search, "headers_s": headers, "commit_s": commit,
            "other_s": seconds - search - headers - commit, "reopen_s": steps.get("load", 0.0),
            "digests_s": steps.get("read_digests", 0.0), "headers": io_stats["parsed"],
            "header_requests": io_stats["requests"], "header_bytes": io_stats["bytes"]}


def _task_spans(flow_run_id: Any) -> dict[str, float]:
    """Seconds from the first start to the last end of each task name's runs in one flow run (Prefect's records)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                         limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                break
    spans: dict[str, list[datetime]] = {}
    for run in runs:
        if run.start_time is None or run.end_time is None:
            continue
        name = next((k for k in ("search-records", "select-changed-records", "parse-scene-headers",
                                 "commit-collection", "sweep-staging") if run.name.startswith(k)), run.name)
        lo_hi = spans.setdefault(name, [run.start_time, run.end_time])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], run.start_time), max(lo_hi[1], run.end_time)
    return {name: (hi - lo).total_seconds() for name, (lo, hi) in spans.items()}


def _flow(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    from rasteret_flows import ingest_collection

    logging.getLogger("prefect").setLevel(logging.WARNING)
    started = time.perf_counter()
    state = ingest_collection(stac_api=spec["stac"], collection=spec["collection"], uri=spec["uri"],
                              bands=spec["bands"], return_state=True)
    seconds = time.perf_counter() - started
    summary = state.result()
    assert summary.inserted == spec["scenes"], summary
    spans = _task_spans(state.state_details.flow_run_id)
    search, headers = spans.get("search-records", 0.0), spans.get("parse-scene-headers", 0.0)
    commit = spans.get("commit-collection", 0.0)
    return {"seconds": seconds, "search_s": search, "headers_s": headers, "commit_s": commit,
            "other_s": seconds - search - headers - commit, "select_s": spans.get("select-changed-records", 0.0),
            "partitions": summary.partitions, "headers": summary.headers_parsed,
            "header_requests": summary.requests, "header_bytes": summary.bytes_read}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measured ingestion in this process; its figures and peak RSS."""
    out = (_library if spec["path"] == "library" else _flow)(spec)
    return {**out, "peak_rss_mib": peak_rss_mib()}


def run_child(spec: dict[str, Any], env: dict[str, str], timeout: float = 3600) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter; its figures."""
    done = subprocess.run([sys.executable, "-m", "bench.ingest_scale", "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{spec['path']} at {spec['scenes']} scenes failed ({done.returncode}): "
                           f"{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the benchmark


@contextlib.contextmanager
def services(root: Path, scales: Sequence[int], tiles: int, bands: Sequence[str],
             echo: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """SeaweedFS holding the largest scale's objects, STAC with one collection per scale, a counting proxy, Prefect."""
    from infra.local.faults import Fault, fault_proxy
    from infra.local.prefect_server import prefect_server
    from infra.local.seaweedfs import seaweedfs
    from rasteret_demo.process import Background
    from rasteret_demo.stac import stac_api

    with contextlib.ExitStack() as stack:
        prefect = Background(lambda: prefect_server(root / "prefect-server"))  # starts while the archive uploads
        stack.callback(prefect.stop)
        s3 = stack.enter_context(seaweedfs(root / "s3"))
        for bucket in (ARCHIVE, TABLES):
            s3.create_bucket(bucket)
        stack.callback(empty_buckets, s3)
        started = time.perf_counter()
        templates = write_templates(root / "templates", tiles, bands)
        echo(f"wrote {len(templates)} template COGs ({statistics.mean(map(len, templates.values())) / 1024:.0f} KiB "
             f"each) in {time.perf_counter() - started:.1f} s")
        largest = max(scales)
        seconds = upload(s3, templates, largest, tiles, bands)
        echo(f"uploaded {largest * len(bands):,d} objects in {seconds:.1f} s ({largest * len(bands) / seconds:.0f}/s; "
             "not counted)")
        features = [item for n in scales for item in make_items(n, tiles, bands, f"sim-s2-{n}")]
        items_path = root / "items.json"
        items_path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        started = time.perf_counter()
        stac = stack.enter_context(stac_api(items_path))
        echo(f"rustac serve loaded {len(features):,d} items in {time.perf_counter() - started:.1f} s")
        proxy = stack.enter_context(fault_proxy(s3.endpoint_url, [Fault(path="", times=0)],
                                                log_path=root / "s3-proxy.log"))
        yield {"s3": s3, "stac": stac, "proxy": proxy, "prefect": prefect.wait(), "upload_s": round(seconds, 1)}


def _proxy_hits(proxy: Any) -> int:
    return sum(int(f["hits"]) for f in proxy.counters()["faults"])


def _check_search(stac: str, scales: Sequence[int]) -> dict[int, float]:
    """Every scale's collection returns all its items through paging (pages of 100); seconds per search."""
    from rasteret_core.table.stac import search

    seconds = {}
    for n in scales:
        started = time.perf_counter()
        found = search(stac, collections=f"sim-s2-{n}")
        seconds[n] = time.perf_counter() - started
        if len(found.items) != n or len({i["id"] for i in found.items}) != n:
            raise RuntimeError(f"the STAC search of sim-s2-{n} returned {len(found.items)} items "
                               f"({len({i['id'] for i in found.items})} distinct), not {n}")
    return seconds


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time (its split stays consistent), with every run's seconds listed."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_s": [round(r["seconds"], 2) for r in runs]}


def run(scales: Sequence[int], bands: Sequence[str], tiles: int, repeat: int, profile: bool,
        proxy_scenes: int | None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the services, measure both paths at each scale, stop and delete everything; the numbers."""
    scales = sorted(set(scales))
    band_map = {b: b for b in bands}
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"scenes": scales, "bands": len(bands), "tiles": tiles, "repeat": repeat}
    with tempfile.TemporaryDirectory(prefix="rasteret-bench-ingest-scale-") as tmp:
        root = Path(tmp)
        with services(root, scales, tiles, bands, echo) as svc:
            results["upload_s"] = svc["upload_s"]
            searches = _check_search(svc["stac"], scales)
            echo("STAC search, pystac-client pages of 100: "
                 + ", ".join(f"{n:,d} items in {s:.1f} s" for n, s in searches.items()))
            env = {**os.environ, **svc["s3"].env(), "PYTHONPATH": str(ROOT),
                   "RASTERET_STAGING_DIR": str(root / "staging"), "PREFECT_API_URL": svc["prefect"],
                   "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING"}
            measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for rep in range(repeat):  # round robin, so that load from elsewhere spreads over every case
                for n in scales:
                    for path in ("library", "flow"):
                        spec = {"path": path, "scenes": n, "stac": svc["stac"], "collection": f"sim-s2-{n}",
                                "uri": f"s3://{TABLES}/{path}-{n}-{rep}", "bands": band_map}
                        out = run_child(spec, env)
                        measured.setdefault((path, n), []).append(out)
                        echo(f"{path:7s} {n:>6,d} scenes: {out['seconds']:7.1f} s "
                             f"(search {out['search_s']:.1f}, headers {out['headers_s']:.1f}, "
                             f"commit {out['commit_s']:.1f}), peak RSS {out['peak_rss_mib']:.0f} MiB")
            counted: dict[tuple[str, int], int] = {}
            if proxy_scenes:
                proxied = {**env, "AWS_ENDPOINT_URL": svc["proxy"].url}
                for path in ("library", "flow"):
                    before = _proxy_hits(svc["proxy"])
                    run_child({"path": path, "scenes": proxy_scenes, "stac": svc["stac"],
                               "collection": f"sim-s2-{proxy_scenes}",
                               "uri": f"s3://{TABLES}/{path}-{proxy_scenes}-proxied", "bands": band_map}, proxied)
                    counted[path, proxy_scenes] = _proxy_hits(svc["proxy"]) - before
            if profile:
                n = max(scales)
                prof = root / "library.prof"
                run_child({"path": "library", "scenes": n, "stac": svc["stac"], "collection": f"sim-s2-{n}",
                           "uri": f"s3://{TABLES}/library-{n}-profiled", "bands": band_map,
                           "profile": str(prof)}, env)
                results["profile"] = profile_summary(prof)
    for n in scales:
        for path in ("library", "flow"):
            row = _median_row(measured[path, n])
            headers = row["headers"]
            rows.append({
                "scenes": n, "path": path, "seconds": round(row["seconds"], 2),
                "scenes_per_s": round(n / row["seconds"], 1), "headers": headers,
                "headers_per_s": round(headers / row["headers_s"], 1) if row["headers_s"] else None,
                "requests_per_header": round(row["header_requests"] / headers, 2) if headers else None,
                "proxy_requests_per_header": (round(counted[path, n] / headers, 2) if (path, n) in counted
                                              else None),
                "search_s": round(row["search_s"], 2), "headers_s": round(row["headers_s"], 2),
                "commit_s": round(row["commit_s"], 2), "other_s": round(row["other_s"], 2),
                "peak_rss_mib": row["peak_rss_mib"], "runs_s": row["runs_s"],
                **({"partitions": row["partitions"]} if "partitions" in row else {}),
            })
    results["rows"] = rows
    results["growth"] = growth(rows, scales)
    results["table"] = markdown(rows, results["growth"])
    return results


def growth(rows: list[dict[str, Any]], scales: Sequence[int]) -> list[dict[str, Any]]:
    """For each path, seconds at the largest scale over seconds at the smallest, against the scenes' ratio."""
    lo, hi = min(scales), max(scales)
    out = []
    if lo == hi:
        return out
    for path in ("library", "flow"):
        a = next(r for r in rows if r["path"] == path and r["scenes"] == lo)
        b = next(r for r in rows if r["path"] == path and r["scenes"] == hi)
        out.append({"path": path, "from": lo, "to": hi, "scenes_ratio": round(hi / lo, 1),
                    "time_ratio": round(b["seconds"] / a["seconds"], 2),
                    "steps_ratio": {k: round(b[k] / a[k], 2) if a[k] else None
                                    for k in ("search_s", "headers_s", "commit_s", "other_s")}})
    return out


def markdown(rows: list[dict[str, Any]], grown: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, the growth below it."""
    head = ("| scenes | path | s | scenes/s | headers/s (fetch + parse) | requests / header (proxy, all S3) "
            "| search s | headers s | commit s | other s | peak RSS MiB |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        proxy = f" ({r['proxy_requests_per_header']})" if r["proxy_requests_per_header"] is not None else ""
        lines.append(f"| {r['scenes']:,d} | {r['path']} | {r['seconds']:.1f} | {r['scenes_per_s']:.1f} "
                     f"| {r['headers_per_s']} | {r['requests_per_header']}{proxy} | {r['search_s']:.1f} "
                     f"| {r['headers_s']:.1f} | {r['commit_s']:.1f} | {r['other_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    for g in grown:
        steps = ", ".join(f"{k.removesuffix('_s')} {v}x" for k, v in g["steps_ratio"].items() if v is not None)
        lines.append("")
        lines.append(f"{g['path']}: {g['from']:,d} -> {g['to']:,d} scenes ({g['scenes_ratio']:g}x) took "
                     f"{g['time_ratio']}x the time ({steps}).")
    return "\n".join(lines)


def profile_summary(path: Path, top: int = 25) -> str:
    """The profile's top functions by cumulative and by own time."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table (and write it with the rows as JSON)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_scale", description=main.__doc__)
    parser.add_argument("--scenes", default="1000,10000", help="numbers of scenes to ingest (comma-separated)")
    parser.add_argument("--bands", type=int, default=2, help="bands (assets, each its own object) per scene")
    parser.add_argument("--tiles", type=int, default=40, help="distinct tiles (and templates per band)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (the median is reported)")
    parser.add_argument("--proxy-scenes", type=int, default=None,
                        help="scale run once more through a counting proxy (default: the smallest; 0: none)")
    parser.add_argument("--profile", action="store_true", help="profile the largest library build (cProfile)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not 1 <= args.bands <= len(BAND_NAMES):
        parser.error(f"--bands must be 1 to {len(BAND_NAMES)}")
    scales = [int(v) for v in args.scenes.split(",")]
    proxy_scenes = min(scales) if args.proxy_scenes is None else args.proxy_scenes
    if proxy_scenes and proxy_scenes not in scales:
        parser.error("--proxy-scenes must be one of --scenes")
    results = run(scales, BAND_NAMES[:args.bands], args.tiles, args.repeat, args.profile, proxy_scenes,
                  echo=lambda line: print(line, flush=True))
    print(results["table"])
    if "profile" in results:
        print(results["profile"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure the enrichment flow's throughput (scenes/s) at 1, 2 and 4 partitions in flight, and Prefect's overhead.

Everything runs on loopback: SeaweedFS holds the sample archive copied ``--copies``
times (6 scenes x 2 bands each copy, every copy its own objects), a local Prefect
server records the runs. For each number of partitions in flight a fresh
collection without header metadata is enriched by ``enrich_collection``
(partitions of ``--partition-size`` scenes) and timed end to end (select, parse,
stage, one commit, quarantine check, report); each setting runs ``--repeat``
times, round robin, and the median is reported (other work on the machine
skews single runs). Two baselines: the same scenes
parsed by ``enrich_records`` in one call and partition by partition, without
Prefect. Prefect's overhead per task is measured with a no-op task submitted
``--tasks`` times through the flows' own fan-out. Run::

    python -m bench.pipelines [--copies 8] [--partition-size 4] [--in-flight 1,2,4] [--repeat 3] [--tasks 40]
                              [--runner threads|dask|tcp://HOST:PORT] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BANDS = {"red": "red", "nir": "nir"}


def _overhead_flow() -> Any:
    """A flow that submits ``n`` no-op tasks through the flows' own fan-out (Prefect imported here, after
    ``main`` has set Prefect's environment).
    """
    from prefect import flow, task

    from rasteret_flows._fanout import fan_out

    @task(name="noop")
    def noop(i: int) -> dict[str, int]:
        return {"i": i}

    @flow(name="bench-overhead")
    def overhead(n: int, max_in_flight: int) -> int:
        return len(fan_out(noop, [{"i": i} for i in range(n)], [f"noop {i}" for i in range(n)],
                           max_in_flight=max_in_flight).results)

    return overhead


def _copied_items(s3: Any, items: list[dict[str, Any]], copies: int) -> list[dict[str, Any]]:
    """``copies`` copies of each item, each pointing at its own copies of the band objects."""
    client = s3.client(max_pool_connections=16)
    out = []
    try:
        for k in range(copies):
            for item in items:
                twin = copy.deepcopy(item)
                twin["id"] = f"{item['id']}-copy{k}"
                for band in BANDS.values():
                    href = item["assets"][band]["href"]
                    key = href.removeprefix("s3://rasteret-sample/")
                    client.copy_object(Bucket="rasteret-sample", Key=f"copies/{k}/{key}",
                                       CopySource={"Bucket": "rasteret-sample", "Key": key})
                    twin["assets"][band]["href"] = f"s3://rasteret-sample/copies/{k}/{key}"
                out.append(twin)
    finally:
        client.close()
    return out


def run(copies: int, partition_size: int, in_flight: Sequence[int], tasks: int, runner: str | None,
        repeat: int = 3) -> dict[str, Any]:
    """Start the services, run the measurements, stop everything; return the numbers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    import rasteret_core as rc
    from infra.local.cli import start_sample_services
    from infra.local.prefect_server import prefect_server
    from rasteret_core.table.delta import merge_table
    from rasteret_demo.process import Background
    from rasteret_flows import enrich_collection, with_runner

    results: dict[str, Any] = {"copies": copies, "partition_size": partition_size, "runner": runner or "threads"}
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rasteret-bench-pipelines-")))
        server = Background(lambda: prefect_server(root / "prefect"))
        stack.callback(server.stop)
        services = start_sample_services(stack, root, echo=lambda _line: None)
        saved = dict(os.environ)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.update(services.s3.env())
        os.environ["RASTERET_STAGING_DIR"] = str(root / "staging")
        items = json.loads(services.items_path.read_text())["features"]
        scenes = _copied_items(services.s3, items, copies)
        records = rc.engine.records_from_items(scenes, bands=BANDS)
        settings = rc.Settings.from_env()
        results["scenes"] = len(scenes)
        results["headers"] = 2 * len(scenes)

        rc.engine.enrich_records(rc.engine.records_from_items(items, bands=BANDS), settings=settings)  # warm the S3 client
        started = time.perf_counter()
        rc.engine.enrich_records(records, settings=settings)
        core_one = time.perf_counter() - started
        started = time.perf_counter()
        for s in range(0, records.num_rows, partition_size):
            rc.engine.enrich_records(records.slice(s, partition_size), settings=settings)
        core_seq = time.perf_counter() - started
        results["core, one call: scenes/s"] = round(len(scenes) / core_one, 1)
        results["core, partition by partition: scenes/s"] = round(len(scenes) / core_seq, 1)

        api = server.wait()
        os.environ["PREFECT_API_URL"] = api
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api}))
        enrich = with_runner(enrich_collection, runner)
        warm = "s3://rasteret-tables/bench-warm-up"
        merge_table(rc.engine.records_from_items(items, bands=BANDS), warm, settings=settings, operation="build")
        enrich(warm, partition_size=partition_size)
        runs: dict[int, list[tuple[float, Any]]] = {n: [] for n in in_flight}
        for rep in range(repeat):  # round robin, so that load from elsewhere spreads over every setting
            for n in in_flight:
                uri = f"s3://rasteret-tables/bench-in-flight-{n}-{rep}"
                merge_table(records, uri, settings=settings, operation="build")
                started = time.perf_counter()
                summary = enrich(uri, partition_size=partition_size, max_in_flight=n)
                runs[n].append((time.perf_counter() - started, summary))
                assert summary.headers_parsed == results["headers"], summary
        for n, measured in runs.items():
            seconds = statistics.median(m[0] for m in measured)
            parse = statistics.median(m[1].seconds_parsing for m in measured)
            commit = statistics.median(m[1].seconds_committing for m in measured)
            results[f"{n} in flight: flow scenes/s (end to end)"] = round(len(scenes) / seconds, 1)
            results[f"{n} in flight: partitions scenes/s (fan-out only)"] = round(len(scenes) / parse, 1)
            results[f"{n} in flight: median seconds (select / parse / commit)"] = (
                f"{seconds:.2f} ({seconds - parse - commit:.2f} / {parse:.2f} / {commit:.2f})")
            if n == 1:
                results["partitions"] = measured[0][1]["partitions"]
                results["1 in flight: Prefect time per partition over core (s)"] = round(
                    (parse - core_seq) / results["partitions"], 3)
        timings = {}
        overhead_flow = _overhead_flow()
        for n_flight in (1, 4):
            empty = statistics.median(_timed(lambda: overhead_flow(0, 1)) for _ in range(3))
            full = statistics.median(_timed(lambda n=n_flight: overhead_flow(tasks, n)) for _ in range(3))
            timings[n_flight] = (full - empty) / tasks
        results["prefect overhead per task, sequential (ms)"] = round(1000 * timings[1], 1)
        results["prefect overhead per task, 4 in flight (ms)"] = round(1000 * timings[4], 1)
    return results


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its numbers (and write them as JSON)."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipelines", description=main.__doc__)
    parser.add_argument("--copies", type=int, default=8, help="copies of the 6-scene sample archive")
    parser.add_argument("--partition-size", type=int, default=4, help="scenes per partition")
    parser.add_argument("--in-flight", default="1,2,4", help="partitions in flight to measure")
    parser.add_argument("--tasks", type=int, default=40, help="no-op tasks for the overhead measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (the median is reported)")
    parser.add_argument("--runner", default=None, help="threads (default), dask or tcp://HOST:PORT")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="rasteret-bench-prefect-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    results = run(args.copies, args.partition_size, [int(v) for v in args.in_flight.split(",")], args.tasks,
                  args.runner, args.repeat)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

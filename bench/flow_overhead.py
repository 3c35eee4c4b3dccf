"""Prefect's overhead on a 10,000-AOI extraction: the ``extract_aois`` flow against the library on the same work.

Run: ``python -m bench.flow_overhead [--aois 10000] [--batches 500,2000] [--repeat 3] [--json PATH]``.
It builds ``bench.load``'s local collection (the synthetic sample archive: 6 scenes, local
COGs, bands red and nir) and its AOI table (``--aois`` boxes of about 30 m, GeoParquet, row
groups of 10,000), starts one local Prefect server (``infra/local/prefect_server.py``, on
127.0.0.1) and, for each batch size, runs in fresh processes, round robin, ``--repeat`` times:

- **library**: what ``read_batch`` does per batch, without Prefect, in one process: the
  collection loaded once, the AOI table split once (``split_table``), each range read
  (``read_row_range``) and reduced by ``Collection.get_table(stats=["count", "mean"])`` on
  both bands, batch after batch; every batch's rows written to a Delta table in one commit by
  the same writer (``write_table``, streamed, ``mode="overwrite"``).
- **flow**: ``rasteret_flows.extract_aois`` with the same options, the default threads
  runner and ``--in-flight`` batches at once (default 1: the library's parallelism, its one
  read at a time already decoding on every core), against the server; its tasks stage each
  batch as Parquet and commit once.

Each child times itself end to end (from its spawn to its output committed: interpreter,
imports, work) and from after its imports; the median of the runs is compared (goal: flow
<= 1.2x library, end to end). Both outputs must hold the same rows (row count and a checksum
of the keys, ``count`` and ``mean``). Each child also times the core calls it makes (load,
split, row reads, ``get_table``, staging, ``write_table``; from every thread) and splits its
wall time into phases (start: up to the first batch's read; batches: up to the last batch's
output; commit: up to the end of ``write_table``; finish: up to the return); what no core call
covers is the flow's own time (Prefect: runs, task submission, states, results, logs,
artifacts). One more flow run per batch size (not timed) runs a sampling profiler over all
threads (``sys._current_frames`` every 5 ms) and lists the Prefect functions that held the
time no core call covers.

``--child SPEC`` runs one path and prints its figures as JSON.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

GOAL = 1.2
BANDS = ["red", "nir"]
STATS = ["count", "mean"]
ROOT = Path(__file__).resolve().parents[1]


class Spans:
    """Wall-clock intervals of the core calls, from every thread: ``(name, start, end)`` in ``perf_counter`` s."""

    def __init__(self) -> None:
        self.items: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, timed under ``name``."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                with self._lock:
                    self.items.append((name, start, end))

        return timed

    def first(self, name: str) -> float:
        """When the first call of ``name`` started."""
        return min(s for n, s, _ in self.items if n == name)

    def last(self, name: str) -> float:
        """When the last call of ``name`` ended."""
        return max(e for n, _, e in self.items if n == name)

    def busy(self, lo: float, hi: float) -> float:
        """Seconds of ``[lo, hi]`` in which at least one core call ran."""
        cut = sorted((max(s, lo), min(e, hi)) for _, s, e in self.items if e > lo and s < hi)
        total, reach = 0.0, lo
        for s, e in cut:
            if e > reach:
                total += e - max(s, reach)
                reach = e
        return total

    def sums(self) -> dict[str, float]:
        """Seconds in each kind of call, summed over threads."""
        out: dict[str, float] = collections.defaultdict(float)
        for name, s, e in self.items:
            out[name] += e - s
        return {k: round(v, 3) for k, v in sorted(out.items())}


class Sampler:
    """A CPU-time sampling profiler of every thread: each thread's CPU ticks (``/proc/self/task/TID/stat``) since
    the last sample are charged to the stack it holds now (``sys._current_frames``), so waiting threads cost nothing.
    """

    TICK = 1 / os.sysconf("SC_CLK_TCK")

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.kinds: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.innermost: collections.Counter[str] = collections.Counter()
        self._ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _cpu(tid: int) -> int:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return 0
        return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            frames = sys._current_frames()  # noqa: SLF001 - the one way to see other threads' stacks
            for thread in threading.enumerate():
                if thread.ident == me or thread.ident not in frames or thread.native_id is None:
                    continue
                ticks = self._cpu(thread.native_id)
                spent = ticks - self._ticks.get(thread.native_id, ticks)
                self._ticks[thread.native_id] = ticks
                if spent > 0:
                    self._charge(frames[thread.ident], spent * self.TICK)

    def _charge(self, frame: Any, seconds: float) -> None:
        stack = []
        while frame is not None:
            stack.append(frame.f_code.co_filename + ":" + frame.f_code.co_name)
            frame = frame.f_back
        marker = f"{os.sep}prefect{os.sep}"
        if any(f"{os.sep}rasteret_core{os.sep}" in f for f in stack):
            self.kinds["rasteret_core (and what it calls)"] += seconds
            return
        ours = [f.split(marker, 1)[1] for f in stack if marker in f]
        if not ours:
            self.kinds["other (" + stack[-1].rsplit(os.sep, 1)[-1] + ")"] += seconds
            return
        self.kinds["prefect (and what it calls)"] += seconds
        self.innermost[ours[0] + " <- " + stack[0].rsplit(os.sep, 1)[-1]] += seconds
        for name in set(ours):
            self.inclusive[name] += seconds

    def report(self, top: int = 15) -> dict[str, Any]:
        """CPU seconds by kind; the top Prefect functions (inclusive), and innermost (with the leaf function)."""
        def rounded(counter: collections.Counter[str]) -> dict[str, float]:
            return {k: round(v, 2) for k, v in counter.most_common(top)}

        return {"cpu_s_by_kind": rounded(self.kinds), "prefect_inclusive_cpu_s": rounded(self.inclusive),
                "prefect_innermost_cpu_s": rounded(self.innermost)}


def checksum(uri: str) -> dict[str, Any]:
    """Rows of the Delta table at ``uri`` and a checksum of its keys and statistics (order independent)."""
    import numpy as np
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    table = DeltaTable(uri).to_pyarrow_table(columns=["site", "record_id", "band", "pixels", "count", "mean"])
    table = table.sort_by([("site", "ascending"), ("record_id", "ascending"), ("band", "ascending")])
    digest = hashlib.sha256()
    for name in ("site", "pixels", "count"):
        digest.update(table[name].to_numpy().astype(np.int64).tobytes())
    digest.update(np.round(pc.fill_null(table["mean"], float("nan")).to_numpy(), 9).tobytes())
    for name in ("record_id", "band"):
        digest.update("\n".join(table[name].to_pylist()).encode())
    return {"rows": table.num_rows, "checksum": digest.hexdigest()[:16]}


def _phases(spans: Spans, began: float, ended: float) -> dict[str, dict[str, float]]:
    """Wall seconds and core-busy seconds of each phase of one run."""
    marks = {"start": began, "batches": spans.first("read_rows"), "commit": spans.last("stage"),
             "finish": spans.last("write_table"), "end": ended}
    names = list(marks)
    out = {}
    for name, lo, hi in zip(names[:-1], list(marks.values())[:-1], list(marks.values())[1:], strict=True):
        out[name] = {"wall_s": round(hi - lo, 3), "core_s": round(spans.busy(lo, hi), 3)}
    out["total"] = {"wall_s": round(ended - began, 3), "core_s": round(spans.busy(began, ended), 3)}
    return out


def _library(spec: dict[str, Any], spans: Spans) -> None:
    import pyarrow as pa

    import rasteret_core as rc
    from rasteret_core.engine import read_geometry_table, read_row_range, split_table, write_table

    load, split, read_rows = spans.wrap("load", rc.load), spans.wrap("split", split_table), spans.wrap(
        "read_rows", read_row_range)
    stage, write = spans.wrap("stage", lambda t: t), spans.wrap("write_table", write_table)
    rc.Collection.get_table = spans.wrap("get_table", rc.Collection.get_table)  # type: ignore[method-assign]
    settings = rc.Settings.from_env()
    col = load(spec["collection_uri"])
    parts = split(spec["aois"], batch_size=spec["batch_size"], folder=spec["stage"], settings=settings)
    _, crs = read_geometry_table(parts.schema.empty_table(), geometry_column="geometry", geometry_crs=None)
    tables = []
    for rows in parts.ranges:
        out, _ = col.get_table(read_rows(rows, settings=settings), spec["bands"], geometry_crs=crs.to_json(),
                               geometry_column="geometry", stats=spec["stats"])
        tables.append(stage(out))
    table = pa.concat_tables([t for t in tables if t.num_rows] or tables[:1], promote_options="default")
    write(table.to_reader(), spec["out_uri"], settings=settings, operation="extract", mode="overwrite",
          metadata={"collection": spec["collection_uri"], "bands": spec["bands"], "stats": spec["stats"]})


def _flow(spec: dict[str, Any], spans: Spans, steps: Spans) -> dict[str, Any]:
    import rasteret_core as rc
    import rasteret_flows
    from rasteret_flows import _batched
    from rasteret_tasks import batches

    for module in (batches, _batched):
        module.load = spans.wrap("load", module.load)  # type: ignore[attr-defined]
    batches.split_table = spans.wrap("split", batches.split_table)  # type: ignore[attr-defined]
    batches.read_row_range = spans.wrap("read_rows", batches.read_row_range)  # type: ignore[attr-defined]
    batches.stage_table = spans.wrap("stage", batches.stage_table)  # type: ignore[attr-defined]
    batches.write_table = spans.wrap("write_table", batches.write_table)  # type: ignore[attr-defined]
    rc.Collection.get_table = spans.wrap("get_table", rc.Collection.get_table)  # type: ignore[method-assign]
    # the flow's own steps, timed apart (not core calls): each task call as the flow makes it, each task's body
    for name in ("sweep_staging", "split_input", "fan_out", "commit_output", "publish_summary"):
        setattr(_batched, name, steps.wrap(name, getattr(_batched, name)))
    for task in (batches.split_input, batches.read_batch, batches.commit_output):
        task.fn = steps.wrap(f"{task.name} body", task.fn)
    batches.read_batch.submit = steps.wrap("read-batch submit", batches.read_batch.submit)  # type: ignore[method-assign]
    summary = rasteret_flows.extract_aois(
        collection_uri=spec["collection_uri"], aois=spec["aois"], bands=spec["bands"], out_uri=spec["out_uri"],
        batch_size=spec["batch_size"], stats=spec["stats"], max_in_flight=spec["max_in_flight"])
    submitted = sorted(e for n, _, e in steps.items if n == "read-batch submit")
    bodies = sorted((s, e) for n, s, e in steps.items if n == "read-batch body")
    fan = next((s, e) for n, s, e in steps.items if n == "fan_out")
    return {"batches": summary.batches, "failed_batches": summary.failed_batches, "summary_rows": summary.rows,
            # a task's start: from its submission to its body's first line (the thread pool runs them in order)
            "task_start_s": _spread([b[0] - t for t, b in zip(submitted, bodies, strict=True)]),
            # slot-seconds of the fan-out with no task body running in the slot (tail of the last batches included)
            "idle_slot_s": round((fan[1] - fan[0]) * spec["max_in_flight"] - sum(e - s for s, e in bodies), 2)}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "sum": round(sum(values), 3)} if values else {}


def _child(spec: dict[str, Any]) -> None:
    import logging

    if spec["path"] == "flow":
        import rasteret_flows  # noqa: F401 - imported before the clock starts, as every import
        import rasteret_tasks.batches  # noqa: F401

        logging.getLogger("prefect").setLevel(logging.WARNING)  # as bench.load
    else:
        import pyarrow as pa  # noqa: F401

        import rasteret_core.engine  # noqa: F401
    spans, steps = Spans(), Spans()
    began = time.perf_counter()
    sampler = Sampler() if spec.get("profile") else None
    with sampler if sampler is not None else contextlib.nullcontext():
        extra = _flow(spec, spans, steps) if spec["path"] == "flow" else {}
        if spec["path"] == "library":
            _library(spec, spans)
    ended = time.perf_counter()
    total = time.time() - spec["spawned"]
    batches = sum(1 for n, _, _ in spans.items if n == "read_rows")
    figures = {"path": spec["path"], "batch_size": spec["batch_size"], "total_s": round(total, 3),
               "work_s": round(ended - began, 3), "batches": batches, "phases": _phases(spans, began, ended),
               "core_sums_s": spans.sums(),
               "flow_steps_s": {n: round(e - s, 3) for n, s, e in steps.items if not n.endswith(" body")}
               | {"task bodies (summed)": {n: t for n, t in steps.sums().items() if n.endswith(" body")}}, **extra, **checksum(spec["out_uri"])}
    if sampler is not None:
        figures["profile"] = sampler.report()
    print(json.dumps(figures))


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one path in a fresh process; return its figures."""
    spec = {**spec, "spawned": time.time()}
    done = subprocess.run([sys.executable, "-m", "bench.flow_overhead", "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{spec['path']} run failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def _median_phases(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {p: {k: round(statistics.median(r["phases"][p][k] for r in runs), 2) for k in ("wall_s", "core_s")}
            for p in runs[0]["phases"]}


def summarize(batch_size: int, library: list[dict[str, Any]], flow: list[dict[str, Any]],
              profile: dict[str, Any] | None) -> dict[str, Any]:
    """One row of the table: medians of each path, the ratio, the goal, and where the flow's extra time goes."""
    lib_s, flow_s = _median(library, "total_s"), _median(flow, "total_s")
    lib_w, flow_w = _median(library, "work_s"), _median(flow, "work_s")
    outputs = {(r["rows"], r["checksum"]) for r in library + flow}
    ratio = round(flow_s / lib_s, 2)
    lib_p, flow_p = _median_phases(library), _median_phases(flow)
    return {
        "batch_size": batch_size, "batches": flow[0]["batches"], "runs": len(flow),
        "library_s": lib_s, "flow_s": flow_s, "ratio": ratio, "goal": f"<= {GOAL}x", "goal_met": ratio <= GOAL,
        "library_work_s": lib_w, "flow_work_s": flow_w, "work_ratio": round(flow_w / lib_w, 2),
        "library_imports_s": round(lib_s - lib_w, 2), "flow_imports_s": round(flow_s - flow_w, 2),
        "rows": library[0]["rows"], "same_output": len(outputs) == 1,
        "flow_uncovered_s": round(flow_p["total"]["wall_s"] - flow_p["total"]["core_s"], 2),
        "library_uncovered_s": round(lib_p["total"]["wall_s"] - lib_p["total"]["core_s"], 2),
        "library_phases": lib_p, "flow_phases": flow_p,
        "library_core_sums_s": library[0]["core_sums_s"], "flow_core_sums_s": flow[0]["core_sums_s"],
        "library_runs": library, "flow_runs": flow, "profile": profile,
    }


def _phase_cell(p: dict[str, dict[str, float]]) -> str:
    return " / ".join(f"{p[k]['wall_s']:.2f}" for k in ("start", "batches", "commit", "finish"))


def markdown(rows: list[dict[str, Any]], aois: int, repeat: int, in_flight: int) -> str:
    """The rows as a Markdown table."""
    head = ("| AOIs per batch | batches | library s (after imports) | flow s (after imports) | ratio (after imports) "
            "| goal | output rows, same | library phases s | flow phases s | flow s no core call covers |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    body = ""
    for r in rows:
        body += (f"| {r['batch_size']:,} | {r['batches']} | {r['library_s']:.2f} ({r['library_work_s']:.2f}) "
                 f"| {r['flow_s']:.2f} ({r['flow_work_s']:.2f}) | {r['ratio']:.2f}x ({r['work_ratio']:.2f}x) "
                 f"| {r['goal']}: {'met' if r['goal_met'] else 'missed'} "
                 f"| {r['rows']:,}, {'yes' if r['same_output'] else 'NO'} "
                 f"| {_phase_cell(r['library_phases'])} | {_phase_cell(r['flow_phases'])} "
                 f"| {r['flow_uncovered_s']:.2f} (library {r['library_uncovered_s']:.2f}) |\n")
    note = (f"\n{aois:,} AOIs x 6 records x 2 bands, stats count and mean; median of {repeat} runs per path, each in "
            "a fresh process, end to end (after imports in brackets). Phases: start (to the first batch's read) / "
            "batches / commit / finish (after `write_table`). Flow: threads runner, max_in_flight "
            f"{in_flight}, local Prefect server.\n")
    return head + body + note


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aois", type=int, default=10_000)
    parser.add_argument("--batches", default="500,2000", help="AOIs per batch, comma separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path per batch size (median)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled flow run")
    parser.add_argument("--in-flight", type=int, default=1, help="the flow's max_in_flight (batches at once)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return 0
    import rasteret_core as rc

    from .load import flow_sandbox, write_inputs

    sizes = [int(s) for s in args.batches.split(",")]
    rows: list[dict[str, Any]] = []
    with flow_sandbox("rasteret-bench-flow-overhead-") as (folder, uri):
        aois = write_inputs(rc.load(uri), folder / "aois.parquet", args.aois, polygons=True, seed=1)
        for size in sizes:
            runs: dict[str, list[dict[str, Any]]] = {"library": [], "flow": []}
            for i in range(args.repeat):
                for path in ("library", "flow"):
                    out, stage = folder / f"out-{path}", folder / f"stage-{path}"
                    stage.mkdir(exist_ok=True)
                    result = run_child({"path": path, "collection_uri": uri, "aois": str(aois),
                                        "out_uri": str(out), "stage": str(stage), "batch_size": size,
                                        "bands": BANDS, "stats": STATS, "max_in_flight": args.in_flight})
                    runs[path].append(result)
                    print(f"{size:>6,d} AOIs/batch run {i + 1} {path:8s}: {result['total_s']:6.2f} s "
                          f"({result['work_s']:6.2f} s after imports), {result['rows']:,} rows, "
                          f"{result['checksum']}", flush=True)
                    shutil.rmtree(out, ignore_errors=True)
                    shutil.rmtree(stage, ignore_errors=True)
            profile = None
            if not args.no_profile:
                out = folder / "out-profile"
                profile = run_child({"path": "flow", "collection_uri": uri, "aois": str(aois),
                                     "out_uri": str(out), "stage": str(folder), "batch_size": size,
                                     "bands": BANDS, "stats": STATS, "max_in_flight": args.in_flight,
                                     "profile": True})
                shutil.rmtree(out, ignore_errors=True)
            rows.append(summarize(size, runs["library"], runs["flow"], profile))
    table = markdown(rows, args.aois, args.repeat, args.in_flight)
    print(table)
    for r in rows:
        if r["profile"] is not None:
            print(f"{r['batch_size']:,} AOIs per batch, profiled flow run ({r['profile']['work_s']:.2f} s after "
                  f"imports), CPU s by kind: {r['profile']['profile']['cpu_s_by_kind']}")
            for title in ("prefect_inclusive_cpu_s", "prefect_innermost_cpu_s"):
                print(f"  {title}:")
                for name, s in r["profile"]["profile"][title].items():
                    print(f"    {s:6.2f} s  {name}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": table, "aois": args.aois, "repeat": args.repeat,
                                         "goal": f"flow <= {GOAL}x library", "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

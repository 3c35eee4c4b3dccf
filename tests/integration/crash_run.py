"""Run one Rasteret flow in this process and SIGKILL the process at a checkpoint: a crash, for the crash tests.

Usage: ``python crash_run.py SPEC``, or ``python crash_run.py --serve`` to read one SPEC per line
from stdin and run each in a child forked from this process (the imports, seconds of a
cold start, are paid once; nothing else has run when a child forks), answering each with
a line of JSON: the child's exit ``code`` or the ``signal`` that ended it (a line holding a
list of SPECs forks them all at once and answers a list). SPEC is JSON::

    {"flow": "ingest_collection", "kwargs": {...},
     "kill": {"root": "/path" or "s3://bucket/prefix", "pattern": "part-*.json",
              "exclude": "_delta_log", "count": 2}}

A watcher thread lists ``root`` (recursively; a local folder, or an S3 prefix through
the ``AWS_*`` environment) every half millisecond (every 20 ms on S3) and, as soon as
``count`` files matching ``pattern`` (a glob on the file name) that were not there at
the start exist, kills this process with SIGKILL: no ``finally``, no ``atexit``, no
flush, as a lost machine would. Checkpoints are what a run leaves behind as it goes:
a staged partition manifest, the data file a Delta commit writes before its log entry,
the log entry itself. Without ``kill`` the flow runs to its end (exit status 0).
Nothing in the flows knows about it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _local_lister(root: str, exclude: str | None) -> Callable[[], set[str]]:
    def files() -> set[str]:
        out = set()
        for folder, dirs, names in os.walk(root):
            if exclude is not None:
                dirs[:] = [d for d in dirs if d != exclude]
            out.update(os.path.join(folder, n) for n in names)
        return out

    return files


def _s3_lister(root: str, exclude: str | None) -> Callable[[], set[str]]:
    import boto3
    from botocore.config import Config

    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                          config=Config(s3={"addressing_style": "path"}))

    def files() -> set[str]:
        out = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
            out.update(o["Key"] for o in page.get("Contents", ()) if exclude is None or f"/{exclude}/" not in o["Key"])
        return out

    return files


def _watch(kill: dict) -> None:
    root, pattern, count = kill["root"], kill["pattern"], int(kill.get("count", 1))
    s3 = root.startswith("s3://")
    files = (_s3_lister if s3 else _local_lister)(root, kill.get("exclude"))
    before = files()
    pause = 0.02 if s3 else 0.0005

    def run() -> None:
        while True:
            new = [f for f in files() - before if fnmatch.fnmatch(os.path.basename(f), pattern)]
            if len(new) >= count:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(pause)

    threading.Thread(target=run, daemon=True, name="crash-watcher").start()


def _run(spec: dict) -> None:
    import rasteret_flows

    flow = getattr(rasteret_flows, spec["flow"])
    if spec.get("kill"):
        _watch(spec["kill"])
    flow(**spec["kwargs"])


def _serve() -> None:
    import traceback

    import rasteret_flows  # noqa: F401 - imported once, before any fork

    def fork(spec: dict) -> int:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run(spec)
            except BaseException:  # noqa: BLE001 - reported through the exit status
                traceback.print_exc()
                code = 1
            sys.stderr.flush()
            os._exit(code)
        return pid

    def wait(pid: int) -> dict:
        _, status = os.waitpid(pid, 0)
        return {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"code": os.WEXITSTATUS(status)}

    for line in sys.stdin:
        spec = json.loads(line)
        if isinstance(spec, list):  # runs at once, one child each: a list of answers
            pids = [fork(s) for s in spec]
            print(json.dumps([wait(pid) for pid in pids]), flush=True)
        else:
            print(json.dumps(wait(fork(spec))), flush=True)


class CrashServer:
    """``crash_run.py --serve``: one process that imports once and forks a child per run to kill."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], cwd=Path(__file__).resolve().parents[2], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"),
                                     start_new_session=True)

    def kill_run(self, flow: str, kwargs: dict[str, Any], kill: dict[str, Any]) -> None:
        """Run ``flow(**kwargs)`` in a child that SIGKILLs itself at ``kill``; fail if it was not killed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"flow": flow, "kwargs": kwargs, "kill": kill}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or "{}")
        assert answer.get("signal") == signal.SIGKILL, f"not killed at {kill} ({answer}): {self.log.read_text()[-3000:]}"

    def run_at_once(self, specs: list[dict[str, Any]]) -> list[dict[str, int]]:
        """Run the flows of ``specs`` (``flow``, ``kwargs``, optional ``kill``) at once, one child each; their ends."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(specs) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline() or "[]")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def main() -> None:
    if sys.argv[1] == "--serve":
        _serve()
    else:
        _run(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()

"""Run one Rasteret flow in this process and SIGKILL the process at a checkpoint: a crash, for the crash tests.

Usage: ``python crash_run.py SPEC``, or ``python crash_run.py --serve`` to read one SPEC per line
from stdin and run each in a child forked from this process (the imports, seconds of a
cold start, are paid once; nothing else has run when a child forks), answering each with
a line of JSON: the child's exit ``code`` or the ``signal`` that ended it. SPEC is JSON::

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
import sys
import threading
import time
from collections.abc import Callable


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

    for line in sys.stdin:
        spec = json.loads(line)
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
        _, status = os.waitpid(pid, 0)
        answer = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"code": os.WEXITSTATUS(status)}
        print(json.dumps(answer), flush=True)


def main() -> None:
    if sys.argv[1] == "--serve":
        _serve()
    else:
        _run(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()

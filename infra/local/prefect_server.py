"""Run a Prefect server and a process worker on loopback, with telemetry off, for development and tests."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from rasteret_demo.process import HOST, find_binary, free_port, running

__all__ = ["prefect_env", "prefect_server", "prefect_worker"]


def prefect_env(home: Path | None = None, api_url: str | None = None,
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Prefect process here: telemetry off, its own home, this API.

    Args:
        home: ``PREFECT_HOME`` (profiles, the server's SQLite database, local results).
        api_url: ``PREFECT_API_URL`` for clients and workers; None leaves it out (a server).
        base: The environment to start from (default: this process's).
    """
    env = dict(os.environ if base is None else base)
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_API_HOST": HOST})
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    env.pop("PREFECT_API_URL", None)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


@contextlib.contextmanager
def prefect_server(workdir: Path, *, ui: bool = False, timeout: float = 180.0) -> Iterator[str]:
    """Run ``prefect server start`` on a free loopback port (SQLite under ``workdir``); yield its API URL.

    Args:
        workdir: ``PREFECT_HOME`` of the server (its database) and ``prefect-server.log``.
        ui: Serve the web UI too (slower to start).
        timeout: Seconds to wait for it (a fresh database is migrated first: 5 to 60 s).

    Yields:
        ``http://127.0.0.1:PORT/api``, once ``/api/health`` answers.

    Raises:
        ServiceError: ``prefect`` is missing or the server did not come up in time.
    """
    prefect = find_binary("prefect")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = prefect_env(workdir)
    env["PREFECT_UI_ENABLED"] = "true" if ui else "false"
    env["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"

    def launch() -> tuple[list[str], Callable[[], bool], str]:
        port = free_port()
        url = f"http://{HOST}:{port}/api"

        def ready() -> bool:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                return response.status == 200

        return [prefect, "server", "start", "--host", HOST, "--port", str(port)], ready, url

    with running("prefect server", workdir / "prefect-server.log", workdir, launch, env, timeout) as url:
        yield url


@contextlib.contextmanager
def prefect_worker(pool: str, *, api_url: str, cwd: Path, log_path: Path,
                   env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Run ``prefect worker start --pool POOL`` (polling until stopped) against ``api_url``.

    Args:
        pool: An existing work pool (a process pool runs each flow run as a subprocess of the worker).
        api_url: The Prefect API.
        cwd: The worker's working folder (where deployments' flows run when they do not set one).
        log_path: Receives the worker's output.
        env: Its environment (default: this process's, for ``AWS_*`` and ``RASTERET_*``).

    Raises:
        ServiceError: the worker did not register with the server in time.
    """
    prefect = find_binary("prefect")

    def launch() -> tuple[list[str], Callable[[], bool], None]:
        def ready() -> bool:
            request = urllib.request.Request(f"{api_url}/work_pools/{pool}/workers/filter", data=b"{}",
                                             headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(json.loads(response.read()))

        return [prefect, "worker", "start", "--pool", pool, "--type", "process"], ready, None

    worker_env = prefect_env(api_url=api_url, base=env)
    with running(f"prefect worker ({pool})", Path(log_path), Path(cwd), launch, worker_env):
        yield

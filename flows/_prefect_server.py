"""Prefect's temporary API server for a CLI flow command, started as the command starts: its boot overlaps the command.

Without ``PREFECT_API_URL`` a flow run starts Prefect's temporary server only when the
flow begins: it imports Prefect's server package (about 2 s of CPU in this process), then
starts uvicorn in a subprocess and waits for it (about 5 s more on 2 busy cores), after
the command has imported the stack and checked its input. :func:`start_early` starts the
same server (the command Prefect 3.9's ``SubprocessASGIServer`` runs, with its
environment: UI off, ephemeral mode) at once, in the background, and points this
process (and the processes it starts, Dask workers included) at it; :func:`wait_ready`
waits for it to answer before the first flow runs, so no flow meets a server that is
not up yet. It stops when the command exits, as Prefect's own does.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

__all__ = ["start_early", "wait_ready"]

log = logging.getLogger(__name__)

_server: subprocess.Popen[bytes] | None = None
_api: str | None = None


def start_early() -> contextlib.AbstractContextManager[Any]:
    """Start the temporary server unless an API is configured; return the settings that point Prefect at it.

    Enter the returned context for the rest of the command (it is a no-op when an
    API is configured or the server is already started).
    """
    global _server, _api  # noqa: PLW0603 - one server per process, as Prefect's own
    import prefect
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if _server is not None or PREFECT_API_URL.value():
        return contextlib.nullcontext()
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    _server = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
         "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL,
    )
    atexit.register(_stop)
    _api = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_API_URL"] = _api  # the processes the command starts (Dask workers) use it too
    log.info("starting Prefect's temporary server on %s", _api)
    return temporary_settings(updates={PREFECT_API_URL: _api})


def wait_ready() -> None:
    """Wait until the server :func:`start_early` started answers; no-op if none was started.

    Raises:
        RuntimeError: it exited, or did not answer within
            ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (the message is Prefect's own
            wording, which the CLI reports as "Prefect unavailable").
    """
    if _server is None or _api is None:
        return
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    deadline = time.monotonic() + float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    while time.monotonic() < deadline:
        if _server.poll() is not None:
            raise RuntimeError(f"ephemeral Prefect API server exited with code {_server.returncode} before "
                               f"it answered at {_api}")
        with contextlib.suppress(OSError, urllib.error.URLError), \
                urllib.request.urlopen(f"{_api}/health", timeout=2) as answer:  # noqa: S310 - loopback http
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"Timed out while attempting to connect to ephemeral Prefect API server at {_api}")


def _stop() -> None:
    global _server  # noqa: PLW0603
    if _server is None:
        return
    _server.terminate()
    try:
        _server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _server.kill()
        _server.wait()
    _server = None

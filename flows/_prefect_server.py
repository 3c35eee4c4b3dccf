"""Prefect's temporary API server, started as a flow command starts: its boot overlaps the command's own work.

Without ``PREFECT_API_URL`` a flow run starts Prefect's temporary server (a uvicorn
subprocess; about 10 s on 2 busy cores) only when the flow begins, after the command
has imported the stack and checked its input. :func:`start_early` starts it in the
background as the command starts; :func:`wait_ready` waits for it before the first
flow runs, so no flow meets a server that is not up yet. A failure here is left to the
flow run, which starts the server again and reports what went wrong.
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["start_early", "wait_ready"]

_starting: threading.Thread | None = None


def start_early() -> None:
    """Start Prefect's temporary server in the background, unless an API is configured (or it is started)."""
    global _starting  # noqa: PLW0603 - one server per process, as Prefect's own
    if _starting is not None:
        return
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        with contextlib.suppress(Exception):  # the flow run starts it again and says what went wrong
            SubprocessASGIServer().start()  # the instance Prefect's client uses: started once

    _starting = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    _starting.start()


def wait_ready() -> None:
    """Wait until the server :func:`start_early` started answers (or failed to start); no-op if none was started."""
    if _starting is not None:
        _starting.join()

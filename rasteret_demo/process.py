"""Run a local service as a supervised subprocess on a free loopback port.

A service is launched bound to 127.0.0.1, polled until it answers, and on exit
stopped for sure (terminate, then kill, then wait). A service that does not come
up raises :class:`ServiceError` with the start and tail of its log; a start that
loses a port race is retried with new ports. The STAC API of the demo
(:mod:`rasteret_demo.stac`) and the development services of ``infra/local`` are
built on it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["HOST", "Background", "ServiceError", "find_binary", "free_port", "running"]

HOST = "127.0.0.1"
_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_ATTEMPTS = 3
_PORT_TAKEN = ("address already in use", "is not available")  # rustac's, weed's and uvicorn's words
_T = TypeVar("_T")


class ServiceError(RuntimeError):
    """A local service could not be started (or found)."""


def free_port(*, also_free: Sequence[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that is free now (and each ``port + offset``).

    Args:
        also_free: Offsets that must be free as well, e.g. ``(10000,)`` for a
            service that also listens at ``port + 10000``.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(15000, 30000)
        if all(_bindable(port + offset) for offset in (0, *also_free)):
            return port
    raise ServiceError("found no free loopback port")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def find_binary(name: str, *, install: str | None = None) -> str:
    """Locate ``name`` next to the running interpreter (a venv's bin), else on PATH.

    Args:
        name: The executable.
        install: What installs it (``pip install "rasteret[demo]"``), for the error message.

    Raises:
        ServiceError: It is in neither place.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        hint = f"; {install}" if install else ""
        raise ServiceError(f"cannot find the {name!r} executable next to {sys.executable} or on PATH{hint}")
    return found


def _log_tail(path: Path, lines: int = 30) -> str:
    """Return the end of a log (and its first lines, where usage errors land)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    if len(text) <= lines:
        return "\n".join(text)
    return "\n".join([*text[:5], "[...]", *text[-(lines - 5) :]])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc``; kill it when it does not exit in time; reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _popen(argv: list[str], log_path: Path, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,  # Ctrl-C reaches only us, and we stop it in order
        )


@contextlib.contextmanager
def running(
    name: str,
    log_path: Path,
    cwd: Path,
    launch: Callable[[], tuple[list[str], Callable[[], bool], _T]],
    env: Mapping[str, str] | None = None,
    timeout: float = _STARTUP_TIMEOUT,
) -> Iterator[_T]:
    """Start a service, wait until it is ready, yield; stop it on exit, whatever happens.

    Args:
        name: For messages.
        log_path: Receives the process's stdout and stderr.
        cwd: Working directory of the process.
        launch: Picks fresh ports and returns ``(argv, ready, value)``; called
            again when a port was taken between choosing and binding it (other
            test sessions on the machine pick ports too).
        env: The process's environment (default: this process's).
        timeout: Seconds to wait until it is ready.

    Yields:
        The ``value`` of the launch that came up.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        argv, ready, value = launch()
        proc = _popen(argv, log_path, cwd, env)
        try:
            _wait_until(name, proc, log_path, ready, timeout)
        except ServiceError:
            _stop(proc)
            log = _log_tail(log_path).lower()
            if attempt < _ATTEMPTS and any(marker in log for marker in _PORT_TAKEN):
                continue
            raise
        except BaseException:
            _stop(proc)
            raise
        break
    try:
        yield value
    finally:
        _stop(proc)


def _wait_until(
    name: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float = _STARTUP_TIMEOUT,
) -> float:
    """Poll ``ready()`` until true; return the seconds waited.

    Raises:
        ServiceError: The process exited, or ``timeout`` passed; the message
            carries the tail of the log.
    """
    start = time.monotonic()
    last: Exception | None = None
    while True:
        if proc.poll() is not None:
            raise ServiceError(
                f"{name} exited with code {proc.returncode} before it was ready; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            if ready():
                return time.monotonic() - start
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means: not ready yet
            last = exc
        if time.monotonic() - start > timeout:
            raise ServiceError(
                f"{name} did not answer within {timeout:.0f} s (last error: {last!r}); "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.1)


class Background(Generic[_T]):
    """A service context manager entered in a thread, so that its start overlaps other work.

    ``wait()`` returns what the context manager yielded (or raises what its start
    raised); ``stop()`` leaves it, stopping the service.
    """

    def __init__(self, factory: Callable[[], contextlib.AbstractContextManager[_T]]) -> None:
        self._factory = factory
        self._ready = threading.Event()
        self._done = threading.Event()
        self._value: _T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rasteret-service", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._factory() as value:
                self._value = value
                self._ready.set()
                self._done.wait()
        except BaseException as exc:  # noqa: BLE001 -- handed to the thread that waits, which re-raises it
            self._error = exc
        finally:
            self._ready.set()

    def wait(self) -> _T:
        """Block until the service is up; return its value."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def stop(self) -> None:
        """Stop the service and wait until it has stopped."""
        self._done.set()
        self._thread.join()

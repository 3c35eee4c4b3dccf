"""The process-wide I/O runtime: one background event loop and long-lived object stores per process.

Sync calls (a read, a header parse, a freshness check) submit their coroutines to
this loop with :func:`with_stores`, so S3/HTTP clients and their connections
outlive a single call; a forked child builds its own runtime.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rasteret_core.settings import Settings

from .store import Stores

__all__ = ["with_stores"]

T = TypeVar("T")


class _Runtime:
    """One background event loop per process, with long-lived stores per settings.

    Sync calls submit their coroutines here, so S3/HTTP clients and their
    connections outlive a single read (no client set-up per call). A forked
    child process builds its own runtime.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.stores: dict[Settings, Stores] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, name="rasteret-io", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a sync Rasteret call was made from inside Rasteret's I/O loop; await the async API")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def shared_stores(self, settings: Settings) -> Stores:
        """The long-lived stores for ``settings`` (call on the runtime's loop)."""
        if settings not in self.stores:
            self.stores[settings] = Stores(settings)
        return self.stores[settings]

    def close(self) -> None:
        async def close_all() -> None:
            for stores in self.stores.values():
                await stores.__aexit__(None, None, None)

        if self.loop.is_running():
            with contextlib.suppress(Exception):  # best effort at interpreter exit
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def _get_runtime() -> _Runtime:
    global _runtime  # noqa: PLW0603 - one runtime per process, rebuilt after a fork
    with _runtime_lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = _Runtime()
            atexit.register(_runtime.close)
        return _runtime


def with_stores(settings: Settings, work: Callable[[Stores], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(stores)`` from sync code on the shared runtime, with long-lived stores for ``settings``.

    ``stores`` is a child view: it counts only this call's I/O (``stores.stats``).
    """
    runtime = _get_runtime()

    async def go() -> T:
        return await work(runtime.shared_stores(settings).child())

    return runtime.run(go())

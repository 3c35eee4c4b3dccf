"""Progress of the flows' fan-outs (partitions, batches), for whoever listens in this process.

The flows report each finished work unit through :func:`report_progress` (``_fanout``
does it for every fan-out); the command line listens with :func:`listening` and draws
rich progress bars (:class:`ProgressBars`). Nothing listens in a deployment's worker:
reporting then costs a list lookup. Listeners run in the flow's thread and must be quick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

log = logging.getLogger(__name__)

__all__ = ["ProgressBars", "ProgressEvent", "listening", "report_progress"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressEvent:
    """One step's progress: ``done`` of ``total`` units finished, ``failed`` of them failed.

    Attributes:
        step: What the units are: the fanned-out task's name (``"parse-scene-headers"``, ``"read-batch"``).
        done: Units finished (failed ones included).
        total: Units planned.
        failed: Units that failed after their retries.
    """

    step: str
    done: int
    total: int
    failed: int = 0


Listener = Callable[[ProgressEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` with every :class:`ProgressEvent` reported in this process while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def report_progress(step: str, done: int, total: int, failed: int = 0) -> None:
    """Tell the listeners (if any) that ``done`` of ``total`` units of ``step`` have finished.

    A listener that raises is logged and skipped: progress never fails a run.
    """
    with _lock:
        listeners = list(_listeners)
    event = ProgressEvent(step=step, done=done, total=total, failed=failed)
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("progress listener failed on %s", event)


# What each fan-out's units are, in words (by task name); other steps show their own name.
STEP_NAMES = {
    "parse-scene-headers": "header partitions",
    "read-batch": "read batches",
}


class ProgressBars:
    """Rich progress bars for one command: a spinner for the whole operation, a bar per fan-out step.

    Drawn only when ``console`` is a terminal (otherwise nothing is printed, so logs,
    pipes and ``--json`` output stay clean). Use as a context manager; it listens to
    :func:`report_progress` while open.
    """

    def __init__(self, console: Console, operation: str, *, enabled: bool | None = None) -> None:
        self.enabled = console.is_terminal if enabled is None else enabled
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[failed]}"), TimeElapsedColumn(),
            console=console, disable=not self.enabled, transient=False,
        )
        self._operation = operation
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        self._progress.__enter__()
        self._main = self._progress.add_task(self._operation, total=None, failed="", count="")
        self._listen = listening(self.update)
        self._listen.__enter__()
        return self

    def update(self, event: ProgressEvent) -> None:
        """Advance the bar of ``event.step`` (made on its first event)."""
        task = self._tasks.get(event.step)
        if task is None:
            task = self._progress.add_task(STEP_NAMES.get(event.step, event.step), total=event.total, failed="",
                                           count="")
            self._tasks[event.step] = task
        failed = f"[red]{event.failed} failed[/red]" if event.failed else ""
        self._progress.update(task, completed=event.done, total=event.total, failed=failed,
                              count=f"{event.done}/{event.total}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._listen.__exit__(kind, exc, tb)
        self._progress.update(self._main, total=1, completed=1)
        self._progress.__exit__(kind, exc, tb)

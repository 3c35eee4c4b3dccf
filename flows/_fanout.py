"""Fan a task out over work units with a bounded number in flight; keep going past failures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect import Task, get_run_logger
from prefect.futures import PrefectFuture, as_completed

from rasteret_core import ConfigError

from ._progress import report_progress

R = TypeVar("R")


@dataclass(slots=True)
class FanOut(Generic[R]):
    """What came back: the results of the units that finished, and the ones that failed (with errors)."""

    results: list[R] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


def fan_out(
    task: Task[..., R],
    calls: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    *,
    max_in_flight: int,
) -> FanOut[R]:
    """Submit ``task(**call)`` for every call, at most ``max_in_flight`` at once, on the flow's task runner.

    A unit that still fails after its task's retries is logged and listed in
    ``failures`` (``unit``, ``error``); the others go on. A slot is refilled as soon as
    any unit in flight finishes (not only the oldest), so one slow unit does not hold
    the others back. Results (and failures) keep the order of ``calls``.
    Each finished unit is reported to this process's progress listeners (``_progress``),
    as a step named after the task.
    """
    if max_in_flight < 1:
        raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight}")
    log = get_run_logger()
    results: dict[int, R] = {}
    failures: dict[int, dict[str, str]] = {}
    step = task.name
    report_progress(step, 0, len(calls))

    def collect(i: int, future: PrefectFuture[R]) -> None:
        future.wait()
        state = future.state
        if state.is_completed():
            results[i] = future.result()
        else:
            error = state.result(raise_on_failure=False)
            message = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message)
            failures[i] = {"unit": labels[i], "error": message}
            log.error("%s failed after its retries: %s", labels[i], message)
        finished = len(results) + len(failures)
        log.info("%s done (%d/%d, %d failed)", labels[i], finished, len(calls), len(failures))
        report_progress(step, finished, len(calls), len(failures))

    in_flight: dict[PrefectFuture[R], int] = {}

    def collect_one() -> None:
        future = next(as_completed(list(in_flight)))
        collect(in_flight.pop(future), future)

    for i, call in enumerate(calls):
        if len(in_flight) >= max_in_flight:
            collect_one()
        in_flight[task.submit(**call)] = i
    while in_flight:
        collect_one()
    return FanOut(results=[results[i] for i in sorted(results)], failures=[failures[i] for i in sorted(failures)])

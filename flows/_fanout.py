"""Fan a task out over work units with a bounded number in flight; keep going past failures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect import Task, get_run_logger

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
    ``failures`` (``unit``, ``error``); the others go on. Results keep the order of ``calls``.
    Each finished unit is reported to this process's progress listeners (``_progress``),
    as a step named after the task.
    """
    if max_in_flight < 1:
        raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight}")
    log = get_run_logger()
    out: FanOut[R] = FanOut()
    futures: list[Any] = []
    step = task.name
    report_progress(step, 0, len(calls))

    def collect(i: int) -> None:
        future = futures[i]
        future.wait()
        state = future.state
        if state.is_completed():
            out.results.append(future.result())
        else:
            error = state.result(raise_on_failure=False)
            message = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message)
            out.failures.append({"unit": labels[i], "error": message})
            log.error("%s failed after its retries: %s", labels[i], message)
        finished = len(out.results) + len(out.failures)
        log.info("%s done (%d/%d, %d failed)", labels[i], finished, len(calls), len(out.failures))
        report_progress(step, finished, len(calls), len(out.failures))

    for i, call in enumerate(calls):
        if i >= max_in_flight:
            collect(i - max_in_flight)
        futures.append(task.submit(**call))
    for i in range(max(0, len(calls) - max_in_flight), len(calls)):
        collect(i)
    return out

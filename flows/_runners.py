"""Task runners: the same flows on threads in the flow's process, or on a Dask cluster."""

from __future__ import annotations

from typing import Any, TypeVar

from prefect import Flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from rasteret_core import ConfigError

F = TypeVar("F", bound=Flow[Any, Any])


def task_runner(spec: str | None = None, *, n_workers: int = 2, threads_per_worker: int = 1) -> TaskRunner[Any]:
    """The task runner named by ``spec``.

    Args:
        spec: ``None`` or ``"threads"``: Prefect's default thread pool in the flow's
            process. ``"dask"``: a ``distributed.LocalCluster`` of ``n_workers`` worker
            processes started for the run (they inherit this process's environment,
            ``AWS_*`` and ``PREFECT_API_URL`` included). ``"tcp://HOST:PORT"`` (any
            Dask scheduler address): an existing Dask cluster, whose workers must
            have the same environment and reach the same staging folder
            (``RASTERET_STAGING_DIR``).
        n_workers: Worker processes of a ``"dask"`` LocalCluster.
        threads_per_worker: Threads per worker process of a ``"dask"`` LocalCluster.
    """
    if spec in (None, "", "threads"):
        return ThreadPoolTaskRunner()
    from prefect_dask.task_runners import DaskTaskRunner

    if spec == "dask":
        return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": threads_per_worker,
                                              "processes": True, "dashboard_address": None})
    if "://" in spec:
        return DaskTaskRunner(address=spec)
    raise ConfigError(f"task runner {spec!r}: use 'threads', 'dask' or a Dask scheduler address (tcp://host:port)")


def with_runner(flow: F, spec: str | None = None, **options: int) -> F:
    """``flow`` with the task runner named by ``spec`` (see :func:`task_runner`); the flow itself is unchanged."""
    return flow.with_options(task_runner=task_runner(spec, **options))  # type: ignore[return-value]

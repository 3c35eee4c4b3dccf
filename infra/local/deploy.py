"""Register Rasteret's deployments with a Prefect server and run them through a process worker.

Everything talks to the API at ``api_url`` (a loopback server from
:func:`infra.local.prefect_server.prefect_server`); nothing reads the collections
registry over the network: the process pool is created with the base job
template of Prefect's own ``ProcessWorker``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rasteret_demo.process import find_binary

from .prefect_server import prefect_env

__all__ = [
    "LOCAL_DEPLOYMENTS",
    "LOCAL_POOL",
    "PROJECT_DIR",
    "create_process_pool",
    "deploy",
    "run_deployment",
    "run_worker_once",
    "wait_for_flow_run",
]

PROJECT_DIR = Path(__file__).resolve().parents[2]
"""The folder holding ``prefect.yaml``."""

LOCAL_POOL = "rasteret-local"
LOCAL_DEPLOYMENTS = ("scheduled-ingestion", "scheduled-enrichment", "on-demand-enrichment", "on-demand-extraction",
                     "on-demand-sampling")
"""The deployments of ``prefect.yaml`` that run on the local process pool."""


@contextmanager
def _client(api_url: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def create_process_pool(api_url: str, name: str = LOCAL_POOL) -> None:
    """Create (or update) a process work pool with Prefect's default process job template."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    with _client(api_url) as client:
        client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()),
            overwrite=True,
        )


def deploy(api_url: str, *, names: Sequence[str] = LOCAL_DEPLOYMENTS, variables: Mapping[str, str] | None = None,
           project_dir: Path = PROJECT_DIR, timeout: float = 300) -> str:
    """Run ``prefect deploy`` for ``names`` of ``prefect.yaml`` against ``api_url``; return its output.

    Args:
        api_url: The Prefect API.
        names: Deployment names in ``prefect.yaml``.
        variables: Deploy-time variables (``RASTERET_STAC_API``, ``RASTERET_COLLECTION_URI``);
            ``RASTERET_PROJECT_DIR`` is set to ``project_dir``.
        project_dir: The folder holding ``prefect.yaml``.
        timeout: Seconds before giving up.

    Raises:
        RuntimeError: ``prefect deploy`` failed; the message carries its output.
    """
    env = prefect_env(api_url=api_url)
    env.update({"RASTERET_PROJECT_DIR": str(project_dir), "RASTERET_STAC_API": "", "RASTERET_COLLECTION_URI": ""})
    env.update(variables or {})
    argv = [find_binary("prefect"), "--no-prompt", "deploy"]
    for name in names:
        argv += ["--name", name]
    done = subprocess.run(argv, cwd=project_dir, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def run_deployment(api_url: str, name: str, parameters: Mapping[str, Any]) -> str:
    """Create a flow run of deployment ``flow-name/deployment-name`` now; return its id."""
    with _client(api_url) as client:
        deployment = client.read_deployment_by_name(name)
        run = client.create_flow_run_from_deployment(deployment.id, parameters=dict(parameters))
    return str(run.id)


def run_worker_once(api_url: str, *, pool: str = LOCAL_POOL, cwd: Path = PROJECT_DIR,
                    env: Mapping[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``prefect worker start --pool POOL --run-once``: it executes the runs due now, then exits."""
    argv = [find_binary("prefect"), "worker", "start", "--pool", pool, "--type", "process", "--run-once"]
    return subprocess.run(argv, cwd=cwd, env=prefect_env(api_url=api_url, base=env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def wait_for_flow_run(api_url: str, flow_run_id: str, *, timeout: float = 120, poll: float = 0.5) -> Any:
    """Wait until the flow run reaches a final state; return that state."""
    from uuid import UUID

    deadline = time.monotonic() + timeout
    with _client(api_url) as client:
        while True:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and state.is_final():
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run_id} still {state.name if state else 'unknown'} after {timeout} s")
            time.sleep(poll)

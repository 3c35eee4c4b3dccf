"""The CLI starts Prefect's temporary server as a flow command starts (``rasteret_flows._prefect_server``)."""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = """
from rasteret_flows import _prefect_server
from prefect.server.api.server import SubprocessASGIServer
import httpx

_prefect_server.start_early()
_prefect_server.wait_ready()
server = SubprocessASGIServer()  # the instance Prefect's client takes when no API is configured
assert server.running and server.server_process is not None, "not started"
assert httpx.get(server.api_url + "/health", timeout=10).status_code == 200
print("healthy", server.api_url)
"""


def test_without_an_api_the_temporary_server_is_up_once_wait_ready_returns(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "healthy http://127.0.0.1:" in done.stdout


def test_a_configured_api_starts_no_temporary_server(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from rasteret_flows import _prefect_server

    monkeypatch.setattr(_prefect_server, "_starting", None)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        _prefect_server.start_early()
    assert _prefect_server._starting is None
    _prefect_server.wait_ready()  # nothing to wait for

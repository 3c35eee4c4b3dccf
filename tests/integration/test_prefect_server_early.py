"""The CLI starts Prefect's temporary server as a flow command starts (``rasteret_flows._prefect_server``)."""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = """
import os, sys, urllib.request
from prefect import flow
from rasteret_flows import _prefect_server

with _prefect_server.start_early():
    _prefect_server.wait_ready()
    api = os.environ["PREFECT_API_URL"]
    assert urllib.request.urlopen(api + "/health", timeout=10).status == 200

    @flow
    def answer():
        return 42

    assert answer() == 42
    from prefect.server.api.server import SubprocessASGIServer
    assert not SubprocessASGIServer._instances, "Prefect started a temporary server of its own"
print("ran on", api)
"""

def test_without_an_api_flows_run_on_the_server_started_early(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ran on http://127.0.0.1:" in done.stdout


def test_a_configured_api_starts_no_temporary_server(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from rasteret_flows import _prefect_server

    monkeypatch.setattr(_prefect_server, "_server", None)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}), _prefect_server.start_early():
        assert _prefect_server._server is None
        _prefect_server.wait_ready()  # nothing to wait for

"""Small helpers of the pipelines: Delta-safe output types, staging keys, reports, runner choice, the fault proxy."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from infra.local.faults import Fault, FaultProxy
from rasteret_core import ConfigError, Settings
from rasteret_flows._report import summary_markdown
from rasteret_flows._runners import task_runner
from rasteret_tasks._common import stage_folder, widen_unsigned


def test_unsigned_pixels_survive_a_delta_round_trip(tmp_path):
    table = pa.table({"value": pa.array([1, 40000, 65535], pa.uint16()),
                      "data": pa.array([[0, 60000], [1], []], pa.list_(pa.uint16())),
                      "flag": pa.array([1, 2, 255], pa.uint8()), "name": ["a", "b", "c"]})
    widened = widen_unsigned(table)
    assert widened.schema.types == [pa.int32(), pa.list_(pa.int32()), pa.int16(), pa.string()]
    write_deltalake(str(tmp_path / "out"), widened)
    back = DeltaTable(str(tmp_path / "out")).to_pyarrow_table()
    assert back.to_pylist() == table.to_pylist()
    signed = pa.table({"v": pa.array([-1], pa.int16())})
    assert widen_unsigned(signed) is signed


def test_stage_folders_are_deterministic_per_key(tmp_path):
    settings = Settings.from_env({"RASTERET_STAGING_DIR": str(tmp_path)})
    a = stage_folder(settings, "enrich", "s3://b/c", 3, 16, False)
    assert a == stage_folder(settings, "enrich", "s3://b/c", 3, 16, False)
    assert a != stage_folder(settings, "enrich", "s3://b/c", 4, 16, False)
    assert a.startswith(str(tmp_path))


def test_summary_markdown_lists_failures_with_their_columns():
    text = summary_markdown("Run", {"rows": 3, "note": "a|b"},
                            [{"unit": "partition [0, 2)", "error": "boom\nline"}, {"record_id": "x", "error": "bad"}])
    assert "| rows | 3 |" in text and "| note | a\\|b |" in text
    assert "| unit | error | record_id |" in text and "| partition [0, 2) | boom line |  |" in text


def test_task_runner_choice():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(task_runner(None), ThreadPoolTaskRunner)
    assert isinstance(task_runner("threads"), ThreadPoolTaskRunner)
    assert isinstance(task_runner("dask"), DaskTaskRunner)
    assert task_runner("tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    with pytest.raises(ConfigError, match="Dask scheduler address"):
        task_runner("kubernetes")


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        return

    def do_GET(self):
        body = f"{self.command} {self.path} host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


def test_fault_proxy_forwards_unchanged_and_injects_s3_errors():
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy = FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}", [Fault(path=r"^/b/bad", times=1)])
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        def get(path):
            conn = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()

        status, body = get("/b/good?x=1")
        assert status == 200 and body == f"GET /b/good?x=1 host=127.0.0.1:{proxy.server_address[1]}"
        status, body = get("/b/bad")
        assert status == 503 and "<Code>SlowDown</Code>" in body
        assert get("/b/bad")[0] == 200  # only once
        assert proxy.injected_errors == 1 and proxy.faults[0].hits == 2
    finally:
        proxy.shutdown()
        upstream.shutdown()
        proxy.server_close()
        upstream.server_close()

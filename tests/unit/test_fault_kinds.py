"""The fault proxy disturbs answers in each of its ways, and only as many times as asked."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.local.faults import Fault, FaultProxy

BODY = b"0123456789" * 100


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        return

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


@pytest.fixture
def proxy_for(request):
    servers = []

    def start(*faults: Fault) -> FaultProxy:
        upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        proxy = FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}", faults)
        for server in (upstream, proxy):
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        return proxy

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(proxy: FaultProxy, timeout: float = 5, path: str = "/b/k") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_truncate_announces_the_full_length_and_sends_half(proxy_for):
    proxy = proxy_for(Fault(path="^/b/", kind="truncate"))
    with pytest.raises(http.client.IncompleteRead) as info:
        _get(proxy)
    assert len(info.value.partial) == len(BODY) // 2 and info.value.expected == len(BODY) - len(BODY) // 2
    assert _get(proxy) == (200, BODY)  # once only
    assert proxy.injected_by_kind["truncate"] == 1


def test_stall_holds_the_connection_then_hangs_up(proxy_for):
    proxy = proxy_for(Fault(path="^/b/", kind="stall", stall=1.0))
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        _get(proxy, timeout=0.3)
    assert time.monotonic() - start < 1.0
    time.sleep(0.9)  # the stalled handler hangs up
    assert _get(proxy) == (200, BODY)


@pytest.mark.parametrize("kind", ["malformed", "drop"])
def test_malformed_and_dropped_answers_are_protocol_errors(proxy_for, kind):
    proxy = proxy_for(Fault(path="^/b/", kind=kind, times=2))
    for _ in range(2):
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            _get(proxy)
    assert _get(proxy) == (200, BODY)
    assert proxy.injected_by_kind[kind] == 2 and proxy.injected_errors == 2


def test_error_and_replace_answer_in_http(proxy_for):
    proxy = proxy_for(Fault(path="^/b/", status=500, code="InternalError"),
                      Fault(path="^/search", kind="replace", status=200, body="{not json"))
    status, body = _get(proxy)
    assert status == 500 and b"<Code>InternalError</Code>" in body
    assert _get(proxy, path="/search?limit=1") == (200, b"{not json")
    assert _get(proxy) == (200, BODY) == _get(proxy, path="/search")


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="fault kind"):
        Fault(path="x", kind="explode")  # type: ignore[arg-type]

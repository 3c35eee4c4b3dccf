"""A fault-injecting HTTP proxy for S3 (or any HTTP service), on loopback, in its own process.

Clients talk to the proxy as if it were the service: it forwards each request
unchanged (method, path, headers, Host included, so SigV4 signatures still
verify) to the upstream and relays the answer, except for requests matching a
:class:`Fault`, which are delayed, or disturbed a given number of times in one
of these ways (``kind``):

- ``error``: an S3 error in the service's own protocol (``503 SlowDown`` by default);
- ``truncate``: the upstream's answer with its full ``Content-Length`` but only
  half of its body, then the connection is closed;
- ``stall``: no answer at all for ``stall`` seconds, then the connection is closed;
- ``malformed``: bytes that are not an HTTP answer, then the connection is closed;
- ``drop``: the connection is closed without an answer;
- ``replace``: a well-formed answer of status ``status`` with the body ``body``
  (say, ``200`` and text that is not JSON, in front of a STAC API).

It produces what a real store does under load or when broken, which SeaweedFS
on loopback never does by itself::

    with fault_proxy("http://127.0.0.1:8333", [Fault(method="HEAD", path=r"/scene-1/", times=1)]) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.url
        ...
        assert proxy.injected() == 1

The proxy runs as a separate process (``python -m infra.local.faults``): some
clients (deltalake's) hold the GIL while they wait for an answer, which would
starve a proxy thread in the same interpreter. ``GET /__faults__`` on the proxy
answers its counters as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from rasteret_demo.process import HOST, free_port, running

from .cli import interrupt

__all__ = ["Fault", "FaultProxy", "RunningProxy", "fault_proxy", "main"]

CONTROL_PATH = "/__faults__"
FaultKind = Literal["error", "truncate", "stall", "malformed", "drop", "replace"]
KINDS: tuple[str, ...] = ("error", "truncate", "stall", "malformed", "drop", "replace")
_MALFORMED = b"HTTP/1.1 two hundred OK\r\nContent-Length: banana\r\n\r\n<<not http>>"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass(slots=True)
class Fault:
    """Requests to disturb: those whose method and path match.

    Attributes:
        path: A regular expression searched in the request path (``/bucket/key?query``).
        method: ``GET``, ``HEAD``, ``PUT``...; None matches every method.
        times: How many matching requests are disturbed; 0 disturbs none (delay only).
        kind: How they are disturbed (see the module docs).
        status: The HTTP status of an injected error (``error``) or answer (``replace``).
        code: The S3 error code in an ``error``'s XML body.
        body: The body of a ``replace`` answer.
        content_type: The ``Content-Type`` of a ``replace`` answer.
        stall: Seconds a ``stall`` holds the connection before closing it.
        delay: Seconds to wait before handling every matching request (forwarded or not).
        hits: Matching requests seen so far.
    """

    path: str
    method: str | None = None
    times: int = 1
    kind: FaultKind = "error"
    status: int = 503
    code: str = "SlowDown"
    body: str = ""
    content_type: str = "application/json"
    stall: float = 30.0
    delay: float = 0.0
    hits: int = field(default=0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}, got {self.kind!r}")

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request (``path`` is a regular expression)."""
        return (self.method is None or self.method == method) and re.search(self.path, path) is not None


class FaultProxy(ThreadingHTTPServer):
    """The proxy server; see the module docs. Use :func:`fault_proxy` to run one."""

    daemon_threads = True

    def __init__(self, upstream: str, faults: Sequence[Fault], port: int = 0, *, rewrite_links: bool = False) -> None:
        parsed = urlparse(upstream)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.upstream_url = f"http://{parsed.hostname}:{parsed.port or 80}"
        self.rewrite_links = rewrite_links
        self.faults = list(faults)
        self.lock = threading.Lock()
        self.injected_errors = 0
        self.injected_by_kind: dict[str, int] = dict.fromkeys(KINDS, 0)
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        """The proxy's endpoint, ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.server_address[1]}"

    def decide(self, method: str, path: str) -> tuple[float, Fault | None]:
        """The delay for this request and the fault to answer it with (None: forward it)."""
        delay, failing = 0.0, None
        with self.lock:
            for fault in self.faults:
                if not fault.matches(method, path):
                    continue
                fault.hits += 1
                delay = max(delay, fault.delay)
                if failing is None and fault.hits <= fault.times:
                    failing = fault
            if failing is not None:
                self.injected_errors += 1
                self.injected_by_kind[failing.kind] += 1
        return delay, failing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy
    _upstream: http.client.HTTPConnection | None = None  # this client connection's upstream one, for plain GETs

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

    def _handle(self) -> None:
        if self.path == CONTROL_PATH:
            self._answer_counters()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        delay, fault = self.server.decide(self.command, self.path)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.kind != "truncate":
            self._disturb(fault)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if fault is None and not self.server.rewrite_links and self.command == "GET":
            self._relay(headers)
            return
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if self.server.rewrite_links:  # links to the upstream (a STAC API's next page) lead back here
                data = data.replace(self.server.upstream_url.encode(), self.server.url.encode())
            self._send_head(resp, resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)))
            if fault is not None and self.command != "HEAD":  # a truncated body: half of what was announced
                self.wfile.write(data[: len(data) // 2])
                self._hang_up()
            elif fault is not None:  # HEAD has no body to cut: hang up before the headers end
                self._hang_up()
            elif self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    def _relay(self, headers: dict[str, str]) -> None:
        """Forward an undisturbed GET on this client connection's own upstream connection (kept alive across
        its requests) and stream the answer back as it comes: no store-and-forward, no connect per request.
        """
        conn = self._upstream
        for attempt in (1, 2):  # a kept-alive upstream connection the server has since closed: reconnect once
            if conn is None:
                conn = http.client.HTTPConnection(*self.server.upstream, timeout=60)
                self._upstream = conn
            try:
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                conn = self._upstream = None
                if attempt == 2:
                    raise
        assert conn is not None
        length = resp.getheader("Content-Length")
        if length is None:  # no length to announce: read it all, then announce it
            data = resp.read()
            self._send_head(resp, str(len(data)))
            self.wfile.write(data)
        else:
            self._send_head(resp, length)
            while chunk := resp.read(1 << 20):
                self.wfile.write(chunk)
        if resp.will_close:
            conn.close()
            self._upstream = None

    def _send_head(self, resp: http.client.HTTPResponse, length: str) -> None:
        """Relay the upstream answer's status line and end-to-end headers, announcing ``length`` body bytes."""
        self.send_response_only(resp.status, resp.reason)
        self.log_request(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", length)
        self.end_headers()

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    def _disturb(self, fault: Fault) -> None:
        """Answer a matching request as ``fault.kind`` says (anything but ``truncate``)."""
        if fault.kind == "error":
            self._answer_error(fault)
        elif fault.kind == "replace":
            body = fault.body.encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", fault.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        elif fault.kind == "malformed":
            self.log_request("malformed")
            self.wfile.write(_MALFORMED)
            self._hang_up()
        elif fault.kind == "stall":
            self.log_request("stall")
            time.sleep(fault.stall)
            self._hang_up()
        else:  # drop
            self.log_request("drop")
            self._hang_up()

    def _hang_up(self) -> None:
        """Close the client's connection now, whatever was (or was not) sent."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _answer_error(self, fault: Fault) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>injected by the fault '
            "proxy</Message><Resource>{path}</Resource><RequestId>fault-proxy</RequestId></Error>"
        ).format(code=fault.code, path=self.path.split("?")[0]).encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer_counters(self) -> None:
        with self.server.lock:
            body = json.dumps({"injected": self.server.injected_errors,
                               "by_kind": dict(self.server.injected_by_kind),
                               "faults": [dataclasses.asdict(f) for f in self.server.faults]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle


@dataclass(frozen=True, slots=True)
class RunningProxy:
    """A fault proxy running in its own process: its endpoint and its counters."""

    url: str

    def counters(self) -> dict[str, object]:
        """``injected`` (disturbed answers so far), ``by_kind`` (the same per kind) and ``faults`` (each with its ``hits``)."""
        with urllib.request.urlopen(self.url + CONTROL_PATH, timeout=5) as response:
            return json.loads(response.read())

    def injected(self, kind: str | None = None) -> int:
        """How many answers the proxy has disturbed (of one ``kind``, or of every kind)."""
        counters = self.counters()
        if kind is None:
            return int(counters["injected"])  # type: ignore[call-overload]
        return int(counters["by_kind"][kind])  # type: ignore[index]


@contextlib.contextmanager
def fault_proxy(
    upstream: str, faults: Sequence[Fault] = (), *, log_path: Path | None = None, rewrite_links: bool = False
) -> Iterator[RunningProxy]:
    """Run a :class:`FaultProxy` in front of ``upstream`` in a subprocess on a free loopback port.

    Args:
        upstream: ``http://host:port`` of the real service.
        faults: What to disturb.
        log_path: Receives the proxy's request log (default: a temporary file).
        rewrite_links: Replace the upstream's URL by the proxy's in forwarded bodies, so
            that clients following links (a STAC API's search link, its next pages)
            stay behind the proxy.

    Yields:
        The running proxy; it is stopped on exit.
    """
    spec = json.dumps([dataclasses.asdict(f) for f in faults])
    folder = Path(tempfile.mkdtemp(prefix="rasteret-fault-proxy-"))
    log = log_path or folder / "fault-proxy.log"

    def launch() -> tuple[list[str], Callable[[], bool], RunningProxy]:
        proxy = RunningProxy(f"http://{HOST}:{free_port()}")
        argv = [sys.executable, "-m", "infra.local.faults", "--upstream", upstream, "--faults", spec,
                "--port", proxy.url.rsplit(":", 1)[1], *(["--rewrite-links"] if rewrite_links else [])]

        def ready() -> bool:
            proxy.counters()
            return True

        return argv, ready, proxy

    try:
        with running("fault proxy", log, Path(__file__).resolve().parents[2], launch) as proxy:
            yield proxy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a fault proxy until terminated."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.faults", description=main.__doc__)
    parser.add_argument("--upstream", required=True, help="http://host:port of the real service")
    parser.add_argument("--faults", default="[]", help="JSON list of Fault fields")
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free one)")
    parser.add_argument("--rewrite-links", action="store_true", help="point upstream URLs in bodies at the proxy")
    args = parser.parse_args(argv)
    faults = [Fault(**f) for f in json.loads(args.faults)]
    server = FaultProxy(args.upstream, faults, port=args.port, rewrite_links=args.rewrite_links)
    print(f"fault proxy on {server.url} -> {args.upstream}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, interrupt)
    raise SystemExit(main())

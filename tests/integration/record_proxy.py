"""A loopback proxy in front of an S3 endpoint that logs each request's method, path, conditional headers and status.

Usage: ``python record_proxy.py UPSTREAM LOG``: prints its URL, then serves until terminated,
appending one JSON line per request to LOG. The concurrency tests use it to see how
deltalake writes its commits.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import urllib.error
import urllib.request


class _Recorder(http.server.ThreadingHTTPServer):
    """A loopback proxy in front of SeaweedFS that records each request's method, path and conditional headers."""

    def __init__(self, upstream: str, log: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.log, self.lock = upstream, log, threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, format, *args):
        pass

    def _forward(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size) if size else None
        # the loopback SeaweedFS; the signed Host header is passed on as it was
        request = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command,  # noqa: S310
                                         headers=dict(self.headers.items()))
        try:
            with urllib.request.urlopen(request) as answer:  # noqa: S310 - the loopback SeaweedFS
                status, headers, data = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            status, headers, data = exc.code, exc.headers, exc.read()
        conditions = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("if-")}
        with self.server.lock, open(self.server.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"method": self.command, "path": self.path, "conditions": conditions,
                                 "status": status}) + "\n")
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward


def main() -> None:
    server = _Recorder(sys.argv[1], sys.argv[2])
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

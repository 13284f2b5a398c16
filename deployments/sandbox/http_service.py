"""A local HTTP service that fails on command: the demo target and the tests' flaky peer.

Routes:
  GET  /health                 200 {"status": "ok"} (or the scripted failure)
  ANY  /echo                   200 with the request method, path and body size
  GET  /status/{code}          answers that status (Retry-After from ?retry_after=)
  GET  /slow?ms=N              answers after N ms
  POST /control                JSON {"fail_next": N, "fail_status": 503, "retry_after": "1",
                               "latency_ms": 0, "down": false} scripts the next answers
  GET  /stats                  {"requests": N, "times": [...]} arrival times (epoch seconds)
  POST /reset                  clears script and stats

    python -m deployments.sandbox.http_service --port 8701
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from deployments.sandbox.base import LocalServer, serve_main


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.fail_next = 0
        self.fail_status = 503
        self.retry_after: str | None = None
        self.latency_ms = 0.0
        self.down = False
        self.times: list[float] = []


class FlakyService(LocalServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = _State()
        super().__init__((host, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: FlakyService
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive + Nagle + delayed ACK = 40 ms a response

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        body = self._body()
        st = self.server.state
        if url.path == "/control":
            with st.lock:
                for key, value in json.loads(body or b"{}").items():
                    setattr(st, key, value)
            return self._send(200, {"ok": True})
        if url.path == "/reset":
            with st.lock:
                st.reset()
            return self._send(200, {"ok": True})
        if url.path == "/stats":
            with st.lock:
                return self._send(200, {"requests": len(st.times), "times": list(st.times)})
        with st.lock:
            st.times.append(time.time())
            latency = st.latency_ms
            down = st.down
            failing = st.fail_next > 0
            if failing:
                st.fail_next -= 1
            fail_status, retry_after = st.fail_status, st.retry_after
        if latency:
            time.sleep(latency / 1000)
        if down:
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if failing:
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return self._send(fail_status, {"error": "scripted failure"}, headers)
        if url.path == "/health":
            return self._send(200, {"status": "ok"})
        if url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            headers = {"Retry-After": query["retry_after"][0]} if "retry_after" in query else {}
            return self._send(code, {"status": code}, headers)
        if url.path == "/slow":
            time.sleep(float(query.get("ms", ["100"])[0]) / 1000)
            return self._send(200, {"slow": True})
        return self._send(200, {"method": self.command, "path": url.path, "bytes": len(body)})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


def main() -> None:
    serve_main(
        __doc__ or "",
        8701,
        lambda args: FlakyService(args.host, args.port),
        lambda server: f"flaky HTTP service on {server.url}",
    )


if __name__ == "__main__":
    main()

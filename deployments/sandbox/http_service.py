"""A local HTTP service that fails on command: the demo target and the tests' flaky peer.

Routes:
  GET  /health                 200 {"status": "ok"} (or the scripted failure)
  ANY  /echo                   200 with the request method, path and body size
  GET  /status/{code}          answers that status (Retry-After from ?retry_after=)
  GET  /slow?ms=N              answers after N ms
  POST /control                JSON {"fail_next": N, "fail_status": 503, "retry_after": "1",
                               "latency_ms": 0, "down": false} scripts the next answers
                               (400 for a key it does not know)
  GET  /stats                  {"requests": N, "times": [...]} arrival times (epoch seconds)
  POST /reset                  clears script and stats

    python -m deployments.sandbox.http_service --port 8701
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

from deployments.sandbox.base import Faults, JsonHandler, LocalServer, serve_main


class _State(Faults):
    def reset(self) -> None:
        super().reset()
        self.times: list[float] = []


class FlakyService(LocalServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = _State()
        super().__init__((host, port), _Handler)


class _Handler(JsonHandler):
    server: FlakyService

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        body = self._read_body()
        st = self.server.state
        if self._script(url.path, body, st):
            return None
        if url.path == "/stats":
            with st.lock:
                return self._send(200, {"requests": len(st.times), "times": list(st.times)})
        with st.lock:
            st.times.append(time.time())
            fault = st.take()
        if self._stall(fault) or self._fail(fault):
            return None
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

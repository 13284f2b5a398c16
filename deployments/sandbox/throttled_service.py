"""A local HTTP service that throttles above a rate it does not announce.

Like Atlassian Cloud, GitHub or Slack, it answers `429 Too Many Requests` with a
`Retry-After` in seconds (RFC 6585 section 4, RFC 9110 section 10.2.3) once a client goes
over its hidden rate; below it every request is served. The rate is a token bucket of
`rate` per second holding one second of requests, shared by every client.

Routes:
  ANY  /work     200, or 429 with Retry-After when over the hidden rate
  GET  /stats    {"ok": N, "throttled": N}
  POST /reset    clears the counts and refills the bucket

    python -m deployments.sandbox.throttled_service --port 8709 --rate 8
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

from deployments.sandbox.base import JsonHandler, LocalServer, serve_main


class TokenBucket:
    """`rate` tokens a second, at most `rate * burst_seconds` saved up."""

    def __init__(
        self, rate: float, burst_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.capacity, self.clock = rate, max(1.0, rate * burst_seconds), clock
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.tokens, self.at = self.capacity, self.clock()
            self.ok = self.throttled = 0

    def take(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                self.ok += 1
                return True
            self.throttled += 1
            return False


class ThrottledService(LocalServer):
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, rate: float = 8.0, retry_after: int = 1
    ) -> None:
        self.bucket = TokenBucket(rate)
        self.retry_after = retry_after
        super().__init__((host, port), _Handler)


class _Handler(JsonHandler):
    server: ThrottledService

    def _handle(self) -> None:
        self._read_body()
        bucket = self.server.bucket
        if self.path == "/stats":
            with bucket.lock:
                return self._send(200, {"ok": bucket.ok, "throttled": bucket.throttled})
        if self.path == "/reset" and self.command == "POST":
            bucket.reset()
            return self._send(200, {"reset": True})
        if not bucket.take():
            headers = {"Retry-After": str(self.server.retry_after)}
            return self._send(429, {"message": "Rate limit exceeded"}, headers)
        return self._send(200, {"path": self.path})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=8.0, help="hidden requests per second")


def main() -> None:
    serve_main(
        __doc__ or "",
        8709,
        lambda args: ThrottledService(args.host, args.port, rate=args.rate),
        lambda server: f"throttled HTTP service on {server.url} ({server.bucket.rate}/s)",
        _arguments,
    )


if __name__ == "__main__":
    main()

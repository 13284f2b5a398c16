"""What every stand-in server shares: a threaded loopback server and its command line, a
JSON request handler, and the scripted faults (fail the next N, answer late, drop the line)."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar


class LocalServer(ThreadingHTTPServer):
    """A stand-in's HTTP server: `.start()` serves on a background thread, `.url`, `.stop()`."""

    daemon_threads = True
    allow_reuse_address = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass(frozen=True)
class Fault:
    """What the faults script does to one request."""

    latency_ms: float = 0.0
    down: bool = False
    status: int | None = None  # a scripted failure's status; None: the request goes through
    retry_after: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class Faults:
    """A stand-in's scripted faults; subclasses add the records they keep (reset with them).

    `control(**script)` sets any attribute that exists (the JSON of `POST /control`);
    `take()` answers what the next request gets, counting down `fail_next`.
    """

    def __init__(self, *, fail_status: int = 503, retry_after: str | None = None) -> None:
        self.lock = threading.RLock()
        self._failure = (fail_status, retry_after)
        self.reset()

    def reset(self) -> None:
        self.fail_next = 0
        self.fail_status, self.retry_after = self._failure
        self.latency_ms = 0.0
        self.down = False  # drop the connection without an answer

    def control(self, **script: Any) -> None:
        with self.lock:
            for key, value in script.items():
                if not hasattr(self, key):
                    raise AttributeError(key)
                setattr(self, key, value)

    def take(self, *, fail: bool = False) -> Fault:
        """The next request's fault; `fail` fails it even when `fail_next` is spent."""
        with self.lock:
            failing = self.fail_next > 0 or fail
            if self.fail_next > 0:
                self.fail_next -= 1
            status = self.fail_status if failing else None
            return Fault(self.latency_ms, self.down, status, self.retry_after)


class JsonHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: JSON answers on keep-alive connections, no access log."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive + Nagle + delayed ACK = 40 ms a response
    content_type = "application/json"
    ensure_ascii = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """`body` as JSON; bytes as they are; None: no body (and no Content-Type)."""
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body, ensure_ascii=self.ensure_ascii).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _script(self, path: str, body: bytes, faults: Faults) -> bool:
        """`/control` (a JSON script for `faults`) and `/reset`; False for any other path."""
        if path == "/control":
            try:
                faults.control(**json.loads(body or b"{}"))
            except (AttributeError, TypeError, ValueError) as exc:
                self._send(400, {"error": f"bad control: {exc}"})
                return True
        elif path == "/reset":
            with faults.lock:
                faults.reset()
        else:
            return False
        self._send(200, {"ok": True})
        return True

    def _stall(self, fault: Fault) -> bool:
        """Wait the scripted latency; drop the connection when down (then True)."""
        if fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault.down:
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        return False

    def _fail(self, fault: Fault) -> bool:
        """Answer the scripted failure, if this request has one (then True)."""
        if fault.status is None:
            return False
        self._send(fault.status, {"error": "scripted failure"}, fault.headers)
        return True


S = TypeVar("S", bound=LocalServer)


def serve_main(
    description: str,
    default_port: int,
    make: Callable[[argparse.Namespace], S],
    banner: Callable[[S], str],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """`python -m deployments.sandbox.<name> --host H --port P [...]`: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    if add_arguments is not None:
        add_arguments(parser)
    server = make(parser.parse_args())
    print(banner(server), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

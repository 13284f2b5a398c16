"""A TCP round-robin balancer: the local stand-in for the load balancer an operator runs.

    python -m nura.platform.balancer --listen 127.0.0.1:4200 \
        --backend 127.0.0.1:4301 --backend 127.0.0.1:4302

Each new connection goes to the next backend that accepts it; a backend that refuses is
skipped for `--down-for` seconds. A connection stays on its backend (HTTP keep-alive), so
a backend that dies drops its connections and the clients' retries land on the others.

A connection whose first request is idempotent (GET, HEAD, OPTIONS, its whole head in the
first read) and whose backend closes before answering a byte - it died after accepting -
is replayed on the next backend, as nginx's default `proxy_next_upstream error` does. A
WebSocket handshake is such a GET, and Prefect's events client does not retry a handshake
that got no response (`InvalidMessage`): a process worker then crashes the run it was
submitting (seen in the HA fault test when an API server was killed). Anything else
(a POST the dead backend may have acted on) is not replayed: the client sees the close.
Hand-rolled (about what HAProxy's `balance roundrobin` does) because `nura ha up` must run
wherever Python does and the machine has no nginx/HAProxy; production puts any HTTP load
balancer with health checks here (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


class Balancer:
    def __init__(
        self, backends: Sequence[Address], *, down_for: float = 2.0, connect_timeout: float = 2.0
    ) -> None:
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        self.backends = list(backends)
        self.down_for = down_for
        self.connect_timeout = connect_timeout
        self._next = itertools.cycle(range(len(self.backends)))
        self._down_until: dict[Address, float] = {}

    def _order(self) -> list[Address]:
        start = next(self._next)
        ring = self.backends[start:] + self.backends[:start]
        now = time.monotonic()
        up = [b for b in ring if self._down_until.get(b, 0.0) <= now]
        return up + [b for b in ring if b not in up]  # all down: try them anyway

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.read(65536)
        except (ConnectionError, OSError):
            first = b""
        if not first:
            _close(writer)
            return
        replayable = _replayable(first)
        for backend in self._order():
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*backend), self.connect_timeout
                )
            except (OSError, TimeoutError):
                self._down_until[backend] = time.monotonic() + self.down_for
                continue
            answer = b""
            try:
                up_writer.write(first)
                await up_writer.drain()
                if replayable:  # the whole request was sent: wait for the answer to begin
                    answer = await up_reader.read(65536)
            except (ConnectionError, OSError):
                pass
            if replayable and not answer:  # closed without a byte: it died; try the next
                self._down_until[backend] = time.monotonic() + self.down_for
                _close(up_writer)
                continue
            try:
                writer.write(answer)
                await writer.drain()
            except (ConnectionError, OSError):
                _close(up_writer)
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        _close(writer)  # no backend: the client sees the connection close

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self.handle, host, port, backlog=1024)
        async with server:
            await server.serve_forever()


def _replayable(first: bytes) -> bool:
    """An idempotent request without a body that came in whole (its head ends the read)."""
    if first.split(b" ", 1)[0] not in (b"GET", b"HEAD", b"OPTIONS"):
        return False
    head = first.lower()
    has_body = b"transfer-encoding:" in head or (
        b"content-length:" in head and b"content-length: 0\r\n" not in head
    )
    return first.endswith(b"\r\n\r\n") and not has_body


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        _close(writer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--backend", action="append", required=True, help="host:port")
    parser.add_argument("--down-for", type=float, default=2.0)
    args = parser.parse_args(argv)
    host, port = parse_address(args.listen)
    balancer = Balancer([parse_address(b) for b in args.backend], down_for=args.down_for)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(balancer.serve(host, port))


if __name__ == "__main__":
    main()

"""A TCP round-robin balancer: the local stand-in for the load balancer an operator runs.

    python -m nura.platform.balancer --listen 127.0.0.1:4200 \
        --backend 127.0.0.1:4301 --backend 127.0.0.1:4302

Each new connection goes to the next backend that accepts it; a backend that refuses is
skipped for `--down-for` seconds. A connection stays on its backend (HTTP keep-alive), so
a backend that dies drops its connections and the clients' retries land on the others.
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
        for backend in self._order():
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*backend), self.connect_timeout
                )
            except (OSError, TimeoutError):
                self._down_until[backend] = time.monotonic() + self.down_for
                continue
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()  # no backend: the client sees the connection close

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self.handle, host, port, backlog=1024)
        async with server:
            await server.serve_forever()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


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

"""The HA layout's TCP balancer (`nura.platform.balancer`), in one event loop: backends
that die after accepting a connection, as a SIGKILLed API server does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nura.platform.balancer import Balancer, _replayable

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
GET = b"GET /api/events/in HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
POST = b"POST /api/flow_runs/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _dies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, reads the request, closes without a byte of answer."""
    await reader.read(65536)
    writer.close()


async def _answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(OK)
    await writer.drain()
    writer.close()


async def _through(request: bytes, first: Handler, second: Handler) -> tuple[bytes, list[str]]:
    """Send `request` through a balancer whose first backend is `first`; the answer and
    which backends saw a connection."""
    seen: list[str] = []

    def tag(name: str, handler: Handler) -> Handler:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(name)
            await handler(reader, writer)

        return run

    one = await asyncio.start_server(tag("first", first), "127.0.0.1", 0)
    two = await asyncio.start_server(tag("second", second), "127.0.0.1", 0)
    ports = [s.sockets[0].getsockname()[1] for s in (one, two)]
    balancer = Balancer([("127.0.0.1", p) for p in ports])
    front = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(*front.sockets[0].getsockname()[:2])
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer, seen
    finally:
        for server in (front, one, two):
            server.close()
            await server.wait_closed()


def test_a_get_whose_backend_dies_before_answering_goes_to_the_next() -> None:
    answer, seen = asyncio.run(_through(GET, _dies, _answers))
    assert answer == OK and seen == ["first", "second"]


def test_a_post_is_never_replayed_the_client_sees_the_close() -> None:
    answer, seen = asyncio.run(_through(POST, _dies, _answers))
    assert answer == b"" and seen == ["first"]  # the dead backend may have acted on it


def test_answers_pass_through_unchanged() -> None:
    assert asyncio.run(_through(GET, _answers, _answers)) == (OK, ["first"])
    assert asyncio.run(_through(POST, _answers, _answers)) == (OK, ["first"])


def test_what_may_be_replayed() -> None:
    assert _replayable(GET)
    assert _replayable(b"HEAD / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert not _replayable(POST)
    assert not _replayable(GET[:-2])  # the head did not come in whole
    assert not _replayable(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")  # a body follows
    assert not _replayable(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")

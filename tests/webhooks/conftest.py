"""Fixtures of the webhook tests: the Prefect API in settings, a running receiver, fake GitHub."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from nura.platform.processes import wait_until
from tests.support.servers import free_port


@pytest.fixture(scope="session")
def prefect_server(prefect_server):  # type: ignore[no-untyped-def]
    """The session server, also in Prefect's settings (they were read at import).

    Threads (the call layer's rate-limit leaser) read the process-global context, hence both.
    """
    from tests.support.prefect_settings import prefect_settings

    with prefect_settings(prefect_server.api_url):
        yield prefect_server


class ReceiverThread:
    """The receiver app under a real uvicorn server, in a background thread.

    `served=True`: with the settings `nura webhooks serve` uses (`server_config`: the
    concurrency limit and the rest), from the app's own config.
    """

    def __init__(self, app: Any, port: int | None = None, *, served: bool = False) -> None:
        self.port = port or free_port()
        self.app = app
        if served:
            from nura.platform.receiver_app import server_config

            config = server_config(app, app.state.receiver.cfg, "127.0.0.1", self.port)
        else:
            config = uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
            )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReceiverThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("receiver did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def fake_github() -> Iterator[Any]:
    from deployments.sandbox.github_server import FakeGitHub

    server = FakeGitHub().start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll a real external process's progress (no clock to inject there)."""
    return wait_until(predicate, timeout, "condition not met", interval=interval)


@pytest.fixture
def engine(tmp_path):  # type: ignore[no-untyped-def]
    """A fresh SQLite inbox store for this test."""
    from nura.core.stores.db import get_engine

    return get_engine(f"sqlite:///{tmp_path / 'inbox.db'}")


@pytest.fixture
def clock() -> Any:
    from tests.webhooks.helpers import Clock

    return Clock()

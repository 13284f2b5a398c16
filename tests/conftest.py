"""Session fixtures: one real Prefect server (PostgreSQL), one moto server, store backends.

Unit tests need none of these; integration tests ask for them by name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import PrefectServer, free_port, postgres_available, temp_database

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Tests never attach to a stack a developer may be running from this checkout.
os.environ["NURA_NO_ATTACH"] = "1"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

requires_postgres = pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not running"
)


@pytest.fixture(scope="session", autouse=True)
def _no_flow_heartbeat() -> Iterator[None]:
    """Flows in tests do not wait for Prefect's heartbeat thread (a 1 s floor per run).

    The setting cannot be unset through the environment (it parses as an int), hence here.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(autouse=True)
def _stop_prefect_background_services() -> Iterator[None]:
    """After each test, stop the background services Prefect started in this process.

    Its events worker (a websocket whose keepalive pings draw from the global `random`)
    and its API log worker (retry jitter from the global `random`, for a server a test
    may have stopped) would otherwise outlive the test and run during later ones; that
    moved the global random state while Hypothesis drew examples and failed CI.
    They restart on next use.
    """
    yield
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10)
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """A real Prefect server on its own PostgreSQL database; PREFECT_API_URL points at it."""
    with temp_database("nura_prefect") as db:
        server = PrefectServer(db).start()
        previous = os.environ.get("PREFECT_API_URL")
        # Subprocesses read the environment; this process's Prefect settings were read at
        # import, so they are switched with temporary_settings as well.
        os.environ["PREFECT_API_URL"] = server.api_url
        # Threads (the rate-limit leaser's refill, task runners) read Prefect's
        # process-global settings context, hence that one is switched too.
        from tests.support.prefect_settings import prefect_settings

        try:
            with prefect_settings(server.api_url):
                yield server
        finally:
            server.stop()
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode (real HTTP) for S3, SES, CloudWatch; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_reset(moto_endpoint: str) -> str:
    """moto with a clean state for this test."""
    import httpx

    httpx.post(f"{moto_endpoint}/moto-api/reset")
    return moto_endpoint


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every store test runs on both backends."""
    from nura.core.stores.db import reset_engines

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nura.db'}"
    else:
        with temp_database("nura_store") as db:
            yield db.replace("postgresql://", "postgresql+psycopg://")
            reset_engines()
    reset_engines()


@pytest.fixture
def nura_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory: write this test's integrations.yaml, point NURA_CONFIG at it, reset the runtime.

    cfg = nura_config({"external_services": {"partners": {"demo": {"base_url": url}}}})
    """
    from nura.core.runtime import reset_runtime

    def make(data: dict[str, Any], store: str | None = None):
        from nura.config import load_config

        path = tmp_path / "integrations.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("NURA_CONFIG", str(path))
        monkeypatch.setenv("NURA_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("NURA_STORE_URL", store or f"sqlite:///{tmp_path / 'nura.db'}")
        reset_runtime()
        return load_config(path)

    yield make
    reset_runtime()


@pytest.fixture
def flaky_service():
    """A local HTTP service that fails on command (see deployments.sandbox.http_service)."""
    from deployments.sandbox.http_service import FlakyService

    server = FlakyService().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack() -> Iterator[tuple[Any, dict[str, Any]]]:
    """One sandbox stack (`nura up --detach --no-runs`) shared by the whole-stack tests."""
    from tests.platform.stack_support import TempStack

    s = TempStack()
    try:
        yield s, s.up("--no-runs")
    finally:
        s.down()


@pytest.fixture
def slack() -> Iterator[Any]:
    """A Slack incoming-webhook stand-in (the webhook sink) for alert and notice tests."""
    from deployments.sandbox.webhook_sink import WebhookSink

    server = WebhookSink().start()
    try:
        yield server
    finally:
        server.stop()

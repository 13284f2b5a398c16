"""The watch end to end: Confluence test server (HTTP) -> confluence-watch -> Prefect event ->
the bootstrap automation -> confluence-page-ingest on a real worker -> moto S3.

No scheduler clock: the test runs the watch flow itself, twice after an edit (two poll
intervals). "Exactly one ingest run" is checked after a barrier: a later event (another
page's edit) whose ingest run has finished, so every earlier event was handled by then
(Prefect's trigger service takes events in order)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.confluence.conftest import EMAIL, TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DEPLOYMENTS = {"confluence-page-ingest", "confluence-watch"}
_STARTED: list[datetime] = []  # when the running test's environment was set up
WATCH_ROUTE = "confluence-watch/confluence-watch"


@pytest.fixture
def watch_env(confluence: Any, moto_reset: str, prefect_server: Any, nura_config: Any, monkeypatch):
    """Config (the test server, moto S3, a work pool of this test, the packaged webhook
    routing: page edits and trash to the watch), the two deployments without schedules, the
    automation (bootstrapped three times) and a process worker."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nura.config.loader import DEFAULT_PATH, load_config

    monkeypatch.setenv("CONFLUENCE_EMAIL", EMAIL)
    monkeypatch.setenv("CONFLUENCE_API_TOKEN", TOKEN)
    endpoint = load_config(DEFAULT_PATH).webhooks.incoming["confluence_updates"]
    pool = f"nura-watch-{uuid.uuid4().hex[:8]}"
    cfg = nura_config(
        {
            "platform": {"work_pool": pool},
            "kb": {"enabled": False},  # no embeddings here: the watch is the subject
            "api_gateway": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
            "external_services": {
                "aws": {
                    "endpoint_url": moto_reset,
                    "s3": {"bucket_name": "nura-kb-watch", "rate_limit_per_minute": 60000},
                },
                "confluence": {
                    "base_url": confluence.url,
                    "rate_limit_per_minute": 60000,
                    "spaces": ["TECH", "DOCS"],
                    "credentials_block": "nura-test-no-such-block",
                    "process_pool_min_pages": 10_000,
                },
            },
            "webhooks": {"incoming": {"confluence_updates": endpoint.model_dump(mode="json")}},
        }
    )
    _STARTED.append(datetime.now(UTC))
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        automations = _bootstrap(cfg)
        worker = _start_worker(pool, prefect_server.api_url)
        try:
            yield cfg, automations
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)


def _bootstrap(cfg: Any) -> int:
    from prefect.client.orchestration import get_client

    from nura.confluence.watch import AUTOMATION
    from nura.platform.bootstrap import (
        BootstrapReport,
        apply_deployments,
        ensure_watch_automation,
        ensure_work_pool,
        load_flows,
        load_specs,
    )

    specs = [s for s in load_specs(cfg) if s.name in DEPLOYMENTS]
    for spec in specs:
        spec.interval_seconds = None  # the test runs the watch; no scheduled polls
    asyncio.run(ensure_work_pool(cfg))
    asyncio.run(apply_deployments(cfg, load_flows(specs, BootstrapReport()), BootstrapReport()))
    for _ in range(3):  # bootstrap again and again: still one automation
        asyncio.run(ensure_watch_automation())

    async def count() -> int:
        async with get_client() as client:
            return len(await client.read_automations_by_name(AUTOMATION))

    return asyncio.run(count())


def _start_worker(pool: str, api_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _runs(deployment: str, page_id: str) -> list[Any]:
    """Flow runs of `deployment` (flow/name) created by this test whose parameters name
    `page_id` (each test has a new test server: page ids repeat between tests)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            dep = await client.read_deployment_by_name(deployment)
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
            )
        return [
            r
            for r in runs
            if str(r.parameters.get("page_id")) == page_id and r.created >= _STARTED[-1]
        ]

    return asyncio.run(read())


def _wait(what: str, ready: Callable[[], Any], timeout: float = 240.0) -> Any:
    """Poll until `ready()` is truthy; the timeout only stops a broken run from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _finished(deployment: str, page_id: str) -> list[Any]:
    runs = _runs(deployment, page_id)
    if runs and all(r.state and r.state.is_final() for r in runs):
        return runs
    return []


def _version(key: str) -> str | None:
    from nura.kb import s3

    head = s3.head_document(key)
    return head["Metadata"]["version"] if head else None


def _deliver_webhook(cfg: Any, tmp_path: Any, payload: dict[str, Any], delivery: str) -> None:
    """A delivery as the receiver stores it (the inbox), then dispatched to the Prefect
    server by the real dispatcher (the packaged routing: `confluence.page.updated` -> the
    watch)."""
    import json

    from nura.core.stores.db import get_engine
    from nura.core.stores.inbox import Delivery, InboxWriter
    from nura.webhooks.dispatcher import Dispatcher

    engine = get_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    writer = InboxWriter(engine).start()
    try:
        stored = Delivery(
            "confluence_updates",
            delivery,
            "confluence.page.updated",
            json.dumps(payload).encode(),
            "application/json",
        )
        assert asyncio.run(writer.write(stored))
    finally:
        writer.stop()
    assert asyncio.run(Dispatcher(engine, cfg).run_until_empty()) == 1


def test_edit_reaches_s3_within_two_polls_with_one_ingest_run(
    confluence: Any, watch_env: Any, tmp_path: Any
) -> None:
    from flows.confluence_sync import confluence_sync
    from flows.confluence_watch import confluence_watch
    from nura.confluence.watch import PageChange, emit_changes

    cfg, automations = watch_env
    assert automations == 1
    confluence.generate(["TECH", "DOCS"], 3, body_bytes=300)
    confluence_sync()  # the knowledge base as the scheduled sync left it
    page, barrier = (
        sorted(p["id"] for p in confluence.space_pages(s))[0] for s in ("TECH", "DOCS")
    )
    key = f"confluence/TECH/{page}.md"
    assert _version(key) == "1"
    assert confluence_watch()["updated"] == 0  # the first poll: nothing new, trash baseline

    edited, edited_at = time.monotonic(), datetime.now(UTC)
    confluence.edit(page)
    confluence.stats.clear()
    first, second = confluence_watch(), confluence_watch()  # two poll intervals
    assert (first["updated"], second["updated"]) == (1, 0)
    assert confluence.stats["GET /wiki/rest/api/content/search"] == 2
    (run,) = _wait(
        "the ingest run", lambda: _finished("confluence-sync/confluence-page-ingest", page)
    )
    latency = time.monotonic() - edited
    assert run.state.is_completed(), run.state
    assert _version(key) == "2"
    print(
        f"edit -> S3 object v2: {latency:.1f} s; ingest run created "
        f"{(run.created - edited_at).total_seconds():.1f} s after the edit (two polls, the "
        f"automation), started {(run.start_time - run.created).total_seconds():.1f} s later "
        f"(worker, process start), ran {(run.end_time - run.start_time).total_seconds():.1f} s"
    )

    # The same version again: re-emitted (a second watch, a lost state) and by webhook.
    emit_changes([PageChange("updated", page, "TECH", 2, "x")], datetime.now(UTC))
    forge = {
        "eventType": "avi:confluence:updated:page",
        "atlassianId": "5b10ac8d82e05b22cc7d4ef5",
        "content": {"id": page, "type": "page", "status": "current", "title": "T",
                    "space": {"id": 1, "key": "TECH", "name": "TECH", "type": "global"}},
    }  # fmt: skip
    _deliver_webhook(cfg, tmp_path, forge, "watch-e2e-1")
    (hinted,) = _wait("the webhook's watch run", lambda: _finished(WATCH_ROUTE, page))
    assert hinted.state.is_completed(), hinted.state

    # The other order: the webhook first (the watch reads the page: v3), then the poll.
    confluence.edit(page)
    delivered = datetime.now(UTC)
    _deliver_webhook(cfg, tmp_path, forge, "watch-e2e-2")
    _wait("the second webhook's watch run", lambda: len(_finished(WATCH_ROUTE, page)) == 2)
    assert confluence_watch()["updated"] == 0  # the webhook's watch reported v3 already

    # Barrier: a later edit's event, ingested; every event before it was handled by then.
    confluence.edit(barrier)
    assert confluence_watch()["updated"] == 1
    _wait(
        "the barrier's ingest", lambda: _finished("confluence-sync/confluence-page-ingest", barrier)
    )
    # v2 (poll, re-emitted, webhook) and v3 (webhook, poll): one ingest run each.
    assert len(_runs("confluence-sync/confluence-page-ingest", page)) == 2
    ingested = _wait(
        "the v3 ingest", lambda: _finished("confluence-sync/confluence-page-ingest", page)
    )
    assert all(r.state.is_completed() for r in ingested)
    assert _version(key) == "3"
    watch_run = max(_runs(WATCH_ROUTE, page), key=lambda r: r.created)
    ingest_run = max(ingested, key=lambda r: r.created)

    def secs(a: datetime, b: datetime) -> str:
        return f"{(b - a).total_seconds():.1f} s"

    print(
        f"webhook -> S3 object v3: {secs(delivered, ingest_run.end_time)} (watch run "
        f"{secs(watch_run.created, watch_run.end_time)} from creation, ingest run created "
        f"{secs(watch_run.end_time, ingest_run.created)} after it, ran "
        f"{secs(ingest_run.created, ingest_run.end_time)} from creation)"
    )
    assert _version(f"confluence/DOCS/{barrier}.md") == "2"


def test_trash_reaches_s3_with_one_ingest_run(confluence: Any, watch_env: Any) -> None:
    from datetime import timedelta

    from flows.confluence_sync import confluence_sync
    from flows.confluence_watch import confluence_watch
    from nura.confluence.watch import run_watch

    confluence.generate(["TECH", "DOCS"], 2, body_bytes=300)
    confluence_sync()
    page = sorted(p["id"] for p in confluence.space_pages("TECH"))[0]
    assert _version(f"confluence/TECH/{page}.md") == "1"
    confluence_watch()  # baseline (the first poll checks the trash)
    confluence.trash(page)
    assert confluence_watch()["removed"] == 0  # the trash is checked every 5 minutes
    # the poll when the next check is due (an injected clock, no waiting)
    assert run_watch(now=datetime.now(UTC) + timedelta(minutes=6))["removed"] == 1
    ingest = "confluence-sync/confluence-page-ingest"
    (run,) = _wait("the removal's ingest", lambda: _finished(ingest, page))
    assert run.state.is_completed(), run.state
    assert _version(f"confluence/TECH/{page}.md") is None

"""End to end: signed push -> receiver -> inbox -> dispatcher -> Prefect -> git-ingest -> S3."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from nura.webhooks.blocks import WebhookSecret
from tests.webhooks.conftest import ReceiverThread, wait_for
from tests.webhooks.helpers import SECRET, github_headers

pytestmark = pytest.mark.integration


def _config(moto: str, git_url: str) -> dict[str, Any]:
    return {
        "external_services": {
            "aws": {"endpoint_url": moto, "s3": {"bucket_name": "kb-test"}},
            "git": {
                "base_url": git_url,
                "branches": ["main"],
                "max_file_bytes": 64,
                "repositories": ["octo/docs"],
            },
        },
        "webhooks": {
            "incoming": {
                "git_updates": {
                    "url_path": "/webhooks/git",
                    "event_types": ["git.push"],
                    "scheme": "github",
                    "rate_limit_per_minute": 600,
                }
            },
            "dispatcher": {"poll_interval_seconds": 0.05, "outage_probe_max_seconds": 0.5},
        },
    }


def _deploy(api_url: str) -> str:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.git_ingest import git_ingest

    with temporary_settings({PREFECT_API_URL: api_url}):
        return str(git_ingest.to_deployment(name="git-ingest").apply())


async def _runs(api_url: str, deployment_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=api_url + "/") as c:
        r = await c.post(
            "flow_runs/filter", json={"deployments": {"id": {"any_": [deployment_id]}}}
        )
        r.raise_for_status()
        return r.json()


def runs(api_url: str, deployment_id: str) -> list[dict[str, Any]]:
    return asyncio.run(_runs(api_url, deployment_id))


def execute(run_id: str) -> Any:
    """Run a scheduled flow run in this process, as a worker would."""
    from prefect import get_client
    from prefect.flow_engine import run_flow

    from flows.git_ingest import git_ingest

    async def read():
        async with get_client() as client:
            return await client.read_flow_run(run_id)

    flow_run = asyncio.run(read())
    return run_flow(git_ingest, flow_run=flow_run, parameters=flow_run.parameters)


def test_signed_push_creates_exactly_one_run_that_stores_files(
    prefect_server, moto_reset, fake_github, nura_config, tmp_path
):
    from nura.core.aws_clients import aws_client
    from nura.core.stores.db import get_engine
    from nura.core.stores.inbox import get_entry
    from nura.kb.s3 import ensure_bucket
    from nura.platform.receiver_app import create_app

    cfg = nura_config(_config(moto_reset, fake_github.url))
    ensure_bucket()
    sha1 = fake_github.commit(
        "octo",
        "docs",
        {
            "README.md": b"# Docs\n",
            "docs/a.md": b"A\n",
            "logo.png": b"\x89PNG\x00\x01",
            "big.txt": b"x" * 100,
        },
    )
    sha2 = fake_github.commit(
        "octo", "docs", {"README.md": b"# Docs v2\n", "docs/a.md": None, "docs/b.md": b"B\n"}
    )
    deployment_id = _deploy(prefect_server.api_url)
    engine = get_engine(f"sqlite:///{tmp_path / 'nura.db'}")
    app = create_app(
        cfg,
        engine=engine,
        secrets={"git_updates": WebhookSecret(scheme="github", current=SecretStr(SECRET))},
        run_dispatcher=True,
        api_url=prefect_server.api_url,
    )
    receiver = ReceiverThread(app).start()
    try:
        # First push: a new branch (no base), then an update (compare API).
        first = json.dumps(fake_github.push_payload("octo", "docs", "0" * 40, sha1)).encode()
        r = httpx.post(
            f"{receiver.url}/webhooks/git", content=first, headers=github_headers(first, "del-1")
        )
        assert r.status_code == 202, r.text
        entry = wait_for(
            lambda: (e := get_entry(engine, "git_updates", "del-1")) and e["flow_run_id"] and e
        )
        assert entry["status"] == "dispatched"
        found = runs(prefect_server.api_url, deployment_id)
        assert [f["id"] for f in found] == [entry["flow_run_id"]]
        summary = execute(entry["flow_run_id"])
        assert (
            summary["stored"] == 2 and summary["skipped"] == 2
        )  # logo.png binary, big.txt too large

        s3 = aws_client("s3")
        head = s3.head_object(Bucket="kb-test", Key="git/octo/docs/main/README.md")
        assert head["ServerSideEncryption"] == "AES256"
        assert head["Metadata"]["commit"] == sha1 and len(head["Metadata"]["sha256"]) == 64
        assert (
            head["Metadata"]["source-url"] == f"https://github.com/octo/docs/blob/{sha1}/README.md"
        )

        # The same delivery again: 200 duplicate and no second run.
        again = httpx.post(
            f"{receiver.url}/webhooks/git", content=first, headers=github_headers(first, "del-1")
        )
        assert again.status_code == 200 and again.json()["status"] == "duplicate"

        second = json.dumps(fake_github.push_payload("octo", "docs", sha1, sha2)).encode()
        r = httpx.post(
            f"{receiver.url}/webhooks/git", content=second, headers=github_headers(second, "del-2")
        )
        assert r.status_code == 202
        entry2 = wait_for(
            lambda: (e := get_entry(engine, "git_updates", "del-2")) and e["flow_run_id"] and e
        )
        summary = execute(entry2["flow_run_id"])
        assert summary["stored"] == 2 and summary["deleted"] == 1
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="kb-test")["Contents"]}
        assert keys == {"git/octo/docs/main/README.md", "git/octo/docs/main/docs/b.md"}
        body = s3.get_object(Bucket="kb-test", Key="git/octo/docs/main/README.md")["Body"].read()
        assert body == b"# Docs v2\n"
        assert len(runs(prefect_server.api_url, deployment_id)) == 2

        # Re-dispatching an entry (a crash between run creation and the mark) reuses the run.
        from sqlalchemy import update

        from nura.core.stores.inbox import inbox

        with engine.begin() as conn:
            conn.execute(
                update(inbox).where(inbox.c.delivery_id == "del-2").values(status="accepted")
            )
        receiver.app.state.receiver.dispatcher.poke()
        again2 = wait_for(
            lambda: (
                (e := get_entry(engine, "git_updates", "del-2")) and e["status"] != "accepted" and e
            )
        )
        assert again2["flow_run_id"] == entry2["flow_run_id"]
        assert len(runs(prefect_server.api_url, deployment_id)) == 2
    finally:
        receiver.stop()


def test_deliveries_accepted_while_prefect_is_down_are_dispatched_after(
    prefect_server, nura_config, tmp_path
):
    """Prefect API stopped: 202 for every delivery; once it is back, each gets its one run.

    The session server is stopped and restarted on the same port and database (a second
    server of our own would cost another 30-60 s of start-up on this machine).
    """
    from nura.core.stores.db import get_engine
    from nura.core.stores.inbox import status_counts
    from nura.platform.receiver_app import create_app

    server = prefect_server
    cfg = nura_config(_config("http://127.0.0.1:9", "http://127.0.0.1:9"))
    deployment_id = _deploy(server.api_url)
    before = len(runs(server.api_url, deployment_id))
    engine = get_engine(f"sqlite:///{tmp_path / 'nura.db'}")
    app = create_app(
        cfg,
        engine=engine,
        secrets={"git_updates": WebhookSecret(scheme="github", current=SecretStr(SECRET))},
        run_dispatcher=True,
        api_url=server.api_url,
    )
    receiver = ReceiverThread(app).start()
    try:
        server.stop()
        try:
            dispatcher = app.state.receiver.dispatcher
            for i in range(5):
                body = json.dumps(
                    {
                        "ref": "refs/heads/main",
                        "after": f"{i:040d}",
                        "before": "0" * 40,
                        "repository": {"full_name": "octo/docs"},
                    }
                ).encode()
                r = httpx.post(
                    f"{receiver.url}/webhooks/git",
                    content=body,
                    headers=github_headers(body, f"down-{i}"),
                )
                assert r.status_code == 202, r.text
            wait_for(lambda: dispatcher.api_down_since is not None)
            assert status_counts(engine)["accepted"] == 5
        finally:
            server.start()
        wait_for(lambda: status_counts(engine)["dispatched"] == 5, timeout=60)
        found = runs(server.api_url, deployment_id)
        assert len(found) == before + 5
        keys = {f["idempotency_key"] for f in found}
        assert {f"nura-webhook:git_updates:down-{i}" for i in range(5)} <= keys
    finally:
        receiver.stop()

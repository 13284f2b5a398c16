"""Secrets from the saved `nura-webhook-secret` block; a rotation applies without a restart."""

from __future__ import annotations

import json
from itertools import count

import httpx
import pytest
from pydantic import SecretStr

from nura.webhooks.blocks import WebhookSecret
from tests.webhooks.conftest import ReceiverThread, wait_for
from tests.webhooks.helpers import github_headers

pytestmark = pytest.mark.integration


def test_block_secret_and_rotation(prefect_server, nura_config):
    from nura.platform.receiver_app import create_app

    WebhookSecret(scheme="github", current=SecretStr("first")).save("wh-rot-test", overwrite=True)
    cfg = nura_config(
        {
            "webhooks": {
                "incoming": {
                    "rot": {
                        "url_path": "/webhooks/rot",
                        "event_types": ["git.push"],
                        "secret_block": "wh-rot-test",
                    }
                },
                "receiver": {"secret_cache_seconds": 0},
                "dispatcher": {"run_in_receiver": False},
            }
        }
    )
    receiver = ReceiverThread(create_app(cfg)).start()
    ids = count()

    def post(secret: str) -> int:
        n = next(ids)  # a distinct body each: the same body under a new id is a replay
        body = json.dumps({"ref": "refs/heads/main", "n": n}).encode()
        headers = github_headers(body, f"d-{n}", secret=secret)
        return httpx.post(f"{receiver.url}/webhooks/rot", content=body, headers=headers).status_code

    try:
        assert post("first") == 202
        assert post("second") == 401
        WebhookSecret(
            scheme="github", current=SecretStr("second"), previous=SecretStr("first")
        ).save("wh-rot-test", overwrite=True)
        # A request after the cache expired still sees the old block and starts a background
        # reload; a following request sees the new one. No restart.
        wait_for(lambda: post("second") == 202, timeout=30, interval=0.2)
        assert post("first") == 202  # the previous secret verifies during the rotation
        assert post("nope") == 401
        # The block deleted: within the cache TTL (0 here) nothing verifies any more.
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            doc = client.read_block_document_by_name("wh-rot-test", "nura-webhook-secret")
            client.delete_block_document(doc.id)
        wait_for(lambda: post("second") == 503, timeout=30, interval=0.2)
    finally:
        receiver.stop()

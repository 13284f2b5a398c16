"""The admin API in the served receiver: endpoint flags stop webhooks, the API is 404 when
off, tokens rotate without a restart, and no token value reaches a log."""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest

from nura.admin.auth import TokenStore
from nura.config.sections.admin import AdminSettings, AdminToken
from tests.admin.conftest import AdminStack, admin_config, asave_tokens, serve
from tests.webhooks.helpers import generic_headers

pytestmark = pytest.mark.integration


def _deliver(stack: AdminStack) -> httpx.Response:
    body = json.dumps({"hello": "world"}).encode()
    headers = generic_headers(body, uuid.uuid4().hex)
    return httpx.post(stack.url + "/webhooks/partner", content=body, headers=headers)


def _admin(stack: AdminStack, path: str, role: str, body: dict[str, str]) -> httpx.Response:
    url = stack.url + "/admin/v1" + path
    return httpx.post(url, json=body, headers=stack.headers(role))


def test_a_disabled_endpoint_answers_like_an_unknown_path(admin_stack: AdminStack) -> None:
    assert _deliver(admin_stack).status_code == 202
    assert _admin(admin_stack, "/endpoints/disable", "operator", {"endpoint": "partner"}).is_success
    refused = _deliver(admin_stack)
    unknown = httpx.post(admin_stack.url + "/webhooks/never", content=b"{}")
    assert refused.status_code == unknown.status_code == 404
    assert refused.json() == unknown.json()
    metrics = httpx.get(admin_stack.url + "/metrics").text  # loopback: no token needed
    assert 'nura_webhook_requests_total{endpoint="partner",status="404"} 1' in metrics
    assert _admin(admin_stack, "/endpoints/enable", "operator", {"endpoint": "partner"}).is_success
    assert _deliver(admin_stack).status_code == 202


def test_admin_api_is_404_when_off(prefect_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nura.core.stores.db import get_engine

    cfg = admin_config(tmp_path / "nura.db", enabled=False)
    receiver = serve(cfg, get_engine(f"sqlite:///{tmp_path / 'nura.db'}"))
    try:
        resp = httpx.get(receiver.url + "/admin/v1/status", headers={"Authorization": "Bearer x"})
        assert resp.status_code == 404
        assert httpx.get(receiver.url + "/healthz").status_code == 200
    finally:
        receiver.stop()


async def test_rotated_and_deleted_token_blocks_apply_after_the_ttl(
    prefect_server, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from prefect.blocks.system import Secret

    block = f"nura-test-rot-{uuid.uuid4().hex[:8]}"  # its own: other tests use the shared ones
    tokens = {"operator": "first-operator-token", "viewer": "first-viewer-token"}
    await Secret(value=tokens["operator"]).asave(block, overwrite=True)
    await Secret(value=tokens["viewer"]).asave(block + "-v", overwrite=True)
    settings = AdminSettings(
        token_cache_seconds=30,
        tokens=[
            AdminToken(name="t-operator", role="operator", block=block),
            AdminToken(name="t-viewer", role="viewer", block=block + "-v"),
        ],
    )
    now = [1000.0]
    store = TokenStore(settings, clock=lambda: now[0])
    who = await store.identify(f"Bearer {tokens['operator']}")
    assert who is not None and (who.name, who.role) == ("t-operator", "operator")
    await Secret(value="rotated-operator-token").asave(block, overwrite=True)
    now[0] += 29  # within the TTL the old digest still answers
    assert await store.identify(f"Bearer {tokens['operator']}") is not None
    now[0] += 2
    assert await store.identify(f"Bearer {tokens['operator']}") is None
    assert (await store.identify("Bearer rotated-operator-token")).role == "operator"  # type: ignore[union-attr]
    await Secret.adelete(block)  # type: ignore[attr-defined]
    now[0] += 31
    assert await store.identify("Bearer rotated-operator-token") is None
    for bad in (None, "", "Bearer", "Basic abc", f"bearer {tokens['viewer']}x"):
        assert await store.identify(bad) is None
    assert (await store.identify(f"bearer {tokens['viewer']}")).name == "t-viewer"  # type: ignore[union-attr]


async def test_every_token_is_compared_with_compare_digest(
    prefect_server, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import hmac as real_hmac

    import nura.admin.auth as auth

    blocks = f"nura-test-cmp-{uuid.uuid4().hex[:8]}"  # not the blocks other tests serve with
    tokens = await asave_tokens(blocks)
    store = TokenStore(admin_config(tmp_path / "x.db", blocks=blocks).admin)
    calls: list[tuple[bytes, bytes]] = []
    original = real_hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    # the first token matches: the others are still compared (no early exit)
    assert (await store.identify(f"Bearer {tokens['viewer']}")).name == "t-viewer"  # type: ignore[union-attr]
    assert len(calls) == 3
    assert all(len(a) == len(b) == 32 for a, b in calls)  # digests, never raw tokens


def test_no_token_value_in_logs(admin_stack: AdminStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for role in ("viewer", "operator", "admin"):
        httpx.get(admin_stack.url + "/admin/v1/status", headers=admin_stack.headers(role))
        _admin(admin_stack, "/budgets/set", role, {"scope": "logs", "daily_usd": "1"})
    httpx.get(admin_stack.url + "/admin/v1/status", headers={"Authorization": "Bearer guess-1"})
    text = caplog.text
    for value in (*admin_stack.tokens.values(), "guess-1"):
        assert value not in text

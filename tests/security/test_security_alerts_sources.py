"""Security alerts from the other sources: SSRF refusals, hard budgets, revoked credentials.

Each source runs for real: outgoing deliveries to a loopback sink the SSRF guard refuses
(Prefect server for the call layer's limits), the Bedrock budget guard on the ledger
store, and the call layer against the GitHub stand-in answering 401 "Bad credentials"
to a revoked token. The evaluator then opens one high alert per subject.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from deployments.sandbox.github_server import FakeGitHub
from deployments.sandbox.webhook_sink import WebhookSink
from nura.bedrock.models import BudgetExceeded
from nura.bedrock.pricing import BudgetGuard
from nura.config import IntegrationsConfig
from nura.config.sections.bedrock import BedrockSettings, Budget, BudgetSettings
from nura.config.sections.security import SecurityAlertSettings
from nura.core.breaker import CircuitBreakers
from nura.core.call_records import CallRecorder
from nura.core.errors import ClientError
from nura.core.layer import CallLayer
from nura.core.ratelimit import NoLimiter
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger, to_pusd
from nura.core.stores.security import counts, details
from nura.git.blocks import GitProviderCredentials
from nura.health.security import evaluate
from tests.outgoing.conftest import outgoing_config

MIN = 60.0


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    server = WebhookSink().start()
    try:
        yield server
    finally:
        server.stop()


def _opened(changes: list[dict]) -> list[str]:
    return [c["key"] for c in changes if c["kind"] == "opened"]


def _store():  # type: ignore[no-untyped-def]
    from nura import store_url

    return get_engine(store_url())


@pytest.mark.integration
def test_ssrf_refusals_of_a_target_open_one_alert(prefect_server, sink, nura_config) -> None:
    from nura.webhooks.delivery import OutgoingEvent, submit_events

    nura_config(outgoing_config(sink.url, allow_list=[]))  # the loopback sink is refused
    events = [OutgoingEvent(type="git.push", data={"n": i}, id=f"msg_ssrf_{i}") for i in range(3)]
    started = time.time()
    summary = submit_events("sandbox", events)
    assert summary.exhausted == 3 and sink.received()["attempts"] == 0
    now = time.time()
    engine = _store()
    assert counts(engine, "ssrf_refusal", since=started - 1, until=now) == {"sandbox": 3}
    reasons = details(engine, "ssrf_refusal", "sandbox", since=started - 1, until=now)
    assert all("127.0.0.1" in d["reason"] and "/hooks/" not in d["reason"] for d in reasons)
    changes = evaluate(engine, SecurityAlertSettings(), now=now)  # default: 3 in 60 min
    assert _opened(changes) == ["security.ssrf_refusal.sandbox"]
    assert "3 SSRF refusals on target sandbox" in changes[0]["reason"]


@pytest.mark.integration
def test_a_refusal_at_connect_time_counts_too(prefect_server, sink, nura_config) -> None:
    """DNS rebinding: public at the check, loopback at the connection (refused there)."""
    from nura.webhooks.delivery import build_body, resolve_target, send_signed
    from nura.webhooks.ssrf import SSRFGuard

    port = urlsplit(sink.url).port
    nura_config(outgoing_config(f"http://localhost:{port}", allow_list=[]))
    answers = iter([["93.184.215.14"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    guard = SSRFGuard([], resolver=rebinding, cache_seconds=0)
    target = dataclasses.replace(resolve_target("sandbox"), guard=guard)
    started = time.time()
    result = send_signed(target, "msg_rebind_1", "git.push", build_body("git.push", {}))
    assert not result.ok and sink.received()["attempts"] == 0
    assert counts(_store(), "ssrf_refusal", since=started - 1, until=time.time()) == {"sandbox": 1}


def test_hard_budget_refusals_open_an_alert(store_url: str) -> None:
    engine = get_engine(store_url)
    settings = BedrockSettings(
        budgets=BudgetSettings(scopes={"team-a": Budget(daily_usd=Decimal("1.00"))})
    )
    guard = BudgetGuard(settings, CostLedger(engine))
    held = guard.reserve("team-a", to_pusd(Decimal("0.60")), override=False)
    started = time.time()
    for _ in range(5):
        with pytest.raises(BudgetExceeded):
            guard.reserve("team-a", to_pusd(Decimal("0.50")), override=False)
    over = guard.reserve("team-a", to_pusd(Decimal("0.50")), override=True)  # not a refusal
    guard.release(over)
    guard.release(held)
    now = time.time()
    assert counts(engine, "budget_refusal", since=started - 1, until=now) == {"team-a": 5}
    changes = evaluate(engine, SecurityAlertSettings(), now=now)  # default: 5 in 60 min
    assert _opened(changes) == ["security.budget_refusal.team-a"]
    assert "daily budget x5" in changes[0]["reason"]
    assert evaluate(engine, SecurityAlertSettings(), now=now + 61 * MIN)[0]["kind"] == "resolved"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = FakeGitHub().start()
    server.tokens = {"ghp_current"}
    server.commit("octo", "docs", {"README.md": b"# hi"})
    try:
        yield server
    finally:
        server.stop()


def test_repeated_401s_from_a_service_open_an_alert(store_url: str, github: FakeGitHub) -> None:
    engine = get_engine(store_url)
    cfg = IntegrationsConfig.model_validate(
        {"external_services": {"git": {"base_url": github.url, "retry_attempts": 0}}}
    )
    recorder = CallRecorder(engine)
    layer = CallLayer(
        cfg.policies(),
        breakers=CircuitBreakers(engine, sync_seconds=0),
        limiter=NoLimiter(),
        recorder=recorder,
        http_client=httpx.Client(),
    )
    revoked = GitProviderCredentials(provider="github", token=SecretStr("ghp_revoked")).auth()
    current = GitProviderCredentials(provider="github", token=SecretStr("ghp_current")).auth()
    try:
        ok = layer.request("git", "GET", "/repos/octo/docs/contents/README.md", auth=current)
        assert ok.value.status_code == 200  # the stand-in does accept a valid token
        for _ in range(6):
            with pytest.raises(ClientError) as err:
                layer.request("git", "GET", "/repos/octo/docs/contents/README.md", auth=revoked)
            assert err.value.status == 401
    finally:
        recorder.close()
    now = time.time()
    rules = SecurityAlertSettings()  # default: 5 in 15 min
    changes = evaluate(engine, rules, now=now)
    assert _opened(changes) == ["security.auth_failure.git"]
    assert "6 401 answers (credential refused) on service git" in changes[0]["reason"]
    assert "ghp_revoked" not in str(changes)
    assert evaluate(engine, rules, now=now + 5 * MIN) == []
    assert [c["kind"] for c in evaluate(engine, rules, now=now + 16 * MIN)] == ["resolved"]

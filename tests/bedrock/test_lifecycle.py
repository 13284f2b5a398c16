"""The chain's models against Bedrock's catalogue (ListFoundationModels, ListInferenceProfiles)."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.lifecycle import Finding, LifecycleGate, chain_status
from nura.config.sections.bedrock import BedrockSettings

BASE = "anthropic.claude-haiku-4-5-20251001-v1:0"
RETIRED = "anthropic.claude-3-sonnet-20240229-v1:0"
LITE = "amazon.nova-lite-v1:0"


def control(url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "bedrock",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="y",  # noqa: S106 - the stand-in checks no signature
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )


def test_each_reason_to_skip(standin: BedrockStandIn) -> None:
    standin.catalog(LITE, lifecycle="LEGACY")
    models = [f"global.{BASE}", f"us.{BASE}", RETIRED, LITE, BASE, f"eu.{BASE}"]
    found = {f.model_id: f for f in chain_status(models, control(standin.url), region="us-east-1")}
    assert {m: f.status for m, f in found.items()} == {
        f"global.{BASE}": "ok",
        f"us.{BASE}": "ok",
        RETIRED: "missing",
        LITE: "legacy",
        BASE: "on_demand_unsupported",
        f"eu.{BASE}": "missing",
    }
    assert [m for m, f in found.items() if f.skip] == [RETIRED, LITE, BASE, f"eu.{BASE}"]
    assert {f.severity for f in found.values() if f.skip} == {"medium"}


def test_the_shipped_chain_is_live() -> None:
    """Every model of the shipped chain is ACTIVE in the stand-in's catalogue, which follows
    AWS's model cards (Claude Haiku 4.5 / Sonnet 4.6 active, Claude 3 and Titan Text EOL)."""
    server = BedrockStandIn().start()
    try:
        findings = chain_status(BedrockSettings().models, control(server.url), region="us-east-1")
    finally:
        server.stop()
    assert [f.status for f in findings] == ["ok", "ok", "ok"]


def test_an_unreadable_catalogue_skips_nothing() -> None:
    server = BedrockStandIn().start()
    url = server.url
    server.stop()  # nothing listens there any more
    findings = chain_status([BASE], control(url), region="us-east-1")
    assert [(f.status, f.skip, f.severity) for f in findings] == [("unknown", False, "low")]


def test_gate_reads_the_catalogue_at_most_once_per_ttl(standin: BedrockStandIn) -> None:
    now = [1000.0]
    alerts: list[Finding] = []
    gate = LifecycleGate(
        control(standin.url),
        region="us-east-1",
        ttl=60,
        clock=lambda: now[0],
        on_skip=lambda finding, region: alerts.append(finding),
    )
    assert gate.skips([LITE]) == {}
    standin.catalog(LITE, lifecycle="LEGACY")
    now[0] += 59
    assert gate.skips([LITE]) == {}  # cached
    now[0] += 1
    assert gate.skips([LITE])[LITE].status == "legacy"
    assert [a.model_id for a in alerts] == [LITE]


@pytest.mark.integration
def test_bootstrap_lists_skipped_models_and_raises_a_medium_alert(
    prefect_server, bedrock_config, standin: BedrockStandIn
) -> None:  # type: ignore[no-untyped-def]
    from nura.bedrock.chain_check import bootstrap_lines, configured_chain_status
    from nura.core.runtime import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.notifications import recent_notifications

    bedrock_config(models=["amazon.nova-pro-v1:0", LITE], lifecycle_check=True)
    standin.catalog(LITE, lifecycle="LEGACY")
    assert [f.status for f in configured_chain_status()] == ["ok", "legacy"]
    lines = bootstrap_lines()
    assert len(lines) == 1 and lines[0].startswith(f"bedrock model {LITE}: legacy")
    sent = [
        n
        for n in recent_notifications(get_engine(store_url()))
        if n["event"] == "nura.bedrock.model_lifecycle"
    ]
    assert [(n["title"], n["severity"]) for n in sent] == [
        (f"Bedrock model {LITE} is legacy", "medium")
    ]

"""A small world for the health monitor: flaky HTTP services, moto, the Bedrock stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from deployments.sandbox.http_service import FlakyService

SERVICES = ("alpha", "beta", "gamma")


@dataclass
class World:
    services: dict[str, FlakyService]
    config: Any
    store_url: str
    moto: str

    def control(self, name: str, **script: Any) -> None:
        httpx.post(f"{self.services[name].url}/control", json=script).raise_for_status()


@pytest.fixture
def bedrock_standin() -> Iterator[BedrockStandIn]:
    server = BedrockStandIn().start()
    try:
        yield server
    finally:
        server.stop()


def world_config(
    urls: dict[str, str], moto: str, bedrock: str, check_timeout: float = 2, **health: Any
) -> dict[str, Any]:
    return {
        "api_gateway": {"circuit_breaker_threshold": 2, "circuit_breaker_cooldown_seconds": 300},
        "external_services": {
            "aws": {
                "endpoint_url": moto,
                "bedrock": {"endpoint_url": bedrock},
            },
            "partners": {
                name: {"base_url": url, "health_check_endpoint": "/health", "timeout_seconds": 5}
                for name, url in urls.items()
            },
        },
        "health_monitoring": {
            "check_timeout_seconds": check_timeout,
            "status_window_minutes": 15,
            "reminder_interval_minutes": 60,
            "publish_cloudwatch": True,
            "cloudwatch_log_group": "nura-health-audit",
            "dependency_map": {"alpha": ["confluence-sync"], "beta": ["git-ingest"]},
            # the store's own latency is not what these tests are about: a loaded machine
            # once took 0.5 s for it and opened an alert beside the one a test expected
            "component_thresholds": {"database_latency_degraded_ms": 10_000},
            **health,
        },
    }


@pytest.fixture
def world(
    request, nura_config, moto_reset: str, store_url: str, bedrock_standin
) -> Iterator[World]:
    """Services alpha/beta/gamma; response threshold 0.5 s and check timeout 2 s unless the
    test module sets RESPONSE_THRESHOLD / CHECK_TIMEOUT (a loaded machine is slower)."""
    services = {name: FlakyService().start() for name in SERVICES}
    try:
        cfg = nura_config(
            world_config(
                {n: s.url for n, s in services.items()},
                moto_reset,
                bedrock_standin.url,
                check_timeout=getattr(request.module, "CHECK_TIMEOUT", 2),
                alert_thresholds={
                    "response_time_seconds": getattr(request.module, "RESPONSE_THRESHOLD", 0.5)
                },
            ),
            store=store_url,
        )
        s3 = boto3.client("s3", endpoint_url=moto_reset, region_name="us-east-1")
        s3.create_bucket(Bucket=cfg.external_services.aws.s3.bucket_name)
        # moto loads each backend on its first request (~1 s): warm them so the tests
        # measure our services, not moto's start-up.
        boto3.client("ses", endpoint_url=moto_reset, region_name="us-east-1").get_send_quota()
        boto3.client(
            "cloudwatch", endpoint_url=moto_reset, region_name="us-east-1"
        ).describe_alarms(MaxRecords=1)
        # No Prefect API inside the world (the session's server may be up from another
        # test): the prefect_api check is "not configured" unless a test sets the URL.
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            yield World(services, cfg, store_url, moto_reset)
    finally:
        for s in services.values():
            s.stop()

"""The root model of `integrations.yaml` and the flat service registry the call layer uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from nura.config.sections.adaptive import AdaptiveRateSettings
from nura.config.sections.admin import AdminSettings
from nura.config.sections.common import Section, ServiceSettings
from nura.config.sections.health import HealthMonitoringSettings
from nura.config.sections.kb import KbSettings
from nura.config.sections.kb_ask import KbAskSettings
from nura.config.sections.platform import ApiGatewaySettings, PlatformSettings
from nura.config.sections.retention import RetentionSettings
from nura.config.sections.services import ExternalServices
from nura.config.sections.webhooks import WebhooksSettings


@dataclass(frozen=True)
class ServicePolicy:
    """Resolved resilience policy of one service (config defaults applied)."""

    name: str
    base_url: str | None
    rate_limit_per_minute: int
    timeout_seconds: float
    circuit_breaker_threshold: int
    circuit_breaker_cooldown_seconds: float
    retry_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    retry_after_max_seconds: float
    fallback_enabled: bool
    health_check_endpoint: str | None
    max_response_bytes: int | None = None  # None: the call layer's default cap
    deadline_seconds: float | None = None  # None: the call layer's default (4 timeouts)
    adaptive: AdaptiveRateSettings = field(default_factory=AdaptiveRateSettings)

    @property
    def limit_name(self) -> str:
        """Name of the Prefect global concurrency limit that rate-limits this service."""
        return f"nura-rate-{self.name}"


class IntegrationsConfig(Section):
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    api_gateway: ApiGatewaySettings = Field(default_factory=ApiGatewaySettings)
    external_services: ExternalServices = Field(default_factory=ExternalServices)
    webhooks: WebhooksSettings = Field(default_factory=WebhooksSettings)
    health_monitoring: HealthMonitoringSettings = Field(default_factory=HealthMonitoringSettings)
    kb_ask: KbAskSettings = Field(
        default_factory=KbAskSettings,
        description="Answers from the knowledge base (`nura ask`, docs/knowledge-base.md).",
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="How long each store keeps its rows (docs/retention.md).",
    )
    admin: AdminSettings = Field(
        default_factory=AdminSettings, description="The admin HTTP API (docs/admin.md)."
    )
    kb: KbSettings = Field(
        default_factory=KbSettings,
        description="Chunks, embeddings and the vector index (docs/knowledge-base.md).",
    )

    def service_settings(self) -> dict[str, ServiceSettings]:
        """Every service the call layer knows, by name."""
        ext = self.external_services
        services: dict[str, ServiceSettings] = {
            "bedrock": ext.aws.bedrock,
            "s3": ext.aws.s3,
            "ses": ext.aws.ses,
            "cloudwatch": ext.aws.cloudwatch,
            "sns_certificates": ext.aws.sns_certificates,
            "confluence": ext.confluence,
            "git": ext.git,
            "slack": ext.slack,
            "webhooks": ServiceSettings(
                timeout_seconds=self.webhooks.outgoing.timeout_seconds,
                retry_attempts=self.webhooks.outgoing.retry_attempts,
            ),
        }
        services.update(ext.partners)
        return services

    def policies(self) -> dict[str, ServicePolicy]:
        gw = self.api_gateway
        return {
            name: ServicePolicy(
                name=name,
                base_url=s.base_url,
                rate_limit_per_minute=s.rate_limit_per_minute or gw.rate_limit_default,
                timeout_seconds=s.timeout_seconds or gw.timeout_default,
                circuit_breaker_threshold=s.circuit_breaker_threshold
                or gw.circuit_breaker_threshold,
                circuit_breaker_cooldown_seconds=gw.circuit_breaker_cooldown_seconds,
                retry_attempts=gw.retry_default if s.retry_attempts is None else s.retry_attempts,
                backoff_base_seconds=gw.backoff_base_seconds,
                backoff_max_seconds=gw.backoff_max_seconds,
                retry_after_max_seconds=gw.retry_after_max_seconds,
                fallback_enabled=s.fallback_enabled,
                health_check_endpoint=s.health_check_endpoint,
                max_response_bytes=s.max_response_bytes,
                deadline_seconds=s.deadline_seconds,
                adaptive=s.adaptive,
            )
            for name, s in self.service_settings().items()
        }

"""`external_services.aws`: region, S3 (knowledge base), SES, CloudWatch, SNS certificates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nura.config.sections.bedrock import BedrockSettings
from nura.config.sections.common import Section, ServiceSettings


class S3Settings(ServiceSettings):
    bucket_name: str = "nura-knowledge-base"
    encryption: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None
    endpoint_url: str | None = None


class SesSettings(ServiceSettings):
    from_email: str = "noreply@nura.ai"
    endpoint_url: str | None = None


class CloudWatchSettings(ServiceSettings):
    namespace: str = "Nura/Integrations"
    endpoint_url: str | None = None


class SnsCertificateSettings(ServiceSettings):
    """SNS signing-certificate downloads for POST /webhooks/ses-events, which anyone can
    cause: a service of their own (their failures never open `ses`, which sends alert
    email), a few per minute, a short timeout, no retries."""

    rate_limit_per_minute: int | None = Field(default=6, gt=0)
    timeout_seconds: float | None = Field(default=5, gt=0)
    circuit_breaker_threshold: int | None = Field(default=3, gt=0)
    retry_attempts: int | None = Field(default=0, ge=0, le=20)


class AwsSettings(Section):
    region: str = "us-east-1"
    # One endpoint for every AWS service (the sandbox's moto server); per-service
    # `endpoint_url` wins over it.
    endpoint_url: str | None = None
    # Name of a saved prefect-aws `AwsCredentials` block; unset = boto3's default chain.
    credentials_block: str | None = None
    bedrock: BedrockSettings = Field(default_factory=BedrockSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    ses: SesSettings = Field(default_factory=SesSettings)
    cloudwatch: CloudWatchSettings = Field(default_factory=CloudWatchSettings)
    sns_certificates: SnsCertificateSettings = Field(
        default_factory=SnsCertificateSettings,
        description="Call-layer service of the SNS signing-certificate downloads "
        "(POST /webhooks/ses-events): its own rate limit and breaker, apart from `ses`.",
    )

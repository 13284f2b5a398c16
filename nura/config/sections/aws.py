"""`external_services.aws`: region, S3 (knowledge base), SES, CloudWatch."""

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

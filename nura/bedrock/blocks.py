"""Bedrock runtime settings on top of prefect-aws `AwsCredentials`."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, SecretStr


class BedrockSettings(Block):
    """Where to call Bedrock and with which AWS credentials (LangSmith optional).

    Example:
        ```python
        from prefect_aws import AwsCredentials
        from nura.bedrock.blocks import BedrockSettings
        BedrockSettings(aws_credentials=AwsCredentials.load("aws"),
                        region="us-east-1").save("bedrock", overwrite=True)
        ```
    """

    _block_type_name = "Nura Bedrock Settings"
    _block_type_slug = "nura-bedrock-settings"
    _description = (
        "AWS credentials, region and endpoint for bedrock-runtime; optional LangSmith key."
    )

    aws_credentials: AwsCredentials = Field(default_factory=AwsCredentials)
    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="Override (the local stand-in).")
    langsmith_api_key: SecretStr | None = None
    langsmith_project: str = "nura-integrations"

    def get_client(self, **kwargs: Any) -> Any:
        """A boto3 `bedrock-runtime` client (retries are left to the call layer)."""
        from botocore.config import Config

        session = self.aws_credentials.get_boto3_session()
        return session.client(
            "bedrock-runtime",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=kwargs.pop("config", Config(retries={"total_max_attempts": 1})),
            **kwargs,
        )

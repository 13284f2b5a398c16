"""AWS clients for tasks: credentials from a saved block or boto3's chain; endpoints from config."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from nura import get_config
from nura.core.aws import boto_client


@lru_cache(maxsize=4)
def _credentials_block(name: str) -> Any:
    from prefect_aws import AwsCredentials

    return AwsCredentials.load(name, _sync=True)  # type: ignore[call-arg]


def aws_client(
    service: str, *, endpoint_url: str | None = None, timeout: float | None = None
) -> Any:
    """A cached boto3 client for `service` ("s3", "ses", "cloudwatch", "bedrock-runtime"...).

    Retries are off in botocore: the call layer retries. Endpoint: the argument, else the
    section's `endpoint_url`, else `external_services.aws.endpoint_url` (sandbox: moto).
    """
    cfg = get_config()
    aws = cfg.external_services.aws
    section = {"s3": aws.s3, "ses": aws.ses, "sesv2": aws.ses, "cloudwatch": aws.cloudwatch}.get(
        service
    )
    endpoint = endpoint_url or getattr(section, "endpoint_url", None) or aws.endpoint_url
    policies = cfg.policies()
    policy = policies.get(service) or policies.get("s3")
    creds = _credentials_block(aws.credentials_block) if aws.credentials_block else None
    return boto_client(
        service,
        credentials=creds,
        region=aws.region,
        endpoint_url=endpoint,
        timeout=timeout or (policy.timeout_seconds if policy else 30.0),
    )

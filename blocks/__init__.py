"""Prefect Blocks for every external system. `prefect block register -m blocks` registers them.

The classes live in the installed `nura` package (each in its system's room, so the receiver
and the CLI can load them); this folder is where operators find them. AWS uses prefect-aws
`AwsCredentials` and `S3Bucket`; Slack uses Prefect's `SlackWebhook`.
"""

from nura.platform.blocks import (
    NURA_BLOCKS,
    AwsCredentials,
    BedrockSettings,
    ConfluenceCredentials,
    GitProviderCredentials,
    S3Bucket,
    SlackWebhook,
    WebhookSecret,
    WebhookSigner,
)

__all__ = [
    "NURA_BLOCKS",
    "AwsCredentials",
    "BedrockSettings",
    "ConfluenceCredentials",
    "GitProviderCredentials",
    "S3Bucket",
    "SlackWebhook",
    "WebhookSecret",
    "WebhookSigner",
]

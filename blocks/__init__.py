"""Prefect Blocks for every external system. `prefect block register -m blocks` registers them.

AWS uses prefect-aws `AwsCredentials` and `S3Bucket`; Slack uses Prefect's `SlackWebhook`.
"""

from prefect.blocks.notifications import SlackWebhook
from prefect_aws import AwsCredentials, S3Bucket

from blocks.bedrock import BedrockSettings
from blocks.confluence import ConfluenceCredentials
from blocks.git import GitProviderCredentials
from blocks.webhooks import WebhookSecret, WebhookSigner

NURA_BLOCKS = (ConfluenceCredentials, WebhookSecret, GitProviderCredentials, BedrockSettings)

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

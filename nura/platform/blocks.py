"""Every Block type Nura registers: its own (defined in their system's room) and the
Prefect / prefect-aws ones it reuses. `blocks/` in the project re-exports these for operators.
"""

from prefect.blocks.notifications import SlackWebhook
from prefect_aws import AwsCredentials, S3Bucket

from nura.bedrock.blocks import BedrockSettings
from nura.confluence.blocks import ConfluenceCredentials
from nura.git.blocks import GitProviderCredentials
from nura.webhooks.blocks import WebhookSecret, WebhookSigner

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

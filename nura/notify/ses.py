"""Email through AWS SES (boto3 via prefect-aws `AwsCredentials`, through the call layer).

Every message has a text and an HTML body and a configured sender; the SES `MessageId`
is returned so bounces and complaints (SNS, see `nura/webhooks/sns.py`) can be matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nura import get_call_layer, get_config
from nura.core.aws import boto_client
from nura.core.errors import InvalidInput


@dataclass(frozen=True)
class SentEmail:
    message_id: str
    attempts: int


def ses_client(credentials_block: str | None = None) -> Any:
    """A cached SES client for the configured region and endpoint (moto in the sandbox)."""
    cfg = get_config()
    aws = cfg.external_services.aws
    credentials = None
    if credentials_block:
        from prefect_aws import AwsCredentials

        credentials = AwsCredentials.load(credentials_block)
    policy = get_call_layer().policy("ses")
    return boto_client(
        "ses",
        credentials=credentials,
        region=aws.region,
        endpoint_url=aws.ses.endpoint_url or aws.endpoint_url,
        timeout=policy.timeout_seconds,
    )


def send_email_message(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    text: str,
    html: str,
    configuration_set: str | None = None,
    credentials_block: str | None = None,
) -> SentEmail:
    """Send one email; raises a typed call-layer error (e.g. `ClientError` MessageRejected)."""
    if not recipients:
        raise InvalidInput("an email needs at least one recipient", service="ses")
    client = ses_client(credentials_block)
    kwargs: dict[str, Any] = {
        "Source": sender,
        "Destination": {"ToAddresses": list(recipients)},
        "Message": {
            "Subject": {"Data": subject[:998], "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": text, "Charset": "UTF-8"},
                "Html": {"Data": html, "Charset": "UTF-8"},
            },
        },
    }
    if configuration_set:
        kwargs["ConfigurationSetName"] = configuration_set
    result = get_call_layer().call("ses", "send_email", client.send_email, payload=text, **kwargs)
    return SentEmail(str(result.value["MessageId"]), result.attempts)


def send_email(sender: str, recipients: list[str], subject: str, text: str, html: str) -> SentEmail:
    """Prefect task around `send_email_message` (retries live in the call layer)."""
    return send_email_message(
        sender=sender, recipients=recipients, subject=subject, text=text, html=html
    )


# -- SES feedback over SNS: the two outbound calls an SNS endpoint makes ---------------
def fetch_sns_certificate(url: str) -> bytes:
    """Download an SNS signing certificate (the caller has checked the URL is AWS's).

    Its own service, `sns_certificates`: unauthenticated POSTs choose these URLs, so their
    failures must never count toward the `ses` breaker that alert email depends on."""
    layer = get_call_layer()
    result = layer.request("sns_certificates", "GET", url, operation="sns.signing-cert")
    return result.value.content


def confirm_sns_subscription(subscribe_url: str) -> int:
    """Visit an SNS SubscribeURL (checked by the caller) to confirm the subscription."""
    result = get_call_layer().request("ses", "GET", subscribe_url, operation="sns.confirm")
    return result.value.status_code

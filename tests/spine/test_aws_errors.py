"""botocore's errors as the call layer's types: what is retried and what the breaker counts."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError as BotoClientError

from nura.core.aws import classify_boto_error
from nura.core.errors import ClientError, RateLimited, ServerError, ServiceTimeout


def _boto(code: str, status: int) -> BotoClientError:
    return BotoClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Converse",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "retryable"),
    [
        ("ThrottlingException", 429, RateLimited, True),
        ("ModelTimeoutException", 408, ServiceTimeout, True),  # Bedrock: a timeout, retried
        ("RequestTimeout", 408, ServiceTimeout, True),
        ("InternalServerException", 500, ServerError, True),
        ("ValidationException", 400, ClientError, False),
        ("AccessDeniedException", 403, ClientError, False),
    ],
)
def test_boto_errors_are_typed(code: str, status: int, kind: type, retryable: bool) -> None:
    err = classify_boto_error("bedrock", "Converse", _boto(code, status), 1)
    assert type(err) is kind and err.retryable is retryable
    assert err.code == code and err.status == status

"""The stand-in speaks the wire format botocore expects (errors included)."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from deployments.sandbox.bedrock_server import BedrockStandIn
from tests.bedrock.conftest import HAIKU, NOVA, SONNET


@pytest.fixture
def client(standin: BedrockStandIn):  # type: ignore[no-untyped-def]
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=standin.url,
        aws_access_key_id="x",
        aws_secret_access_key="y",  # noqa: S106 - the stand-in checks no signature
        config=Config(retries={"total_max_attempts": 1}),
    )


def converse(client, model: str = HAIKU, text: str = "hello", **kw):  # type: ignore[no-untyped-def]
    return client.converse(
        modelId=model, messages=[{"role": "user", "content": [{"text": text}]}], **kw
    )


def test_converse_is_deterministic_with_token_usage(client) -> None:  # type: ignore[no-untyped-def]
    a, b = converse(client), converse(client)
    assert a["output"] == b["output"]
    usage = a["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert a["stopReason"] == "end_turn"
    cut = converse(client, inferenceConfig={"maxTokens": 3})
    assert cut["stopReason"] == "max_tokens" and 1 <= cut["usage"]["outputTokens"] <= 3


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("throttle", "ThrottlingException", 429),
        ("validation", "ValidationException", 400),
        ("server_error", "InternalServerException", 500),
    ],
)
def test_injected_errors_reach_botocore_typed(client, standin, kind, code, status) -> None:  # type: ignore[no-untyped-def]
    standin.script(SONNET, **{kind: 1})
    with pytest.raises(ClientError) as err:
        converse(client, SONNET)
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert converse(client, SONNET)["stopReason"]  # only the next call was scripted
    assert converse(client, HAIKU)["stopReason"]  # per model


def test_legacy_claude_prompt_body_is_rejected_like_bedrock(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        client.invoke_model(
            modelId=SONNET, body=json.dumps({"prompt": "\n\nHuman: hi\n\nAssistant:"})
        )
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_nova_invoke_reports_tokens_in_body_and_headers(client) -> None:  # type: ignore[no-untyped-def]
    body = {
        "schemaVersion": "messages-v1",
        "messages": [{"role": "user", "content": [{"text": "hello world"}]}],
        "inferenceConfig": {"maxTokens": 100},
    }
    response = client.invoke_model(modelId=NOVA, body=json.dumps(body))
    answer = json.loads(response["body"].read())
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) == answer["usage"]["inputTokens"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == answer["usage"]["outputTokens"]


def test_control_endpoint_and_stats(client, standin) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{standin.url}/_sandbox/control", json={"models": {HAIKU: {"throttle": 2}}})
    assert r.status_code == 200
    for _ in range(2):
        with pytest.raises(ClientError):
            converse(client)
    converse(client)
    assert httpx.get(f"{standin.url}/_sandbox/stats").json() == {"calls": {HAIKU: 3}, "total": 3}
    bad = httpx.post(f"{standin.url}/_sandbox/control", json={"models": {HAIKU: {"nope": 1}}})
    assert bad.status_code == 400


def test_too_many_output_tokens_is_a_validation_error(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        converse(client, SONNET, inferenceConfig={"maxTokens": 100_000})
    assert err.value.response["Error"]["Code"] == "ValidationException"

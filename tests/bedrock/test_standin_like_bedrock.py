"""The stand-in behaves like Bedrock (AWS's API reference), not like nura's client.

Requests are written here the way AWS documents them (Converse request/response syntax,
the documented errors with their status codes, ListFoundationModels /
ListInferenceProfiles), sent with plain boto3 clients: if the stand-in drifted towards
what our client happens to send, these would fail.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from deployments.sandbox.bedrock_server import BedrockStandIn, count_tokens
from nura.bedrock.models import Message
from nura.bedrock.wire import estimate_tokens

HAIKU_BASE = "anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU_US = f"us.{HAIKU_BASE}"
NOVA = "amazon.nova-pro-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
RETIRED = "anthropic.claude-3-sonnet-20240229-v1:0"


def _client(service: str, standin: BedrockStandIn):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=standin.url,
        aws_access_key_id="x",
        aws_secret_access_key="y",  # noqa: S106 - the stand-in checks no signature
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def runtime(standin: BedrockStandIn):  # type: ignore[no-untyped-def]
    return _client("bedrock-runtime", standin)


@pytest.fixture
def control(standin: BedrockStandIn):  # type: ignore[no-untyped-def]
    return _client("bedrock", standin)


def user(text: str) -> dict[str, object]:
    return {"role": "user", "content": [{"text": text}]}


def refusal(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = err.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_documented_converse_example_round_trips(runtime) -> None:  # type: ignore[no-untyped-def]
    # The Converse request syntax of AWS's API reference: messages, system, inferenceConfig.
    answer = runtime.converse(
        modelId=HAIKU_US,
        messages=[
            user("Create a list of 3 pop songs."),
            {"role": "assistant", "content": [{"text": "Which decade?"}]},
            user("The 1980s."),
        ],
        system=[{"text": "You are an app that creates playlists for a radio station."}],
        inferenceConfig={"maxTokens": 512, "temperature": 0.5, "topP": 0.9},
    )
    assert answer["output"]["message"]["role"] == "assistant"
    assert answer["output"]["message"]["content"][0]["text"]
    assert answer["stopReason"] in ("end_turn", "max_tokens")
    usage = answer["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert answer["metrics"]["latencyMs"] >= 0


@pytest.mark.parametrize(
    ("messages", "phrase"),
    [
        ([{"role": "assistant", "content": [{"text": "hi"}]}], "must start with a user message"),
        ([user("one"), user("two")], "must alternate between user and assistant"),
        ([user("   ")], "is blank"),
    ],
    ids=["starts-with-assistant", "not-alternating", "blank-text"],
)
def test_conversations_bedrock_refuses(runtime, messages, phrase) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=NOVA, messages=messages)
    code, status, message = refusal(err)
    assert (code, status) == ("ValidationException", 400) and phrase in message


def test_model_ids_bedrock_refuses(runtime) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:  # Claude 4.5+: inference profiles only
        runtime.converse(modelId=HAIKU_BASE, messages=[user("hi")])
    code, status, message = refusal(err)
    assert (code, status) == ("ValidationException", 400)
    assert "on-demand throughput isn\u2019t supported" in message and "inference profile" in message
    with pytest.raises(ClientError) as err:  # retired: end of life
        runtime.converse(modelId=RETIRED, messages=[user("hi")])
    assert refusal(err)[:2] == ("ResourceNotFoundException", 404)
    assert "end of its life" in refusal(err)[2]
    with pytest.raises(ClientError) as err:  # never existed
        runtime.converse(modelId="anthropic.claude-9-imaginary-v1:0", messages=[user("hi")])
    assert refusal(err)[2] == "The provided model identifier is invalid."
    with pytest.raises(ClientError) as err:  # an eu. profile is not callable from us-east-1
        runtime.converse(modelId=f"eu.{HAIKU_BASE}", messages=[user("hi")])
    assert refusal(err)[0] == "ValidationException"
    assert runtime.converse(modelId=NOVA, messages=[user("hi")])["stopReason"]  # on-demand ok


def test_system_prompt_and_limits_per_model(runtime, standin) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=MISTRAL, messages=[user("hi")], system=[{"text": "Be brief."}])
    assert refusal(err)[0] == "ValidationException" and "system" in refusal(err)[2]
    assert runtime.converse(modelId=MISTRAL, messages=[user("Be brief.\n\nhi")])["output"]
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=NOVA, messages=[user("hi")], inferenceConfig={"maxTokens": 10_001})
    assert "exceeds the model limit" in refusal(err)[2]
    standin.catalog(NOVA, context=5)
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=NOVA, messages=[user("a longer question than five tokens")])
    assert refusal(err)[2] == "Input is too long for requested model."
    standin.catalog(NOVA, access=False)
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=NOVA, messages=[user("hi")])
    assert refusal(err)[:2] == ("AccessDeniedException", 403)


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("throttle", "ThrottlingException", 429),
        ("not_ready", "ModelNotReadyException", 429),
        ("timeout", "ModelTimeoutException", 408),
        ("model_error", "ModelErrorException", 424),
        ("server_error", "InternalServerException", 500),
        ("unavailable", "ServiceUnavailableException", 503),
    ],
)
def test_documented_errors_reach_botocore_as_modeled_exceptions(  # type: ignore[no-untyped-def]
    runtime, standin, kind, code, status
) -> None:
    standin.script(NOVA, **{kind: 1})
    modeled = getattr(runtime.exceptions, code)  # botocore's class from the service model
    with pytest.raises(modeled) as err:
        runtime.converse(modelId=NOVA, messages=[user("hi")])
    assert refusal(err)[:2] == (code, status)  # type: ignore[arg-type]
    if kind == "model_error":
        assert err.value.response["originalStatusCode"] == 500
    assert runtime.converse(modelId=NOVA, messages=[user("hi")])["stopReason"]  # next one ok


def test_token_counts_are_the_standins_own_not_the_clients_estimate(runtime) -> None:  # type: ignore[no-untyped-def]
    text = "Summarise 2026-12-07's incidents: DB p99 went 3x; why?"
    answer = runtime.converse(modelId=NOVA, messages=[user(text)])
    assert answer["usage"]["inputTokens"] == count_tokens(text) + 3
    assert answer["usage"]["inputTokens"] != estimate_tokens(
        [Message(role="user", text=text)], None
    )


def test_catalogue_lists_lifecycle_and_profiles(control, standin) -> None:  # type: ignore[no-untyped-def]
    standin.catalog(NOVA, lifecycle="LEGACY")
    models = {m["modelId"]: m for m in control.list_foundation_models()["modelSummaries"]}
    assert RETIRED not in models  # end of life: no longer listed
    assert models[NOVA]["modelLifecycle"]["status"] == "LEGACY"
    assert models[HAIKU_BASE]["inferenceTypesSupported"] == ["INFERENCE_PROFILE"]
    assert "ON_DEMAND" in models["amazon.nova-lite-v1:0"]["inferenceTypesSupported"]
    ids: list[str] = []
    token = None
    while True:  # paginated like the real API
        kw = {"maxResults": 2, **({"nextToken": token} if token else {})}
        page = control.list_inference_profiles(**kw)
        ids += [p["inferenceProfileId"] for p in page["inferenceProfileSummaries"]]
        token = page.get("nextToken")
        if not token:
            break
    assert HAIKU_US in ids and f"global.{HAIKU_BASE}" in ids
    assert f"eu.{HAIKU_BASE}" not in ids  # not offered from us-east-1

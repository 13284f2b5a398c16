"""The Bedrock stand-in's embedding models, called with boto3 as AWS documents them:
request and answer shapes, documented refusals, vectors that carry meaning."""

from __future__ import annotations

import json
import math
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from deployments.sandbox.bedrock_server import BedrockStandIn
from tests.kb.conftest import COHERE, TITAN


@pytest.fixture
def runtime(embed_standin: BedrockStandIn) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=embed_standin.url,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
        config=Config(retries={"max_attempts": 0}),
    )


def invoke(runtime: Any, model: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict]:  # type: ignore[type-arg]
    raw = runtime.invoke_model(modelId=model, body=json.dumps(body))
    return json.loads(raw["body"].read()), raw["ResponseMetadata"]["HTTPHeaders"]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_titan_v2_answers_as_documented(runtime: Any) -> None:
    answer, headers = invoke(runtime, TITAN, {"inputText": "Rotate the keys", "dimensions": 512})
    assert set(answer) == {"embedding", "inputTextTokenCount", "embeddingsByType"}
    assert len(answer["embedding"]) == 512
    assert answer["embeddingsByType"]["float"] == answer["embedding"]
    assert math.isclose(sum(x * x for x in answer["embedding"]), 1.0, rel_tol=1e-9)
    assert answer["inputTextTokenCount"] > 0
    assert headers["x-amzn-bedrock-input-token-count"] == str(answer["inputTextTokenCount"])
    default, _ = invoke(runtime, TITAN, {"inputText": "Rotate the keys"})
    assert len(default["embedding"]) == 1024  # the documented default
    raw, _ = invoke(runtime, TITAN, {"inputText": "Rotate the keys", "normalize": False})
    assert not math.isclose(sum(x * x for x in raw["embedding"]), 1.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputText": ""}, "minLength"),
        ({}, "required key [inputText]"),
        ({"inputText": "x", "dimensions": 300}, "not a valid enum value"),
        ({"texts": ["a"], "input_type": "search_document"}, "extraneous key"),
        ({"inputText": "x" * 50_001}, "maxLength: 50000"),
        ({"inputText": "word " * 9000}, "Too many input tokens"),
    ],
)
def test_titan_v2_refuses_what_bedrock_refuses(runtime: Any, body: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ClientError) as caught:
        invoke(runtime, TITAN, body)
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in error["Error"]["Message"]


def test_embedding_models_refuse_converse(runtime: Any) -> None:
    with pytest.raises(ClientError) as caught:
        runtime.converse(modelId=TITAN, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_cohere_embeds_a_batch_and_enforces_its_limits(runtime: Any) -> None:
    texts = [f"text {i}" for i in range(96)]
    answer, headers = invoke(runtime, COHERE, {"texts": texts, "input_type": "search_document"})
    assert len(answer["embeddings"]) == 96 and len(answer["embeddings"][0]) == 1024
    assert answer["response_type"] == "embeddings_floats" and answer["texts"] == texts
    assert int(headers["x-amzn-bedrock-input-token-count"]) > 0
    for body in (
        {"texts": texts + ["one too many"], "input_type": "search_document"},
        {"texts": ["a"]},  # input_type is required
        {"texts": ["x" * 2049], "input_type": "search_query"},
    ):
        with pytest.raises(ClientError) as caught:
            invoke(runtime, COHERE, body)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
    cut, _ = invoke(
        runtime, COHERE, {"texts": ["x" * 2049], "input_type": "search_query", "truncate": "END"}
    )
    assert len(cut["embeddings"]) == 1


def test_vectors_carry_meaning_and_are_deterministic(runtime: Any) -> None:
    def vec(text: str) -> list[float]:
        return invoke(runtime, TITAN, {"inputText": text, "dimensions": 256})[0]["embedding"]

    query = vec("How do I rotate the webhook signing secret?")
    near = vec("Rotating the webhook signing secret: create a new secret, then rotate.")
    far = vec("Quarterly budget report for the marketing department.")
    assert cosine(query, near) > cosine(query, far) + 0.2
    assert vec("same text") == vec("same text")


def test_embedding_models_are_in_the_catalogue(runtime: Any, embed_standin: BedrockStandIn) -> None:
    control = boto3.client(
        "bedrock",
        endpoint_url=embed_standin.url,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    models = {m["modelId"]: m for m in control.list_foundation_models()["modelSummaries"]}
    assert models[TITAN]["outputModalities"] == ["EMBEDDING"]
    assert models[COHERE]["providerName"] == "Cohere"

"""Price table, cost arithmetic, request shapes (botocore Stubber), token estimates."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from nura.bedrock.models import InvalidInvocation, InvocationRequest, Message
from nura.bedrock.pricing import cost_of
from nura.bedrock.wire import (
    converse_kwargs,
    estimate_tokens,
    invoke_body,
    parse_converse,
    parse_invoke,
)
from nura.config import ConfigError, parse_config
from nura.config.sections.bedrock import BedrockSettings, ModelPrice
from tests.bedrock.conftest import HAIKU, NOVA, SONNET


def _rates(s: BedrockSettings, model: str, region: str | None) -> tuple[Decimal, Decimal]:
    price = s.price_for(model, region)
    assert price is not None, model
    return price.input_per_1k, price.output_per_1k


def test_shipped_prices_are_live_models_with_global_below_geo() -> None:
    """AWS's pricing page (2026-12): Claude 4.5+ is ~10 % cheaper through `global.`
    profiles than in-region or through a geo (`us.`) profile, which bills the source
    region's rate."""
    s = BedrockSettings()
    assert _rates(s, SONNET, "us-east-1") == (Decimal("0.003"), Decimal("0.015"))
    geo = "us.anthropic.claude-sonnet-4-6"
    assert _rates(s, geo, "us-east-1") == (Decimal("0.0033"), Decimal("0.0165"))
    assert _rates(s, HAIKU, None) == (Decimal("0.001"), Decimal("0.005"))
    assert _rates(s, NOVA, None) == (Decimal("0.0008"), Decimal("0.0032"))
    # Retired models are gone from the table (a call to them is refused before sending).
    assert s.price_for("anthropic.claude-3-sonnet-20240229-v1:0", None) is None
    assert s.price_for("amazon.titan-text-express-v1", None) is None
    for key, price in s.prices.items():  # a dated fallback that says where it came from
        assert price.source and price.effective is not None, key


def test_a_model_priced_only_per_region_loads() -> None:
    ok = parse_config(
        {
            "external_services": {
                "aws": {
                    "bedrock": {
                        "models": ["meta.llama3-8b-instruct-v1:0"],
                        "prices": {
                            "us-east-1/meta.llama3-8b-instruct-v1:0": {
                                "input_per_1k": "0.0003",
                                "output_per_1k": "0.0006",
                            }
                        },
                    }
                }
            }
        }
    )
    settings = ok.external_services.aws.bedrock
    assert settings.price_for("meta.llama3-8b-instruct-v1:0", "us-east-1") is not None
    assert settings.price_for("meta.llama3-8b-instruct-v1:0", "eu-west-1") is None


def test_inference_profile_and_regional_prices() -> None:
    s = BedrockSettings(
        prices={
            HAIKU: ModelPrice(input_per_1k=Decimal("0.00025"), output_per_1k=Decimal("0.00125")),
            f"eu.{HAIKU}": ModelPrice(
                input_per_1k=Decimal("0.0003"), output_per_1k=Decimal("0.0015")
            ),
            f"ap-northeast-1/{HAIKU}": ModelPrice(
                input_per_1k=Decimal("0.0004"), output_per_1k=Decimal("0.002")
            ),
        },
        models=[HAIKU],
    )
    assert s.price_for(f"us.{HAIKU}", "us-east-1").input_per_1k == Decimal("0.00025")  # type: ignore[union-attr]
    assert s.price_for(f"eu.{HAIKU}", "eu-west-1").input_per_1k == Decimal("0.0003")  # type: ignore[union-attr]
    assert s.price_for(HAIKU, "ap-northeast-1").input_per_1k == Decimal("0.0004")  # type: ignore[union-attr]
    assert s.price_for("meta.llama3-8b-instruct-v1:0", "us-east-1") is None


def test_unpriced_chain_model_fails_config_load_with_its_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "external_services": {
                    "aws": {"bedrock": {"models": ["meta.llama3-8b-instruct-v1:0"]}}
                }
            }
        )
    assert "external_services.aws.bedrock" in str(err.value)
    assert "meta.llama3-8b-instruct-v1:0" in str(err.value)
    ok = parse_config(
        {
            "external_services": {
                "aws": {
                    "bedrock": {
                        "models": ["meta.llama3-8b-instruct-v1:0"],
                        "allow_unpriced_models": True,
                    }
                }
            }
        }
    )
    assert ok.external_services.aws.bedrock.allow_unpriced_models


def test_shipped_config_loads_with_seed_chain() -> None:
    from nura.config import load_config

    b = load_config().external_services.aws.bedrock
    assert b.models == [SONNET, HAIKU, NOVA]
    assert all(b.price_for(m, "us-east-1") is not None for m in b.models)


def test_cost_is_exact_decimal() -> None:
    price = ModelPrice(input_per_1k=Decimal("0.00025"), output_per_1k=Decimal("0.00125"))
    assert cost_of(price, 1234, 567) == Decimal("0.0010172500")
    assert cost_of(None, 1000, 1000) == 0
    # 3 x 0.1 style float drift cannot happen: a million calls add up exactly.
    one = cost_of(price, 7, 3)
    assert sum([one] * 1_000_000, Decimal(0)) == one * 1_000_000


def test_request_validation() -> None:
    with pytest.raises(ValueError):
        InvocationRequest(prompt="a", messages=[Message(role="user", text="b")])
    with pytest.raises(ValueError):
        InvocationRequest(prompt="a", model=SONNET, models=[HAIKU])
    with pytest.raises(ValueError):
        InvocationRequest(prompt="a", temperature=1.5)
    with pytest.raises(ValueError):
        InvocationRequest(prompt="a", scope="bad scope!")
    assert InvocationRequest(prompt="   ").conversation() == []


def _client():  # type: ignore[no-untyped-def]
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",  # noqa: S106 - stubbed, never sent
    )


def test_converse_request_shape_matches_the_service_model() -> None:
    client = _client()
    msgs = [Message(role="user", text="Hello")]
    kwargs = converse_kwargs(HAIKU, msgs, "Be brief.", 100, 0.2)
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "Hi!"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11},
                "metrics": {"latencyMs": 5},
            },
            {
                "modelId": HAIKU,
                "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                "system": [{"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 100, "temperature": 0.2},
            },
        )
        parsed = parse_converse(client.converse(**kwargs))
    assert (parsed.text, parsed.stop_reason, parsed.input_tokens, parsed.output_tokens) == (
        "Hi!",
        "end_turn",
        9,
        2,
    )


def test_anthropic_messages_body_not_the_legacy_prompt() -> None:
    body = json.loads(invoke_body(SONNET, [Message(role="user", text="Hi")], "sys", 50, 0.1))
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert body["system"] == "sys" and body["max_tokens"] == 50
    assert "prompt" not in body
    # Also for a cross-region inference profile id.
    assert "anthropic_version" in json.loads(
        invoke_body("us.anthropic.claude-sonnet-4-6", [Message(role="user", text="Hi")], None, 5, 0)
    )


def test_titan_body_and_parse_with_stubbed_invoke_model() -> None:
    TITAN = "amazon.titan-text-express-v1"  # noqa: N806 - retired, its body shape stays
    body = invoke_body(TITAN, [Message(role="user", text="Hi")], None, 64, 0.3)
    assert json.loads(body) == {
        "inputText": "Hi",
        "textGenerationConfig": {"maxTokenCount": 64, "temperature": 0.3},
    }
    convo = [Message(role="user", text="Hi"), Message(role="assistant", text="Yo")]
    convo.append(Message(role="user", text="More"))
    text = json.loads(invoke_body(TITAN, convo, "Be kind.", 8, 0))["inputText"]
    assert text == "Be kind.\nUser: Hi\nBot: Yo\nUser: More\nBot:"
    client = _client()
    payload = json.dumps(
        {
            "inputTextTokenCount": 3,
            "results": [{"tokenCount": 4, "outputText": "Hello", "completionReason": "FINISH"}],
        }
    ).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_model",
            {
                "body": StreamingBody(io.BytesIO(payload), len(payload)),
                "contentType": "application/json",
            },
            {
                "modelId": TITAN,
                "body": body,
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        response = client.invoke_model(
            modelId=TITAN, body=body, contentType="application/json", accept="application/json"
        )
    parsed = parse_invoke(TITAN, response)
    assert (parsed.text, parsed.input_tokens, parsed.output_tokens) == ("Hello", 3, 4)


def test_invoke_model_for_an_unsupported_family_is_refused() -> None:
    with pytest.raises(InvalidInvocation):
        invoke_body("meta.llama3-8b-instruct-v1:0", [Message(role="user", text="x")], None, 5, 0)


def test_estimate_counts_characters_and_framing() -> None:
    msgs = [Message(role="user", text="x" * 400)]
    assert estimate_tokens(msgs, None) == 100 + 3 + 1
    assert estimate_tokens(msgs, "y" * 40) == 110 + 3 + 1

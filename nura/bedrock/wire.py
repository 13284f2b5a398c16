"""Request and response shapes of bedrock-runtime, per API and model family (pure functions).

Converse is the default: one shape for every model, usage reported by the service.
InvokeModel needs the family's own body: Anthropic Messages (`anthropic_version:
bedrock-2023-05-31`; the seed's "Human:/Assistant:" prompt is rejected by Claude 3) and
Titan Text (`inputText` + `textGenerationConfig`; no roles, so the conversation is
rendered as "User: / Bot:" turns, the format Titan documents).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from nura.bedrock.models import InvalidInvocation, Message
from nura.config.sections.bedrock import base_model_id

ANTHROPIC_VERSION = "bedrock-2023-05-31"


@dataclass(frozen=True)
class Parsed:
    text: str
    stop_reason: str
    input_tokens: int
    output_tokens: int


def family(model_id: str) -> str:
    base = base_model_id(model_id)
    if base.startswith("anthropic."):
        return "anthropic"
    if base.startswith("amazon.titan-text"):
        return "titan"
    return "other"


def estimate_tokens(messages: list[Message], system: str | None) -> int:
    """Input tokens before the call (~4 characters a token, plus per-message framing).

    Used for the tokens-per-minute reservation and the model's input limit; the ledger
    always uses the counts the service reports.
    """
    chars = sum(len(m.text) for m in messages) + len(system or "")
    return math.ceil(chars / 4) + 3 * len(messages) + 1


def converse_kwargs(
    model_id: str,
    messages: list[Message],
    system: str | None,
    max_tokens: int,
    temperature: float,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "modelId": model_id,
        "messages": [{"role": m.role, "content": [{"text": m.text}]} for m in messages],
        "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
    }
    if system:
        kwargs["system"] = [{"text": system}]
    return kwargs


def parse_converse(response: dict[str, Any]) -> Parsed:
    content = response.get("output", {}).get("message", {}).get("content", [])
    usage = response.get("usage", {})
    return Parsed(
        text="".join(block.get("text", "") for block in content),
        stop_reason=str(response.get("stopReason", "")),
        input_tokens=int(usage.get("inputTokens", 0)),
        output_tokens=int(usage.get("outputTokens", 0)),
    )


def invoke_body(
    model_id: str,
    messages: list[Message],
    system: str | None,
    max_tokens: int,
    temperature: float,
) -> bytes:
    """The InvokeModel body for the model's family (InvalidInvocation for others)."""
    kind = family(model_id)
    if kind == "anthropic":
        body: dict[str, Any] = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "messages": [
                {"role": m.role, "content": [{"type": "text", "text": m.text}]} for m in messages
            ],
        }
        if system:
            body["system"] = system
    elif kind == "titan":
        if len(messages) == 1 and not system:
            text = messages[0].text  # a plain prompt goes as it is
        else:
            turns = [f"{'User' if m.role == 'user' else 'Bot'}: {m.text}" for m in messages]
            text = "\n".join(([system] if system else []) + turns) + "\nBot:"
        body = {
            "inputText": text,
            "textGenerationConfig": {"maxTokenCount": max_tokens, "temperature": temperature},
        }
    else:
        raise InvalidInvocation(
            f"no InvokeModel body for {model_id}; use api=converse", operation="invoke_model"
        )
    return json.dumps(body, separators=(",", ":")).encode()


def parse_invoke(model_id: str, response: dict[str, Any]) -> Parsed:
    """Read an InvokeModel answer; the token counts come from the body (or its headers)."""
    data = json.loads(response["body"].read())
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    if family(model_id) == "anthropic":
        usage = data.get("usage", {})
        return Parsed(
            text="".join(b.get("text", "") for b in data.get("content", [])),
            stop_reason=str(data.get("stop_reason", "")),
            input_tokens=int(
                usage.get("input_tokens", headers.get("x-amzn-bedrock-input-token-count", 0))
            ),
            output_tokens=int(
                usage.get("output_tokens", headers.get("x-amzn-bedrock-output-token-count", 0))
            ),
        )
    result = (data.get("results") or [{}])[0]
    return Parsed(
        text=str(result.get("outputText", "")),
        stop_reason=str(result.get("completionReason", "")),
        input_tokens=int(
            data.get("inputTextTokenCount", headers.get("x-amzn-bedrock-input-token-count", 0))
        ),
        output_tokens=int(
            result.get("tokenCount", headers.get("x-amzn-bedrock-output-token-count", 0))
        ),
    )

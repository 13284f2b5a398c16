"""Request and response shapes of bedrock-runtime, per API and model family (pure functions).

Converse is the default: one shape for every model, usage reported by the service.
InvokeModel needs the family's own body: Anthropic Messages (`anthropic_version:
bedrock-2023-05-31`; the seed's "Human:/Assistant:" prompt is rejected by Claude 3),
Amazon Nova (`schemaVersion: messages-v1`, Converse-like messages) and Titan Text
(`inputText` + `textGenerationConfig`; no roles, so the conversation is rendered as
"User: / Bot:" turns, the format Titan documents).

Requests are adapted to each model's features (AWS's "supported models and model
features" table): a model without system prompts gets the system text folded into the
first user turn instead of a `system` field it would refuse.

An answer that cannot be read raises `Unreadable`; an answer without `usage` parses with
`usage_known=False` (its cost is unknown, never $0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from nura.bedrock.models import InvalidInvocation, Message
from nura.config.sections.bedrock import base_model_id

ANTHROPIC_VERSION = "bedrock-2023-05-31"


# Converse models without system prompts (AWS's supported models and model features).
NO_SYSTEM_PROMPT = (
    "amazon.titan-text-",
    "mistral.mistral-7b-instruct",
    "mistral.mixtral-8x7b-instruct",
    "cohere.command-text",
    "cohere.command-light-text",
    "ai21.j2-",
)


class Unreadable(ValueError):
    """A 200 answer whose body is not what the API documents."""


@dataclass(frozen=True)
class Parsed:
    text: str
    stop_reason: str
    input_tokens: int
    output_tokens: int
    usage_known: bool = True
    cut: bool = False  # a stream that ended before its messageStop / metadata events


def family(model_id: str) -> str:
    base = base_model_id(model_id)
    if base.startswith("anthropic."):
        return "anthropic"
    if base.startswith("amazon.titan-text"):
        return "titan"
    if base.startswith("amazon.nova"):
        return "nova"
    return "other"


def supports_system(model_id: str, configured: bool = True) -> bool:
    """Whether the model takes a `system` prompt (`configured`: its model_limits flag)."""
    return configured and not base_model_id(model_id).startswith(NO_SYSTEM_PROMPT)


def adapt(
    model_id: str, messages: list[Message], system: str | None, system_ok: bool
) -> tuple[list[Message], str | None]:
    """The conversation as this model takes it: a system prompt it cannot take goes in
    front of the first user turn."""
    if not system or system_ok:
        return messages, system
    first = Message(role="user", text=f"{system}\n\n{messages[0].text}")
    return [first, *messages[1:]], None


def check_conversation(messages: list[Message]) -> str | None:
    """Why Bedrock would refuse this conversation for every model (None: it would not)."""
    if not messages:
        return "empty prompt: give a non-blank prompt or messages"
    if messages[0].role != "user" or messages[-1].role != "user":
        return "a conversation must start and end with a user message"
    for i, (before, after) in enumerate(zip(messages, messages[1:], strict=False), start=1):
        if before.role == after.role:
            return f"roles must alternate between user and assistant (messages {i - 1} and {i})"
    for i, m in enumerate(messages):
        if not m.text.strip():
            return f"message {i} is blank"
    return None


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
    try:
        content = response["output"]["message"]["content"]
        text = "".join(block.get("text", "") for block in content)
        usage = response.get("usage")
        known = isinstance(usage, dict) and "inputTokens" in usage and "outputTokens" in usage
        return Parsed(
            text=text,
            stop_reason=str(response.get("stopReason", "")),
            input_tokens=int(usage["inputTokens"]) if known else 0,  # type: ignore[index]
            output_tokens=int(usage["outputTokens"]) if known else 0,  # type: ignore[index]
            usage_known=known,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Unreadable(f"unreadable Converse answer: {type(exc).__name__}") from exc


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
    elif kind == "nova":
        body = {
            "schemaVersion": "messages-v1",
            "messages": [{"role": m.role, "content": [{"text": m.text}]} for m in messages],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
        }
        if system:
            body["system"] = [{"text": system}]
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
    try:
        return _parse_invoke(model_id, response)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Unreadable(f"unreadable InvokeModel answer: {type(exc).__name__}") from exc


def _parse_invoke(model_id: str, response: dict[str, Any]) -> Parsed:
    data = json.loads(response["body"].read())
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    if family(model_id) == "nova":
        usage = data.get("usage", {})
        return Parsed(
            text="".join(b.get("text", "") for b in data["output"]["message"]["content"]),
            stop_reason=str(data.get("stopReason", "")),
            input_tokens=int(
                usage.get("inputTokens", headers.get("x-amzn-bedrock-input-token-count", 0))
            ),
            output_tokens=int(
                usage.get("outputTokens", headers.get("x-amzn-bedrock-output-token-count", 0))
            ),
        )
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


class StreamFailed(Exception):
    """A ConverseStream that failed before any text arrived (the chain may move on)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_stream(response: dict[str, Any], on_text: Any = None) -> Parsed:
    """Consume a ConverseStream answer, handing each text delta to `on_text` as it arrives.

    Usage comes from the final `metadata` event. A stream that breaks off after text was
    shown returns what arrived with `cut=True` (its cost is then estimated, never $0);
    one that fails before any text raises `StreamFailed` (nothing was shown: the call
    can be retried or the chain can move on).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    parts: list[str] = []
    stop = ""
    usage: dict[str, Any] | None = None
    try:
        for event in response["stream"]:
            if "contentBlockDelta" in event:
                text = event["contentBlockDelta"].get("delta", {}).get("text", "")
                if text:
                    parts.append(text)
                    if on_text is not None:
                        on_text(text)
            elif "messageStop" in event:
                stop = str(event["messageStop"].get("stopReason", ""))
            elif "metadata" in event:
                usage = event["metadata"].get("usage")
    except (ClientError, BotoCoreError, OSError) as exc:  # in-stream exception or transport
        if not parts:
            code = ""
            if isinstance(exc, ClientError):
                code = str(exc.response.get("Error", {}).get("Code", ""))
            raise StreamFailed(code or type(exc).__name__, str(exc)[:300]) from exc
    complete = bool(stop) and isinstance(usage, dict) and "inputTokens" in usage
    return Parsed(
        text="".join(parts),
        stop_reason=stop or "cut",
        input_tokens=int(usage["inputTokens"]) if complete else 0,  # type: ignore[index]
        output_tokens=int(usage["outputTokens"]) if complete else 0,  # type: ignore[index]
        usage_known=complete,
        cut=not stop,
    )

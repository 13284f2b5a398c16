"""A local Bedrock runtime: the bedrock-runtime wire format, deterministic answers.

moto does not implement Converse/InvokeModel, so this stand-in speaks them for real and a
boto3 client with `endpoint_url` talks to it unchanged (rest-json; errors as botocore
reads them: status code, `x-amzn-ErrorType` header, `{"message": ...}` body).

  POST /model/{modelId}/converse   Converse (messages, system, inferenceConfig)
  POST /model/{modelId}/invoke     InvokeModel: Anthropic Messages body
                                   (`anthropic_version: bedrock-2023-05-31`) or Titan Text
                                   (`inputText`, `textGenerationConfig`); the legacy
                                   "Human:/Assistant:" `prompt` body is refused for Claude 3
                                   exactly as Bedrock does (ValidationException).
  POST /_sandbox/control           {"models": {"<id or *>": {"throttle": N, "validation": N,
                                   "server_error": N, "latency_ms": X}}}; N = next N calls,
                                   -1 = every call
  GET  /_sandbox/stats             {"calls": {"<model>": n}, "total": n}
  POST /_sandbox/reset             clears scripts and stats

Answers are a function of the request only; token counts follow the ~4 characters per
token that English text averages (input counted over system + messages, output over the
answer, `max_tokens` truncating with stop reason `max_tokens`).

    python -m deployments.sandbox.bedrock_server --port 8702
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from typing import Any
from urllib.parse import unquote, urlparse

from deployments.sandbox.base import JsonHandler, LocalServer, serve_main

WORDS = (
    "prefect flows orchestrate resilient integrations while bedrock models answer with "
    "measured tokens and every call is priced recorded budgeted and traced across the "
    "platform so operators see what each answer cost and which model gave it"
).split()
MAX_OUTPUT = {"anthropic": 4096, "titan": 8192, "other": 4096}
ERRORS = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "validation": (400, "ValidationException", "Malformed input request, please reformat."),
    "server_error": (500, "InternalServerException", "The server encountered an error."),
}


def tokens_of(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def family(model_id: str) -> str:
    base = model_id.split(".", 1)[1] if model_id.split(".", 1)[0] in _GEOS else model_id
    if base.startswith("anthropic."):
        return "anthropic"
    if base.startswith("amazon.titan-text"):
        return "titan"
    return "other"


_GEOS = {"us", "eu", "apac", "us-gov", "jp", "au", "ca", "global"}


def answer_for(model_id: str, prompt: str) -> str:
    """A deterministic answer of 12-60 words for (model, prompt)."""
    digest = hashlib.sha256(f"{model_id}\n{prompt}".encode()).digest()
    count = 12 + digest[0] % 49
    return " ".join(WORDS[(digest[i % 32] + i) % len(WORDS)] for i in range(count)) + "."


def truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    if tokens_of(text) <= max_tokens:
        return text, False
    return text[: max_tokens * 4], True


class _ModelScript:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.latency_ms = 0.0

    def take(self) -> str | None:
        for kind in ("validation", "throttle", "server_error"):
            n = self.counts.get(kind, 0)
            if n == 0:
                continue
            if n > 0:
                self.counts[kind] = n - 1
            return kind
        return None


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.scripts: dict[str, _ModelScript] = {}
        self.calls: dict[str, int] = {}

    def script(self, model_id: str) -> _ModelScript | None:
        return self.scripts.get(model_id) or self.scripts.get("*")


class BedrockStandIn(LocalServer):
    """The stand-in server. `.start()` serves on a background thread; `.url` is the endpoint."""

    request_queue_size = 128

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = _State()
        super().__init__((host, port), _Handler)

    # In-process control for tests (the same as POST /_sandbox/control).
    def script(self, model_id: str = "*", **counts: float) -> None:
        with self.state.lock:
            script = self.state.scripts.setdefault(model_id, _ModelScript())
            for kind, value in counts.items():
                if kind == "latency_ms":
                    script.latency_ms = float(value)
                elif kind in ERRORS:
                    script.counts[kind] = int(value)
                else:
                    raise ValueError(f"unknown script key {kind!r}")

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset()

    def calls(self, model_id: str | None = None) -> int:
        with self.state.lock:
            if model_id is None:
                return sum(self.state.calls.values())
            return self.state.calls.get(model_id, 0)


class _Invalid(Exception):
    pass


class _Handler(JsonHandler):
    server: BedrockStandIn

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super()._send(status, body, {"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})})

    def _error(self, kind: str, message: str | None = None) -> None:
        status, code, default = ERRORS[kind]
        self._send(status, {"message": message or default}, {"x-amzn-ErrorType": f"{code}:"})

    def do_GET(self) -> None:
        if urlparse(self.path).path == "/_sandbox/stats":
            with self.server.state.lock:
                calls = dict(self.server.state.calls)
            return self._send(200, {"calls": calls, "total": sum(calls.values())})
        return self._send(404, {"message": "not found"}, {"x-amzn-ErrorType": "UnknownOperation:"})

    def do_POST(self) -> None:
        raw = self._read_body()
        path = urlparse(self.path).path
        if path == "/_sandbox/control":
            try:
                for model_id, counts in (json.loads(raw or b"{}").get("models") or {}).items():
                    self.server.script(model_id, **counts)
            except (ValueError, TypeError, AttributeError) as exc:
                return self._send(400, {"message": str(exc)})
            return self._send(200, {"ok": True})
        if path == "/_sandbox/reset":
            self.server.reset()
            return self._send(200, {"ok": True})
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "invoke"):
            return self._send(
                404, {"message": "unknown operation"}, {"x-amzn-ErrorType": "UnknownOperation:"}
            )
        model_id = unquote(parts[2])
        st = self.server.state
        with st.lock:
            st.calls[model_id] = st.calls.get(model_id, 0) + 1
            script = st.script(model_id)
            scripted = script.take() if script else None
            latency = script.latency_ms if script else 0.0
        if latency:
            time.sleep(latency / 1000)  # the injected model latency (a server, not a test)
        if scripted:
            return self._error(scripted)
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise _Invalid("request body must be a JSON object")
            if parts[3] == "converse":
                return self._converse(model_id, body)
            return self._invoke(model_id, body)
        except (_Invalid, ValueError, KeyError, TypeError) as exc:
            return self._error("validation", str(exc) or "Malformed input request.")

    # -- Converse ----------------------------------------------------------------------
    def _converse(self, model_id: str, body: dict[str, Any]) -> None:
        started = time.perf_counter()
        messages = body.get("messages") or []
        if not messages:
            raise _Invalid("A conversation must start with a user message.")
        texts = [b.get("text", "") for m in messages for b in m.get("content", [])]
        system = " ".join(s.get("text", "") for s in body.get("system") or [])
        prompt = "\n".join(texts)
        if not prompt.strip():
            raise _Invalid("The text field in the ContentBlock object is blank.")
        config = body.get("inferenceConfig") or {}
        max_tokens = self._max_tokens(model_id, config.get("maxTokens"))
        text, cut = truncate(answer_for(model_id, prompt), max_tokens)
        usage_in = tokens_of(system) + sum(tokens_of(t) for t in texts) + 3 * len(messages)
        usage_out = tokens_of(text)
        self._send(
            200,
            {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "max_tokens" if cut else "end_turn",
                "usage": {
                    "inputTokens": usage_in,
                    "outputTokens": usage_out,
                    "totalTokens": usage_in + usage_out,
                },
                "metrics": {"latencyMs": int((time.perf_counter() - started) * 1000) + 1},
            },
        )

    def _max_tokens(self, model_id: str, requested: Any) -> int:
        limit = MAX_OUTPUT[family(model_id)]
        value = limit if requested is None else int(requested)
        if value < 1 or value > limit:
            raise _Invalid(f"max_tokens: {value} is outside 1..{limit} for model {model_id}")
        return value

    # -- InvokeModel -------------------------------------------------------------------
    def _invoke(self, model_id: str, body: dict[str, Any]) -> None:
        kind = family(model_id)
        if kind == "anthropic":
            return self._invoke_anthropic(model_id, body)
        if kind == "titan":
            return self._invoke_titan(model_id, body)
        raise _Invalid(f"the stand-in has no InvokeModel body for {model_id}")

    def _token_headers(self, usage_in: int, usage_out: int) -> dict[str, str]:
        return {
            "X-Amzn-Bedrock-Input-Token-Count": str(usage_in),
            "X-Amzn-Bedrock-Output-Token-Count": str(usage_out),
            "X-Amzn-Bedrock-Invocation-Latency": "1",
        }

    def _invoke_anthropic(self, model_id: str, body: dict[str, Any]) -> None:
        if "prompt" in body:
            raise _Invalid(
                '"claude-3" models do not support the legacy prompt body; use the Messages API'
            )
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            raise _Invalid("anthropic_version: bedrock-2023-05-31 is required")
        messages = body.get("messages") or []
        if not messages:
            raise _Invalid("messages: at least one message is required")
        texts: list[str] = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.extend(b.get("text", "") for b in content or [] if b.get("type") == "text")
        system = body.get("system") or ""
        system = system if isinstance(system, str) else " ".join(b["text"] for b in system)
        if "max_tokens" not in body:
            raise _Invalid("max_tokens: field required")
        max_tokens = self._max_tokens(model_id, body["max_tokens"])
        text, cut = truncate(answer_for(model_id, "\n".join(texts)), max_tokens)
        usage_in = tokens_of(system) + sum(tokens_of(t) for t in texts) + 3 * len(messages)
        usage_out = tokens_of(text)
        self._send(
            200,
            {
                "id": f"msg_bdrk_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": model_id,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if cut else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
            },
            self._token_headers(usage_in, usage_out),
        )

    def _invoke_titan(self, model_id: str, body: dict[str, Any]) -> None:
        prompt = body.get("inputText")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Invalid("inputText: must be a non-empty string")
        config = body.get("textGenerationConfig") or {}
        max_tokens = self._max_tokens(model_id, config.get("maxTokenCount", 512))
        text, cut = truncate(answer_for(model_id, prompt), max_tokens)
        usage_in, usage_out = tokens_of(prompt), tokens_of(text)
        self._send(
            200,
            {
                "inputTextTokenCount": usage_in,
                "results": [
                    {
                        "tokenCount": usage_out,
                        "outputText": text,
                        "completionReason": "LENGTH" if cut else "FINISH",
                    }
                ],
            },
            self._token_headers(usage_in, usage_out),
        )


def main() -> None:
    serve_main(
        __doc__ or "",
        8702,
        lambda args: BedrockStandIn(args.host, args.port),
        lambda server: f"Bedrock stand-in (bedrock-runtime wire format) on {server.url}",
    )


if __name__ == "__main__":
    main()

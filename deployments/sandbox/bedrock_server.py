"""A local Amazon Bedrock: the runtime (Converse, InvokeModel) and the control plane's
model catalogue (ListFoundationModels, ListInferenceProfiles), behaving like Bedrock.

moto implements neither, so this stand-in speaks them for real; boto3 clients
(`bedrock-runtime` and `bedrock`) with `endpoint_url` talk to it unchanged (rest-json;
errors as botocore reads them: status code, `x-amzn-ErrorType` header, `{"message"}`).
Written from AWS's API reference (Converse request/response, its documented errors and
status codes) and model catalogue, not from nura's client:

  POST /model/{modelId}/converse   Converse
  POST /model/{modelId}/converse-stream
                                   ConverseStream: an `application/vnd.amazon.eventstream`
                                   of messageStart, contentBlockDelta (a word at a time),
                                   contentBlockStop, messageStop and metadata (usage)
  POST /model/{modelId}/invoke     InvokeModel (Anthropic Messages body with
                                   `anthropic_version: bedrock-2023-05-31`; Amazon Nova
                                   `messages` + `inferenceConfig`)
  GET  /foundation-models          ListFoundationModels (modelLifecycle ACTIVE / LEGACY;
                                   end-of-life models are no longer listed)
  GET  /inference-profiles         ListInferenceProfiles (system-defined `us.`/`eu.`/
                                   `global.` profiles of this server's region, paginated)

What it refuses, as Bedrock does (all `ValidationException` 400 unless said otherwise):
a model id it does not know ("The provided model identifier is invalid."), an
end-of-life model (`ResourceNotFoundException` 404), a model the account has no access
to (`AccessDeniedException` 403), an on-demand call to a model offered only through
inference profiles, a conversation that does not start with a user turn or whose roles
do not alternate, blank text, a `system` prompt to a model without system prompts, more
input than the model's context, `maxTokens` over the model's output limit.

Token counts are its own tokenizer-like rule (`count_tokens`: a word piece per 4 letters,
each digit and each punctuation mark a token, 3 tokens of framing per message), not the
~4 characters a token that nura's client estimates with.

Answers are deterministic per (model, prompt). A prompt with numbered context
(`<source n="N">...</source>` blocks and a `Question:` line) gets a grounded answer: the
context sentence sharing most words with the question, cited `[N]` (`grounded_answer`).

Embeddings (InvokeModel, AWS's model parameters pages): `amazon.titan-embed-text-v2:0`
({"inputText", "dimensions" 256/512/1024, "normalize"} -> {"embedding",
"inputTextTokenCount", "embeddingsByType"}; one text per call, at most 50,000 characters
and 8,192 tokens) and `cohere.embed-english-v3` / `-multilingual-v3` ({"texts" (up to
96, 2,048 characters each), "input_type"} -> {"embeddings", ...}, 1,024 dimensions). The
vectors carry meaning (`meaning_vector`: hashed words and bigrams), so retrieval can be
measured against this server. Converse on an embedding model is refused.

Knowledge Bases (`bedrock-agent`): StartIngestionJob and GetIngestionJob, see
deployments/sandbox/bedrock_agent.py (`server.knowledge_bases.add(kb_id, ds_id)`).

Faults, per model (or `*`), each for the next N calls (-1: every call):
`throttle` (429 ThrottlingException), `not_ready` (429 ModelNotReadyException),
`timeout` (408 ModelTimeoutException), `model_error` (424 ModelErrorException),
`server_error` (500 InternalServerException), `unavailable` (503
ServiceUnavailableException), `validation` (400), `no_usage` (200 without `usage`),
`garbled` (200 with a body that is not JSON), `hang` (answer only after `hang_ms`),
`cut` (a stream that stops after its first deltas, without messageStop or metadata),
and `latency_ms` on every call. The catalogue can be changed per model
(`lifecycle`, `system`, `on_demand`, `access`, `max_output`, `context`).

  POST /_sandbox/control  {"models": {"<id or *>": {"throttle": 2, "hang": 1, "hang_ms": 3000}},
                           "catalog": {"<id>": {"lifecycle": "EOL"}}}
  GET  /_sandbox/stats    {"calls": {"<model>": n}, "total": n}
  POST /_sandbox/reset    clears scripts, catalogue changes and stats

    python -m deployments.sandbox.bedrock_server --port 8702 [--region us-east-1]
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import struct
import threading
import time
import uuid
import zlib
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from deployments.sandbox.base import JsonHandler, LocalServer, serve_main
from deployments.sandbox.bedrock_agent import AgentError, KnowledgeBases

WORDS = (
    "prefect flows orchestrate resilient integrations while bedrock models answer with "
    "measured tokens and every call is priced recorded budgeted and traced across the "
    "platform so operators see what each answer cost and which model gave it"
).split()

# kind -> (HTTP status, error code, message): AWS's documented Converse errors.
ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "not_ready": (
        429,
        "ModelNotReadyException",
        "The model specified in the request is not ready to serve inference requests.",
    ),
    "timeout": (
        408,
        "ModelTimeoutException",
        "The request took too long to process. Processing time exceeded the model timeout length.",
    ),
    "model_error": (
        424,
        "ModelErrorException",
        "The request failed due to an error while processing the model.",
    ),
    "server_error": (500, "InternalServerException", "The server encountered an error."),
    "unavailable": (503, "ServiceUnavailableException", "The service isn't currently available."),
    "validation": (400, "ValidationException", "Malformed input request, please reformat."),
    "not_found": (404, "ResourceNotFoundException", "The specified resource was not found."),
    "access_denied": (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
}
SCRIPTED: tuple[str, ...] = (
    "validation",
    "throttle",
    "not_ready",
    "timeout",
    "model_error",
    "server_error",
)
SCRIPTED += ("unavailable", "no_usage", "garbled", "hang", "cut")
PROFILE_GEOS = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "eu": ("eu-central-1", "eu-west-1", "eu-west-3", "eu-north-1"),
    "apac": ("ap-northeast-1", "ap-southeast-1", "ap-southeast-2", "ap-south-1"),
}
_GEO_PREFIXES = ("us-gov", "us", "eu", "apac", "jp", "au", "ca", "global")


@dataclasses.dataclass
class CatalogModel:
    """One foundation model as the control plane describes it, and what the runtime enforces."""

    name: str
    provider: str
    lifecycle: str = "ACTIVE"  # ACTIVE | LEGACY | EOL (end of life: no longer listed or served)
    on_demand: bool = True  # False: only through an inference profile
    profiles: tuple[str, ...] = ()  # profile prefixes offered: "us", "eu", "apac", "global"
    system: bool = True  # accepts a system prompt
    max_output: int = 4096
    context: int = 200_000
    access: bool = True  # the account has access to the model
    output: str = "TEXT"  # TEXT | EMBEDDING (an embedding model answers InvokeModel only)


def default_catalog() -> dict[str, CatalogModel]:
    """Models as AWS's model cards and lifecycle page list them (late 2026)."""
    claude: dict[str, Any] = {"provider": "Anthropic", "on_demand": False, "max_output": 64_000}
    nova: dict[str, Any] = {"provider": "Amazon", "profiles": ("us", "eu", "apac")}
    nova["context"] = 300_000
    retired_claude: dict[str, Any] = {"provider": "Anthropic", "lifecycle": "EOL"}
    return {
        "anthropic.claude-sonnet-4-6": CatalogModel(
            "Claude Sonnet 4.6", profiles=("us", "eu", "global"), **claude
        ),
        "anthropic.claude-sonnet-4-5-20250929-v1:0": CatalogModel(
            "Claude Sonnet 4.5", profiles=("us", "eu", "global"), **claude
        ),
        "anthropic.claude-haiku-4-5-20251001-v1:0": CatalogModel(
            "Claude Haiku 4.5", profiles=("us", "eu", "global"), **claude
        ),
        "amazon.nova-pro-v1:0": CatalogModel("Nova Pro", max_output=10_000, **nova),
        "amazon.nova-lite-v1:0": CatalogModel("Nova Lite", max_output=10_000, **nova),
        "amazon.nova-micro-v1:0": CatalogModel(
            "Nova Micro", max_output=10_000, **{**nova, "context": 128_000}
        ),
        # AWS's "supported models and model features" table: no system prompts.
        "mistral.mistral-7b-instruct-v0:2": CatalogModel(
            "Mistral 7B Instruct", "Mistral AI", system=False, max_output=8192, context=32_000
        ),
        # End of life on Bedrock (model lifecycle page): refused, no longer listed.
        "anthropic.claude-3-sonnet-20240229-v1:0": CatalogModel(
            "Claude 3 Sonnet", **retired_claude
        ),
        "anthropic.claude-3-haiku-20240307-v1:0": CatalogModel("Claude 3 Haiku", **retired_claude),
        "anthropic.claude-3-5-haiku-20241022-v1:0": CatalogModel(
            "Claude 3.5 Haiku", **retired_claude
        ),
        "anthropic.claude-3-7-sonnet-20250219-v1:0": CatalogModel(
            "Claude 3.7 Sonnet", **retired_claude
        ),
        "amazon.titan-text-express-v1": CatalogModel(
            "Titan Text G1 - Express", "Amazon", lifecycle="EOL"
        ),
        "amazon.titan-text-lite-v1": CatalogModel(
            "Titan Text G1 - Lite", "Amazon", lifecycle="EOL"
        ),
        **embedding_catalog(),
    }


_PIECE = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


def count_tokens(text: str) -> int:
    """The stand-in's tokenizer-like rule: letters in pieces of up to 4, each digit and
    punctuation mark one token. Never more tokens than characters."""
    total = 0
    for piece in _PIECE.findall(text):
        total += math.ceil(len(piece) / 4) if piece[0].isalpha() else 1
    return total


def split_model(model_id: str) -> tuple[str | None, str]:
    """`us.anthropic.x` -> ("us", "anthropic.x"); a plain id -> (None, id)."""
    head, _, rest = model_id.partition(".")
    if head in _GEO_PREFIXES and rest:
        return head, rest
    return None, model_id


_SOURCE = re.compile(r'<source n="(\d+)"[^>]*>\n?(.*?)</source>', re.S)
_QUESTION = re.compile(r"^Question:\s*(.+)$", re.M)
_REPLY_EXACTLY = re.compile(r'reply exactly "([^"]+)"')
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_TERM = re.compile(r"\w{4,}")
# Question words every question shares with unrelated text: not evidence of an answer.
_STOP = frozenset("what which when where does have with from that this there about".split())


def grounded_answer(prompt: str) -> str | None:
    """The answer to a prompt with numbered context, or None for any other prompt.

    A prompt with `<source n="N" ...>text</source>` blocks and a `Question: ...` line is
    answered the way a model told to answer only from its sources does, deterministically:
    the context sentence sharing the most distinct words with the question (words of 4+
    letters, any case, question words left out), cited `[N]`; ties go to the earlier
    source and sentence. When no sentence shares a word, the reply is what the prompt asks
    for then (`reply exactly "..."`), else "The sources do not say."
    """
    sources = _SOURCE.findall(prompt)
    question = _QUESTION.search(prompt)
    if not sources or question is None:
        return None
    wanted = {t.lower() for t in _TERM.findall(question.group(1))} - _STOP
    best, best_score = "", 0
    for number, text in sources:
        for sentence in _SENTENCE_END.split(text):
            score = len(wanted & {t.lower() for t in _TERM.findall(sentence)})
            if score > best_score:
                best, best_score = f"{sentence.strip()} [{number}]", score
    if best_score:
        return best
    refusal = _REPLY_EXACTLY.search(prompt)
    return refusal.group(1) if refusal else "The sources do not say."


def _cut_to(words: list[str], max_tokens: int) -> tuple[str, bool]:
    """The words that fit `max_tokens` (and whether the answer was cut)."""
    kept: list[str] = []
    used = 0
    for word in words:
        cost = count_tokens(word)  # a space between words is free
        if used + cost > max_tokens:
            return " ".join(kept), True
        kept.append(word)
        used += cost
    return " ".join(kept), False


def answer_for(model_id: str, prompt: str, max_tokens: int) -> tuple[str, bool]:
    """A deterministic answer for (model, prompt), cut at `max_tokens`: the grounded answer
    for a prompt with numbered sources (`grounded_answer`), else 12-60 words."""
    grounded = grounded_answer(prompt)
    if grounded is not None:
        return _cut_to(grounded.split(), max_tokens)
    digest = hashlib.sha256(f"{model_id}\n{prompt}".encode()).digest()
    count = 12 + digest[0] % 49
    words: list[str] = []
    used = 0
    for i in range(count):
        word = WORDS[(digest[i % 32] + i) % len(WORDS)]
        cost = count_tokens(word)
        if used + cost > max_tokens:
            return " ".join(words), True
        words.append(word)
        used += cost
    if used + 1 > max_tokens:
        return " ".join(words), True
    return " ".join(words) + ".", False


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _ModelScript:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.latency_ms = 0.0
        self.hang_ms = 0.0

    def take(self) -> str | None:
        for kind in SCRIPTED:
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
        self.catalog = default_catalog()

    def script(self, model_id: str) -> _ModelScript | None:
        return self.scripts.get(model_id) or self.scripts.get("*")


class BedrockStandIn(LocalServer):
    """The stand-in server. `.start()` serves on a background thread; `.url` is the endpoint."""

    request_queue_size = 128

    def __init__(self, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1") -> None:
        self.state = _State()
        self.region = region
        # bedrock-agent's ingestion jobs (deployments/sandbox/bedrock_agent.py)
        self.knowledge_bases = KnowledgeBases()
        super().__init__((host, port), _Handler)

    # In-process control for tests (the same as POST /_sandbox/control).
    def script(self, model_id: str = "*", **counts: float) -> None:
        with self.state.lock:
            script = self.state.scripts.setdefault(model_id, _ModelScript())
            for kind, value in counts.items():
                if kind == "latency_ms":
                    script.latency_ms = float(value)
                elif kind == "hang_ms":
                    script.hang_ms = float(value)
                elif kind in SCRIPTED:
                    script.counts[kind] = int(value)
                else:
                    raise ValueError(f"unknown script key {kind!r}")

    def catalog(self, model_id: str, **attrs: Any) -> None:
        """Change (or add) a model of the catalogue: lifecycle, system, on_demand, ..."""
        with self.state.lock:
            model = self.state.catalog.get(model_id) or CatalogModel(model_id, "Test")
            fields = {f.name for f in dataclasses.fields(CatalogModel)}
            unknown = set(attrs) - fields
            if unknown:
                raise ValueError(f"unknown catalogue keys {sorted(unknown)}")
            if "profiles" in attrs:
                attrs["profiles"] = tuple(attrs["profiles"])
            self.state.catalog[model_id] = dataclasses.replace(model, **attrs)

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset()
        self.knowledge_bases.reset()

    def calls(self, model_id: str | None = None) -> int:
        with self.state.lock:
            if model_id is None:
                return sum(self.state.calls.values())
            return self.state.calls.get(model_id, 0)

    def resolve(self, model_id: str) -> tuple[str, CatalogModel]:
        """The catalogue entry a runtime call to `model_id` reaches, or `_Refused`."""
        with self.state.lock:
            catalog = copy.copy(self.state.catalog)
        geo, base = split_model(model_id)
        model = catalog.get(base)
        if model is None:
            raise _Refused("validation", "The provided model identifier is invalid.")
        if model.lifecycle == "EOL":
            raise _Refused(
                "not_found",
                "This model version has reached the end of its life. "
                "Please refer to the AWS documentation for more details.",
            )
        if geo is not None and not self._profile_offered(geo, model):
            raise _Refused("validation", "The provided model identifier is invalid.")
        if geo is None and not model.on_demand:
            raise _Refused(
                "validation",
                f"Invocation of model ID {base} with on-demand throughput isn\u2019t supported. "
                "Retry your request with the ID or ARN of an inference profile that contains "
                "this model.",
            )
        if not model.access:
            raise _Refused("access_denied", ERRORS["access_denied"][2])
        return base, model

    def _profile_offered(self, geo: str, model: CatalogModel) -> bool:
        if geo not in model.profiles:
            return False
        return geo == "global" or self.region in PROFILE_GEOS.get(geo, ())

    def profiles(self) -> list[dict[str, Any]]:
        """ListInferenceProfiles' summaries for this region (system-defined only)."""
        with self.state.lock:
            catalog = copy.copy(self.state.catalog)
        out = []
        for base, model in sorted(catalog.items()):
            if model.lifecycle == "EOL":
                continue
            for geo in model.profiles:
                if not self._profile_offered(geo, model):
                    continue
                regions = PROFILE_GEOS.get(geo, (self.region, "us-west-2", "eu-west-1"))
                out.append(
                    {
                        "inferenceProfileName": f"{geo.upper()} {model.name}",
                        "inferenceProfileId": f"{geo}.{base}",
                        "inferenceProfileArn": (
                            f"arn:aws:bedrock:{self.region}:123456789012:"
                            f"inference-profile/{geo}.{base}"
                        ),
                        "models": [
                            {"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{base}"}
                            for r in regions
                        ],
                        "status": "ACTIVE",
                        "type": "SYSTEM_DEFINED",
                    }
                )
        return out

    def foundation_models(self) -> list[dict[str, Any]]:
        """ListFoundationModels' summaries (end-of-life models are not listed)."""
        with self.state.lock:
            catalog = copy.copy(self.state.catalog)
        out = []
        for base, model in sorted(catalog.items()):
            if model.lifecycle == "EOL":
                continue
            kinds = (["ON_DEMAND"] if model.on_demand else []) + (
                ["INFERENCE_PROFILE"] if model.profiles else []
            )
            out.append(
                {
                    "modelArn": f"arn:aws:bedrock:{self.region}::foundation-model/{base}",
                    "modelId": base,
                    "modelName": model.name,
                    "providerName": model.provider,
                    "inputModalities": ["TEXT"],
                    "outputModalities": [model.output],
                    "responseStreamingSupported": model.output == "TEXT",
                    "customizationsSupported": [],
                    "inferenceTypesSupported": kinds,
                    "modelLifecycle": {"status": model.lifecycle},
                }
            )
        return out


class _Handler(JsonHandler):
    server: BedrockStandIn

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        try:
            super()._send(status, body, {"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})})
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True

    def _error(self, kind: str, message: str | None = None, **extra: Any) -> None:
        status, code, default = ERRORS[kind]
        body = {"message": message or default, **extra}
        self._send(status, body, {"x-amzn-ErrorType": f"{code}:"})

    def do_PUT(self) -> None:
        raw = self._read_body()
        path = urlparse(self.path).path
        try:
            answer = self.server.knowledge_bases.start(path, json.loads(raw or b"{}"))
        except AgentError as exc:
            return self._send(
                exc.status, {"message": str(exc)}, {"x-amzn-ErrorType": f"{exc.code}:"}
            )
        except ValueError:
            return self._error("validation", "request body must be JSON")
        return self._send(202, answer)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if self.server.knowledge_bases.handles(url.path):
            try:
                return self._send(200, self.server.knowledge_bases.get(url.path))
            except AgentError as exc:
                headers = {"x-amzn-ErrorType": f"{exc.code}:"}
                return self._send(exc.status, {"message": str(exc)}, headers)
        if url.path == "/_sandbox/stats":
            with self.server.state.lock:
                calls = dict(self.server.state.calls)
            return self._send(200, {"calls": calls, "total": sum(calls.values())})
        if url.path == "/foundation-models":
            return self._send(200, {"modelSummaries": self.server.foundation_models()})
        if url.path == "/inference-profiles":
            return self._list_profiles(parse_qs(url.query))
        return self._send(404, {"message": "not found"}, {"x-amzn-ErrorType": "UnknownOperation:"})

    def _list_profiles(self, query: dict[str, list[str]]) -> None:
        profiles = self.server.profiles()
        start = int(query.get("nextToken", ["0"])[0] or 0)
        size = int(query.get("maxResults", ["1000"])[0] or 1000)
        page = profiles[start : start + size]
        body: dict[str, Any] = {"inferenceProfileSummaries": page}
        if start + size < len(profiles):
            body["nextToken"] = str(start + size)
        return self._send(200, body)

    def do_POST(self) -> None:
        raw = self._read_body()
        path = urlparse(self.path).path
        if path == "/_sandbox/control":
            try:
                control = json.loads(raw or b"{}")
                for model_id, counts in (control.get("models") or {}).items():
                    self.server.script(model_id, **counts)
                for model_id, attrs in (control.get("catalog") or {}).items():
                    self.server.catalog(model_id, **attrs)
            except (ValueError, TypeError, AttributeError) as exc:
                return self._send(400, {"message": str(exc)})
            return self._send(200, {"ok": True})
        if path == "/_sandbox/reset":
            self.server.reset()
            return self._send(200, {"ok": True})
        parts = path.split("/")
        operations = ("converse", "invoke", "converse-stream")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in operations:
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
            hang = script.hang_ms if script else 0.0
        if latency:
            time.sleep(latency / 1000)  # the injected model latency (a server, not a test)
        if scripted == "hang":
            time.sleep(hang / 1000)
        elif scripted in ERRORS:
            if scripted == "model_error":
                return self._error(scripted, originalStatusCode=500, resourceName=model_id)
            return self._error(scripted)
        try:
            base, model = self.server.resolve(model_id)
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise _Refused("validation", "request body must be a JSON object")
            answer: tuple[Any, ...]
            if parts[3] == "converse-stream":
                status, full = self._converse(model_id, model, body, scripted)
                return self._stream(full, cut=scripted == "cut")
            if parts[3] == "converse":
                answer = self._converse(model_id, model, body, scripted)
            else:
                answer = self._invoke(model_id, base, model, body)
        except _Refused as exc:
            return self._error(exc.kind, str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return self._error("validation", str(exc) or "Malformed input request.")
        if scripted == "garbled":
            return self._send(200, b'{"output": {"message": ')
        return self._send(*answer)

    # -- Converse ----------------------------------------------------------------------
    def _converse(
        self, model_id: str, model: CatalogModel, body: dict[str, Any], scripted: str | None
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        if model.output != "TEXT":
            raise _Refused(
                "validation",
                "This action doesn't support the model that you provided. "
                "Try again with a supported text or chat model.",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Refused("validation", "The messages field is required.")
        texts = _check_turns(messages)
        system = _system_text(body.get("system"))
        if system and not model.system:
            raise _Refused(
                "validation", "This model doesn't support system messages. Try again without them."
            )
        usage_in = count_tokens(system) + sum(count_tokens(t) for t in texts) + 3 * len(messages)
        if usage_in > model.context:
            raise _Refused("validation", "Input is too long for requested model.")
        config = body.get("inferenceConfig") or {}
        max_tokens = self._max_tokens(model, config.get("maxTokens"))
        text, cut = answer_for(model_id, "\n".join(texts), max_tokens)
        usage_out = count_tokens(text)
        answer: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "max_tokens" if cut else "end_turn",
            "usage": {
                "inputTokens": usage_in,
                "outputTokens": usage_out,
                "totalTokens": usage_in + usage_out,
            },
            "metrics": {"latencyMs": int((time.perf_counter() - started) * 1000) + 1},
        }
        if scripted == "no_usage":
            del answer["usage"]
        return 200, answer

    def _stream(self, full: dict[str, Any], *, cut: bool) -> None:
        """The Converse answer as ConverseStream events (AWS event stream framing)."""
        text = full["output"]["message"]["content"][0]["text"]
        pieces = re.findall(r"\S+\s*", text) or [""]
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        events += [
            ("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0})
            for piece in pieces
        ]
        if cut:
            events = events[: 1 + max(1, len(pieces) // 2)]
        else:
            events += [
                ("contentBlockStop", {"contentBlockIndex": 0}),
                ("messageStop", {"stopReason": full["stopReason"]}),
            ]
            if "usage" in full:
                events.append(("metadata", {"usage": full["usage"], "metrics": full["metrics"]}))
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Connection", "close")  # the body ends when the stream does
        self.end_headers()
        self.close_connection = True
        try:
            for name, payload in events:
                self.wfile.write(event_message(name, payload))
                self.wfile.flush()
            if cut:
                self.wfile.write(event_message("contentBlockDelta", {"x": 1})[:7])  # torn
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _max_tokens(self, model: CatalogModel, requested: Any) -> int:
        limit = model.max_output
        value = min(limit, 4096) if requested is None else int(requested)
        if value < 1:
            raise _Refused("validation", "maxTokens must be at least 1.")
        if value > limit:
            raise _Refused(
                "validation",
                f"The maximum tokens you requested exceeds the model limit of {limit}. "
                f"Try again with a maximum tokens value that is lower than {limit}.",
            )
        return value

    # -- InvokeModel -------------------------------------------------------------------
    def _invoke(
        self, model_id: str, base: str, model: CatalogModel, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if base.startswith("anthropic."):
            return self._invoke_anthropic(model_id, model, body)
        if base.startswith("amazon.nova"):
            return self._invoke_nova(model_id, model, body)
        if base.startswith("amazon.titan-embed-text-v2"):
            vector, tokens = titan_embedding(body, model.context)
            answer = {
                "embedding": vector,
                "inputTextTokenCount": tokens,
                "embeddingsByType": {"float": vector},
            }
            return 200, answer, self._token_headers(tokens, 0)
        if base.startswith("cohere.embed-"):
            vectors, tokens = cohere_embeddings(body)
            answer = {
                "id": str(uuid.uuid4()),
                "embeddings": vectors,
                "response_type": "embeddings_floats",
                "texts": body["texts"],
            }
            return 200, answer, self._token_headers(tokens, 0)
        raise _Refused("validation", f"the stand-in has no InvokeModel body for {base}")

    def _token_headers(self, usage_in: int, usage_out: int) -> dict[str, str]:
        return {
            "X-Amzn-Bedrock-Input-Token-Count": str(usage_in),
            "X-Amzn-Bedrock-Output-Token-Count": str(usage_out),
            "X-Amzn-Bedrock-Invocation-Latency": "1",
        }

    def _invoke_anthropic(
        self, model_id: str, model: CatalogModel, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if "prompt" in body:
            raise _Refused(
                "validation",
                '"claude-3" and later models do not support the legacy prompt body; '
                "use the Messages API",
            )
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            raise _Refused("validation", "anthropic_version: bedrock-2023-05-31 is required")
        messages = body.get("messages") or []
        if not messages:
            raise _Refused("validation", "messages: at least one message is required")
        texts: list[str] = []
        roles = []
        for m in messages:
            roles.append(m.get("role"))
            content = m.get("content")
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.extend(b.get("text", "") for b in content or [] if b.get("type") == "text")
        _check_roles(roles)
        system = body.get("system") or ""
        system = system if isinstance(system, str) else " ".join(b["text"] for b in system)
        if "max_tokens" not in body:
            raise _Refused("validation", "max_tokens: field required")
        max_tokens = self._max_tokens(model, body["max_tokens"])
        text, cut = answer_for(model_id, "\n".join(texts), max_tokens)
        usage_in = count_tokens(system) + sum(count_tokens(t) for t in texts) + 3 * len(messages)
        usage_out = count_tokens(text)
        answer = {
            "id": f"msg_bdrk_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if cut else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
        }
        return 200, answer, self._token_headers(usage_in, usage_out)

    def _invoke_nova(
        self, model_id: str, model: CatalogModel, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        messages = body.get("messages") or []
        if not messages:
            raise _Refused("validation", "messages: at least one message is required")
        texts = _check_turns(messages)
        system = _system_text(body.get("system"))
        config = body.get("inferenceConfig") or {}
        max_tokens = self._max_tokens(model, config.get("maxTokens", config.get("max_new_tokens")))
        text, cut = answer_for(model_id, "\n".join(texts), max_tokens)
        usage_in = count_tokens(system) + sum(count_tokens(t) for t in texts) + 3 * len(messages)
        usage_out = count_tokens(text)
        answer = {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "max_tokens" if cut else "end_turn",
            "usage": {"inputTokens": usage_in, "outputTokens": usage_out},
        }
        return 200, answer, self._token_headers(usage_in, usage_out)


# -- embeddings ----------------------------------------------------------------------
def embedding_catalog() -> dict[str, CatalogModel]:
    """Embedding models (AWS model cards): Titan V2 takes 8,192 tokens, Cohere v3 512."""
    embed: dict[str, Any] = {"output": "EMBEDDING", "max_output": 1}
    return {
        "amazon.titan-embed-text-v2:0": CatalogModel(
            "Titan Text Embeddings V2", "Amazon", context=8192, **embed
        ),
        "cohere.embed-english-v3": CatalogModel("Embed English", "Cohere", context=512, **embed),
        "cohere.embed-multilingual-v3": CatalogModel(
            "Embed Multilingual", "Cohere", context=512, **embed
        ),
    }


_WORD = re.compile(r"[^\W_]+")
_EMBED_STOP = frozenset(
    "a an and are as at be by for from has have how i in is it its of on or that the this "
    "to was were what when where which who why will with you your do does can".split()
)
TITAN_DIMENSIONS = (1024, 512, 256)
TITAN_MAX_CHARS = 50_000
COHERE_MAX_TEXTS = 96
COHERE_MAX_CHARS = 2048
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


def meaning_vector(text: str, dimensions: int, *, normalize: bool = True) -> list[float]:
    """An embedding that carries meaning: hashed bag of words and word bigrams (stop words
    dropped, sublinear counts, a signed hash per feature), L2-normalised. Texts that share
    words point the same way, so retrieval can be measured locally; deterministic."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _EMBED_STOP]
    counts: dict[str, float] = {}
    for word in words:
        counts[word] = counts.get(word, 0.0) + 1.0
    for pair in zip(words, words[1:], strict=False):
        key = " ".join(pair)
        counts[key] = counts.get(key, 0.0) + 0.5
    if not counts:  # only punctuation or stop words: still a vector, never all zeros
        counts["\\0" + text] = 1.0
    vector = [0.0] * dimensions
    for feature, count in counts.items():
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[slot] += sign * (1.0 + math.log(count)) if count >= 1 else sign * count
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector] if normalize else vector


def _malformed(detail: str) -> _Refused:
    return _Refused(
        "validation",
        f"Malformed input request: {detail}, please reformat your input and try again.",
    )


def titan_embedding(body: dict[str, Any], max_tokens: int) -> tuple[list[float], int]:
    """Titan Text Embeddings V2 InvokeModel: {"inputText", "dimensions", "normalize",
    "embeddingTypes"} -> (vector, inputTextTokenCount), or Bedrock's ValidationException."""
    allowed = {"inputText", "dimensions", "normalize", "embeddingTypes"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")
    text = body.get("inputText")
    if not isinstance(text, str):
        raise _malformed("#: required key [inputText] not found")
    if not text:
        raise _malformed("#/inputText: expected minLength: 1, actual: 0")
    if len(text) > TITAN_MAX_CHARS:
        raise _malformed(f"#/inputText: expected maxLength: {TITAN_MAX_CHARS}, actual: {len(text)}")
    dimensions = body.get("dimensions", 1024)
    if dimensions not in TITAN_DIMENSIONS or isinstance(dimensions, bool):
        raise _malformed(f"#/dimensions: {dimensions} is not a valid enum value")
    normalize = body.get("normalize", True)
    if not isinstance(normalize, bool):
        raise _malformed("#/normalize: expected type: Boolean")
    tokens = count_tokens(text)
    if tokens > max_tokens:
        raise _Refused(
            "validation",
            f"400 Bad Request: Too many input tokens. Max input tokens: {max_tokens}, "
            f"request input token count: {tokens} ",
        )
    return meaning_vector(text, dimensions, normalize=normalize), tokens


def cohere_embeddings(body: dict[str, Any]) -> tuple[list[list[float]], int]:
    """Cohere Embed v3 InvokeModel: {"texts": [...] (up to 96, 2,048 characters each),
    "input_type", "truncate"} -> (1,024-dimension vectors, input tokens)."""
    texts = body.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise _malformed("#: required key [texts] not found")
    if len(texts) > COHERE_MAX_TEXTS:
        raise _malformed(f"#/texts: expected maxItems: {COHERE_MAX_TEXTS}, actual: {len(texts)}")
    if body.get("input_type") not in COHERE_INPUT_TYPES:
        raise _malformed("#: required key [input_type] not found")
    truncate = body.get("truncate", "NONE")
    if truncate == "NONE" and any(len(t) > COHERE_MAX_CHARS for t in texts):
        raise _malformed(f"#/texts: expected maxLength: {COHERE_MAX_CHARS}")
    clipped = [
        t[-COHERE_MAX_CHARS:] if truncate == "START" else t[:COHERE_MAX_CHARS] for t in texts
    ]
    vectors = [meaning_vector(t, 1024) for t in clipped]
    return vectors, sum(count_tokens(t) for t in clipped)


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # header: name length, name, type 7 (string), value length, value
    return (
        bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    )


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message of the AWS event stream encoding (vnd.amazon.eventstream): prelude
    (total length, headers length, CRC32 of both), headers, payload, CRC32 of it all."""
    headers = (
        _header(":event-type", event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", "event")
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


def _system_text(system: Any) -> str:
    if not system:
        return ""
    if not isinstance(system, list):
        raise _Refused("validation", "system must be a list of SystemContentBlock")
    return " ".join(str(block.get("text", "")) for block in system)


def _check_roles(roles: list[Any]) -> None:
    if roles[0] != "user":
        raise _Refused(
            "validation",
            "A conversation must start with a user message. "
            "Try again with a conversation that starts with a user message.",
        )
    for before, after in zip(roles, roles[1:], strict=False):
        if before == after or after not in ("user", "assistant"):
            raise _Refused(
                "validation",
                "A conversation must alternate between user and assistant roles. Make sure "
                "the conversation alternates between user and assistant roles and try again.",
            )


def _check_turns(messages: list[Any]) -> list[str]:
    """The texts of a Converse conversation, or the ValidationException Bedrock gives."""
    _check_roles([m.get("role") for m in messages])
    texts: list[str] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise _Refused("validation", f"messages.{i}.content must not be empty.")
        for j, block in enumerate(content):
            text = block.get("text")
            if text is not None and not str(text).strip():
                raise _Refused(
                    "validation",
                    f"The text field in the ContentBlock object at messages.{i}.content.{j} "
                    "is blank. Add text to the text field, and try again.",
                )
            texts.append(str(text or ""))
    return texts


def _arguments(parser: Any) -> None:
    parser.add_argument("--region", default="us-east-1")


def main() -> None:
    serve_main(
        __doc__ or "",
        8702,
        lambda args: BedrockStandIn(args.host, args.port, args.region),
        lambda server: f"Bedrock stand-in (bedrock-runtime + catalogue) on {server.url}",
        _arguments,
    )


if __name__ == "__main__":
    main()

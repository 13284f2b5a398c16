"""Embeddings through Bedrock, with the invocation path's call layer, budgets and ledger.

    result = embed_texts(["how do I rotate keys?"], purpose="query")
    result.vectors[0], result.input_tokens, result.cost_usd (Decimal), result.calls

Each InvokeModel goes through the call layer as service `bedrock:<model-id>` (its own
breaker, requests-per-minute limit and call records; retries with jittered backoff on
throttling and 5xx), after holding its maximum cost (the input's UTF-8 bytes bound its
tokens) on the budgets: `global` and `kb.embedding_scope`, refused with BudgetExceeded
when a hard budget cannot take it. An answer settles the hold with its ledger row (exact
cost from the reported tokens); a call that fails releases it. It is the same
`BudgetGuard` and `CostLedger` as `invoke_bedrock` (taken from `get_invoker()`): embedding
is a second cross-room import into `nura.bedrock`, made so spend is counted once.

Batching: Titan Text Embeddings V2 takes ONE text per InvokeModel; AWS batches it only as
asynchronous batch-inference jobs (S3 in, S3 out, minutes to hours), which does not fit a
refresh after each sync. Throughput comes from `kb.embed_concurrency` calls in flight
instead. Cohere Embed v3 takes up to 96 texts (2,048 characters each) per call, so those
are sent in batches of 96.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from nura.core.errors import ServerError

Purpose = Literal["document", "query"]
TITAN_MAX_CHARS = 50_000  # Titan V2's documented input limit (and 8,192 tokens)
COHERE_BATCH = 96
COHERE_MAX_CHARS = 2048


@dataclass
class EmbedResult:
    vectors: list[list[float]]
    input_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)  # exact, like the ledger
    model_id: str = ""
    calls: int = 0


def embed_texts(
    texts: list[str], *, model_id: str | None = None, purpose: Purpose = "document"
) -> EmbedResult:
    """One vector per text, in order, with `kb.embedding_model` unless `model_id`.

    `purpose="query"` for a question (Cohere embeds queries and documents differently;
    Titan ignores it). Raises InvalidInvocation for a text the model cannot take (nothing
    is sent), BudgetExceeded, or the call layer's typed errors; calls that answered before
    a failure stay in the ledger (they were billed)."""
    from nura import get_config
    from nura.bedrock.invoke import get_invoker

    kb = get_config().kb
    model = model_id or kb.embedding_model
    if not texts:
        return EmbedResult([], model_id=model)
    embedder = _Embedder(get_invoker(), model, kb.dimensions, kb.embedding_scope, purpose)
    return embedder.run(texts, kb.embed_concurrency)


@dataclass
class _Answer:
    vectors: list[list[float]]
    tokens: int
    cost: Decimal


class _Embedder:
    """Embedding calls of one model for one `embed_texts` call."""

    def __init__(
        self, invoker: Any, model: str, dimensions: int, scope: str, purpose: Purpose
    ) -> None:
        from nura.bedrock.models import InvalidInvocation

        self.inv, self.model, self.dimensions = invoker, model, dimensions
        self.scope, self.purpose = scope, purpose
        self.cohere = model.startswith("cohere.")
        self.price = invoker.prices.price_for(model, invoker.region)
        if self.price is None and not invoker.settings.allow_unpriced_models:
            raise InvalidInvocation(
                f"no price configured for embedding model {model!r} "
                "(external_services.aws.bedrock.prices)"
            )
        self.service = self._register()

    def _register(self) -> str:
        """`bedrock:<model>` in the call layer: its own breaker, RPM limit and records.
        Not the invoker's `_service`: that sizes the read timeout for generated output,
        which an embedding has none of."""
        from nura.bedrock.attempt import model_service

        layer = self.inv.layer
        name = model_service(self.model)
        if name not in layer.policies:
            base = layer.policy("bedrock")
            limits = self.inv.settings.limits_for(self.model)
            layer.policies[name] = dataclasses.replace(
                base,
                name=name,
                rate_limit_per_minute=limits.requests_per_minute or base.rate_limit_per_minute,
                fallback_enabled=False,
            )
        return name

    # -- input ---------------------------------------------------------------------------
    def batches(self, texts: list[str]) -> list[list[str]]:
        from nura.bedrock.models import InvalidInvocation

        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidInvocation(f"text {i} is blank: an embedding model refuses it")
            if not self.cohere and len(text) > TITAN_MAX_CHARS:
                raise InvalidInvocation(
                    f"text {i} has {len(text)} characters; {self.model} takes {TITAN_MAX_CHARS}"
                )
        size = COHERE_BATCH if self.cohere else 1
        return [texts[i : i + size] for i in range(0, len(texts), size)]

    def body(self, batch: list[str]) -> str:
        if self.cohere:
            kind = "search_query" if self.purpose == "query" else "search_document"
            # Chunks stay under 2,048 characters by default; a longer one is cut at its end.
            return json.dumps({"texts": batch, "input_type": kind, "truncate": "END"})
        return json.dumps({"inputText": batch[0], "dimensions": self.dimensions, "normalize": True})

    # -- calls ---------------------------------------------------------------------------
    def run(self, texts: list[str], concurrency: int) -> EmbedResult:
        batches = self.batches(texts)
        result = EmbedResult([], model_id=self.model)
        if len(batches) == 1:
            answers = [self.call(batches[0])]
        else:
            with ThreadPoolExecutor(min(concurrency, len(batches))) as pool:
                futures = [pool.submit(self.call, b) for b in batches]
            failures = [f.exception() for f in futures if f.exception() is not None]
            if failures:  # every call has finished: the answered ones are in the ledger
                raise failures[0]  # type: ignore[misc]
            answers = [f.result() for f in futures]
        for answer in answers:
            result.vectors.extend(answer.vectors)
            result.input_tokens += answer.tokens
            result.cost_usd += answer.cost
            result.calls += 1
        return result

    def call(self, batch: list[str]) -> _Answer:
        from nura.bedrock.pricing import max_cost_pusd

        body = self.body(batch)
        bound = sum(len(t.encode()) for t in batch) + 1  # a token is at least a byte
        held = self.inv.guard.reserve(self.scope, max_cost_pusd(self.price, bound, 0), False)
        began = time.perf_counter()
        try:
            res = self.inv.layer.call(
                self.service,
                "invoke_model",
                self.inv.client.invoke_model,
                payload=body,
                modelId=self.model,
                body=body,
                contentType="application/json",
                accept="application/json",
            )
        except BaseException:
            self.inv._release(held)
            raise
        latency_ms = (time.perf_counter() - began) * 1000
        try:
            vectors, tokens = self.parse(res.value, len(batch))
        except (ValueError, KeyError, TypeError) as exc:  # billed, but unreadable
            self.account(bound, latency_ms, held, estimated=True)
            raise ServerError(
                f"{self.model}: unreadable embedding answer ({exc})",
                retryable=False,
                service=self.service,
                operation="invoke_model",
            ) from exc
        cost = self.account(tokens, latency_ms, held, estimated=False)
        return _Answer(vectors, tokens, cost)

    def parse(self, raw: dict[str, Any], count: int) -> tuple[list[list[float]], int]:
        data = json.loads(raw["body"].read())
        if self.cohere:
            vectors = data["embeddings"]
            headers = raw.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            tokens = int(headers["x-amzn-bedrock-input-token-count"])
        else:
            vectors = [data["embedding"]]
            tokens = int(data["inputTextTokenCount"])
        if len(vectors) != count or not all(isinstance(v, list) and v for v in vectors):
            raise ValueError(f"{len(vectors)} vectors for {count} texts")
        return [[float(x) for x in v] for v in vectors], tokens

    def account(self, tokens: int, latency_ms: float, held: Any, *, estimated: bool) -> Decimal:
        """The ledger row of one answered call (settling its budget hold); its cost."""
        from nura.bedrock.invoke import _flow_run_id
        from nura.bedrock.pricing import cost_of
        from nura.core.stores.ledger import LedgerEntry, to_pusd

        cost = cost_of(self.price, tokens, 0)
        entry = LedgerEntry(
            invocation_id=uuid.uuid4().hex,
            scope=self.scope,
            model_id=self.model,
            region=self.inv.region,
            api="invoke_model",
            input_tokens=tokens,
            output_tokens=0,
            cost_pusd=to_pusd(cost),
            cost_unknown=self.price is None,
            latency_ms=latency_ms,
            flow_run_id=_flow_run_id(),
            conversation_id=None,
            over_budget=held is not None and held.over_budget,
            estimated=estimated,
            detail="embedding: unreadable answer, estimated" if estimated else "embedding",
        )
        self.inv._record(entry, held)
        return cost

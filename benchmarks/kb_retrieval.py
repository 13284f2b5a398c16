"""Retrieval quality and embedding cost of the knowledge base: our chunking vs LangChain's.

    python -m benchmarks.kb_retrieval [--pages 3000] [--questions 400] [--change-percent 1]

The Confluence test server is filled with `--pages` generated pages
(`benchmarks.kb_corpus`: one made-up component per page, fact sentences under headings,
then the server's generated reference content), read back over HTTP with nura's
Confluence client and converted to Markdown as a sync does. Both chunkers index the same
Markdown with the same embeddings (the Bedrock stand-in's Titan V2, over real HTTP through
the call layer, budgets and ledger) into separate LanceDB indexes of the same kind:

- ours: `nura.kb.refresh.refresh` (Markdown-structure chunks, each embedded with its
  page title and heading path, `nura.kb.embed.embedding_text`);
- baseline: `RecursiveCharacterTextSplitter` with the same size and overlap, each chunk
  embedded as it is (the splitter's ordinary use).

Questions rephrase one fact of one page without its answer, so the source page is known;
recall@5 is the share whose source page is among the 5 best chunks, MRR the mean of
1/rank of the first chunk of the source page (0 past 10). Embedding time and cost: the full
KB, then `--change-percent` of the pages edited on the server, everything read again and
refreshed (digests skip the unchanged pages). Rate limits are Prefect global concurrency
limits: PREFECT_API_URL if set, else a temporary Prefect server. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bedrock_invoke import prefect_api
from benchmarks.kb_corpus import CorpusPage, corpus, sample_questions

SPACES = ["TECH", "OPS", "DOCS"]
MRR_DEPTH = 10
# Questions no page answers: their best chunk should score below `kb_ask.min_score`.
OFF_TOPIC = [
    "What colour are the zebras of the Serengeti?",
    "What is the capital of Peru?",
    "How do I bake sourdough bread at home?",
    "Who won the football world cup in 1998?",
    "Which planet has the most moons?",
    "How long should an egg be boiled?",
    "What is the plot of Hamlet?",
    "When does the tulip season start in the Netherlands?",
    "How many strings does a cello have?",
    "Why is the sky blue?",
]
EMBED_MODEL = "amazon.titan-embed-text-v2:0"


def write_config(workdir: Path, bedrock_url: str, confluence_url: str) -> Path:
    high = {"requests_per_minute": 1_000_000, "tokens_per_minute": 100_000_000}
    config = {
        "external_services": {
            "confluence": {"base_url": confluence_url},
            "aws": {
                "bedrock": {
                    "endpoint_url": bedrock_url,
                    "rate_limit_per_minute": 1_000_000,
                    "timeout_seconds": 30,
                    "model_limits": {EMBED_MODEL: high},
                    "budgets": {"scopes": {"global": {"daily_usd": "100000"}}},
                }
            },
        },
        "kb": {"index_uri": str(workdir / "index-ours"), "embed_concurrency": 8},
    }
    path = workdir / "integrations.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def stand_ins(pages: list[CorpusPage]) -> Iterator[tuple[Any, Any, dict[int, str]]]:
    """The Bedrock stand-in and the Confluence test server holding `pages`
    (page number -> Confluence page id)."""
    from deployments.sandbox.bedrock_server import BedrockStandIn
    from deployments.sandbox.confluence_server import ConfluenceServer

    bedrock = BedrockStandIn().start()
    confluence = ConfluenceServer().start()
    try:
        for key in sorted({p.space for p in pages}):
            confluence.add_space(key, f"{key} space")
        ids = {
            p.number: confluence.add_page(p.space, p.title, p.body, labels=["kb", p.space.lower()])[
                "id"
            ]
            for p in pages
        }
        yield bedrock, confluence, ids
    finally:
        confluence.stop()
        bedrock.stop()


def read_documents(confluence: Any, spaces: list[str]) -> list[tuple[Any, str]]:
    """Every page of the spaces, over HTTP, as (DocumentRecord, Markdown)."""
    import httpx

    from nura.confluence.client import ConfluenceClient
    from nura.confluence.markdown import storage_to_markdown
    from nura.core.runtime import get_call_layer
    from nura.kb.index import DocumentRecord
    from nura.kb.refresh import document_digest

    client = ConfluenceClient(
        confluence.url,
        httpx.BasicAuth(confluence.email, confluence.api_token),
        layer=get_call_layer(),
    )
    documents = []
    for key in spaces:
        space = client.get_space(key)
        for page in client.iter_pages(space["id"], body=True):
            storage = page["body"]["storage"]["value"]
            markdown = storage_to_markdown(storage, base_url=confluence.url, space=key).markdown
            record = DocumentRecord(
                doc_id=f"confluence:{page['id']}",
                digest=document_digest(markdown, title=page["title"], space=key),
                title=page["title"],
                url=client.page_url(page),
                source="confluence",
                space=key,
            )
            documents.append((record, markdown))
    return documents


def index_baseline(documents: list[tuple[Any, str]], index: Any, settings: Any) -> dict[str, Any]:
    """LangChain's splitter over the same Markdown, embedded as is, into `index`."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from nura.kb.chunks import Chunk
    from nura.kb.embed import embed_texts

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=settings.chunk_max_chars, chunk_overlap=settings.chunk_overlap_chars
    )
    started, chunks_total, cost = time.perf_counter(), 0, Decimal(0)
    for record, markdown in documents:
        texts = splitter.split_text(markdown)
        chunks = [Chunk(text=t, section="", ordinal=i) for i, t in enumerate(texts)]
        embedded = embed_texts(texts)
        index.upsert_document(record, chunks, embedded.vectors)
        chunks_total += len(chunks)
        cost += embedded.cost_usd
    return {"seconds": time.perf_counter() - started, "chunks": chunks_total, "cost_usd": cost}


def rank_of(hits: list[Any], doc_id: str) -> int | None:
    """1-based rank of the first chunk of `doc_id`, or None."""
    for rank, hit in enumerate(hits, start=1):
        if hit.doc_id == doc_id:
            return rank
    return None


def score(
    questions: list[tuple[str, int]],
    vectors: list[list[float]],
    search: Callable[[list[float]], list[Any]],
    doc_ids: dict[int, str],
    min_score: float,
) -> dict[str, float]:
    """recall@5, MRR (to depth MRR_DEPTH) and the share of questions whose source page
    has a chunk at or above `min_score` in the top 5 (what `nura ask` would answer from)."""
    found, reciprocal, answerable = 0, 0.0, 0
    for (_, page), vector in zip(questions, vectors, strict=True):
        hits = search(vector)
        rank = rank_of(hits, doc_ids[page])
        if rank is not None:
            found += rank <= 5
            reciprocal += 1 / rank
        top = [h for h in hits[:5] if h.doc_id == doc_ids[page] and h.score >= min_score]
        answerable += bool(top)
    n = len(questions)
    return {"recall_at_5": found / n, "mrr": reciprocal / n, "answerable": answerable / n}


def off_topic_refused(index: Any, min_score: float) -> float:
    """Share of OFF_TOPIC questions whose best chunk is below `min_score` (not found)."""
    from nura.kb.embed import embed_texts

    vectors = embed_texts(OFF_TOPIC, purpose="query").vectors
    best = [max((h.score for h in index.search(v, k=1)), default=0.0) for v in vectors]
    return sum(b < min_score for b in best) / len(best)


def edit_pages(confluence: Any, ids: dict[int, str], percent: float, seed: int = 11) -> list[str]:
    """Edit `percent` of the pages on the server (a sentence appended, as a user would)."""
    rng = random.Random(seed)
    count = max(1, round(len(ids) * percent / 100))
    chosen = rng.sample(sorted(ids), count)
    for number in chosen:
        confluence.edit(ids[number])
    return [ids[n] for n in chosen]


def run(pages: int, questions: int, change_percent: float) -> dict[str, Any]:
    from nura.core.runtime import get_config, reset_runtime
    from nura.kb.embed import embed_texts
    from nura.kb.index import open_index
    from nura.kb.refresh import refresh

    corpus_pages = corpus(SPACES, pages)
    asked = sample_questions(corpus_pages, questions)
    workdir = Path(tempfile.mkdtemp(prefix="nura-bench-kb-"))
    with stand_ins(corpus_pages) as (bedrock, confluence, ids):
        os.environ["NURA_CONFIG"] = str(write_config(workdir, bedrock.url, confluence.url))
        os.environ["NURA_STORE_URL"] = f"sqlite:///{workdir / 'nura.db'}"
        reset_runtime()
        cfg = get_config()
        documents = read_documents(confluence, SPACES)
        started = time.perf_counter()
        full = refresh(documents, [])
        full_s = time.perf_counter() - started
        if not full.ok:
            raise SystemExit(f"full refresh failed: {dict(list(full.failed.items())[:3])}")
        ours = open_index()
        baseline_cfg = cfg.model_copy(
            update={"kb": cfg.kb.model_copy(update={"index_uri": str(workdir / "index-lc")})}
        )
        baseline = open_index(baseline_cfg)
        base_run = index_baseline(documents, baseline, cfg.kb)
        doc_ids = {n: f"confluence:{ids[n]}" for n in ids}
        vectors = embed_texts([q for q, _ in asked], purpose="query").vectors
        threshold = cfg.kb_ask.min_score
        ours_score = score(
            asked, vectors, lambda v: ours.search(v, k=MRR_DEPTH), doc_ids, threshold
        )
        base_score = score(
            asked, vectors, lambda v: baseline.search(v, k=MRR_DEPTH), doc_ids, threshold
        )
        refused = off_topic_refused(ours, threshold)
        edited = edit_pages(confluence, ids, change_percent)
        again = read_documents(confluence, SPACES)
        started = time.perf_counter()
        incremental = refresh(again, [])
        incremental_s = time.perf_counter() - started
        embed_calls = bedrock.calls(EMBED_MODEL)
    return {
        "pages": pages,
        "questions": len(asked),
        "chunks": full.embedded_chunks,
        "baseline_chunks": base_run["chunks"],
        "recall_at_5": round(ours_score["recall_at_5"], 4),
        "baseline_recall_at_5": round(base_score["recall_at_5"], 4),
        "mrr": round(ours_score["mrr"], 4),
        "baseline_mrr": round(base_score["mrr"], 4),
        "min_score": threshold,
        "answerable_at_min_score": round(ours_score["answerable"], 4),
        "off_topic_not_found": round(refused, 4),
        "full_embed_s": round(full_s, 2),
        "full_embed_cost_usd": f"{full.cost_usd:f}",
        "baseline_embed_s": round(base_run["seconds"], 2),
        "pages_edited": len(edited),
        "incremental_embed_s": round(incremental_s, 2),
        "incremental_chunks_embedded": incremental.embedded_chunks,
        "incremental_docs_embedded": incremental.embedded_docs,
        "incremental_skipped_unchanged": incremental.skipped_unchanged,
        "incremental_embed_cost_usd": f"{incremental.cost_usd:f}",
        "embedding_calls": embed_calls,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--change-percent", type=float, default=1.0)
    args = parser.parse_args(argv)
    with prefect_api():
        result = run(args.pages, args.questions, args.change_percent)
    print(
        f"{result['pages']} pages, {result['questions']} questions\n"
        f"  recall@5  ours {result['recall_at_5']:.3f}   "
        f"RecursiveCharacterTextSplitter {result['baseline_recall_at_5']:.3f}\n"
        f"  MRR@{MRR_DEPTH}    ours {result['mrr']:.3f}   "
        f"RecursiveCharacterTextSplitter {result['baseline_mrr']:.3f}\n"
        f"  kb_ask.min_score {result['min_score']}: {result['answerable_at_min_score']:.3f} "
        f"of the questions answerable, {result['off_topic_not_found']:.3f} of off-topic "
        "questions not found\n"
        f"  full embed {result['full_embed_s']} s ({result['chunks']} chunks, "
        f"${result['full_embed_cost_usd']}); baseline {result['baseline_embed_s']} s "
        f"({result['baseline_chunks']} chunks)\n"
        f"  {result['pages_edited']} pages edited: {result['incremental_embed_s']} s, "
        f"{result['incremental_chunks_embedded']} chunks re-embedded, "
        f"${result['incremental_embed_cost_usd']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Answers from the knowledge base, with numbered citations and their cost.

    from nura.kb.ask import ask
    answer = ask("How does the worker retry?", space="TECH")
    answer.text, answer.citations, answer.cost_usd, answer.not_found

One question, in order:
1. refused before anything is spent when it is empty or longer than
   `kb_ask.max_question_chars` (`InvalidQuestion`, a ValueError);
2. embedded with the knowledge base's embedding model (`nura.kb.embed`, through the call
   layer, costed in the ledger) and looked up in the vector index (`nura.kb.index`),
   filtered by space, repository and labels;
3. chunks below `kb_ask.min_score` are not evidence: when none is left, the answer is
   "not in the knowledge base" and no model is called (no generation spend);
4. otherwise the chunks become numbered `<source n="N">` blocks of one prompt, and the
   model chain answers it through the Bedrock invocation path (`nura.bedrock.invoke`:
   fallback chain, budgets, ledger, tracing) under the budget scope `kb_ask.scope`;
5. the answer keeps only the citations `[N]` that name a provided source (others are
   removed from the text); a model that says the sources do not answer gives the
   not-found answer (its cost still counts).

Errors: `InvalidQuestion` (bad input), `BudgetExceeded` (no answer, nothing called),
`AllModelsFailed` and the call layer's errors pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from nura.core.errors import InvalidInput

if TYPE_CHECKING:
    from nura.kb.index import Hit

NOT_FOUND_TEXT = "Not in the knowledge base: no indexed document answers this question."
# What the model is told to reply when its sources do not answer (then: NOT_FOUND_TEXT).
NO_ANSWER = "NOT_IN_KNOWLEDGE_BASE"
SYSTEM_PROMPT = (
    "You answer questions about an organisation's documentation. Use only the numbered "
    "sources you are given; never use other knowledge. Cite every statement with the "
    "number of its source in square brackets, like [1] or [2]."
)
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_SOURCE_TAG = re.compile(r"<(/?)source", re.I)


class Source(Protocol):
    """What the answer reads of a retrieved chunk (`nura.kb.index.Hit`, read-only)."""

    @property
    def doc_id(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def text(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def section(self) -> str: ...


class InvalidQuestion(InvalidInput):
    """The question is empty or too long: nothing was embedded or called."""

    default_service = "kb"


class Citation(BaseModel):
    """A source the answer cites: its number in the answer and where it comes from."""

    n: int
    title: str
    url: str
    section: str = ""
    score: float
    doc_id: str = ""


class Answer(BaseModel):
    """An answer with its sources and what it cost (embedding + generation)."""

    question: str
    text: str
    citations: list[Citation] = Field(default_factory=list)
    sources: list[Citation] = Field(
        default_factory=list, description="Every chunk given to the model, cited or not."
    )
    not_found: bool = False
    cost_usd: Decimal = Decimal(0)
    embedding_cost_usd: Decimal = Decimal(0)
    generation_cost_usd: Decimal = Decimal(0)
    model_id: str | None = None
    fallback_used: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    invocation_id: str | None = None


def check_question(question: str, max_chars: int) -> str:
    """The question stripped, or InvalidQuestion."""
    text = (question or "").strip()
    if not text:
        raise InvalidQuestion("empty question")
    if len(text) > max_chars:
        raise InvalidQuestion(
            f"question too long: {len(text)} characters (kb_ask.max_question_chars {max_chars})"
        )
    return text


def build_prompt(
    question: str, hits: Sequence[Source], max_context_chars: int
) -> tuple[str, list[Source]]:
    """The user prompt (numbered sources, then the question) and the hits it holds: the
    best-ranked first, the rest left out once `max_context_chars` is used. Source tags
    inside a document or the question are defused, so neither can open or close a source."""
    blocks: list[str] = []
    used_hits: list[Source] = []
    used = 0
    for hit in hits:
        if used_hits and used + len(hit.text) > max_context_chars:
            break
        n = len(used_hits) + 1
        heading = _attr(hit.title) + (f" / {_attr(hit.section)}" if hit.section else "")
        body = _defuse(hit.text.strip())
        blocks.append(f'<source n="{n}" title="{heading}">\n{body}\n</source>')
        used_hits.append(hit)
        used += len(hit.text)
    prompt = (
        "Answer the question from these sources only. Cite each statement as [n]. "
        f'If none of them answers it, reply exactly "{NO_ANSWER}".\n\n'
        + "\n\n".join(blocks)
        + f"\n\nQuestion: {_defuse(' '.join(question.split()))}"
    )
    return prompt, used_hits


def _attr(text: str) -> str:
    return _defuse(" ".join(text.replace('"', "'").split()))


def _defuse(text: str) -> str:
    return _SOURCE_TAG.sub(lambda m: f"<{m.group(1)}\u200bsource", text)


def keep_citations(text: str, sources: int) -> tuple[str, list[int]]:
    """The answer with citations of unknown sources removed, and the cited numbers
    (1-based, in order of first mention)."""
    cited: list[int] = []

    def keep(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"\s*,\s*", match.group(1))]
        valid = [n for n in numbers if 1 <= n <= sources]
        cited.extend(n for n in valid if n not in cited)
        return f"[{', '.join(map(str, valid))}]" if valid else ""

    cleaned = _CITATION.sub(keep, text)
    return re.sub(r"[ \t]+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip(), cited


def _citation(n: int, hit: Source) -> Citation:
    return Citation(
        n=n,
        title=hit.title,
        url=hit.url,
        section=hit.section or "",
        score=round(float(hit.score), 4),
        doc_id=hit.doc_id,
    )


def _filters(space: str | None, repo: str | None, labels: list[str] | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if space:
        found["space"] = space
    if repo:
        found["repo"] = repo
    if labels:
        found["labels"] = list(labels)
    return found


def retrieve(
    question: str,
    *,
    k: int,
    filters: dict[str, Any],
    model_id: str | None = None,
) -> tuple[list[Hit], Decimal]:
    """The index's top `k` chunks for the question, and what embedding it cost."""
    from nura.kb.embed import embed_texts
    from nura.kb.index import open_index

    embedded = embed_texts([question], model_id=model_id, purpose="query")
    hits = open_index().search(embedded.vectors[0], k=k, filters=filters)
    return list(hits), Decimal(str(embedded.cost_usd))


def ask(
    question: str,
    *,
    space: str | None = None,
    repo: str | None = None,
    labels: list[str] | None = None,
    k: int | None = None,
    min_score: float | None = None,
) -> Answer:
    """Answer `question` from the knowledge base (see the module docstring)."""
    from nura.core.runtime import get_config

    settings = get_config().kb_ask
    text = check_question(question, settings.max_question_chars)
    threshold = settings.min_score if min_score is None else min_score
    hits, embed_cost = retrieve(text, k=k or settings.top_k, filters=_filters(space, repo, labels))
    relevant = [h for h in hits if h.score >= threshold]
    if not relevant:
        return Answer(
            question=text,
            text=NOT_FOUND_TEXT,
            not_found=True,
            cost_usd=embed_cost,
            embedding_cost_usd=embed_cost,
        )
    return _generate(text, relevant, embed_cost, settings)


def _generate(question: str, hits: Sequence[Source], embed_cost: Decimal, settings: Any) -> Answer:
    from nura.bedrock.invoke import invoke_bedrock_sync
    from nura.bedrock.models import InvocationRequest

    prompt, used = build_prompt(question, hits, settings.max_context_chars)
    request = InvocationRequest(
        prompt=prompt,
        system=SYSTEM_PROMPT,
        models=settings.models,
        max_tokens=settings.max_tokens,
        temperature=0.0,
        scope=settings.scope,
        metadata={"flow": "kb-ask"},
    )
    result = invoke_bedrock_sync(request)  # the chain, budgets, ledger (with the run id)
    generation = result.cost_usd + result.estimated_usd
    sources = [_citation(n, hit) for n, hit in enumerate(used, start=1)]
    answer_text, cited = keep_citations(result.text, len(used))
    not_found = NO_ANSWER in result.text
    return Answer(
        question=question,
        text=NOT_FOUND_TEXT if not_found else answer_text,
        citations=[] if not_found else [sources[n - 1] for n in cited],
        sources=sources,
        not_found=not_found,
        cost_usd=embed_cost + generation,
        embedding_cost_usd=embed_cost,
        generation_cost_usd=generation,
        model_id=result.model_id,
        fallback_used=result.fallback_used,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        invocation_id=result.invocation_id,
    )


def answer_markdown(answer: Answer) -> str:
    """The answer as a Markdown artifact: answer, sources table, cost."""
    lines = [f"## {_md_escape(answer.question)}", "", answer.text, ""]
    if answer.sources:
        lines += ["| # | title | section | score | cited |", "|---|---|---|---|---|"]
        cited = {c.n for c in answer.citations}
        for source in answer.sources:
            title = _md_escape(source.title)
            title = f"[{title}](<{source.url}>)" if source.url else title
            lines.append(
                f"| {source.n} | {title} | {_md_escape(source.section)} | "
                f"{source.score:.3f} | {'yes' if source.n in cited else ''} |"
            )
        lines.append("")
    model = answer.model_id or "none (no relevant chunk: no model called)"
    lines.append(
        f"**Cost** ${answer.cost_usd:f} (embedding ${answer.embedding_cost_usd:f}, "
        f"generation ${answer.generation_cost_usd:f}); **model** {model}"
        + (" (fallback)" if answer.fallback_used else "")
    )
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def publish_answer_artifact(answer: Answer, key: str = "kb-answer") -> None:
    """The answer, its sources and cost as a Markdown artifact of the current run."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key=key,
        markdown=answer_markdown(answer),
        description=f"kb-ask answer: ${answer.cost_usd:f}",
    )

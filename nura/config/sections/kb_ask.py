"""`kb_ask` section: answering questions from the knowledge base (docs/knowledge-base.md)."""

from __future__ import annotations

from pydantic import Field

from nura.config.sections.common import Section


class KbAskSettings(Section):
    top_k: int = Field(
        default=5, ge=1, le=50, description="Chunks retrieved per question (`nura ask --k`)."
    )
    min_score: float = Field(
        default=0.2,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a chunk needs to count as relevant. When no chunk "
        "reaches it the answer is 'not in the knowledge base' and no model is called.",
    )
    max_question_chars: int = Field(
        default=2000, ge=10, le=100_000, description="Longer questions are refused (exit 2)."
    )
    max_context_chars: int = Field(
        default=12_000,
        ge=500,
        le=400_000,
        description="Most characters of retrieved text put in the prompt; the lowest-ranked "
        "chunks are left out first.",
    )
    max_tokens: int = Field(default=800, ge=16, le=100_000, description="Answer length limit.")
    models: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Model chain for answers; null: `external_services.aws.bedrock.models`.",
    )
    scope: str = Field(
        default="kb-ask",
        min_length=1,
        pattern=r"^[\w.:-]+$",
        description="Budget scope of the answers (question embeddings count under "
        "`kb.embedding_scope`).",
    )

"""`kb` section: chunking, embeddings and the vector index of the knowledge base
(docs/knowledge-base.md)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from nura.config.sections.common import Section

# Titan Text Embeddings V2 takes 256, 512 or 1024 dimensions (AWS model parameters page).
TITAN_V2 = "amazon.titan-embed-text-v2:0"


class BedrockKnowledgeBase(Section):
    """A Bedrock Knowledge Base that reads the S3 bucket: when set, nura writes its
    metadata sidecars and starts its ingestion jobs instead of embedding itself."""

    knowledge_base_id: str = Field(
        min_length=1, max_length=10, description="The knowledge base's id (`KNOWLEDGEBASEID`)."
    )
    data_source_id: str = Field(
        min_length=1, max_length=10, description="Its S3 data source's id (`DATASOURCEID`)."
    )
    wait_seconds: float = Field(
        default=600.0,
        ge=0,
        description="How long a sync tracks the ingestion job it started (GetIngestionJob) "
        "before reporting it as still running.",
    )
    poll_seconds: float = Field(
        default=10.0, gt=0, description="Pause between two GetIngestionJob calls."
    )


class KbSettings(Section):
    enabled: bool = Field(
        default=False,
        description="Chunk and embed the documents a Confluence sync or Git ingest changed "
        "(the shipped integrations.yaml turns it on; off when a config leaves `kb` out).",
    )
    embedding_model: str = Field(
        default=TITAN_V2,
        description="Bedrock embedding model: `amazon.titan-embed-text-v2:0` (one text per "
        "InvokeModel) or `cohere.embed-english-v3` / `cohere.embed-multilingual-v3` (up to "
        "96 texts per InvokeModel). Priced in `external_services.aws.bedrock.prices`.",
    )
    dimensions: Literal[256, 512, 1024] = Field(
        default=1024,
        description="Vector size asked of Titan V2 (256, 512 or 1024); Cohere v3 models "
        "always answer 1024.",
    )
    embedding_scope: str = Field(
        default="kb-embeddings",
        min_length=1,
        max_length=100,
        description="Budget scope of embedding calls: they count towards `global` and this "
        "scope of `external_services.aws.bedrock.budgets` (and the cost ledger).",
    )
    embed_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Embedding calls in flight at once (Titan V2 embeds one text per call; "
        "the bedrock service's rate limit still applies to every call).",
    )
    chunk_max_chars: int = Field(
        default=2000,
        ge=200,
        le=40_000,
        description="Upper bound of a chunk's text (a heading, code block or table longer "
        "than this is split on line boundaries as a last resort).",
    )
    chunk_overlap_chars: int = Field(
        default=200,
        ge=0,
        description="Text of the previous piece repeated at the start of the next when a "
        "section is split (whole lines, at most this many characters).",
    )
    git_index_paths: list[str] = Field(
        default_factory=lambda: ["*.md", "*.mdx", "*.markdown", "*.rst", "*.txt", "*.adoc"],
        description="Glob patterns (fnmatch, on the path in the repository) of the Git files "
        "that are chunked and embedded; other stored files are not embedded.",
    )
    index_uri: str | None = Field(
        default=None,
        description="Where the LanceDB index lives. None: `<platform.state_dir>/kb-index` "
        "(embedded, no server). `s3://bucket/prefix` puts the tables on S3 so every "
        "worker shares one index (the scale path).",
    )
    index_storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="LanceDB object-store options for an `s3://` index (e.g. "
        "`aws_endpoint`, `allow_http`, `aws_region`); credentials come from the AWS "
        "environment, never from this file.",
    )
    bedrock_knowledge_base: BedrockKnowledgeBase | None = Field(
        default=None,
        description="When set, Bedrock Knowledge Bases does the embedding: nura writes "
        "`<key>.metadata.json` sidecars beside the documents and starts and tracks an "
        "ingestion job after each sync instead of embedding itself.",
    )

    @model_validator(mode="after")
    def _overlap_below_max(self) -> Self:
        if self.chunk_overlap_chars >= self.chunk_max_chars // 2:
            raise ValueError("chunk_overlap_chars must be under half of chunk_max_chars")
        return self

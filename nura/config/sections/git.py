"""`external_services.git`: the Git provider, repositories, branches and paths the ingest stores."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from nura.config.sections.common import ServiceSettings

# One segment of an allow-list pattern: name characters (GitHub/GitLab) and fnmatch's `*?[]!`.
_PATTERN_SEGMENT = re.compile(r"[A-Za-z0-9_.*?\[\]!-]+")


class GitSettings(ServiceSettings):
    provider: Literal["github", "gitlab"] = "github"
    base_url: str | None = "https://api.github.com"
    # Name of the saved `nura-git-provider-credentials` block (token); unset = anonymous.
    credentials_block: str | None = None
    # Repositories whose pushes are ingested: "owner/repo" patterns (fnmatch, case-insensitive,
    # `*` within one path segment: "octo/*", "group/subgroup/*"). Empty = none: pushes of
    # other repositories are acknowledged, not ingested (the run says "ignored").
    repositories: list[str] = Field(
        default_factory=list,
        description=(
            'Repositories ingested, as "owner/repo" patterns ("octo/*"; `*` stays within a '
            "segment; case-insensitive). Empty: no repository is ingested."
        ),
    )
    # Only pushes to these branches are ingested (fnmatch patterns); empty = every branch.
    # Each branch has its own prefix in the knowledge base: git/{owner}/{repo}/{branch}/.
    branches: list[str] = Field(default_factory=lambda: ["main", "master"])
    # Files larger than this are skipped (not stored, a "skipped" row), as are binaries.
    # GitHub inlines files up to 1 MB; larger ones are fetched raw (its limit: 100 MB).
    max_file_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        le=100 * 1024 * 1024,
        description="Largest file stored (bytes); larger files are skipped and listed as such. "
        "GitHub files over 1 MB are fetched with the raw media type. At most 100 MiB.",
    )
    # Only paths matching one of these patterns are ingested; empty = every path.
    include_paths: list[str] = Field(default_factory=list)

    @field_validator("repositories")
    @classmethod
    def _owner_repo_patterns(cls, patterns: list[str]) -> list[str]:
        for n, pattern in enumerate(patterns):
            segments = pattern.split("/")
            if len(segments) < 2 or not all(
                _PATTERN_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments
            ):
                raise ValueError(
                    f'entry {n} is not an "owner/repo" pattern (name characters, `*`, `?`, '
                    "`[...]` in at least two non-empty segments)"
                )
        return patterns

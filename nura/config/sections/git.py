"""`external_services.git`: the Git provider, branches and paths the ingest stores."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nura.config.sections.common import ServiceSettings


class GitSettings(ServiceSettings):
    provider: Literal["github", "gitlab"] = "github"
    base_url: str | None = "https://api.github.com"
    # Name of the saved `nura-git-provider-credentials` block (token); unset = anonymous.
    credentials_block: str | None = None
    # Only pushes to these branches are ingested (fnmatch patterns); empty = every branch.
    branches: list[str] = Field(default_factory=lambda: ["main", "master"])
    # Files larger than this are skipped (not stored), as are binaries.
    max_file_bytes: int = Field(default=1024 * 1024, gt=0)
    # Only paths matching one of these patterns are ingested; empty = every path.
    include_paths: list[str] = Field(default_factory=list)

"""`external_services.git` (issue 4 owns this section)."""

from __future__ import annotations

from typing import Literal

from config.sections.common import ServiceSettings


class GitSettings(ServiceSettings):
    provider: Literal["github", "gitlab"] = "github"
    base_url: str | None = "https://api.github.com"

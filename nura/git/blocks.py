"""Git provider (GitHub or GitLab) API token."""

from __future__ import annotations

from typing import Any, Literal

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class _HeaderToken(httpx.Auth):
    def __init__(self, header: str, prefix: str, token: SecretStr) -> None:
        self._header, self._prefix, self._token = header, prefix, token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers[self._header] = f"{self._prefix}{self._token.get_secret_value()}"
        yield request


class GitProviderCredentials(Block):
    """API access to a Git provider for fetching pushed files.

    Example:
        ```python
        from nura.git.blocks import GitProviderCredentials
        GitProviderCredentials(provider="github", token="ghp_...").save("git", overwrite=True)
        ```
    """

    _block_type_name = "Nura Git Provider Credentials"
    _block_type_slug = "nura-git-provider-credentials"
    _description = "GitHub or GitLab API URL and token."

    provider: Literal["github", "gitlab"] = "github"
    api_url: str = Field(default="https://api.github.com", description="REST API base URL.")
    token: SecretStr | None = Field(default=None, description="Personal/app access token.")

    def auth(self) -> httpx.Auth | None:
        if self.token is None:
            return None
        if self.provider == "gitlab":
            return _HeaderToken("PRIVATE-TOKEN", "", self.token)
        return _HeaderToken("Authorization", "Bearer ", self.token)

    def get_client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, auth=self.auth(), timeout=30, **kwargs)

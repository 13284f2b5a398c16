"""Confluence Cloud credentials: Basic (email + API token) or OAuth 2.0 (3LO) with refresh."""

from __future__ import annotations

from typing import Any

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>`; the token is read at send time, never stored in logs."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class ConfluenceCredentials(Block):
    """Where Confluence is and how to authenticate to it.

    Example:
        ```python
        from nura.confluence.blocks import ConfluenceCredentials
        creds = ConfluenceCredentials(base_url="https://acme.atlassian.net",
                                      email="bot@acme.com", api_token="...")
        creds.save("confluence", overwrite=True)
        with ConfluenceCredentials.load("confluence").get_client() as client:
            client.get("/wiki/api/v2/spaces")
        ```
    """

    _block_type_name = "Nura Confluence Credentials"
    _block_type_slug = "nura-confluence-credentials"
    _logo_url = "https://wac-cdn.atlassian.com/assets/img/favicons/confluence/favicon-32x32.png"  # type: ignore[assignment]
    _description = "Confluence Cloud base URL and credentials (API token or OAuth 2.0)."

    base_url: str = Field(description="Site URL, e.g. https://acme.atlassian.net")
    email: str | None = Field(default=None, description="Account email for Basic auth.")
    api_token: SecretStr | None = Field(default=None, description="API token for Basic auth.")
    oauth_access_token: SecretStr | None = Field(
        default=None, description="OAuth 2.0 access token."
    )
    oauth_refresh_token: SecretStr | None = Field(
        default=None, description="OAuth 2.0 refresh token."
    )
    oauth_client_id: str | None = Field(default=None)
    oauth_client_secret: SecretStr | None = Field(default=None)
    oauth_token_url: str = Field(default="https://auth.atlassian.com/oauth/token")
    oauth_api_url: str = Field(
        default="https://api.atlassian.com",
        description="Atlassian's API gateway: OAuth 2.0 (3LO) tokens are only accepted at "
        "{oauth_api_url}/ex/confluence/{cloudId}, never on the site URL.",
    )
    oauth_cloud_id: str | None = Field(
        default=None,
        description="The site's cloud id; empty: looked up once from "
        "{oauth_api_url}/oauth/token/accessible-resources (the entry whose url is base_url).",
    )

    def auth(self) -> httpx.Auth:
        """The auth scheme these credentials use (Basic or Bearer), for the call layer."""
        if self.oauth_access_token is not None:
            return BearerAuth(self.oauth_access_token)
        if self.email and self.api_token is not None:
            return httpx.BasicAuth(self.email, self.api_token.get_secret_value())
        raise ValueError(
            f"Confluence credentials for {self.base_url} need email + api_token or an OAuth token"
        )

    def get_client(self, **kwargs: Any) -> httpx.Client:
        """A standalone httpx client for this site (tasks use the shared call layer instead).
        With OAuth it needs `oauth_cloud_id` (3LO tokens only work through the gateway)."""
        base = self.base_url
        if self.oauth_access_token is not None:
            if not self.oauth_cloud_id:
                raise ValueError(
                    "OAuth 2.0 (3LO) tokens only work through Atlassian's gateway: set "
                    "oauth_cloud_id (or use nura.confluence.client.ConfluenceClient)"
                )
            base = f"{self.oauth_api_url.rstrip('/')}/ex/confluence/{self.oauth_cloud_id}"
        return httpx.Client(base_url=base, auth=self.auth(), timeout=30, **kwargs)

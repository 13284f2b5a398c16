"""The admin API's client: what `nura` commands use when pointed at a remote stack.

    client = AdminClient("https://ops.example.org:8780", token)   # or AdminClient.from_env()
    client.call("breakers.reset", {"service": "confluence"})

`NURA_ADMIN_URL` (or `nura --remote URL`) names the receiver; `NURA_ADMIN_TOKEN` holds the
token (an environment variable, never a command-line argument: those end up in shell
history and process lists). A refusal raises `AdminApiError` with the server's status
and message.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from nura.admin.actions import ACTIONS
from nura.errors import NuraError

URL_ENV = "NURA_ADMIN_URL"
TOKEN_ENV = "NURA_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
PREFIX_ENV = "NURA_ADMIN_PREFIX"


class AdminApiError(NuraError):
    """The admin API refused or failed a call (or could not be reached: status 0)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {error})" if status else message)
        self.status = status
        self.error = error
        self.message = message


class AdminClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        prefix: str = "/admin/v1",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = url.rstrip("/") + prefix.rstrip("/")
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {token}"}, timeout=timeout, transport=transport
        )

    @classmethod
    def from_env(cls, url: str | None = None) -> AdminClient:
        url = url or os.environ.get(URL_ENV)
        token = os.environ.get(TOKEN_ENV, "")
        if not url:
            raise AdminApiError(0, "no_url", f"set {URL_ENV} or pass --remote URL")
        if not token:
            raise AdminApiError(0, "no_token", f"set {TOKEN_ENV} to your admin token")
        return cls(url, token, prefix=os.environ.get(PREFIX_ENV, "/admin/v1"))

    def close(self) -> None:
        self._client.close()

    def call(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        act = ACTIONS[name]
        params = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base + act.path
        try:
            if act.method == "GET":
                resp = self._client.get(url, params=params)
            else:
                resp = self._client.post(url, json=params)
        except httpx.HTTPError as exc:
            raise AdminApiError(0, "unreachable", f"{url}: {type(exc).__name__}") from exc
        body = _json(resp)
        if resp.status_code != 200:
            raise AdminApiError(
                resp.status_code,
                str(body.get("error", "http_error")),
                str(body.get("message", resp.reason_phrase)),
            )
        return body


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

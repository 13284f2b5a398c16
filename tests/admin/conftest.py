"""The admin API served for real: the receiver app under uvicorn, token blocks on the
session's Prefect server, a SQLite store of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from nura.config import IntegrationsConfig
from tests.webhooks.conftest import ReceiverThread
from tests.webhooks.helpers import SECRET

ROLES = ("viewer", "operator", "admin")


def admin_config(
    store: Path, *, enabled: bool = True, blocks: str = "nura-test-admin", **admin: Any
) -> IntegrationsConfig:
    """An incoming endpoint, an outgoing target, a token per role (block `{blocks}-{role}`)."""
    tokens = [{"name": f"t-{r}", "role": r, "block": f"{blocks}-{r}"} for r in ROLES]
    return IntegrationsConfig.model_validate(
        {
            "platform": {"store_url": f"sqlite:///{store}"},
            "admin": {"enabled": enabled, "tokens": tokens, **admin},
            "webhooks": {
                "incoming": {
                    "partner": {
                        "url_path": "/webhooks/partner",
                        "event_types": ["external.integration"],
                        "scheme": "generic",
                        "rate_limit_per_minute": 1000,
                    },
                },
                "outgoing": {
                    "allow_list": ["127.0.0.1"],
                    "targets": {"sandbox": {"url": "http://127.0.0.1:9/hooks", "secret": "x"}},
                },
                "dispatcher": {"run_in_receiver": False},
            },
        }
    )


@dataclass
class AdminStack:
    url: str
    engine: Engine
    cfg: IntegrationsConfig
    tokens: dict[str, str]  # role -> token value
    receiver: ReceiverThread

    def headers(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}


def save_tokens() -> dict[str, str]:
    """A fresh token per role, saved as Prefect `secret` blocks."""
    from prefect.blocks.system import Secret

    tokens = {r: f"tok-{r}-{secrets.token_urlsafe(16)}" for r in ROLES}
    for role, value in tokens.items():
        Secret(value=value).save(f"nura-test-admin-{role}", overwrite=True)
    return tokens


async def asave_tokens(blocks: str) -> dict[str, str]:
    """`save_tokens` for async tests (there `save` would only return a coroutine)."""
    from prefect.blocks.system import Secret

    tokens = {r: f"tok-{r}-{secrets.token_urlsafe(16)}" for r in ROLES}
    for role, value in tokens.items():
        await Secret(value=value).asave(f"{blocks}-{role}", overwrite=True)
    return tokens


def serve(cfg: IntegrationsConfig, engine: Engine) -> ReceiverThread:
    from pydantic import SecretStr

    from nura.platform.receiver_app import create_app
    from nura.webhooks.blocks import WebhookSecret

    app = create_app(
        cfg,
        engine=engine,
        secrets={"partner": WebhookSecret(scheme="generic", current=SecretStr(SECRET))},
        run_dispatcher=False,
    )
    return ReceiverThread(app, served=True).start()


@pytest.fixture(scope="module")
def admin_stack(prefect_server, tmp_path_factory) -> Iterator[AdminStack]:  # type: ignore[no-untyped-def]
    from nura.core.stores.db import get_engine

    store = tmp_path_factory.mktemp("admin") / "nura.db"
    cfg = admin_config(store)
    engine = get_engine(f"sqlite:///{store}")
    tokens = save_tokens()
    receiver = serve(cfg, engine)
    try:
        yield AdminStack(receiver.url, engine, cfg, tokens, receiver)
    finally:
        receiver.stop()

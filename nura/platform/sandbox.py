"""The SANDBOX of `nura up`: the config that points every service at the local stand-ins,
and the labelled blocks it uses. The stand-ins themselves run in `deployments/sandbox/stack.py`.

Started when no cloud credentials are configured. Everything it creates is labelled: the
blocks are named `sandbox-*`, `nura up` prints SANDBOX, the derived config file is
`.nura/sandbox-integrations.yaml`. Nothing here talks to a real cloud service.

"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml

SANDBOX_CONFLUENCE_EMAIL = "bot@example.com"
SANDBOX_CONFLUENCE_TOKEN = "sandbox-token"  # noqa: S105 - the stand-in's fixed test login
SANDBOX_WEBHOOK_SECRETS = {  # incoming endpoint -> secret the sandbox signs with
    "confluence_updates": "sandbox-confluence-webhook-secret",
    "git_updates": "sandbox-git-webhook-secret",
}
# The sink verifies the sandbox target's deliveries with this Standard Webhooks secret.
SANDBOX_SECRET = "whsec_c2FuZGJveC1vbmx5LW5vdC1hLXNlY3JldC1rZXktMzJi"  # noqa: S105
SERVICES = ("moto", "confluence", "bedrock", "github", "sink", "demo", "pricing")


def sandbox_ports() -> dict[str, int]:
    """Free ports for each stand-in (chosen now, so the derived config can name them)."""
    from nura.platform.processes import free_port

    return {name: free_port() for name in SERVICES}


def sandbox_urls(ports: dict[str, int]) -> dict[str, str]:
    """Each stand-in's base URL: known before it starts, so `nura up` writes the sandbox
    config and starts the processes that read it while the stand-ins still start."""
    return {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def sandbox_overrides(urls: dict[str, str]) -> dict[str, Any]:
    return {
        "external_services": {
            "aws": {
                "endpoint_url": urls["moto"],
                "credentials_block": None,
                "bedrock": {
                    "endpoint_url": urls["bedrock"],
                    "health_check_endpoint": None,
                    # `nura bedrock prices sync` reads the Price List stand-in, never AWS
                    "pricing_endpoint_url": urls["pricing"],
                },
            },
            "confluence": {
                "base_url": urls["confluence"],
                "credentials_block": "sandbox-confluence",
                "rate_limit_per_minute": 1200,
            },
            "git": {
                "base_url": urls["github"],
                "credentials_block": "sandbox-git",
                # The stand-in's repository (deployments/sandbox/stack.py pushes it); the
                # allow-list's default is empty: nothing else is ingested.
                "repositories": ["nura/handbook"],
            },
            "partners": {
                "demo": {
                    "base_url": urls["demo"],
                    "fallback_enabled": True,
                    "health_check_endpoint": "/health",
                    "rate_limit_per_minute": 600,
                }
            },
        },
        "webhooks": {
            "incoming": {
                name: {"secret_block": f"sandbox-{name.replace('_', '-')}"}
                for name in SANDBOX_WEBHOOK_SECRETS
            },
            "outgoing": {
                "allow_list": ["127.0.0.1"],
                "default_target": "sandbox",
                "targets": {
                    "sandbox": {
                        "url": f"{urls['sink']}/hooks/sandbox",
                        "secret": SANDBOX_SECRET,
                        "x_signature": True,
                    }
                },
            },
        },
        "health_monitoring": {
            "notifications": {
                "slack_block": "sandbox-slack",
                "slack_webhook_url": f"{urls['sink']}/slack/T000/B000/SANDBOX",
                "email": {"sender": "noreply@nura.ai", "recipients": ["oncall@nura.ai"]},
                # No real SNS topics here: any topic whose signature verifies is accepted.
                "ses_feedback_allow_any_topic": True,
            }
        },
    }


def sandbox_config(base: Path, urls: dict[str, str], out: Path) -> Path:
    """Write the user's config with every external endpoint pointed at the sandbox."""
    raw = yaml.safe_load(base.read_text()) or {}
    merged = _merge(raw, sandbox_overrides(urls))
    out.write_text(
        "# SANDBOX configuration written by `nura up` from "
        f"{base}; every endpoint is a local stand-in.\n" + yaml.safe_dump(merged, sort_keys=False)
    )
    return out


def sandbox_blocks(cfg: Any) -> list[tuple[str, Any]]:
    """The sandbox's blocks, all named `sandbox-*` (saved by `nura bootstrap --sandbox-blocks`)."""
    from pydantic import SecretStr

    from nura.notify.slack import slack_webhook_block
    from nura.platform.blocks import (
        ConfluenceCredentials,
        GitProviderCredentials,
        WebhookSecret,
    )

    ext = cfg.external_services
    out: list[tuple[str, Any]] = [
        (
            "sandbox-confluence",
            ConfluenceCredentials(
                base_url=ext.confluence.base_url or "",
                email=SANDBOX_CONFLUENCE_EMAIL,
                api_token=SecretStr(SANDBOX_CONFLUENCE_TOKEN),
            ),
        ),
        (
            "sandbox-git",
            GitProviderCredentials(
                provider="github",
                api_url=ext.git.base_url or "",
                token=SecretStr("sandbox-git-token"),
            ),
        ),
    ]
    slack_url = cfg.health_monitoring.notifications.slack_webhook_url
    if slack_url:
        out.append(("sandbox-slack", slack_webhook_block(slack_url)))
    for endpoint, secret in SANDBOX_WEBHOOK_SECRETS.items():
        name = f"sandbox-{endpoint.replace('_', '-')}"
        scheme: Literal["github", "generic"] = "github" if endpoint == "git_updates" else "generic"
        out.append((name, WebhookSecret(scheme=scheme, current=SecretStr(secret))))
    return out

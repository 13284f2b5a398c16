"""The SANDBOX of `nura up`: every local stand-in in one process, and the config that uses it.

Started when no cloud credentials are configured. Everything it creates is labelled: the
blocks are named `sandbox-*`, `nura up` prints SANDBOX, the derived config file is
`.nura/sandbox-integrations.yaml`. Nothing here talks to a real cloud service.

    python -m deployments.sandbox.stack --ports '{"moto": 0, ...}' --ready-file ready.json
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any, Literal

import yaml

SANDBOX_CONFLUENCE_EMAIL = "bot@example.com"
SANDBOX_CONFLUENCE_TOKEN = "sandbox-token"  # noqa: S105 - the stand-in's fixed test login
SANDBOX_WEBHOOK_SECRETS = {  # incoming endpoint -> secret the sandbox signs with
    "confluence_updates": "sandbox-confluence-webhook-secret",
    "git_updates": "sandbox-git-webhook-secret",
}
SERVICES = ("moto", "confluence", "bedrock", "github", "sink", "demo")


def sandbox_ports() -> dict[str, int]:
    """Free ports for each stand-in (chosen now, so the derived config can name them)."""
    from deployments.processes import free_port

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
    from deployments.sandbox.webhook_sink import SANDBOX_SECRET

    return {
        "external_services": {
            "aws": {
                "endpoint_url": urls["moto"],
                "credentials_block": None,
                "bedrock": {"endpoint_url": urls["bedrock"], "health_check_endpoint": None},
            },
            "confluence": {
                "base_url": urls["confluence"],
                "credentials_block": "sandbox-confluence",
                "rate_limit_per_minute": 1200,
            },
            "git": {"base_url": urls["github"], "credentials_block": "sandbox-git"},
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

    from blocks import ConfluenceCredentials, GitProviderCredentials, SlackWebhook, WebhookSecret

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
        out.append(("sandbox-slack", SlackWebhook(url=SecretStr(slack_url))))
    for endpoint, secret in SANDBOX_WEBHOOK_SECRETS.items():
        name = f"sandbox-{endpoint.replace('_', '-')}"
        scheme: Literal["github", "generic"] = "github" if endpoint == "git_updates" else "generic"
        out.append((name, WebhookSecret(scheme=scheme, current=SecretStr(secret))))
    return out


def _seed(urls: dict[str, str], github: Any) -> dict[str, Any]:
    """Data the first runs use: the knowledge-base bucket, a verified SES sender, a repo.

    Returns the GitHub push payload of the seeded commit (a first `git.push` to send).
    """
    import boto3

    from deployments.sandbox.github_server import ZERO

    kw = {"endpoint_url": urls["moto"], "region_name": "us-east-1"}
    boto3.client("s3", **kw).create_bucket(Bucket="nura-knowledge-base")
    boto3.client("ses", **kw).verify_email_identity(EmailAddress="noreply@nura.ai")
    sha = github.commit(
        "nura",
        "handbook",
        {
            "README.md": b"# Handbook\n\nHow we work.\n",
            "docs/architecture.md": "# Architecture\n\nLayers, contracts, caf\u00e9.\n".encode(),
        },
    )
    return dict(github.push_payload("nura", "handbook", ZERO, sha))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ports", required=True, help="JSON {service: port}")
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    ports = json.loads(args.ports)

    from moto.server import ThreadedMotoServer

    from deployments.sandbox.bedrock_server import BedrockStandIn
    from deployments.sandbox.confluence_server import ConfluenceServer, sample_server
    from deployments.sandbox.github_server import FakeGitHub
    from deployments.sandbox.http_service import FlakyService
    from deployments.sandbox.webhook_sink import WebhookSink

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=ports["moto"], verbose=False)
    moto.start()
    confluence = ConfluenceServer(
        port=ports["confluence"], email=SANDBOX_CONFLUENCE_EMAIL, api_token=SANDBOX_CONFLUENCE_TOKEN
    )
    github = FakeGitHub(port=ports["github"])
    servers = [
        sample_server(confluence),
        BedrockStandIn(port=ports["bedrock"]),
        github,
        WebhookSink(port=ports["sink"]),
        FlakyService(port=ports["demo"]),
    ]
    for server in servers:
        server.start()
    urls = sandbox_urls(ports)
    push = _seed(urls, github)
    ready = Path(args.ready_file)
    ready.with_name("sandbox-push.json").write_text(json.dumps(push))
    ready.write_text(json.dumps(urls))
    print(f"sandbox ready: {json.dumps(urls)}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop()
    moto.stop()


if __name__ == "__main__":
    main()

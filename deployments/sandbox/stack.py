"""The SANDBOX's stand-ins, every one in this process: moto server, Confluence, Bedrock,
GitHub, the Slack/webhook sink, a demo partner and the AWS Price List. `nura up` starts it
from the project directory; the config that points at it is `nura.platform.sandbox`.

    python -m deployments.sandbox.stack --ports '{"moto": 0, ...}' --ready-file ready.json
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from nura.platform.sandbox import SANDBOX_CONFLUENCE_EMAIL, SANDBOX_CONFLUENCE_TOKEN, sandbox_urls


def _seed(urls: dict[str, str], github: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Data the first runs use: the knowledge-base bucket, a verified SES sender, a repo.

    Returns two GitHub push payloads: the seeded commit's (the first runs send it) and a
    second commit's (the README's tour sends it: the same push again would be a replay,
    which the receiver answers as a duplicate without a run).
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
    first = dict(github.push_payload("nura", "handbook", ZERO, sha))
    tour = github.commit(
        "nura", "handbook", {"docs/tour.md": b"# The tour\n\nSent with `nura webhooks send`.\n"}
    )
    return first, dict(github.push_payload("nura", "handbook", sha, tour))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ports", required=True, help="JSON {service: port}")
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    ports = json.loads(args.ports)

    from moto.server import ThreadedMotoServer

    from deployments.sandbox.aws_pricing_server import PricingStandIn
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
        PricingStandIn(port=ports["pricing"]),
    ]
    for server in servers:
        server.start()
    urls = sandbox_urls(ports)
    push = _seed(urls, github)
    ready = Path(args.ready_file)
    ready.with_name("sandbox-first-push.json").write_text(json.dumps(push[0]))
    ready.with_name("sandbox-push.json").write_text(json.dumps(push[1]))
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

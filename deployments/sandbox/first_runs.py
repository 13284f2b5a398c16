"""Trigger one run of each deployment so a new sandbox's UI shows real history at once.

Each run gets parameters that work against the sandbox; the webhook-triggered ones are
started the way production starts them: a signed webhook to the running receiver.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

# Deployment -> parameters for its first sandbox run ({} = the flow's defaults).
FIRST_RUNS: dict[str, dict[str, object]] = {
    "call-layer-demo/call-layer-demo": {},
    "confluence-sync/confluence-sync": {},
    "bedrock-invoke/bedrock-invoke": {},
    "webhook-deliver/webhook-deliver": {},
    "webhook-redrive/webhook-redrive": {},
    "health-monitor/health-monitor": {},
}


async def trigger() -> dict[str, str]:
    from prefect.deployments import run_deployment

    started: dict[str, str] = {}
    for name, params in FIRST_RUNS.items():
        try:
            run = await run_deployment(name, parameters=params or None, timeout=0)  # type: ignore[misc]
            started[name] = str(run.id)
        except Exception as exc:  # one missing deployment must not stop the others
            started[name] = f"not started: {type(exc).__name__}: {exc}"
    return started


def send_first_webhooks(state_dir: Path) -> dict[str, str]:
    """A signed GitHub push of the sandbox repo, through the running receiver."""
    import uuid

    import httpx
    from pydantic import SecretStr

    from blocks import WebhookSecret
    from deployments.sandbox.stack import SANDBOX_WEBHOOK_SECRETS
    from nura import get_config

    cfg = get_config()
    receiver = cfg.webhooks.receiver
    endpoint = cfg.webhooks.incoming["git_updates"]
    body = (state_dir / "sandbox-push.json").read_bytes()
    signer = WebhookSecret(current=SecretStr(SANDBOX_WEBHOOK_SECRETS["git_updates"])).get_client()
    response = httpx.post(
        f"http://{receiver.host}:{receiver.port}{endpoint.url_path}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signer.hex_digest(body),
        },
        timeout=10,
    )
    return {"git-ingest (signed webhook)": f"HTTP {response.status_code}"}


def main() -> None:
    result = asyncio.run(trigger())
    state_dir = Path(os.environ.get("NURA_STATE_DIR", ".nura"))
    try:
        result.update(send_first_webhooks(state_dir))
    except Exception as exc:  # the receiver may be off: the flows above still ran
        result["git-ingest (signed webhook)"] = f"not started: {type(exc).__name__}: {exc}"
    print(json.dumps(result, indent=2))
    sys.exit(0 if all(not v.startswith("not started") for v in result.values()) else 1)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()

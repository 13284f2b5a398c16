"""Trigger one run of each deployment so a new sandbox's UI shows real history at once.

Each run gets parameters that work against the sandbox; the webhook-triggered ones are
started the way production starts them: a signed webhook to the running receiver.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Deployment -> parameters for its first sandbox run ({} = the flow's defaults).
FIRST_RUNS: dict[str, dict[str, object]] = {
    "call-layer-demo/call-layer-demo": {},
    "confluence-sync/confluence-sync": {},
    "bedrock-invoke/bedrock-invoke": {},
    "confluence-publish/confluence-publish": {
        "pages": [
            {
                "title": "Nura sandbox: architecture notes",
                "content": "# Architecture\n\nPublished by `nura up`'s sandbox.\n\n"
                "- flows\n- tasks\n- the call layer\n",
                "space": "ARCH",
                "labels": ["nura", "sandbox"],
            }
        ]
    },
    "webhook-deliver/webhook-deliver": {},
    "webhook-redrive/webhook-redrive": {},
    "health-monitor/health-monitor": {},
}
# Deployment -> (the first run it needs finished, its parameters): `kb-ask` answers from
# what the first Confluence sync chunked and embedded.
AFTER: dict[str, tuple[str, dict[str, object]]] = {
    "kb-ask/kb-ask": (
        "confluence-sync/confluence-sync",
        {
            "question": "Which queue worker retry backoff settings does the cluster use?",
            "space": "TECH",
        },
    ),
}


async def trigger() -> dict[str, str]:
    import asyncio

    from prefect.deployments import run_deployment

    async def start(name: str, params: dict[str, object]) -> str:
        try:
            run = await run_deployment(name, parameters=params or None, timeout=0)  # type: ignore[misc]
            return str(run.id)
        except Exception as exc:  # one missing deployment must not stop the others
            return f"not started: {type(exc).__name__}: {exc}"

    ids = await asyncio.gather(*(start(n, p) for n, p in FIRST_RUNS.items()))
    return dict(zip(FIRST_RUNS, ids, strict=True))


async def trigger_after(started: dict[str, str], wait_s: float = 600.0) -> dict[str, str]:
    """Start each `AFTER` deployment once the first run it needs is final (whatever its end:
    a failed sync still lets `kb-ask` show its answer, "not in the knowledge base")."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    result: dict[str, str] = {}
    async with get_client() as client:
        for name, (needs, params) in AFTER.items():
            try:
                run_id = started.get(needs, "")
                deadline = time.monotonic() + wait_s
                while not run_id.startswith("not started") and time.monotonic() < deadline:
                    state = (await client.read_flow_run(run_id)).state  # type: ignore[arg-type]
                    if state is not None and state.is_final():
                        break
                    await asyncio.sleep(2)
                run = await run_deployment(name, parameters=params, timeout=0)  # type: ignore[misc]
                result[name] = str(run.id)
            except Exception as exc:  # one missing deployment must not stop the others
                result[name] = f"not started: {type(exc).__name__}: {exc}"
    return result


def send_first_webhooks(state_dir: Path) -> dict[str, str]:
    """A signed GitHub push of the sandbox repo and a signed Confluence page update,
    through the running receiver: the webhook-triggered deployments start as in production."""
    import time
    import uuid

    import httpx
    from pydantic import SecretStr

    from nura import get_config
    from nura.platform.processes import answers_ok, wait_http
    from nura.platform.sandbox import SANDBOX_WEBHOOK_SECRETS
    from nura.webhooks.blocks import WebhookSecret

    cfg = get_config()
    receiver = cfg.webhooks.receiver
    base = f"http://{receiver.host}:{receiver.port}"
    # `nura up` starts the receiver alongside this bootstrap: wait for it to answer.
    wait_http(f"{base}/healthz", 60, accept=answers_ok)

    def signer(endpoint: str):  # type: ignore[no-untyped-def]
        secret = SecretStr(SANDBOX_WEBHOOK_SECRETS[endpoint])
        return WebhookSecret(current=secret).get_client()

    push = (state_dir / "sandbox-first-push.json").read_bytes()
    git = httpx.post(
        f"{base}{cfg.webhooks.incoming['git_updates'].url_path}",
        content=push,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signer("git_updates").hex_digest(push),
        },
        timeout=10,
    )
    page = json.dumps({"page": {"id": "100001", "spaceKey": "TECH"}}).encode()
    confluence_ep = cfg.webhooks.incoming["confluence_updates"]
    page_id, stamp = str(uuid.uuid4()), str(int(time.time()))
    page_signer = signer("confluence_updates")
    # The generic scheme signs "{X-Delivery-Id}.{X-Timestamp}.{body}"; the body alone only
    # where the endpoint is configured `signature: legacy-body-only`.
    page_sig = (
        page_signer.hex_digest(page)
        if confluence_ep.signature == "legacy-body-only"
        else page_signer.generic_signature(page_id, stamp, page)
    )
    confluence = httpx.post(
        f"{base}{confluence_ep.url_path}",
        content=page,
        headers={
            "Content-Type": "application/json",
            "X-Event-Type": "confluence.page.updated",
            "X-Delivery-Id": page_id,
            "X-Timestamp": stamp,
            "X-Signature": page_sig,
        },
        timeout=10,
    )
    return {
        "git-ingest (signed webhook)": f"HTTP {git.status_code}",
        "confluence-watch -> page ingest (signed webhook)": f"HTTP {confluence.status_code}",
    }


def run_first_runs() -> dict[str, str]:
    """Trigger the runs, then send the webhooks; one failure does not stop the others."""
    import contextlib

    from nura.platform.processes import WaitTimeout, wait_until

    state_dir = Path(os.environ.get("NURA_STATE_DIR", ".nura"))
    # `nura up` starts the sandbox alongside the bootstrap: the runs need it listening.
    # Without it after 60 s the runs are still started: each reports its own failure.
    ready = state_dir / "sandbox.json"
    with contextlib.suppress(WaitTimeout):
        wait_until(ready.exists, 60, f"no {ready}")
    result = asyncio.run(trigger())
    try:
        result.update(send_first_webhooks(state_dir))
    except Exception as exc:  # the receiver may be off: the flows above still ran
        result["git-ingest (signed webhook)"] = f"not started: {type(exc).__name__}: {exc}"
    result.update(asyncio.run(trigger_after(result)))
    return result


# Started by the signed webhooks above, as in production: the page event goes to the watch,
# whose event the bootstrap automation turns into the page ingest run.
WEBHOOK_DEPLOYMENTS = ("git-ingest", "confluence-watch", "confluence-page-ingest")
FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def first_run_deployments() -> list[str]:
    return [name.split("/")[1] for name in (*FIRST_RUNS, *AFTER)] + list(WEBHOOK_DEPLOYMENTS)


def wait_first_runs(
    api_url: str,
    ui_url: str,
    since: float,
    timeout: float = 300.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, str]]:
    """The latest run of each first-run deployment created since `since` (epoch seconds),
    once all are final or `timeout` has passed: deployment, state, UI link.

    Plain HTTP on the stack's API URL: the caller (`nura up`) has no Prefect settings.
    """
    import httpx

    names = first_run_deployments()
    after = datetime.fromtimestamp(since - 5, UTC).isoformat()
    deadline = clock() + timeout
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=10) as api:
        found = api.post("deployments/filter", json={"deployments": {"name": {"any_": names}}})
        found.raise_for_status()
        by_id = {d["id"]: d["name"] for d in found.json()}
        while True:
            runs = api.post(
                "flow_runs/filter",
                json={
                    "flow_runs": {
                        "deployment_id": {"any_": list(by_id)},
                        "expected_start_time": {"after_": after},
                    },
                    "sort": "EXPECTED_START_TIME_DESC",
                },
            )
            runs.raise_for_status()
            latest: dict[str, dict[str, Any]] = {}
            for run in runs.json():
                if not run.get("auto_scheduled"):  # the schedule's own future runs
                    latest.setdefault(by_id.get(run["deployment_id"], "?"), run)
            rows = [
                {
                    "deployment": name,
                    "state": (latest[name].get("state_type") or "?") if name in latest else "-",
                    "url": f"{ui_url}/runs/flow-run/{latest[name]['id']}" if name in latest else "",
                }
                for name in names
            ]
            if all(r["state"] in FINAL for r in rows) or clock() >= deadline:
                return rows
            sleep(1.0)


def main() -> None:
    result = run_first_runs()
    print(json.dumps(result, indent=2))
    sys.exit(0 if all(not v.startswith("not started") for v in result.values()) else 1)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()

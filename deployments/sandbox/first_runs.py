"""Trigger one run of each deployment so a new sandbox's UI shows real history at once.

Each run gets parameters that work against the sandbox; the webhook-triggered ones are
started the way production starts them: a signed webhook to the running receiver.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

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
            run = await run_deployment(name, parameters=params or None, timeout=0)
            started[name] = str(run.id)
        except Exception as exc:  # one missing deployment must not stop the others
            started[name] = f"not started: {type(exc).__name__}: {exc}"
    return started


def main() -> None:
    result = asyncio.run(trigger())
    print(json.dumps(result, indent=2))
    sys.exit(0 if all(not v.startswith("not started") for v in result.values()) else 1)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()

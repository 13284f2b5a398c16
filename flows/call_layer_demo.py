"""`call-layer-demo`: calls a service N times through the resilient call layer.

The first command of the README runs it against the sandbox's flaky HTTP service, so the
Prefect UI shows retries, the breaker and a fallback in a table artifact.

    python -m flows.call_layer_demo --service demo --calls 20
"""

from __future__ import annotations

import argparse

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from tasks.http import http_call


class DemoParams(BaseModel):
    service: str = Field(default="demo", description="A configured service name.")
    calls: int = Field(default=10, ge=1, le=10_000, description="How many calls to make.")
    path: str = Field(default="/echo", description="Path on the service's base_url.")


@flow(name="call-layer-demo", log_prints=True)
def call_layer_demo(params: DemoParams | None = None) -> dict[str, int]:
    """Make `calls` calls and publish a table of their outcomes."""
    params = params or DemoParams()
    futures = [http_call.submit(params.service, "GET", params.path) for _ in range(params.calls)]
    rows = [f.result() for f in futures]
    create_table_artifact(
        key="call-layer-demo",
        table=rows,
        description=f"{params.calls} calls to `{params.service}` through the call layer",
    )
    summary: dict[str, int] = {}
    for row in rows:
        summary[str(row["outcome"])] = summary.get(str(row["outcome"]), 0) + 1
    print(f"outcomes: {summary}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--service", default="demo")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--path", default="/echo")
    args = parser.parse_args()
    call_layer_demo(DemoParams(service=args.service, calls=args.calls, path=args.path))


if __name__ == "__main__":
    main()

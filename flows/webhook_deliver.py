"""The `webhook-deliver` flow: sign and deliver events to one configured target.

    python -m flows.webhook_deliver                       # one demo event to the sandbox
    python -m flows.webhook_deliver --target partner-a --type system.alert --data '{"a": 1}'

Each event is stored before its first attempt, delivered with Standard Webhooks
signatures and retried with backoff; what still fails is dead-lettered for the
`webhook-redrive` flow. The run returns a `DeliverySummary` and publishes the artifact
`webhook-deliveries`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from prefect import flow

from nura.webhooks.delivery import DeliverySummary, OutgoingEvent, publish_artifact
from tasks.webhooks import deliver_events

DEMO_DATA = {"message": "Hello from Nura Integrations", "source": "webhook-deliver"}


@flow(name="webhook-deliver", log_prints=True)
def webhook_deliver(
    target: str | None = None,
    event_type: str = "system.alert",
    data: dict[str, Any] | None = None,
    events: list[OutgoingEvent] | None = None,
) -> DeliverySummary:
    """Deliver `events` (or one `event_type`/`data` event) to `target` (default from config).

    Example:
        ```python
        from flows.webhook_deliver import webhook_deliver
        webhook_deliver(target="sandbox", event_type="git.push", data={"repo": "nura"})
        ```
    """
    batch = events or [OutgoingEvent(type=event_type, data=DEMO_DATA if data is None else data)]
    summary = deliver_events(target, batch)
    publish_artifact(summary, "webhook-deliveries")
    print(
        f"{summary.target}: {summary.delivered}/{summary.submitted} delivered, "
        f"{summary.pending} dead-lettered, {summary.exhausted} exhausted, "
        f"{summary.parked} parked, {summary.duplicate} duplicates"
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the webhook-deliver flow once.")
    parser.add_argument("--target", default=None, help="target name (default from config)")
    parser.add_argument("--type", default="system.alert", help="event type")
    parser.add_argument("--data", default=None, help="event data as a JSON object")
    args = parser.parse_args(argv)
    data = json.loads(args.data) if args.data else None
    webhook_deliver(target=args.target, event_type=args.type, data=data)


if __name__ == "__main__":
    main()

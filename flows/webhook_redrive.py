"""The `webhook-redrive` flow: retry due dead letters (scheduled every 5 minutes).

    python -m flows.webhook_redrive

Entry n is due `redrive_base_minutes * 2**n` minutes after its last failure, at most
`max_redrives` times (config `webhooks.outgoing.dead_letters`); in-flight entries of a
process that died are retried once their lease expires. Targets that are disabled are
skipped (their entries wait). Old delivered entries are removed per `retention_days`.
"""

from __future__ import annotations

import argparse

from prefect import flow

from nura.webhooks.delivery import RedriveSummary, publish_artifact
from tasks.webhooks import cleanup_delivered, redrive_dead_letters


@flow(name="webhook-redrive", log_prints=True)
def webhook_redrive(limit: int | None = None, target: str | None = None) -> RedriveSummary:
    """Redrive up to `limit` due entries (default `dead_letters.batch_size`), of one target
    or all."""
    summary = redrive_dead_letters(limit, target)
    removed = cleanup_delivered()
    publish_artifact(summary, "webhook-redrive")
    print(
        f"redrive: {summary.due} due, {summary.delivered} delivered, {summary.pending} "
        f"still pending, {summary.exhausted} exhausted, {summary.parked} parked; "
        f"{removed} old entries removed"
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the webhook-redrive flow once.")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--target", default=None)
    args = parser.parse_args(argv)
    webhook_redrive(limit=args.limit, target=args.target)


if __name__ == "__main__":
    main()

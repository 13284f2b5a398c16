"""Outgoing webhooks: delivery, redrive, dead-letter retention and stats.

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task

from nura.webhooks import delivery

deliver_events = task(name="webhook-deliver-events", retries=0)(delivery.deliver_events)
redrive_dead_letters = task(name="webhook-redrive-due", retries=0)(delivery.redrive_dead_letters)
cleanup_delivered = task(name="webhook-dead-letter-retention", retries=0)(
    delivery.cleanup_delivered
)
dead_letter_summary = task(name="webhook-dead-letter-stats", retries=0)(
    delivery.dead_letter_summary
)

__all__ = ["cleanup_delivered", "dead_letter_summary", "deliver_events", "redrive_dead_letters"]

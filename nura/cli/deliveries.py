"""`nura deliveries ...` (outgoing webhooks, dead letters) and `nura notify test`.

nura deliveries list [--status pending --status exhausted] [--target NAME]
nura deliveries retry MSG_ID... | --target NAME | --all-exhausted
nura deliveries purge MSG_ID... | --target NAME [--older-than-days N] --yes
nura deliveries stats | endpoints | enable NAME | disable NAME
nura deliveries send [--target NAME] [--type system.alert] [--data JSON]
nura notify test [--severity high]
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

deliveries_app = typer.Typer(
    help="Outgoing webhook deliveries and their dead letters.", no_args_is_help=True
)
notify_app = typer.Typer(help="Notifications (Slack, SES email).", no_args_is_help=True)


def _engine() -> Any:
    from nura import store_url
    from nura.cli.main import load_config_or_exit
    from nura.core.stores.db import get_engine

    load_config_or_exit()
    return get_engine(store_url())


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@deliveries_app.command("list")
def list_cmd(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", help="pending, exhausted, in_flight, delivered, purged."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List dead letters (default: pending and exhausted), oldest first."""
    from nura.cli.admin import run_action

    statuses = status or ["pending", "exhausted"]
    params = {"status": statuses, "target": target, "limit": limit}
    rows = run_action("deliveries.list", params)["entries"]
    if as_json:
        for row in rows:
            console.print_json(json.dumps({k: v for k, v in row.items() if k != "payload"}))
        return
    table = Table(title=f"dead letters ({', '.join(statuses)}): {len(rows)}")
    for col in (
        "webhook-id",
        "target",
        "event",
        "status",
        "attempts",
        "redrives",
        "next",
        "last error",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["target"],
            r["event_type"],
            r["status"],
            str(r["attempts"]),
            str(r["redrives"]),
            _when(r["next_attempt_at"]),
            (r["last_error"] or "")[:120],
        )
    console.print(table)


@deliveries_app.command("retry")
def retry_cmd(
    ids: Annotated[list[str] | None, typer.Argument(help="webhook-ids to replay.")] = None,
    target: Annotated[str | None, typer.Option(help="Every dead letter of this target.")] = None,
    all_exhausted: Annotated[
        bool, typer.Option("--all-exhausted", help="Every exhausted entry.")
    ] = False,
) -> None:
    """Replay dead letters now (same webhook-id, fresh signature) and print the outcome.

    Exit 0 when every replayed entry was delivered, 1 otherwise (the others are listed by
    `nura deliveries list`). Only the entries this command requeued are sent.
    """
    from nura.cli.admin import run_action

    if not ids and not target and not all_exhausted:
        err_console.print("say which: webhook-ids, --target NAME or --all-exhausted")
        raise typer.Exit(2)
    params = {"ids": ids or [], "target": target, "all_exhausted": all_exhausted}
    out = run_action("deliveries.retry", params)
    keys = out["requeued"]
    if not keys:
        console.print("nothing to retry (only pending or exhausted entries can be replayed)")
        raise typer.Exit(1)
    s = out["redrive"]
    console.print(
        f"requeued {len(keys)}: delivered {s['delivered']}, dead-lettered again "
        f"{s['pending']}, exhausted {s['exhausted']}, parked {s['parked']}"
        + (f", waiting for an open breaker {s['deferred']}" if s["deferred"] else "")
        + (f", sent by another process {s['taken']}" if s["taken"] else "")
        + (
            f" (disabled targets skipped: {', '.join(s['skipped_targets'])})"
            if s["skipped_targets"]
            else ""
        )
    )
    for name in out["deferred_targets"]:
        console.print(
            f"the breaker of webhooks.{name} is open: once the partner is back, "
            f"`nura breakers reset webhooks.{name}` and retry"
        )
    if s["delivered"] + s["taken"] < len(keys):
        raise typer.Exit(1)


@deliveries_app.command("purge")
def purge_cmd(
    ids: Annotated[list[str] | None, typer.Argument(help="webhook-ids to give up on.")] = None,
    target: Annotated[str | None, typer.Option(help="Every dead letter of this target.")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="pending and/or exhausted.")
    ] = None,
    older_than_days: Annotated[float | None, typer.Option(help="Only entries this old.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do it (no prompt).")] = False,
) -> None:
    """Give up on dead letters: they are marked `purged` and never sent."""
    from nura.cli.admin import run_action

    if not ids and not target and older_than_days is None and not status:
        err_console.print("say which: webhook-ids, --target, --status or --older-than-days")
        raise typer.Exit(2)
    if not yes and not typer.confirm("Purge these dead letters for good?"):
        raise typer.Exit(1)
    params = {
        "ids": ids or [],
        "target": target,
        "status": status or [],
        "older_than_days": older_than_days,
    }
    console.print(f"purged {run_action('deliveries.purge', params)['purged']}")


@deliveries_app.command("stats")
def stats_cmd() -> None:
    """Counts per status and the age of the oldest pending dead letter (JSON)."""
    from nura.core.stores.dead_letters import dead_letter_stats

    console.print_json(json.dumps(dead_letter_stats(_engine())))


@deliveries_app.command("endpoints")
def endpoints_cmd() -> None:
    """Configured targets with their enabled/disabled state and failure streak."""
    from nura import get_config
    from nura.core.stores import dead_letters as dl

    states = {s["target"]: s for s in dl.endpoint_states(_engine())}
    table = Table(title="webhook targets")
    for col in ("target", "url host", "state", "failing since", "failures", "reason"):
        table.add_column(col, overflow="fold")
    from urllib.parse import urlsplit

    for name, t in sorted(get_config().webhooks.outgoing.targets.items()):
        s = states.get(name, {})
        state = (
            "config-disabled" if not t.enabled else "disabled" if s.get("disabled") else "enabled"
        )
        color = "green" if state == "enabled" else "red"
        table.add_row(
            name,
            urlsplit(t.url).netloc,
            f"[{color}]{state}[/]",
            _when(s.get("failing_since")),
            str(s.get("consecutive_failures", 0)),
            s.get("disabled_reason") or "",
        )
    console.print(table)


@deliveries_app.command("enable")
def enable_cmd(target: str) -> None:
    """Re-enable a target (after a 410 or auto-disable); its waiting entries become due."""
    from nura.cli.admin import run_action

    if not run_action("targets.enable", {"target": target})["was_disabled"]:
        console.print(f"{target} was not disabled")
        return
    console.print(f"{target} enabled; the next webhook-redrive run delivers its waiting events")


@deliveries_app.command("disable")
def disable_cmd(target: str, reason: str = "disabled by an operator") -> None:
    """Pause a target: new events are stored and wait until it is enabled."""
    from nura.cli.admin import run_action

    run_action("targets.disable", {"target": target, "reason": reason})
    console.print(f"{target} disabled")


@deliveries_app.command("send")
def send_cmd(
    target: Annotated[str | None, typer.Option(help="Target name (default from config).")] = None,
    event_type: Annotated[str, typer.Option("--type", help="Event type.")] = "system.alert",
    data: Annotated[str, typer.Option(help="Event data, a JSON object.")] = '{"message": "test"}',
) -> None:
    """Deliver one event now, in this process (no Prefect flow run)."""
    from nura.webhooks.delivery import OutgoingEvent, submit_events

    _engine()
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        err_console.print(f"[red]--data is not JSON[/]: {exc}")
        raise typer.Exit(2) from None
    summary = submit_events(target, [OutgoingEvent(type=event_type, data=payload)])
    outcome = summary.outcomes[0]
    console.print(
        f"{summary.target}: {outcome.id} {outcome.status} (HTTP {outcome.status_code}, "
        f"{outcome.attempts} attempts){' ' + outcome.error if outcome.error else ''}"
    )
    if outcome.status != "delivered":
        raise typer.Exit(1)


@notify_app.command("test")
def notify_test(
    severity: Annotated[str, typer.Option(help="low, medium, high or critical.")] = "high",
    title: Annotated[str, typer.Option(help="Title.")] = "Nura test notification",
    body: Annotated[str, typer.Option(help="Body.")] = "If you read this, alerts reach you.",
) -> None:
    """Send a notification through the configured channels and show each outcome."""
    from nura.core.errors import InvalidInput
    from nura.notify.dispatch import send_notification

    _engine()
    try:
        result = send_notification(title, body, severity, event="notify.test")
    except InvalidInput as exc:
        err_console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if not result.channels:
        console.print(
            f"severity {severity} routes to no channel (health_monitoring.notifications.routing)"
        )
        return
    table = Table(title="notification")
    for col in ("channel", "status", "SES MessageId / Slack response", "error"):
        table.add_column(col, overflow="fold")
    for name, c in result.channels.items():
        table.add_row(name, c.status, c.message_id or c.response or "", c.error or "")
    console.print(table)
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(notify_app, name="notify")

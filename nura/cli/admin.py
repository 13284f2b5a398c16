"""Operator commands that run locally (the store directly) or remotely (the admin API).

    nura admin status | audit [--action A] [--actor NAME] | tokens
    nura endpoints list | disable NAME | enable NAME        # incoming webhook endpoints
    nura budgets list | set SCOPE [--daily USD] [--monthly USD] | clear SCOPE
    printf %s "$NEW" | nura secrets rotate BLOCK_TYPE/NAME FIELD

Remote when `nura --remote URL ...` or `NURA_ADMIN_URL` is set, with the token from
`NURA_ADMIN_TOKEN`; `run_action` is also what `nura deliveries retry|purge|enable|disable`
and `nura breakers reset` use. Exit codes: 2 for a usage error (bad parameters, unknown
name), 1 when refused (401/403) or failed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

admin_app = typer.Typer(help="Admin API status, audit log and tokens.", no_args_is_help=True)
endpoints_app = typer.Typer(help="Incoming webhook endpoints (on/off).", no_args_is_help=True)
budgets_app = typer.Typer(help="Bedrock budget overrides (store-backed).", no_args_is_help=True)
secrets_app = typer.Typer(help="Rotate secrets held in Prefect blocks.", no_args_is_help=True)


def remote_url() -> str | None:
    return os.environ.get("NURA_ADMIN_URL") or None


def run_action(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run an admin action remotely or locally; a refusal is printed and exits 1 or 2."""
    from nura.admin.actions import AdminError

    if remote_url():
        return _remote(name, params)
    try:
        return _local(name, params)
    except AdminError as exc:
        _refused(exc.status, exc.message)
    raise AssertionError("unreachable")  # pragma: no cover


def _local(name: str, params: dict[str, Any]) -> dict[str, Any]:
    from nura import store_url
    from nura.admin.actions import local_context, perform
    from nura.cli.console import load_config_or_exit
    from nura.core.stores.db import get_engine

    cfg = load_config_or_exit()
    return perform(name, params, local_context(get_engine(store_url(cfg)), cfg))


def _remote(name: str, params: dict[str, Any]) -> dict[str, Any]:
    from nura.admin.client import AdminApiError, AdminClient

    try:
        client = AdminClient.from_env()
    except AdminApiError as exc:
        err_console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(2) from None
    try:
        return client.call(name, params)
    except AdminApiError as exc:
        _refused(exc.status, str(exc))
    finally:
        client.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _refused(status: int, message: str) -> None:
    err_console.print(f"[red]{message}[/]")
    usage = status in (400, 404, 409, 422)  # the request cannot be done as asked
    raise typer.Exit(2 if usage else 1)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# -- nura admin ---------------------------------------------------------------------------
@admin_app.command("status")
def status_cmd() -> None:
    """Breakers, dead letters, endpoint flags, budget overrides, maintenance (JSON)."""
    console.print_json(json.dumps(run_action("status", {}), default=str))


@admin_app.command("audit")
def audit_cmd(
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (token name).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """The audit log, newest first: who did what, when, with which outcome."""
    rows = run_action("audit.list", {"action": action, "actor": actor, "limit": limit})["entries"]
    if as_json:
        for r in rows:
            print(json.dumps(r, sort_keys=True))
        return
    table = Table(title=f"audit log: {len(rows)}")
    for col in ("when", "actor", "role", "action", "target", "outcome", "detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            _when(r["ts"]),
            r["actor"],
            r["role"] or "-",
            r["action"],
            r["target"] or "",
            r["outcome"],
            json.dumps(r["detail"]) if r["detail"] else "",
        )
    console.print(table)


@admin_app.command("tokens")
def tokens_cmd() -> None:
    """Configured admin tokens: name, role, block (never the values)."""
    for t in run_action("tokens.list", {})["tokens"]:
        console.print(f"{t['name']}\t{t['role']}\t{t['block']}")


# -- nura endpoints -----------------------------------------------------------------------
@endpoints_app.command("list")
def endpoints_list() -> None:
    """Operator flags of incoming endpoints (an endpoint without a flag follows the YAML)."""
    flags = run_action("status", {})["endpoint_flags"]
    if not flags:
        console.print("no operator flags: every endpoint follows integrations.yaml")
    for f in flags:
        state = "enabled" if f["enabled"] else "disabled"
        console.print(f"{f['endpoint']}\t{state}\t{f['updated_by']}\t{_when(f['updated_at'])}")


@endpoints_app.command("disable")
def endpoints_disable(name: str) -> None:
    """Take an incoming endpoint out of service: it answers 404 like an unknown path."""
    run_action("endpoints.disable", {"endpoint": name})
    console.print(f"{name} disabled")


@endpoints_app.command("enable")
def endpoints_enable(name: str) -> None:
    """Clear an operator's disable (an endpoint the YAML disables stays off)."""
    run_action("endpoints.enable", {"endpoint": name})
    console.print(f"{name} enabled")


# -- nura budgets -------------------------------------------------------------------------
@budgets_app.command("list")
def budgets_list() -> None:
    """Budget overrides in the store (they replace the YAML's ceilings of their scope)."""
    rows = run_action("status", {})["budget_overrides"]
    if not rows:
        console.print("no overrides: budgets come from integrations.yaml")
    for scope, r in sorted(rows.items()):
        console.print(
            f"{scope}\tdaily {r['daily_usd'] or '-'}\tmonthly {r['monthly_usd'] or '-'}"
            f"\tby {r['updated_by']}"
        )


@budgets_app.command("set")
def budgets_set(
    scope: str,
    daily: Annotated[str | None, typer.Option(help="Daily ceiling in USD.")] = None,
    monthly: Annotated[str | None, typer.Option(help="Monthly ceiling in USD.")] = None,
) -> None:
    """Replace a scope's ceilings now, in every process (unset period: no ceiling)."""
    if daily is None and monthly is None:
        err_console.print("give --daily and/or --monthly (or `nura budgets clear`)")
        raise typer.Exit(2)
    out = run_action("budgets.set", {"scope": scope, "daily_usd": daily, "monthly_usd": monthly})
    console.print(
        f"budget of {scope}: daily {out['daily_usd'] or '-'}, monthly {out['monthly_usd'] or '-'}"
    )


@budgets_app.command("clear")
def budgets_clear(scope: str) -> None:
    """Drop a scope's override: its ceilings are the YAML's again."""
    out = run_action("budgets.clear", {"scope": scope})
    console.print(f"{scope}: {'override cleared' if out['cleared'] else 'had no override'}")


# -- nura secrets ---------------------------------------------------------------------------
@secrets_app.command("rotate")
def secrets_rotate(
    block: Annotated[str, typer.Argument(help="block-type-slug/block-name")],
    field: Annotated[str, typer.Argument(help="The SecretStr field to replace.")],
) -> None:
    """Write a new secret value, read from stdin (never an argument), into a block."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"new value for {block}.{field}: ")
    else:
        value = sys.stdin.read().rstrip("\r\n")
    if not value:
        err_console.print("no value on stdin")
        raise typer.Exit(2)
    run_action("secrets.rotate", {"block": block, "field": field, "value": value})
    console.print(f"{block}.{field} rotated")


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
    app.add_typer(endpoints_app, name="endpoints")
    app.add_typer(budgets_app, name="budgets")
    app.add_typer(secrets_app, name="secrets")

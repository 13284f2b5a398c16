"""`nura`: the command line of Nura Integrations.

Each area adds its commands from its own module (`deployments/cli_<area>.py` exposing
`register(app)`), so the entry point stays small and areas do not edit each other's code.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from nura.cli.console import console, err_console, load_config_or_exit

app = typer.Typer(
    name="nura",
    help="Nura Integrations: resilient Prefect flows for Confluence, Git, AWS, Slack, webhooks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
__all__ = ["app", "console", "err_console", "load_config_or_exit", "main"]

# Command modules of each area (each has `register(app)`); a broken one fails loudly.
EXTENSIONS = (
    "nura.cli.platform",  # up, down, status, bootstrap
    "nura.cli.confluence",  # confluence sync/publish
    "nura.cli.webhooks",  # webhooks serve/send, inbox
    "nura.cli.deliveries",  # deliveries list/retry/purge, notify
    "nura.cli.bedrock",  # invoke, costs, budgets
    "nura.cli.health",  # health, metrics serve
    "nura.cli.ha",  # ha up/status/down
    "nura.cli.ratelimits",  # ratelimits, ratelimits reset (adaptive rates)
    "nura.cli.maintenance",  # maintenance start/end/list
    "nura.cli.retention",  # retention run, erase
    "nura.cli.ask",  # ask (knowledge-base answers)
    "nura.cli.admin",  # admin status/audit, endpoints, budgets, secrets rotate
)


# Commands that work without a running platform (they manage it, or only read config).
LOCAL_COMMANDS = frozenset({"up", "down", "status", "env", "config", "ha"})
NO_STACK = (
    "no running stack: run `nura up` from the project directory (or pass --project DIR), "
    "or set PREFECT_API_URL (and NURA_CONFIG) for another Prefect server"
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="integrations.yaml to use (default: NURA_CONFIG)."),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            help="Project directory (its prefect.yaml); default: the current directory "
            "or the nearest parent with a prefect.yaml.",
        ),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            help="Admin API of a remote stack (default: NURA_ADMIN_URL); token from "
            "NURA_ADMIN_TOKEN. Operator commands then act there, not on a local store.",
        ),
    ] = None,
) -> None:
    if project:
        os.environ["NURA_PROJECT"] = project
    if config:
        os.environ["NURA_CONFIG"] = config
    if remote:
        os.environ["NURA_ADMIN_URL"] = remote
    remote_mode = bool(os.environ.get("NURA_ADMIN_URL"))
    if (
        ctx.invoked_subcommand not in LOCAL_COMMANDS
        and "--help" not in sys.argv[1:]
        and not remote_mode
    ):
        _attach_or_exit()
    from nura.core.runtime import reset_runtime

    reset_runtime()


def _attach_or_exit() -> None:
    """Use the running local stack unless this terminal is configured for another server;
    never start a temporary Prefect server or write into an unrelated store."""
    from nura.platform.attach import attach

    if attach() is None and not any(
        os.environ.get(k) for k in ("PREFECT_API_URL", "NURA_CONFIG", "NURA_STORE_URL")
    ):
        err_console.print(f"[bold red]{NO_STACK}[/]")
        raise typer.Exit(2)


config_app = typer.Typer(help="Inspect and validate integrations.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check() -> None:
    """Validate the configuration and list the services the call layer knows."""
    from nura.config import config_path

    cfg = load_config_or_exit()
    table = Table(title=f"services in {config_path()}")
    for col in ("service", "rate/min", "timeout s", "breaker", "retries", "fallback"):
        table.add_column(col)
    for p in cfg.policies().values():
        table.add_row(
            p.name,
            str(p.rate_limit_per_minute),
            f"{p.timeout_seconds:g}",
            str(p.circuit_breaker_threshold),
            str(p.retry_attempts),
            "yes" if p.fallback_enabled else "no",
        )
    console.print(table)
    from nura.cli.maintenance import config_watch_lines

    for line in config_watch_lines(cfg):  # changed since the last snapshot? (read-only)
        console.print(line, markup=False)


breakers_app = typer.Typer(
    help="Circuit breakers shared by every process.", invoke_without_command=True
)
app.add_typer(breakers_app, name="breakers")


@breakers_app.callback()
def breakers_show(ctx: typer.Context) -> None:
    """Show each service's breaker state (closed / open / half_open)."""
    if ctx.invoked_subcommand:
        return
    import time

    from nura.core.runtime import get_call_layer

    load_config_or_exit()
    layer = get_call_layer()
    _register_target_services()
    known = {s.service: s for s in layer.breakers.all()}
    table = Table(title="circuit breakers")
    for col in ("service", "state", "consecutive failures", "open for"):
        table.add_column(col)
    for name in sorted(set(layer.policies) | set(known)):
        snap = known.get(name)
        state = snap.state.value if snap else "closed"
        opened = f"{time.time() - snap.opened_at:.0f}s" if snap and snap.opened_at else "-"
        color = {"closed": "green", "open": "red", "half_open": "yellow"}[state]
        table.add_row(name, f"[{color}]{state}[/]", str(snap.failures if snap else 0), opened)
    console.print(table)


@breakers_app.command("reset")
def breakers_reset(service: str) -> None:
    """Close a service's breaker (operator override; audited, remote with --remote)."""
    from nura.cli.admin import run_action

    run_action("breakers.reset", {"service": service})
    console.print(f"breaker of {service} closed")


def _register_target_services() -> None:
    """Outgoing-webhook targets are services of their own (`webhooks.<target>`)."""
    from nura.webhooks.delivery import register_targets

    register_targets()


def _register_extensions() -> None:
    for name in EXTENSIONS:
        importlib.import_module(name).register(app)


_register_extensions()


def main() -> None:
    from nura.config import ConfigError
    from nura.core.errors import NuraError, ProjectNotFound

    try:
        app()
    except ConfigError as exc:
        err_console.print(f"[bold red]Configuration error[/] {exc}")
        sys.exit(2)
    except ProjectNotFound as exc:
        err_console.print(f"[bold red]No project[/] {exc}")
        sys.exit(2)
    except NuraError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()

"""`nura ratelimits` (configured ceiling vs effective rate of every service) and
`nura ratelimits reset SERVICE` (back to the configured rate). See docs/rate-limits.md."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

ratelimits_app = typer.Typer(
    help="Effective rate of each service under dynamic adjustment (shared by every process).",
    invoke_without_command=True,
)


def _layer():  # type: ignore[no-untyped-def]
    from nura.cli.main import _register_target_services, load_config_or_exit
    from nura.core.adaptive import AdaptiveRates
    from nura.core.runtime import get_call_layer, store_url
    from nura.core.stores.db import get_engine

    cfg = load_config_or_exit()
    layer = get_call_layer()
    _register_target_services()
    return layer, layer.rates or AdaptiveRates(get_engine(store_url(cfg)))


@ratelimits_app.callback()
def ratelimits_show(ctx: typer.Context) -> None:
    """Show each service's configured rate, effective rate and its last adjustment."""
    if ctx.invoked_subcommand:
        return
    layer, rates = _layer()
    known = {s.service: s for s in rates.all()}
    table = Table(title="rate limits (calls/min)")
    for col in ("service", "configured", "effective", "adaptive", "last change", "decreases"):
        table.add_column(col)
    for name, policy in sorted(layer.policies.items()):
        state = known.get(name)
        ceiling = policy.rate_limit_per_minute
        effective = rates.effective(policy)
        color = "green" if effective >= ceiling else "yellow"
        change = f"{state.reason}, {time.time() - state.last_change_at:.0f}s ago" if state else "-"
        table.add_row(
            name,
            str(ceiling),
            f"[{color}]{effective:g}[/]",
            "on" if policy.adaptive.enabled else "off",
            change,
            str(state.decreases if state else 0),
        )
    console.print(table)


@ratelimits_app.command("reset")
def ratelimits_reset(service: str) -> None:
    """Put a service back at its configured rate (operator override)."""
    layer, rates = _layer()
    if service not in layer.policies:
        err_console.print(
            f"[red]unknown service[/] {service!r} (known: {', '.join(sorted(layer.policies))})"
        )
        raise typer.Exit(2)
    rates.reset(service)
    console.print(f"rate of {service} back to {layer.policies[service].rate_limit_per_minute}/min")


def register(app: typer.Typer) -> None:
    app.add_typer(ratelimits_app, name="ratelimits")

"""`nura health` (one check round, exit 0/1/2/3) and `nura metrics serve` (Prometheus).

Exit codes of `nura health`: 0 healthy (or nothing measured), 1 degraded, 2 unhealthy,
3 the health could not be judged: the configuration or the store cannot be read.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)
EXIT_CODE = {"healthy": 0, "unknown": 0, "degraded": 1, "unhealthy": 2}
CANNOT_JUDGE = 3  # config or store unreadable: not a health verdict
COLOR = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "unknown": "dim"}


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}" if unit == " ms" else f"{value:.1f}{unit}"


def health(
    timeout: Annotated[
        float | None, typer.Option(help="Per-check timeout in seconds (default: config).")
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list services that have no check configured.")
    ] = False,
) -> None:
    """Run one round of health checks, print the table; exit 0 healthy, 1 degraded,
    2 unhealthy, 3 when the configuration or the store cannot be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from nura.config import ConfigError
    from nura.core.runtime import get_config
    from nura.core.stores.inbox import StoreUnavailable
    from nura.health.checks import check_round
    from nura.health.sla import build_report

    try:
        get_config()
    except ConfigError as exc:
        err_console.print(f"[bold red]Cannot judge health: configuration error[/] {exc}")
        raise typer.Exit(CANNOT_JUDGE) from None
    try:
        results = check_round(timeout=timeout)
        report = build_report([r.as_dict() for r in results])
    except (SQLAlchemyError, StoreUnavailable) as exc:
        # The type only: a driver's message can quote the store URL and its password.
        err_console.print(
            f"[bold red]Cannot judge health: the store cannot be read[/] ({type(exc).__name__}); "
            "check NURA_STORE_URL / platform.store_url and that the database is up"
        )
        raise typer.Exit(CANNOT_JUDGE) from None
    table = Table(title=f"health: {report['overall']}")
    for col in ("service", "status", "latency", "p95", "errors", "availability", "breaker"):
        table.add_column(col)
    table.add_column("reason / detail", overflow="fold")
    for s in report["services"]:
        if s["status"] == "unknown" and not show_all:
            continue
        color = COLOR.get(s["status"], "white")
        table.add_row(
            s["service"],
            f"[{color}]{s['status']}[/]",
            _fmt(s["latency_ms"], " ms"),
            _fmt(s["p95_ms"], " ms"),
            _fmt(s["error_rate_pct"], " %"),
            _fmt(s["availability_pct"], " %"),
            s["breaker"] or "-",
            s["reason"] or s["detail"] or "",
        )
    console.print(table)
    raise typer.Exit(EXIT_CODE.get(report["overall"], 2))


def metrics_serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve /metrics on.")] = 9464,
) -> None:
    """Serve the Prometheus exposition at http://HOST:PORT/metrics until interrupted."""
    from nura.cli.main import load_config_or_exit
    from nura.platform.metrics import serve

    load_config_or_exit()
    server = serve(host, port)
    console.print(f"Prometheus metrics on http://{host}:{server.server_address[1]}/metrics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("health")(health)
    metrics_app = typer.Typer(help="Prometheus metrics.", no_args_is_help=True)
    metrics_app.command("serve")(metrics_serve)
    app.add_typer(metrics_app, name="metrics")

"""`nura maintenance start|end|list`: planned maintenance windows (docs/health.md).

    nura maintenance start confluence --for 30m --reason "Atlassian upgrade"
    nura maintenance list
    nura maintenance end confluence

Exit codes: 0 done; 2 the request cannot be done (unknown service, bad duration, a
window already running, none to end) with the reason on stderr.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`30m`, `2h`, `1h30m`, `90s`, `1d` -> seconds; anything else is a typer error."""
    spec = text.strip().lower()
    parts = DURATION.findall(spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 2h, 1h30m, 90s")
    return sum(float(n) * UNIT_S[u] for n, u in parts)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _engine_and_config() -> tuple[Any, Any]:
    from nura.cli.console import load_config_or_exit
    from nura.core.runtime import store_url
    from nura.core.stores.db import get_engine

    cfg = load_config_or_exit()
    return get_engine(store_url(cfg)), cfg


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[bold red]{exc}[/]")
    return typer.Exit(2)


def _act(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Through the admin actions (audited; the remote admin API with `--remote`)."""
    from nura.cli.admin import run_action
    from nura.health.maintenance import MaintenanceError

    try:
        return run_action(name, params)["window"]
    except MaintenanceError as exc:
        raise _fail(exc) from None


def start(
    service: Annotated[str, typer.Argument(help="Service as the health report names it.")],
    reason: Annotated[str, typer.Option(help="Why (shown in notices and the report).")],
    duration: Annotated[
        str, typer.Option("--for", help="How long: 30m, 2h, 1h30m, 90s, 1d.")
    ] = "30m",
) -> None:
    """Start a maintenance window now: checks keep running, alerts are held, the SLA
    leaves the time out; a low-severity notice goes out now and when it ends."""
    seconds = parse_duration(duration)
    window = _act(
        "maintenance.start", {"service": service, "duration_s": seconds, "reason": reason}
    )
    console.print(
        f"{service} in maintenance until {_when(window['ends_at'])} "
        f"({seconds / 60:g} min), by {window['actor']}: {reason}"
    )


def end(
    service: Annotated[str, typer.Argument(help="Service whose window ends now.")],
) -> None:
    """End the service's maintenance window now (alerts are live again)."""
    window = _act("maintenance.end", {"service": service})
    console.print(f"{service} maintenance ended at {_when(window['ends_at'])}")


def list_windows() -> None:
    """Windows in effect and planned (from the store and the configuration)."""
    import time

    from nura.health import maintenance

    engine, cfg = _engine_and_config()
    now = time.time()
    rows = maintenance.upcoming(engine, now, cfg)
    if not rows:
        console.print("No maintenance window in effect or planned.")
        return
    table = Table(title="maintenance windows")
    for col in ("service", "state", "from", "until", "source", "by", "reason"):
        table.add_column(col)
    for w in rows:
        state = "active" if w["starts_at"] <= now else "planned"
        table.add_row(
            w["service"],
            state,
            _when(w["starts_at"]),
            _when(w["ends_at"]),
            w["source"],
            w["actor"],
            w["reason"] or "-",
        )
    console.print(table)


def config_watch_lines(cfg: Any) -> list[str]:
    """For `nura config check`: the configuration and blocks against the last snapshot
    the health monitor took (nothing is recorded here; the monitor alerts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from nura.health.config_watch import check_config, summary_lines

    try:
        return summary_lines(check_config(record=False, config=cfg, source="nura config check"))
    except SQLAlchemyError as exc:  # the type only: a driver message can quote a password
        return [f"config digest: the store cannot be read ({type(exc).__name__})"]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Maintenance windows: hold a service's alerts, keep its SLA honest.",
        no_args_is_help=True,
    )
    sub.command("start")(start)
    sub.command("end")(end)
    sub.command("list")(list_windows)
    app.add_typer(sub, name="maintenance")

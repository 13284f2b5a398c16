"""`nura ha up|status|down`: Prefect's high-availability layout on one machine.

nura ha up [--api-servers 2] [--receivers 2] [--dispatchers 2] [--workers 3]
nura ha status
nura ha down [--drop]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from nura.platform.ha import HaSettings

console = Console()
err_console = Console(stderr=True)

ha_app = typer.Typer(
    help="Prefect's high-availability layout with Nura's parts scaled beside it "
    "(docs/scale-out.md).",
    no_args_is_help=True,
)


def _settings(**overrides: Any) -> HaSettings:
    from nura.config import config_path
    from nura.platform.ha import HaSettings
    from nura.platform.project import project_dir

    project = project_dir()
    return HaSettings(
        state_dir=project / ".nura" / "ha",
        project=project,
        config_path=Path(config_path()),
        **overrides,
    )


@ha_app.command("up")
def up(
    api_servers: Annotated[int, typer.Option(min=1)] = 2,
    receivers: Annotated[int, typer.Option(min=1)] = 2,
    dispatchers: Annotated[int, typer.Option(min=1)] = 2,
    workers: Annotated[int, typer.Option(min=1)] = 3,
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server URL (no database).")
    ] = "postgresql://postgres@127.0.0.1:5432",
    redis_host: Annotated[str, typer.Option()] = "127.0.0.1",
    redis_port: Annotated[int, typer.Option()] = 6379,
    api_port: Annotated[int, typer.Option(help="The API balancer's port.")] = 4400,
    receiver_port: Annotated[int, typer.Option(help="The receivers' balancer port.")] = 8790,
) -> None:
    """Start the layout as separate processes and return (they keep running)."""
    from nura.platform.ha import HaStack, HaState
    from nura.platform.processes import StackError

    settings = _settings(
        api_servers=api_servers,
        receivers=receivers,
        dispatchers=dispatchers,
        workers=workers,
        postgres=postgres,
        redis_host=redis_host,
        redis_port=redis_port,
        api_port=api_port,
        receiver_port=receiver_port,
    )
    existing = HaState.load(settings.state_dir)
    if existing is not None:
        stack = HaStack(settings)
        if any(stack.alive(n) for n in existing.pids):
            console.print(
                f"the HA layout is already running (API {existing.api_url}); left untouched"
            )
            return
    stack = HaStack(settings, say=lambda s: console.print(f"… {s}"))
    try:
        state = stack.up()
    except StackError as exc:
        err_console.print(f"[bold red]HA layout failed to start[/] {exc}")
        stack.down()
        raise typer.Exit(1) from None
    console.print(
        f"[bold green]HA layout is up[/]: API (balanced) {state.api_url}, webhooks (balanced) "
        f"{state.receiver_url}\nexport PREFECT_API_URL={state.api_url} NURA_CONFIG="
        f"{state.config_path} NURA_STORE_URL={state.store_url}"
    )


@ha_app.command("status")
def status() -> None:
    """Each process of the layout and whether it runs."""
    from nura.platform.ha import HaStack, HaState

    settings = _settings()
    state = HaState.load(settings.state_dir)
    if state is None:
        console.print("no HA layout recorded here")
        raise typer.Exit(1)
    stack = HaStack(settings)
    down = [n for n in state.pids if not stack.alive(n)]
    for name, pid in state.pids.items():
        console.print(f"{name:14} pid {pid:<8} {'running' if name not in down else 'stopped'}")
    console.print(f"API {state.api_url} · webhooks {state.receiver_url}")
    if down:
        raise typer.Exit(1)


@ha_app.command("down")
def down(
    drop: Annotated[
        bool, typer.Option("--drop", help="Also drop its databases and Redis databases.")
    ] = False,
) -> None:
    """Stop every process of the layout."""
    from nura.platform.ha import HaStack

    stack = HaStack(_settings())
    stopped = stack.down(drop=drop)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def register(app: typer.Typer) -> None:
    app.add_typer(ha_app, name="ha")

"""What every `nura` command module shares: the consoles and the configuration loader.

Command modules import these from here (or from `nura.cli.main`, which re-exports them);
`nura.cli.main` itself may then import a command module without an import cycle.
"""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def load_config_or_exit():  # type: ignore[no-untyped-def]
    """The configuration, or a readable error and exit code 2."""
    from nura.config import ConfigError
    from nura.core.runtime import get_config

    try:
        return get_config()
    except ConfigError as exc:
        err_console.print(f"[bold red]Configuration error[/] {exc}")
        raise typer.Exit(2) from None

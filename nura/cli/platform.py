"""`nura up | down | status | bootstrap`: the platform's lifecycle commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _state_dir() -> Path:
    from nura.cli.main import load_config_or_exit
    from nura.platform.project import project_dir

    cfg = load_config_or_exit()
    path = Path(cfg.platform.state_dir)
    return path if path.is_absolute() else project_dir() / path


def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background.")] = False,
    sandbox: Annotated[
        bool | None,
        typer.Option("--sandbox/--no-sandbox", help="Force the local sandbox on or off."),
    ] = None,
    no_runs: Annotated[bool, typer.Option("--no-runs", help="Do not trigger first runs.")] = False,
) -> None:
    """Start the whole platform: Prefect server + UI, worker, webhook receiver, deployments.

    With no cloud credentials in the environment, a clearly labelled SANDBOX of local
    stand-ins (moto for S3/SES/CloudWatch, Confluence, Bedrock, GitHub, Slack) is started
    and one run of each flow is triggered so the UI shows real history within a minute.
    """
    from nura.cli.main import load_config_or_exit
    from nura.config import config_path
    from nura.platform.processes import StackError
    from nura.platform.stack import Stack, StackState, running_stack

    cfg = load_config_or_exit()  # a broken integrations.yaml stops here, naming the key
    running = running_stack(_state_dir())
    if running is not None:
        _print_ready(running, None, detached=True, already=True)
        return
    if detach:
        return _detach(sandbox, no_runs)
    stack = Stack(cfg, config_path(), sandbox=sandbox, trigger_runs=not no_runs, say=console.print)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    try:
        with console.status("starting Nura Integrations…") as status:
            stack.status = lambda text: status.update(f"[bold]{text}…")
            state = stack.up()
        _print_ready(state, time.monotonic() - started)
        if not _report_first_runs(state):
            console.print("[bold red]some first runs did not complete[/]: see the UI links")
        stack.supervise()
    except StackError as exc:
        console.print(f"[bold red]cannot start the platform:[/] {exc}")
        stack.down()
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("\nstopping Nura Integrations…")
        stack.down()
        console.print("stopped.")
    finally:
        if StackState.load(stack.state_dir) and stack.children:
            stack.down()


def _detach(sandbox: bool | None, no_runs: bool) -> None:
    from nura.platform.stack import StackState

    state_dir = _state_dir()
    (state_dir / "stack.json").unlink(missing_ok=True)  # stale: running_stack found none alive
    args = [sys.executable, "-m", "nura.cli.main", "up"]
    if sandbox is not None:
        args.append("--sandbox" if sandbox else "--no-sandbox")
    if no_runs:
        args.append("--no-runs")
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "up.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ)
    )
    with console.status("starting Nura Integrations in the background…"):
        while True:
            state = StackState.load(state_dir)
            if state and state.status == "ready":
                break
            if proc.poll() is not None:
                console.print(
                    f"[bold red]the platform did not start[/]; see {state_dir / 'up.log'}"
                )
                raise typer.Exit(1)
            time.sleep(0.3)
    _print_ready(state, None, detached=True)
    if not _report_first_runs(state):
        console.print("[bold red]some first runs did not complete[/]: see the UI links")
        raise typer.Exit(1)


def _report_first_runs(state) -> bool:  # type: ignore[no-untyped-def]
    """One line per first run with its final state and UI link; False if any did not
    complete (or none was found)."""
    if not state.first_runs:
        return True
    from nura.platform.first_runs import wait_first_runs

    with console.status("waiting for the first runs…"):
        rows = wait_first_runs(state.api_url, state.ui_url, state.started_at)
    table = Table(title="first runs", show_header=False, box=None)
    for row in rows:
        ok = row["state"] == "COMPLETED"
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        table.add_row(mark, row["deployment"], row["state"].lower(), row["url"])
    console.print(table)
    return all(r["state"] == "COMPLETED" for r in rows)


def _print_ready(  # type: ignore[no-untyped-def]
    state, seconds: float | None, *, detached: bool = False, already: bool = False
) -> None:
    from nura import get_config

    table = Table(show_header=False, box=None)
    if state.sandbox:
        table.add_row("[bold yellow]SANDBOX[/]", "local stand-ins, no cloud service is called")
    table.add_row("Prefect UI", f"[link={state.ui_url}]{state.ui_url}[/]")
    table.add_row("Prefect API", state.api_url)
    if state.receiver_url:
        for name, ep in get_config().webhooks.incoming.items():
            if ep.enabled:
                table.add_row(f"webhook {name}", f"POST {state.receiver_url}{ep.url_path}")
        table.add_row("receiver health", f"{state.receiver_url}/healthz")
    for name, url in sorted(state.sandbox_urls.items()):
        table.add_row(f"sandbox {name}", url)
    table.add_row("logs", str(Path(state.state_dir) / "logs"))
    table.add_row("stop", "`nura down`" if detached else "Ctrl-C here, or `nura down`")
    table.add_row("other terminals", 'nura commands attach to it; `eval "$(nura env)"` for prefect')
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    if already:
        console.print("[bold green]Nura Integrations is already running[/] (left untouched)")
    else:
        console.print(f"[bold green]Nura Integrations is up{took}[/]")
    console.print(table)


def down() -> None:
    """Stop the stack started with `nura up` (also `--detach`): its recorded processes."""
    from nura.platform.processes import StackError
    from nura.platform.stack import running_stack, stop_recorded_stack

    state_dir = _state_dir()
    if running_stack(state_dir) is None:
        console.print(f"no stack is running from {state_dir}")
        return
    try:
        stopped = stop_recorded_stack(state_dir)
    except StackError as exc:
        console.print(f"[bold red]{exc}[/]")
        raise typer.Exit(1) from None
    for name, pid in stopped.items():
        console.print(f"stopped {name} (pid {pid})")
    console.print("stopped.")


def status() -> None:
    """Whether the stack runs: each recorded process (by pid and start time) and the
    Prefect API and receiver answering. Exit 0 when all of it runs, else 1."""
    import httpx

    from nura.platform.stack import StackState, is_alive

    state = StackState.load(_state_dir())
    if state is None or state.status == "stopped" or not state.pids:
        console.print("not running; start it with `nura up`")
        raise typer.Exit(1)
    table = Table(title="Nura Integrations")
    for col in ("part", "pid / url", "running"):
        table.add_column(col)
    healthy = True
    for name, pid in state.pids.items():
        alive = is_alive(pid, state.starts.get(name))
        healthy &= alive
        table.add_row(name, str(pid), "[green]yes[/]" if alive else "[red]no[/]")
    for name, url in (
        ("Prefect API", f"{state.api_url}/health"),
        ("webhook receiver", f"{state.receiver_url}/healthz"),
    ):
        try:
            answers = httpx.get(url, timeout=3).status_code == 200
        except httpx.HTTPError:
            answers = False
        healthy &= answers
        table.add_row(name, url, "[green]answers[/]" if answers else "[red]no answer[/]")
    console.print(table)
    console.print("[green]running[/]" if healthy else "[red]not fully running[/]")
    if not healthy:
        raise typer.Exit(1)


def bootstrap(
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    sandbox_blocks: Annotated[
        bool, typer.Option("--sandbox-blocks", help="Save the sandbox's labelled blocks.")
    ] = False,
    wait_api: Annotated[
        float,
        typer.Option(
            "--wait-api",
            help="Seconds to wait for the server to answer (after local preparation).",
        ),
    ] = 0.0,
    first_runs: Annotated[
        bool,
        typer.Option("--first-runs", hidden=True, help="nura up: trigger the sandbox runs."),
    ] = False,
    flow_run_command: Annotated[
        str | None,
        typer.Option(
            "--flow-run-command", hidden=True, help="nura up: the work pool's run command."
        ),
    ] = None,
) -> None:
    """Idempotently register blocks, save blocks from env vars, create concurrency limits,
    the work pool and every deployment, against the server PREFECT_API_URL points at."""
    from nura.cli.main import load_config_or_exit
    from nura.platform.bootstrap import BootstrapError
    from nura.platform.bootstrap import bootstrap as run_bootstrap

    cfg = load_config_or_exit()
    extra = None
    if sandbox_blocks:
        from nura.platform import sandbox as sandbox_stack

        extra = sandbox_stack.sandbox_blocks
    try:
        report = run_bootstrap(
            cfg, wait_api=wait_api, extra_blocks=extra, flow_run_command=flow_run_command
        )
    except BootstrapError as exc:
        console.print(f"[bold red]bootstrap failed:[/] {exc}")
        raise typer.Exit(1) from None
    if first_runs:
        # In this process: prefect, the blocks and every flow are imported already.
        from nura.platform.first_runs import run_first_runs

        started = time.monotonic()
        result = run_first_runs()
        report.timings["first runs"] = round(time.monotonic() - started, 2)
        console.print_json(data=result)
    if quiet:
        return
    console.print(f"block types: {', '.join(report.blocks)}")
    console.print(f"concurrency limits: {', '.join(report.limits)}")
    console.print(f"work pool: {report.work_pool}")
    for name in report.deployments:
        console.print(f"deployment: {name}")
    for name in report.skipped:
        console.print(f"[yellow]skipped[/] {name}")
    console.print("seconds per step: " + ", ".join(f"{k} {v}" for k, v in report.timings.items()))


def env() -> None:
    """Print the running stack's settings as shell exports: `eval "$(nura env)"` makes
    Prefect's own CLI (and any script) talk to the same server, config and store."""
    from nura.platform.attach import exports
    from nura.platform.stack import running_stack

    state = running_stack(_state_dir())
    if state is None:
        console.print("# no running stack: start one with `nura up`", highlight=False)
        raise typer.Exit(1)
    print(exports(state, os.environ))


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("env")(env)
    app.command("down")(down)
    app.command("status")(status)
    app.command("bootstrap")(bootstrap)

"""`nura retention run` and `nura erase` (docs/retention.md).

nura retention run [--dry-run] [--json]
nura erase --confluence-page ID | --git-path [OWNER/REPO:]PATH | --email ADDRESS
           [--dry-run] [--json]

Exit codes: 0 done (also when nothing was found), 1 the work failed (what was done until
then is audited), 2 bad arguments or configuration.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

retention_app = typer.Typer(help="Retention of the stores (docs/retention.md).")
T = TypeVar("T")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name (a container without /etc/passwd entry)
        return "cli:unknown"


def _engine_and_config() -> tuple[Any, Any]:
    from nura import store_url
    from nura.cli.main import load_config_or_exit
    from nura.core.stores.db import get_engine

    cfg = load_config_or_exit()
    return _run(lambda: get_engine(store_url(cfg))), cfg


def _run(work: Callable[[], T]) -> T:
    """Run the work; a failure is a readable message and exit 1 (bad input: exit 2). Only
    the first line of a foreign error is shown: database errors append the statement's
    parameters, which may hold the content being erased."""
    from nura.errors import NuraError
    from nura.retention import InvalidSubject

    try:
        return work()
    except InvalidSubject as exc:
        err_console.print(f"[red]bad argument[/] {exc}")
        raise typer.Exit(2) from None
    except NuraError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}[/] {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0][:300]
        err_console.print(f"[bold red]failed[/] {type(exc).__name__}: {first}")
        raise typer.Exit(1) from None


@retention_app.command("run")
def run_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Apply every store's retention period now (what the daily `retention` deployment does)."""
    from nura.retention import apply_retention
    from nura.retention.sweep import report_rows

    engine, cfg = _engine_and_config()
    report = _run(lambda: apply_retention(engine, cfg, dry_run=dry_run, actor=_actor()))
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
        return
    verb = "would remove" if dry_run else "removed"
    table = Table(title=f"retention: {verb} {report.total} row(s)")
    for col in ("store", "kept", "action", "rows"):
        table.add_column(col)
    for row in report_rows(report):
        table.add_row(row["store"], row["kept"], row["action"], str(row["rows"]))
    console.print(table)


def erase_cmd(
    confluence_page: Annotated[
        str | None, typer.Option("--confluence-page", help="A Confluence page id.")
    ] = None,
    git_path: Annotated[
        str | None,
        typer.Option("--git-path", help="[OWNER/REPO:]PATH of a file (every branch)."),
    ] = None,
    email: Annotated[str | None, typer.Option("--email", help="An email address.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List only; erase nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase a document (or an address) and everything derived from it; audited."""
    from nura.retention import erase
    from nura.retention.erasure import subject_of

    _run(lambda: subject_of(confluence_page, git_path, email))  # bad input: exit 2 first
    engine, cfg = _engine_and_config()
    report = _run(
        lambda: erase(
            engine,
            cfg,
            confluence_page=confluence_page,
            git_path=git_path,
            email=email,
            actor=_actor(),
            dry_run=dry_run,
        )
    )
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
        return
    _print_erasure(report)


def _print_erasure(report: Any) -> None:
    if not report.found:
        console.print(f"nothing found to erase ({report.kind.replace('_', ' ')})")
    else:
        verb = "would erase" if report.dry_run else "erased"
        console.print(f"{verb} ({report.kind.replace('_', ' ')}):")
        for key in report.s3_objects:
            console.print(f"  s3 object {key}")
        versions = f", {report.s3_versions} version(s)" if report.versioned_bucket else ""
        console.print(f"  s3 objects: {len(report.s3_objects)}{versions}")
        console.print(f"  manifest entries: {report.manifest_entries}")
        for store, rows in report.stores.items():
            console.print(f"  {store.replace('_', ' ')}: {rows}")
    for warning in report.warnings:
        console.print(f"[yellow]note[/] {warning}")
    if not report.dry_run:
        console.print("recorded in the audit log (sha256 of the identifier, counts only)")


def register(app: typer.Typer) -> None:
    app.add_typer(retention_app, name="retention")
    app.command("erase")(erase_cmd)

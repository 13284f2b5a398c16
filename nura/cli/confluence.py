"""`nura confluence …`: run the Confluence sync and publish flows from the command line.

    nura confluence sync [--space TECH] [--page-id 123456] [--full]
    nura confluence publish docs/arch.md --title "Architecture" --space ARCH \
        --parent 123456 --label generated [--storage] [--on-conflict overwrite]

The flows run in this process and report to the Prefect API in PREFECT_API_URL (as any
flow run does); the exit code is 1 when the run ended Failed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    return table


RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _WithoutRunTracebacks(logging.Formatter):
    """The console's formatter, minus the tracebacks of flow- and task-run records.

    A failing run logs its exception twice with a traceback (the task run's "failed with
    exception", then the flow run's "encountered exception"); in a terminal that buries the
    one line that matters. The run's logs (the API handler on the run loggers, which handles
    a record before it propagates to the console) keep the tracebacks. Formats a copy: the
    record itself is shared with every other handler.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith(RUN_LOGGERS) and (
            record.exc_info or record.exc_text or record.stack_info
        ):
            record = copy.copy(record)
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return self.inner.format(record)


@contextlib.contextmanager
def run_tracebacks_off_console() -> Iterator[None]:
    """While a flow runs in this process, its tracebacks go to its run logs only.

    For the commands that run a flow in the CLI process (`nura invoke`, `nura confluence
    sync|publish`): the console keeps every run log line; the command ends with one error
    line (`flow_failed`) and exit code 1.
    """
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's console handler exists before we wrap its formatter
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    saved = [(h, h.formatter) for h in handlers]
    for handler, formatter in saved:
        handler.setFormatter(_WithoutRunTracebacks(formatter))
    try:
        yield
    finally:
        for handler, formatter in saved:
            handler.setFormatter(formatter)


def flow_failed(title: str, state: Any) -> typer.Exit:
    """Print the one error line of a failed run; the exception to raise (exit code 1)."""
    from nura.cli.main import err_console

    run_id = getattr(getattr(state, "state_details", None), "flow_run_id", None)
    where = f" (traceback in the logs of flow run {run_id})" if run_id else ""
    err_console.print(f"[bold red]{title} failed:[/] {state.message}{where}", soft_wrap=True)
    return typer.Exit(1)


def _finish(state: Any, title: str) -> None:
    if state.is_completed():
        result = state.result()
        rows = list(result.values()) if isinstance(result, dict) else list(result)
        console.print(_table(title, rows))
        return
    raise flow_failed(title, state)


def register(app: typer.Typer) -> None:
    confluence = typer.Typer(
        help="Confluence knowledge base: sync into S3, publish pages back.", no_args_is_help=True
    )
    app.add_typer(confluence, name="confluence")

    @confluence.command("sync")
    def sync(
        space: Annotated[
            list[str] | None, typer.Option("--space", help="Space key (repeatable).")
        ] = None,
        page_id: Annotated[str | None, typer.Option("--page-id", help="Sync one page.")] = None,
        full: Annotated[bool, typer.Option("--full", help="Force a full sync.")] = False,
    ) -> None:
        """Sync Confluence spaces (default: config) or one page into the S3 knowledge base."""
        from nura.platform.project import load_flow

        confluence_sync = load_flow("flows/confluence_sync.py:confluence_sync")

        with run_tracebacks_off_console():
            state = confluence_sync(
                spaces=None if page_id else space,
                page_id=page_id,
                space=space[0] if page_id and space else None,
                full=full,
                return_state=True,
            )
        _finish(state, "Confluence sync")

    @confluence.command("publish")
    def publish(
        file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
        title: Annotated[str, typer.Option("--title", help="Page title.")],
        space: Annotated[str | None, typer.Option("--space", help="Space key.")] = None,
        parent: Annotated[str | None, typer.Option("--parent", help="Parent page id.")] = None,
        label: Annotated[list[str] | None, typer.Option("--label", help="Label (repeat).")] = None,
        storage: Annotated[
            bool, typer.Option("--storage", help="FILE is storage-format XHTML.")
        ] = False,
        on_conflict: Annotated[
            str | None, typer.Option("--on-conflict", help="fail | overwrite | skip")
        ] = None,
    ) -> None:
        """Create or update a Confluence page from a Markdown (or storage XHTML) file."""
        from pydantic import ValidationError

        from nura.confluence.publish import PublishPage
        from nura.platform.project import load_flow

        confluence_publish = load_flow("flows/confluence_publish.py:confluence_publish")

        if on_conflict not in (None, "fail", "overwrite", "skip"):
            raise typer.BadParameter("--on-conflict must be fail, overwrite or skip")
        try:
            page = PublishPage(
                title=title,
                content=file.read_text(encoding="utf-8"),
                content_format="storage" if storage else "markdown",
                space=space,
                parent_id=parent,
                labels=label or [],
            )
        except ValidationError as exc:
            raise typer.BadParameter(str(exc)) from None
        with run_tracebacks_off_console():
            state = confluence_publish(
                pages=[page],
                on_conflict=on_conflict,  # type: ignore[arg-type]
                return_state=True,
            )
        _finish(state, "Confluence publish")

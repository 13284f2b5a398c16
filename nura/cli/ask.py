"""`nura ask "question"`: run the kb-ask flow once and print the answer, its numbered
sources and cost. Exit 0 for an answer and for "not in the knowledge base", 1 when the run
fails (a spent budget, no model answering), 2 for bad input."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    space: Annotated[
        str | None, typer.Option("--space", help="Only this Confluence space.")
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="Only this Git repository (owner/repo).")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Only documents with a label (repeat).")
    ] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, max=50, help="Chunks retrieved.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Answer a question from the knowledge base, with numbered citations and its cost."""
    from nura.cli.confluence import run_tracebacks_off_console
    from nura.cli.main import err_console, load_config_or_exit
    from nura.kb.ask import InvalidQuestion, check_question
    from nura.platform.project import load_flow

    cfg = load_config_or_exit()
    try:
        check_question(question, cfg.kb_ask.max_question_chars)
    except InvalidQuestion as exc:
        err_console.print(f"[bold red]InvalidQuestion[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    kb_ask = load_flow("flows/kb_ask.py:kb_ask")
    with run_tracebacks_off_console():  # a failure: one line here, the traceback in the run
        state = kb_ask(question, space=space, repo=repo, labels=label, k=k, return_state=True)
    if not state.is_completed():
        raise _failed(state)
    answer = state.result()
    if as_json:
        console.print_json(answer.model_dump_json())
        return
    _print(answer)


def _failed(state: Any) -> typer.Exit:
    """A readable line for a failed run (a spent budget says which), exit code 1."""
    from nura.bedrock.models import BudgetExceeded
    from nura.cli.confluence import flow_failed
    from nura.cli.main import err_console

    error = state.result(raise_on_failure=False)
    if isinstance(error, BudgetExceeded):
        err_console.print(
            f"[bold red]Budget spent[/] {escape(str(error))}: no answer was generated "
            "(raise the budget of that scope or wait for the next period)",
            soft_wrap=True,
        )
        return typer.Exit(1)
    return flow_failed("kb-ask", state)


def _print(answer: Any) -> None:
    if answer.not_found:
        console.print(f"[yellow]{escape(answer.text)}[/]")
    else:
        console.print(escape(answer.text))
    if answer.citations:
        console.print("\n[bold]Sources[/]")
        for c in answer.citations:
            section = f" \u2014 {escape(c.section)}" if c.section else ""
            console.print(f"  [{c.n}] {escape(c.title)}{section}\n      {escape(c.url)}")
    model = answer.model_id or "no model called"
    console.print(
        f"\ncost ${answer.cost_usd:f} (embedding ${answer.embedding_cost_usd:f}, generation "
        f"${answer.generation_cost_usd:f}); {escape(model)}"
        + (" (fallback)" if answer.fallback_used else "")
    )


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)

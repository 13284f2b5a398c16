"""`nura invoke` (run the bedrock-invoke flow once), `nura costs` (ledger and budgets) and
`nura bedrock prices sync|show` (model prices from AWS's Price List API)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def invoke(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="One model id (no fallback chain).")
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--chain", help="Model chain to try in order (repeat the option)."),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Output token limit.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.5,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    api: Annotated[str, typer.Option(help="converse or invoke_model.")] = "converse",
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the answer as it arrives (ConverseStream).")
    ] = False,
    scope: Annotated[str, typer.Option(help="Budget scope (team, product, ...).")] = "default",
    conversation_id: Annotated[str | None, typer.Option(help="Conversation id.")] = None,
    override_budget: Annotated[
        bool, typer.Option("--override-budget", help="Call even when a budget is spent.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the bedrock-invoke flow once and print the answer, model used, tokens and cost."""
    import asyncio

    from pydantic import ValidationError

    from nura.bedrock.invoke import get_invoker
    from nura.bedrock.models import InvalidInvocation, InvocationRequest
    from nura.cli.confluence import flow_failed, run_tracebacks_off_console
    from nura.cli.main import err_console, load_config_or_exit
    from nura.platform.project import load_flow

    load_config_or_exit()
    try:
        request = InvocationRequest(
            prompt=prompt,
            model=model,
            models=models or None,
            max_tokens=max_tokens,
            temperature=temperature,
            system=system,
            api="converse_stream" if stream else api,  # type: ignore[arg-type]
            scope=scope,
            conversation_id=conversation_id,
            budget_override=override_budget,
        )
    except ValidationError as exc:
        for err in exc.errors():
            err_console.print(
                f"[bold red]invalid[/] {'.'.join(map(str, err['loc']))}: {err['msg']}"
            )
        raise typer.Exit(2) from None
    try:
        get_invoker().validate(request)  # bad input: one clear line, no failed run
    except InvalidInvocation as exc:
        err_console.print(f"[bold red]InvalidInvocation[/] {exc.args[0]}")
        raise typer.Exit(2) from None
    bedrock_invoke = load_flow("flows/bedrock_invoke.py:bedrock_invoke")
    with run_tracebacks_off_console():  # a failure: one line here, the traceback in the run
        state = asyncio.run(bedrock_invoke(request, return_state=True))
    if not state.is_completed():
        raise flow_failed("Bedrock invoke", state)
    result = state.result()
    if as_json:
        console.print_json(result.model_dump_json())
        return
    if stream:
        console.print()  # the answer was printed as it arrived
    else:
        console.print(result.text)
    table = Table(title=f"invocation {result.invocation_id[:12]}")
    for col in ("model", "outcome", "attempts", "latency ms", "detail"):
        table.add_column(col)
    for a in result.attempts:
        color = "green" if a.outcome == "ok" else "yellow"
        table.add_row(
            a.model_id, f"[{color}]{a.outcome}[/]", str(a.attempts), f"{a.latency_ms:.0f}", a.detail
        )
    console.print(table)
    cost = "unknown" if result.cost_unknown else f"${result.cost_usd:f}"
    if result.cost_estimated:
        why = "stream cut off midway" if result.stop_reason == "cut" else "no usage reported"
        cost = f"${result.cost_usd:f} estimated ({why})"
    console.print(
        f"answered by [bold]{result.model_id}[/]"
        f"{' (fallback)' if result.fallback_used else ''}: {result.input_tokens} input + "
        f"{result.output_tokens} output tokens, {cost}, stop {result.stop_reason}"
        f"{' [red](over budget, overridden)[/]' if result.over_budget else ''}"
    )


def costs(
    days: Annotated[int, typer.Option(min=1, help="Per-model totals over the last N days.")] = 1,
    calls: Annotated[int, typer.Option(min=0, help="Also list the last N calls.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Spend per model, and each budget's daily and monthly status."""
    from nura.cli.main import load_config_or_exit
    from nura.core.runtime import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.ledger import CostLedger, periods, to_pusd, to_usd

    cfg = load_config_or_exit()
    settings = cfg.external_services.aws.bedrock
    ledger = CostLedger(get_engine(store_url(cfg)))
    since = time.time() - days * 86400
    by_model = ledger.totals_by_model(since)
    scopes = settings.budgets.scopes
    keys = periods(time.time())
    spent = ledger.spent(list(scopes))
    budgets = []
    for scope, budget in scopes.items():
        for period, limit in (("daily", budget.daily_usd), ("monthly", budget.monthly_usd)):
            if limit is None:
                continue
            used = spent[(scope, keys[period])]
            budgets.append(
                {
                    "scope": scope,
                    "period": keys[period],
                    "spent_usd": f"{to_usd(used):f}",
                    "limit_usd": f"{limit:f}",
                    "percent": round(100 * used / to_pusd(limit), 2),
                }
            )
    if as_json:
        print(
            json.dumps(
                {
                    "by_model": [
                        {**r, "cost_usd": f"{to_usd(int(r.pop('cost_pusd') or 0)):f}"}
                        for r in by_model
                    ],
                    "budgets": budgets,
                }
            )
        )
        return
    table = Table(title=f"Bedrock spend, last {days} day(s)")
    for col in ("model", "calls", "input tokens", "output tokens", "cost USD"):
        table.add_column(col)
    for r in by_model:
        table.add_row(
            r["model_id"],
            str(r["calls"]),
            str(r["input_tokens"]),
            str(r["output_tokens"]),
            f"{to_usd(int(r['cost_pusd'] or 0)):f}",
        )
    console.print(table)
    btable = Table(title=f"budgets (alert at {settings.budgets.alert_percent:g} %)")
    for col in ("scope", "period", "spent USD", "limit USD", "used"):
        btable.add_column(col)
    for b in budgets:
        pct = b["percent"]
        color = (
            "red" if pct >= 100 else "yellow" if pct >= settings.budgets.alert_percent else "green"
        )
        btable.add_row(
            b["scope"], b["period"], b["spent_usd"], b["limit_usd"], f"[{color}]{pct:.1f} %[/]"
        )
    console.print(btable)
    if calls:
        ctable = Table(title=f"last {calls} calls")
        for col in ("when (UTC)", "model", "scope", "in", "out", "cost USD", "flow run"):
            ctable.add_column(col)
        for row in ledger.calls(limit=calls):
            ctable.add_row(
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["ts"])),
                row["model_id"],
                row["scope"],
                str(row["input_tokens"]),
                str(row["output_tokens"]),
                "unknown" if row["cost_unknown"] else f"{to_usd(row['cost_pusd']):f}",
                (row["flow_run_id"] or "-")[:8],
            )
        console.print(ctable)


def prices_sync(
    region: Annotated[
        str | None, typer.Option(help="Region to price (default: the Bedrock region).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Fetch Bedrock prices from AWS's Price List API and store them with their dates."""
    import dataclasses

    from nura.bedrock.invoke import _credentials
    from nura.bedrock.prices import sync_prices
    from nura.cli.main import err_console, load_config_or_exit
    from nura.core.aws import boto_client
    from nura.core.errors import IntegrationError
    from nura.core.runtime import get_call_layer, store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.ledger import CostLedger

    cfg = load_config_or_exit()
    settings = cfg.external_services.aws.bedrock
    credentials, block_region, _ = _credentials(settings, settings.pricing_endpoint_url)
    region = region or block_region or settings.region or cfg.external_services.aws.region
    layer = get_call_layer()
    if "pricing" not in layer.policies:  # a service of its own: its breaker, its records
        layer.policies["pricing"] = dataclasses.replace(
            layer.policy("bedrock"), name="pricing", fallback_enabled=False
        )
    client = boto_client(
        "pricing",
        credentials=credentials,
        region="us-east-1",  # the Price List API's endpoint region
        endpoint_url=settings.pricing_endpoint_url or None,
        timeout=layer.policy("pricing").timeout_seconds,
    )
    ledger = CostLedger(get_engine(store_url(cfg)))
    try:
        rows = sync_prices(client, ledger, region, settings.price_list_names, layer=layer)
    except IntegrationError as exc:
        err_console.print(f"[bold red]price sync failed[/] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(rows))
        return
    _print_prices(rows, f"synced from the Price List API ({region})")


def prices_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The prices in use: synced ones (with their dates) and the shipped fallback."""
    from nura.cli.main import load_config_or_exit
    from nura.core.runtime import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.ledger import CostLedger

    cfg = load_config_or_exit()
    settings = cfg.external_services.aws.bedrock
    rows = CostLedger(get_engine(store_url(cfg))).stored_prices()
    shipped = [
        {
            "key": key,
            "input_per_1k": str(p.input_per_1k),
            "output_per_1k": str(p.output_per_1k),
            "source": p.source or "configuration",
            "effective": p.effective.isoformat() if p.effective else None,
        }
        for key, p in sorted(settings.prices.items())
    ]
    if as_json:
        print(json.dumps({"synced": rows, "configured": shipped}, default=str))
        return
    _print_prices(rows, "synced (used first)")
    _print_prices(shipped, "configured (fallback)")


def _print_prices(rows: list[dict[str, object]], title: str) -> None:
    table = Table(title=f"Bedrock prices, {title}")
    for col in ("key", "input / 1K", "output / 1K", "effective", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["key"]),
            str(r["input_per_1k"]),
            str(r["output_per_1k"]),
            str(r.get("effective") or "-"),
            str(r.get("source") or "-"),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("invoke")(invoke)
    app.command("costs")(costs)
    bedrock_app = typer.Typer(help="Bedrock model prices.", no_args_is_help=True)
    prices_app = typer.Typer(help="Prices from AWS's Price List API.", no_args_is_help=True)
    prices_app.command("sync")(prices_sync)
    prices_app.command("show")(prices_show)
    bedrock_app.add_typer(prices_app, name="prices")
    app.add_typer(bedrock_app, name="bedrock")

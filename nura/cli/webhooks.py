"""`nura webhooks ...`: receiver, dispatcher, a signed test delivery, the inbox."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
webhooks_app = typer.Typer(
    help="Incoming webhooks: receiver, dispatcher, inbox.", no_args_is_help=True
)


def _cfg() -> Any:
    from nura.cli.main import load_config_or_exit

    return load_config_or_exit()


@webhooks_app.command("serve")
def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address (config: webhooks.receiver.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (config: webhooks.receiver.port).")] = None,
) -> None:
    """Run the webhook receiver (and, unless configured off, its dispatcher)."""
    from nura.platform.metrics import render_metrics
    from nura.platform.receiver_app import serve as run

    cfg = _cfg()
    h = host or cfg.webhooks.receiver.host
    p = port or cfg.webhooks.receiver.port
    console.print(f"webhook receiver on http://{h}:{p} (POST /webhooks/<endpoint>, GET /healthz)")
    run(h, p, extra_metrics=render_metrics)  # /metrics: the receiver's and the platform's


@webhooks_app.command("dispatch")
def dispatch(
    once: Annotated[bool, typer.Option("--once", help="Dispatch what is due, then exit.")] = False,
) -> None:
    """Turn inbox entries into flow runs (standalone dispatcher)."""
    from nura.core.runtime import store_url
    from nura.core.stores.db import get_engine
    from nura.webhooks.dispatcher import Dispatcher

    cfg = _cfg()
    dispatcher = Dispatcher(get_engine(store_url(cfg)), cfg)
    if once:
        n = asyncio.run(dispatcher.run_until_empty())
        console.print(f"dispatched {n} entries")
        return
    console.print("dispatcher running (Ctrl-C to stop)")
    try:
        asyncio.run(dispatcher.run())
    except KeyboardInterrupt:
        pass


def signed_headers(
    scheme: str,
    signer: Any,
    body: bytes,
    event: str,
    delivery_id: str,
    now: float,
    *,
    legacy_body_only: bool = False,
) -> dict[str, str]:
    """The headers a sender of `scheme` would send with `body`."""
    headers = {"Content-Type": "application/json"}
    if scheme == "github":
        gh_event = "push" if event == "git.push" else event.removeprefix("github.")
        headers.update(
            {
                "X-Hub-Signature-256": signer.hex_digest(body),
                "X-GitHub-Event": gh_event,
                "X-GitHub-Delivery": delivery_id,
            }
        )
    elif scheme == "standard":
        ts = int(now)
        headers.update(
            {
                "webhook-id": delivery_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": signer.standard_signatures(delivery_id, ts, body).split()[0],
                "X-Event-Type": event,
            }
        )
    elif legacy_body_only:  # only for an endpoint configured `signature: legacy-body-only`
        headers.update(
            {
                "X-Signature": signer.hex_digest(body),
                "X-Event-Type": event,
                "X-Delivery-Id": delivery_id,
                "X-Timestamp": str(int(now)),
            }
        )
    else:  # generic: X-Signature over "{X-Delivery-Id}.{X-Timestamp}.{body}"
        stamp = str(int(now))
        headers.update(
            {
                "X-Signature": signer.generic_signature(delivery_id, stamp, body),
                "X-Event-Type": event,
                "X-Delivery-Id": delivery_id,
                "X-Timestamp": stamp,
            }
        )
    return headers


@webhooks_app.command("send")
def send(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name in webhooks.incoming.")],
    event: Annotated[str, typer.Option("--event", "-e", help="Event type, e.g. git.push.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="JSON body to send.", exists=True)],
    url: Annotated[
        str | None, typer.Option(help="Receiver base URL (default from config).")
    ] = None,
    delivery_id: Annotated[str | None, typer.Option(help="Delivery id (default: random).")] = None,
) -> None:
    """Sign FILE with the endpoint's secret and POST it to the receiver."""
    import httpx

    from nura.webhooks.receiver_support import SecretMissing, load_secret

    cfg = _cfg()
    ep = cfg.webhooks.incoming.get(endpoint)
    if ep is None:
        console.print(
            f"[red]no endpoint {endpoint!r}[/] (known: {', '.join(cfg.webhooks.incoming)})"
        )
        raise typer.Exit(2)
    try:
        secret = asyncio.run(load_secret(endpoint, ep))
    except SecretMissing as exc:
        console.print(f"[red]signing secret of {endpoint} unusable:[/] {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:
        console.print(
            f"[red]signing secret of {endpoint} could not be loaded:[/] {type(exc).__name__}"
        )
        raise typer.Exit(1) from None
    body = file.read_bytes()
    try:
        json.loads(body)
    except ValueError:
        console.print(f"[red]{file} is not JSON[/]")
        raise typer.Exit(2) from None
    scheme = ep.scheme or secret.scheme
    headers = signed_headers(
        scheme,
        secret.get_client(datetime.now(UTC)),
        body,
        event,
        delivery_id or str(uuid.uuid4()),
        time.time(),
        legacy_body_only=ep.signature == "legacy-body-only",
    )
    r = cfg.webhooks.receiver
    base = url or f"http://{'127.0.0.1' if r.host in ('0.0.0.0', '::') else r.host}:{r.port}"  # noqa: S104
    response = httpx.post(base.rstrip("/") + ep.url_path, content=body, headers=headers, timeout=30)
    color = "green" if response.status_code < 300 else "red"
    console.print(f"[{color}]{response.status_code}[/] {response.text}")
    if response.status_code >= 300:
        raise typer.Exit(1)


@webhooks_app.command("inbox")
def inbox(
    status: Annotated[
        str | None, typer.Option(help="accepted | dispatched | done | failed")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many of the newest entries.")] = 20,
) -> None:
    """List the newest inbox entries and the depth of the queue."""
    from nura.core.runtime import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.inbox import inbox_stats, list_entries, status_counts

    engine = get_engine(store_url(_cfg()))
    table = Table(title="webhook inbox (newest first)")
    for col in ("id", "endpoint", "event", "delivery", "status", "received", "flow run", "error"):
        table.add_column(col)
    for e in list_entries(engine, status, limit):
        received = datetime.fromtimestamp(e["received_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            str(e["id"]),
            e["endpoint"],
            e["event_type"],
            e["delivery_id"][:24],
            e["status"],
            received,
            (e["flow_run_id"] or "-")[:36],
            (e["last_error"] or "")[:40],
        )
    console.print(table)
    stats = inbox_stats(engine)
    age = f"{stats['oldest_age_s']:.1f}s" if stats["oldest_age_s"] is not None else "-"
    console.print(f"counts: {status_counts(engine)}  depth: {stats['depth']}  oldest: {age}")


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")

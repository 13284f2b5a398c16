"""Outgoing webhooks: signed, retried, durable deliveries to configured partner targets.

Signing follows Standard Webhooks: `webhook-id` (stable across every retry and redrive,
so receivers dedupe), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256
of "id.timestamp.body">` with one signature per valid `whsec_` secret during a rotation;
targets with `x_signature: true` also get the seed's `X-Signature: sha256=<hex>` over the
raw body with `X-Event-Type`, `X-Timestamp` and `X-Delivery-Id`. Signing is an httpx
`Auth`, so each attempt the call layer makes is signed with a fresh timestamp
(`nura.webhooks.signing`).

Outcomes: 2xx delivered; 410 disables the target (its entries wait, nothing is dropped);
408/425/429/5xx/timeouts/connection failures are retried inside the call layer with full
jitter, honouring `Retry-After`, then dead-lettered for the redrive; 3xx and other 4xx
fail at once (exhausted, replayable by an operator). Every entry is stored before its
first attempt (see `nura.core.stores.dead_letters`), so a crash loses nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from sqlalchemy import Engine

from nura import CircuitOpen, IntegrationError, get_call_layer, get_config, store_url
from nura.config.sections.outgoing import OutgoingSettings, OutgoingTarget
from nura.core.stores import dead_letters as dl
from nura.core.stores.db import get_engine, utcnow_ts
from nura.webhooks.errors import EventNotAccepted, UnknownTarget
from nura.webhooks.models import (
    DeliveryOutcome,
    DeliverySummary,
    OutgoingEvent,
    RedriveSummary,
    Status,
)
from nura.webhooks.signing import StandardWebhookAuth, build_body, new_message_id, signer_for
from nura.webhooks.ssrf import DNSUnavailable, SSRFGuard, SSRFRefused

logger = logging.getLogger("nura.webhooks.outgoing")


# -- one target, resolved ---------------------------------------------------------------
@dataclasses.dataclass
class Target:
    name: str
    cfg: OutgoingTarget
    outgoing: OutgoingSettings
    service: str
    guard: SSRFGuard


def _register_service(name: str, target: OutgoingTarget, outgoing: OutgoingSettings) -> str:
    """Each target is its own call-layer service: its own breaker, limit and records.

    One partner being down must not open the breaker for every other partner.
    """
    layer = get_call_layer()
    service = f"webhooks.{name}"
    base = layer.policy("webhooks")
    policy = dataclasses.replace(
        base,
        name=service,
        base_url=None,
        rate_limit_per_minute=target.rate_limit_per_minute or outgoing.rate_limit_per_minute,
        timeout_seconds=target.timeout_seconds or outgoing.timeout_seconds,
        retry_attempts=outgoing.retry_attempts,
        circuit_breaker_threshold=target.circuit_breaker_threshold
        or outgoing.circuit_breaker_threshold,
    )
    if layer.policies.get(service) != policy:
        layer.policies[service] = policy
    return service


_guards: dict[tuple[str, ...], SSRFGuard] = {}


def resolve_target(name: str | None = None) -> Target:
    outgoing = get_config().webhooks.outgoing
    name = name or outgoing.default_target
    cfg = outgoing.targets.get(name)
    if cfg is None:
        known = ", ".join(sorted(outgoing.targets)) or "none configured"
        raise UnknownTarget(f"unknown webhook target {name!r} (known: {known})")
    key = tuple(outgoing.allow_list)
    guard = _guards.get(key)
    if guard is None:
        guard = _guards[key] = SSRFGuard(outgoing.allow_list)
    return Target(name, cfg, outgoing, _register_service(name, cfg, outgoing), guard)


def _engine() -> Engine:
    return get_engine(store_url())


# -- one attempt (with the call layer's retries) ---------------------------------------
@dataclasses.dataclass
class _Result:
    ok: bool
    status_code: int | None = None
    attempts: int = 0
    error: str | None = None
    retryable: bool = False
    gone: bool = False
    latency_ms: float = 0.0


def send_signed(target: Target, msg_id: str, event_type: str, body: str) -> _Result:
    """POST one entry; never raises for delivery failures (they are outcomes)."""
    started = time.perf_counter()
    try:
        target.guard.check(target.cfg.url)
    except SSRFRefused as exc:
        return _Result(False, error=str(exc), retryable=False)
    except DNSUnavailable:
        pass  # resolved again on connect, where the call layer retries it with backoff
    auth = StandardWebhookAuth(
        signer_for(target.name, target.cfg),
        msg_id,
        event_type,
        x_signature=target.cfg.x_signature,
    )
    try:
        res = get_call_layer().request(
            target.service,
            "POST",
            target.cfg.url,
            content=body.encode(),
            headers={"Content-Type": "application/json"},
            auth=auth,
            expected=(410,),
            retries=target.outgoing.retry_attempts,
            operation=f"deliver {target.name}",
            # connects only to addresses the guard checked for this very name: no second
            # DNS answer (rebinding) between the check and the connection, on any retry
            client=target.guard.client,
        )
    except IntegrationError as err:
        return _Result(
            False,
            status_code=err.status,
            attempts=err.attempts,
            error=f"{type(err).__name__}: {err}",
            # an open breaker says "later", exactly like a 503 would
            retryable=err.retryable or isinstance(err, CircuitOpen),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    latency = (time.perf_counter() - started) * 1000
    status = res.value.status_code
    if status == 410:
        return _Result(False, 410, res.attempts, "410 Gone", gone=True, latency_ms=latency)
    return _Result(True, status, res.attempts, latency_ms=latency)


# -- a batch of stored entries -------------------------------------------------------------
def _alert(title: str, body: str, details: dict[str, Any]) -> None:
    from nura.notify.dispatch import send_notification

    try:
        send_notification(title, body, "high", event="webhooks.endpoint.disabled", details=details)
    except Exception:  # the disable itself is stored; a broken alert must not undo it
        logger.exception("alert %r could not be sent", title)


def _disable(engine: Engine, target: Target, reason: str) -> None:
    if dl.disable_endpoint(engine, target.name, reason):
        logger.error("webhook target %s disabled: %s", target.name, reason)
        _alert(
            f"Webhook target {target.name} disabled",
            f"Deliveries to {target.name} are paused: {reason}. Its events are kept; "
            f"`nura deliveries enable {target.name}` resumes them.",
            {"target": target.name, "reason": reason},
        )


def _settle_failure(
    engine: Engine, target: Target, msg_id: str, result: _Result, redrive: bool
) -> DeliveryOutcome:
    dead = target.outgoing.dead_letters
    if result.gone:
        _disable(engine, target, "the target answered 410 Gone")
        dl.park(engine, msg_id, "410 Gone", attempts=result.attempts, status_code=410)
        return DeliveryOutcome(
            id=msg_id, status="parked", status_code=410, attempts=result.attempts, error="410 Gone"
        )
    status = dl.mark_failed(
        engine,
        msg_id,
        attempts=result.attempts,
        error=result.error or "failed",
        status_code=result.status_code,
        retryable=result.retryable,
        redrive=redrive,
        base_minutes=dead.redrive_base_minutes,
        max_redrives=dead.max_redrives,
    )
    failing_for = dl.record_endpoint_failure(engine, target.name)
    limit = target.outgoing.auto_disable_after_hours * 3600
    if failing_for >= limit:
        _disable(engine, target, f"no successful delivery for {failing_for / 3600:.1f} h")
    return DeliveryOutcome(
        id=msg_id,
        status=status,  # type: ignore[arg-type]
        status_code=result.status_code,
        attempts=result.attempts,
        error=result.error,
        latency_ms=result.latency_ms,
    )


def _is_disabled(engine: Engine, target: Target) -> bool:
    return not target.cfg.enabled or target.name in dl.disabled_targets(engine)


def deliver_entries(
    target: Target,
    entries: Sequence[tuple[str, str, str]],
    *,
    redrive: bool = False,
    engine: Engine | None = None,
    flush_every: int = 200,
) -> DeliverySummary:
    """Deliver stored (id, event_type, body) entries concurrently and record each outcome."""
    engine = engine or _engine()
    summary = DeliverySummary(target=target.name, submitted=len(entries))
    if _is_disabled(engine, target):
        summary.disabled = True
        for msg_id, _, _ in entries:
            dl.park(engine, msg_id, "target disabled")
            summary.add(DeliveryOutcome(id=msg_id, status="parked", error="target disabled"))
        return summary
    gone = threading.Event()
    delivered: list[tuple[str, int, int]] = []
    latencies: list[float] = []

    def work(entry: tuple[str, str, str]) -> tuple[str, _Result | None]:
        msg_id, event_type, body = entry
        if gone.is_set():
            return msg_id, None
        result = send_signed(target, msg_id, event_type, body)
        if result.gone:
            gone.set()
        return msg_id, result

    workers = max(1, min(target.outgoing.concurrency, len(entries)))
    with ThreadPoolExecutor(workers, thread_name_prefix=f"deliver-{target.name}") as pool:
        futures = [pool.submit(work, e) for e in entries]
        for future in as_completed(futures):
            msg_id, result = future.result()
            if result is None:
                dl.park(engine, msg_id, "target disabled (410 Gone)")
                summary.add(DeliveryOutcome(id=msg_id, status="parked", error="410 Gone"))
                continue
            latencies.append(result.latency_ms)
            if result.ok:
                delivered.append((msg_id, result.attempts, result.status_code or 200))
                summary.add(
                    DeliveryOutcome(
                        id=msg_id,
                        status="delivered",
                        status_code=result.status_code,
                        attempts=result.attempts,
                        latency_ms=result.latency_ms,
                    )
                )
                if len(delivered) >= flush_every:
                    dl.mark_delivered(engine, delivered)
                    delivered = []
            else:
                summary.add(_settle_failure(engine, target, msg_id, result, redrive))
    dl.mark_delivered(engine, delivered)
    if summary.delivered:
        dl.record_endpoint_success(engine, target.name)
    summary.disabled = gone.is_set()
    if latencies:
        ordered = sorted(latencies)
        summary.p50_ms = round(statistics.median(ordered), 2)
        summary.p99_ms = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)
    return summary


def submit_events(
    target_name: str | None,
    events: Sequence[OutgoingEvent],
    *,
    engine: Engine | None = None,
) -> DeliverySummary:
    """Store then deliver new events; an id stored before is reported as a duplicate."""
    target = resolve_target(target_name)
    allowed = target.cfg.event_types
    for event in events:
        if allowed and event.type not in allowed:
            raise EventNotAccepted(
                f"target {target.name} does not take {event.type!r} (takes {', '.join(allowed)})"
            )
    engine = engine or _engine()
    now = utcnow_ts()
    entries = [(e.id or new_message_id(), e.type, build_body(e.type, e.data, now)) for e in events]
    fresh = set(
        dl.enqueue(
            engine, target.name, entries, lease_seconds=target.outgoing.dead_letters.lease_seconds
        )
    )
    summary = deliver_entries(target, [e for e in entries if e[0] in fresh], engine=engine)
    summary.submitted = len(entries)
    for msg_id, _, _ in entries:
        if msg_id not in fresh:
            summary.add(DeliveryOutcome(id=msg_id, status="duplicate"))
    return summary


def redrive_due(
    *,
    limit: int | None = None,
    target_name: str | None = None,
    ids: Sequence[str] | None = None,
    now: float | None = None,
    engine: Engine | None = None,
) -> RedriveSummary:
    """Retry every due dead letter (and every in-flight entry whose process died).

    `ids` restricts the pass to those entries (an operator's `nura deliveries retry`).
    """
    engine = engine or _engine()
    outgoing = get_config().webhooks.outgoing
    dead = outgoing.dead_letters
    now = now if now is not None else utcnow_ts()
    skip = dl.disabled_targets(engine) | {n for n, t in outgoing.targets.items() if not t.enabled}
    if ids:
        found = (dl.get(engine, i) for i in ids)
        rows = [
            r
            for r in found
            if r is not None
            and r["status"] in ("pending", "in_flight")
            and (r["next_attempt_at"] or 0) <= now
            and r["target"] not in skip
        ]
    else:
        rows = dl.due(engine, now=now, limit=limit or dead.batch_size, exclude_targets=skip)
    summary = RedriveSummary(due=len(rows), skipped_targets=sorted(skip))
    by_target: dict[str, list[tuple[str, str, str]]] = {}
    for row in rows:
        if target_name and row["target"] != target_name:
            continue
        if dl.claim(engine, row["id"], lease_seconds=dead.lease_seconds, now=now):
            by_target.setdefault(row["target"], []).append(
                (row["id"], row["event_type"], row["payload"])
            )
    for name, entries in by_target.items():
        summary.claimed += len(entries)
        try:
            target = resolve_target(name)
        except UnknownTarget as exc:
            for msg_id, _, _ in entries:
                dl.park(engine, msg_id, str(exc))
                summary.parked += 1
            summary.skipped_targets.append(name)
            continue
        result = deliver_entries(target, entries, redrive=True, engine=engine)
        summary.targets[name] = result
        summary.delivered += result.delivered
        summary.pending += result.pending
        summary.exhausted += result.exhausted
        summary.parked += result.parked
    return summary


# -- Prefect tasks -------------------------------------------------------------------------
def deliver_events(target: str | None, events: list[OutgoingEvent]) -> DeliverySummary:
    """Store and deliver events to one target (retries and backoff are the call layer's)."""
    return submit_events(target, events)


def redrive_dead_letters(limit: int | None = None, target: str | None = None) -> RedriveSummary:
    """Work off the due dead letters."""
    return redrive_due(limit=limit, target_name=target)


def cleanup_delivered() -> int:
    """Forget delivered and purged entries older than `dead_letters.retention_days`."""
    days = get_config().webhooks.outgoing.dead_letters.retention_days
    return dl.delete_old(_engine(), before=utcnow_ts() - days * 86400)


def dead_letter_summary() -> dict[str, Any]:
    return dl.dead_letter_stats(_engine())


def publish_artifact(summary: DeliverySummary | RedriveSummary, key: str) -> None:
    """A markdown table of the run's outcomes in the Prefect UI (failures first)."""
    from prefect.artifacts import create_markdown_artifact

    if isinstance(summary, RedriveSummary):
        head = (
            f"**redrive**: due {summary.due}, claimed {summary.claimed}, delivered "
            f"{summary.delivered}, dead-lettered {summary.pending}, exhausted "
            f"{summary.exhausted}, parked {summary.parked}"
            + (
                f"; skipped targets: {', '.join(summary.skipped_targets)}"
                if summary.skipped_targets
                else ""
            )
        )
        outcomes = [o for s in summary.targets.values() for o in s.outcomes]
    else:
        head = (
            f"**{summary.target}**: submitted {summary.submitted}, delivered "
            f"{summary.delivered}, dead-lettered {summary.pending}, exhausted "
            f"{summary.exhausted}, parked {summary.parked}, duplicates {summary.duplicate}; "
            f"p50 {summary.p50_ms} ms, p99 {summary.p99_ms} ms"
        )
        outcomes = summary.outcomes
    ordered = sorted(outcomes, key=lambda o: o.status == "delivered")[:100]
    rows = "\n".join(
        f"| `{o.id}` | {o.status} | {o.status_code or ''} | {o.attempts} | "
        f"{(o.error or '').replace('|', '/')[:160]} |"
        for o in ordered
    )
    create_markdown_artifact(
        key=key,
        markdown=f"{head}\n\n| webhook-id | status | HTTP | attempts | error |\n"
        f"|---|---|---|---|---|\n{rows}\n",
        description="Outgoing webhook deliveries",
    )


__all__ = [
    "DeliveryOutcome",
    "DeliverySummary",
    "EventNotAccepted",
    "OutgoingEvent",
    "RedriveSummary",
    "StandardWebhookAuth",
    "Status",
    "Target",
    "UnknownTarget",
    "build_body",
    "cleanup_delivered",
    "dead_letter_summary",
    "deliver_entries",
    "deliver_events",
    "new_message_id",
    "publish_artifact",
    "redrive_dead_letters",
    "redrive_due",
    "resolve_target",
    "send_signed",
    "signer_for",
    "submit_events",
]

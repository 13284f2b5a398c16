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
fail at once (exhausted, replayable by an operator). An entry refused by the target's open
breaker made no request: it waits for the breaker's next probe without using an attempt
or a redrive. Every entry is stored before its first attempt and sent under a per-entry
lease (see `nura.core.stores.dead_letters`), so a crash loses nothing and two processes
never send the same entry at once.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from sqlalchemy import Engine

from nura import CircuitOpen, IntegrationError, get_call_layer, get_config, store_url
from nura.config.sections.outgoing import OutgoingSettings, OutgoingTarget
from nura.core.breaker import BreakerState
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


def register_targets() -> list[str]:
    """Register every configured target's service (`nura breakers` lists and resets them)."""
    outgoing = get_config().webhooks.outgoing
    return [_register_service(n, t, outgoing) for n, t in sorted(outgoing.targets.items())]


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
    refused: bool = False  # the target's breaker refused the call: wait for its probe
    latency_ms: float = 0.0


def send_signed(target: Target, msg_id: str, event_type: str, body: str) -> _Result:
    """POST one entry; never raises for delivery failures (they are outcomes)."""
    started = time.perf_counter()
    try:  # the config load's checks, for a config object built another way
        OutgoingTarget.deliverable_url(target.cfg.url)
    except ValueError as exc:
        return _Result(False, error=f"invalid target URL: {exc}", retryable=False)
    try:
        target.guard.check(target.cfg.url)
    except SSRFRefused as exc:
        _note_ssrf(target, exc)
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
        if isinstance(err, SSRFRefused):  # refused at connect: DNS changed since the check
            _note_ssrf(target, err)
        return _Result(
            False,
            status_code=err.status,
            attempts=err.attempts,
            error=f"{type(err).__name__}: {err}",
            retryable=err.retryable,
            refused=isinstance(err, CircuitOpen),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    latency = (time.perf_counter() - started) * 1000
    status = res.value.status_code
    if status == 410:
        return _Result(False, 410, res.attempts, "410 Gone", gone=True, latency_ms=latency)
    return _Result(True, status, res.attempts, latency_ms=latency)


def _note_ssrf(target: Target, exc: SSRFRefused) -> None:
    """A security event (nura.health.security); the reason names host and address only."""
    from nura.core.security_events import report_event

    report_event("ssrf_refusal", target.name, {"reason": exc.reason})


def _send_one(target: Target, msg_id: str, event_type: str, body: str) -> _Result:
    """`send_signed`, with anything unexpected (a URL no check caught, a bug) as this
    entry's own non-retryable failure: one bad entry never stops a batch."""
    try:
        return send_signed(target, msg_id, event_type, body)
    except Exception as exc:
        logger.exception("delivery %s to %s failed unexpectedly", msg_id, target.name)
        return _Result(False, error=f"{type(exc).__name__}: {exc}"[:500], retryable=False)


def breaker_ready_at(target: Target) -> float:
    """When the target's breaker admits its next probe (now, when it is closed)."""
    layer = get_call_layer()
    breakers = layer.breakers
    now = breakers.clock()
    snap = breakers.snapshot(target.service, fresh=True)
    if snap.state is BreakerState.OPEN:
        cooldown = layer.policy(target.service).circuit_breaker_cooldown_seconds
        return max(now, (snap.opened_at or now) + cooldown)
    if snap.state is BreakerState.HALF_OPEN:
        return max(now, (snap.probe_started or now) + breakers.probe_timeout)
    return now


def _breaker_closed(target: Target) -> bool:
    snap = get_call_layer().breakers.snapshot(target.service, fresh=True)
    return snap.state is BreakerState.CLOSED


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


class _Batch:
    """One pass over stored entries of one target by one lease owner.

    Each entry is claimed just before it is sent, and every lease the owner holds is
    renewed every third of `lease_seconds` while the batch runs (a heartbeat: a slow
    partner never lets a lease run out under a live sender, and a dead sender's entries
    are free again one lease later). Outcomes are recorded only while the lease is still
    ours; delivered entries are recorded in small batches at least every `flush_seconds`.
    """

    def __init__(
        self,
        engine: Engine,
        target: Target,
        *,
        owner: str,
        redrive: bool,
        now: float | None,
        flush_every: int,
        flush_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.target = target
        self.owner = owner
        self.redrive = redrive
        self.fixed_now = now
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.summary = DeliverySummary(target=target.name)
        self.gone = threading.Event()
        self.delivered: list[tuple[str, str, int, int]] = []
        self.last_flush = time.monotonic()
        self.latencies: list[float] = []
        self.lease = target.outgoing.dead_letters.lease_seconds
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> _Batch:
        self._heartbeat = threading.Thread(
            target=self._renew, name=f"lease-{self.target.name}", daemon=True
        )
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                dl.renew(self.engine, self.owner, lease_seconds=self.lease)
            except Exception:  # a store hiccup: the next beat tries again
                logger.warning("lease renewal for %s failed", self.target.name, exc_info=True)

    def now(self) -> float:
        return self.fixed_now if self.fixed_now is not None else utcnow_ts()

    # -- in a worker thread ------------------------------------------------------------
    def attempt(self, entry: tuple[str, str, str]) -> tuple[str, _Result | None]:
        """Claim and send one entry; None: not ours to send (another process holds it)."""
        msg_id, event_type, body = entry
        if self.gone.is_set():
            return msg_id, _Result(False, error="410 Gone", gone=True)
        if not self._claim(msg_id):
            return msg_id, None
        result = _send_one(self.target, msg_id, event_type, body)
        if result.gone:
            self.gone.set()
        return msg_id, result

    # -- in the batch's thread ---------------------------------------------------------
    def settle(self, msg_id: str, result: _Result | None) -> None:
        s, t, engine = self.summary, self.target, self.engine
        if result is None:
            s.add(DeliveryOutcome(id=msg_id, status="taken", error="another process has it"))
            return
        if result.ok:
            self.latencies.append(result.latency_ms)
            self.delivered.append((t.name, msg_id, result.attempts, result.status_code or 200))
            s.add(
                DeliveryOutcome(
                    id=msg_id,
                    status="delivered",
                    status_code=result.status_code,
                    attempts=result.attempts,
                    latency_ms=result.latency_ms,
                )
            )
            if (
                len(self.delivered) >= self.flush_every
                or time.monotonic() - self.last_flush >= self.flush_seconds
            ):
                self.flush()
            return
        if result.gone:
            if result.attempts:  # this entry's own 410 (the others only saw the flag)
                _disable(engine, t, "the target answered 410 Gone")
            self._park(msg_id, "target disabled (410 Gone)", result.attempts, result.status_code)
            return
        if result.refused:
            until = breaker_ready_at(t)
            reason = f"{result.error} (waits for the breaker's next probe; no attempt used)"
            if dl.defer(
                engine,
                t.name,
                msg_id,
                owner=self.owner,
                until=until,
                reason=reason,
                attempts=result.attempts,
                status_code=result.status_code,
                now=self.now(),
            ):
                s.add(
                    DeliveryOutcome(
                        id=msg_id, status="deferred", attempts=result.attempts, error=result.error
                    )
                )
            else:
                s.add(DeliveryOutcome(id=msg_id, status="taken", error="lease lost"))
            return
        self.latencies.append(result.latency_ms)
        dead = t.outgoing.dead_letters
        status = dl.mark_failed(
            engine,
            t.name,
            msg_id,
            owner=self.owner,
            attempts=result.attempts,
            error=result.error or "failed",
            status_code=result.status_code,
            retryable=result.retryable,
            redrive=self.redrive,
            base_minutes=dead.redrive_base_minutes,
            max_redrives=dead.max_redrives,
            # the breaker this failure may have opened refuses anything sooner
            not_before=breaker_ready_at(t) if result.retryable else None,
            now=self.now(),
        )
        if status is None:
            s.add(DeliveryOutcome(id=msg_id, status="taken", error="lease lost"))
            return
        failing_for = dl.record_endpoint_failure(engine, t.name)
        if failing_for >= t.outgoing.auto_disable_after_hours * 3600:
            _disable(engine, t, f"no successful delivery for {failing_for / 3600:.1f} h")
        s.add(
            DeliveryOutcome(
                id=msg_id,
                status=status,  # type: ignore[arg-type]
                status_code=result.status_code,
                attempts=result.attempts,
                error=result.error,
                latency_ms=result.latency_ms,
            )
        )

    def _claim(self, msg_id: str) -> bool:
        return dl.claim(
            self.engine,
            self.target.name,
            msg_id,
            owner=self.owner,
            lease_seconds=self.lease,
            now=self.now(),
        )

    def _park(self, msg_id: str, reason: str, attempts: int = 0, code: int | None = None) -> None:
        held = self._claim(msg_id) and dl.park(
            self.engine,
            self.target.name,
            msg_id,
            reason,
            owner=self.owner,
            attempts=attempts,
            status_code=code,
            now=self.now(),
        )
        status: Status = "parked" if held else "taken"
        self.summary.add(DeliveryOutcome(id=msg_id, status=status, error=reason))

    def defer_rest(self, entries: Sequence[tuple[str, str, str]], reason: str) -> None:
        """The breaker refuses: the entries not tried wait for its next probe, untouched."""
        until = breaker_ready_at(self.target)
        for msg_id, _, _ in entries:
            held = self._claim(msg_id) and dl.defer(
                self.engine,
                self.target.name,
                msg_id,
                owner=self.owner,
                until=until,
                reason=reason,
                now=self.now(),
            )
            self.summary.add(
                DeliveryOutcome(id=msg_id, status="deferred" if held else "taken", error=reason)
            )

    def flush(self) -> None:
        if self.delivered:
            marked = dl.mark_delivered(
                self.engine, self.delivered, owner=self.owner, now=self.now()
            )
            if marked < len(self.delivered):
                logger.warning(
                    "%d deliveries to %s outlived their lease: another process may send "
                    "them again (the webhook-id lets the partner dedupe)",
                    len(self.delivered) - marked,
                    self.target.name,
                )
            self.delivered = []
        self.last_flush = time.monotonic()


def deliver_entries(
    target: Target,
    entries: Sequence[tuple[str, str, str]],
    *,
    redrive: bool = False,
    engine: Engine | None = None,
    owner: str | None = None,
    now: float | None = None,
    flush_every: int = 50,
) -> DeliverySummary:
    """Deliver stored (id, event_type, body) entries of `target` and record each outcome.

    Concurrent while the target's breaker is closed. While it is open or half-open, the
    entries go one at a time: the first is the probe (when the breaker admits one); a
    success closes the breaker and the rest go concurrently, a refusal defers every entry
    not tried to the breaker's next probe time without using an attempt.
    """
    engine = engine or _engine()
    batch = _Batch(
        engine,
        target,
        owner=owner or uuid.uuid4().hex,
        redrive=redrive,
        now=now,
        flush_every=flush_every,
    )
    summary = batch.summary
    summary.submitted = len(entries)
    if _is_disabled(engine, target):
        summary.disabled = True
        for msg_id, _, _ in entries:
            batch._park(msg_id, "target disabled")
        return summary
    with batch:
        rest = list(entries)
        while rest and not _breaker_closed(target):
            entry, rest = rest[0], rest[1:]
            msg_id, result = batch.attempt(entry)
            batch.settle(msg_id, result)
            if result is not None and result.refused:
                batch.defer_rest(rest, f"{result.error} (waits for the breaker's next probe)")
                rest = []
        if rest:
            workers = max(1, min(target.outgoing.concurrency, len(rest)))
            with ThreadPoolExecutor(workers, thread_name_prefix=f"deliver-{target.name}") as pool:
                futures = [pool.submit(batch.attempt, e) for e in rest]
                for future in as_completed(futures):
                    batch.settle(*future.result())
        batch.flush()
    if summary.delivered:
        dl.record_endpoint_success(engine, target.name)
    summary.disabled = batch.gone.is_set()
    if batch.latencies:
        ordered = sorted(batch.latencies)
        summary.p50_ms = round(statistics.median(ordered), 2)
        summary.p99_ms = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)
    return summary


def _is_disabled(engine: Engine, target: Target) -> bool:
    return not target.cfg.enabled or target.name in dl.disabled_targets(engine)


def submit_events(
    target_name: str | None,
    events: Sequence[OutgoingEvent],
    *,
    engine: Engine | None = None,
) -> DeliverySummary:
    """Store then deliver new events; an id stored before for this target is reported as a
    duplicate (the same id to another target is another delivery)."""
    target = resolve_target(target_name)
    allowed = target.cfg.event_types
    for event in events:
        if allowed and event.type not in allowed:
            raise EventNotAccepted(
                f"target {target.name} does not take {event.type!r} (takes {', '.join(allowed)})"
            )
    engine = engine or _engine()
    now = utcnow_ts()
    owner = uuid.uuid4().hex
    entries = [(e.id or new_message_id(), e.type, build_body(e.type, e.data, now)) for e in events]
    fresh = set(
        dl.enqueue(
            engine,
            target.name,
            entries,
            lease_seconds=target.outgoing.dead_letters.lease_seconds,
            owner=owner,
            now=now,
        )
    )
    summary = deliver_entries(
        target, [e for e in entries if e[0] in fresh], engine=engine, owner=owner
    )
    summary.submitted = len(entries)
    for msg_id, _, _ in entries:
        if msg_id not in fresh:
            summary.add(DeliveryOutcome(id=msg_id, status="duplicate"))
    return summary


def redrive_due(
    *,
    limit: int | None = None,
    target_name: str | None = None,
    keys: Sequence[dl.Key] | None = None,
    now: float | None = None,
    engine: Engine | None = None,
) -> RedriveSummary:
    """Retry every due dead letter (and every in-flight entry whose process died).

    `keys` restricts the pass to those (target, id) entries (an operator's `nura
    deliveries retry`). Entries are claimed one by one as they are sent, so a concurrent
    redrive never sends the same entry.
    """
    engine = engine or _engine()
    outgoing = get_config().webhooks.outgoing
    dead = outgoing.dead_letters
    fixed_now, now = now, now if now is not None else utcnow_ts()
    skip = dl.disabled_targets(engine) | {n for n, t in outgoing.targets.items() if not t.enabled}
    rows = dl.due(
        engine,
        now=now,
        limit=limit or (len(keys) if keys else dead.batch_size),
        exclude_targets=skip,
        target=target_name,
        keys=keys,
    )
    summary = RedriveSummary(due=len(rows), skipped_targets=sorted(skip))
    by_target: dict[str, list[tuple[str, str, str]]] = {}
    for row in rows:
        by_target.setdefault(row["target"], []).append(
            (row["id"], row["event_type"], row["payload"])
        )
    owner = uuid.uuid4().hex
    for name, entries in by_target.items():
        try:
            target = resolve_target(name)
        except UnknownTarget as exc:
            summary.skipped_targets.append(name)
            for msg_id, _, _ in entries:
                parked = dl.claim(
                    engine, name, msg_id, owner=owner, lease_seconds=dead.lease_seconds, now=now
                ) and dl.park(engine, name, msg_id, str(exc), owner=owner, now=now)
                summary.parked += int(parked)
            continue
        result = deliver_entries(
            target, entries, redrive=True, engine=engine, owner=owner, now=fixed_now
        )
        summary.targets[name] = result
        summary.claimed += result.submitted - result.taken
        summary.delivered += result.delivered
        summary.pending += result.pending
        summary.exhausted += result.exhausted
        summary.parked += result.parked
        summary.deferred += result.deferred
        summary.taken += result.taken
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
    "register_targets",
    "resolve_target",
    "send_signed",
    "signer_for",
    "submit_events",
]

"""Cost of a call and the budgets that guard further calls.

cost = input_tokens x input_per_1k / 1000 + output_tokens x output_per_1k / 1000, in
Decimal and stored as integer pico-dollars (`nura.core.stores.ledger`): exact, never a float.

Budgets: every call counts towards the `global` scope and the call's own `scope`. Before
each model is called, `BudgetGuard.reserve` holds that model's maximum cost (`max_cost_pusd`:
an input bound from the prompt's length plus every output token it may produce) on each
budgeted scope's day and month in the store, atomically and across processes; a scope
whose spent + reserved + this call would pass its limit refuses it with `BudgetExceeded`
(unless `enforce: false` or the call sets `budget_override`: then it holds unconditionally
and runs flagged `over_budget`). The hold settles to the real cost with the ledger row, or
is released when the model did not answer; a hold older than its TTL (its process died)
stops counting. So concurrent calls never spend past a hard limit.

After a call, each threshold (`alert_percent`, 100 %) that the new total crossed alerts
exactly once per scope and period (claimed in the store, so concurrent workers do not
repeat it):
through `nura.notify.dispatch` when that module exists, and always as the Prefect event
`nura.budget.threshold` that automations can act on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from nura.bedrock.models import BudgetExceeded, Message
from nura.config.sections.bedrock import GLOBAL_SCOPE, BedrockSettings, ModelPrice
from nura.core.stores.ledger import (
    CostLedger,
    Hold,
    LedgerEntry,
    periods,
    to_pusd,
    to_usd,
    utcnow_ts,
)

logger = logging.getLogger("nura.bedrock.pricing")
THOUSAND = Decimal(1000)


def cost_of(price: ModelPrice | None, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact USD cost; zero (with `cost_unknown` set by the caller) when there is no price."""
    if price is None:
        return Decimal(0)
    return (
        Decimal(input_tokens) * price.input_per_1k + Decimal(output_tokens) * price.output_per_1k
    ) / THOUSAND


def input_token_bound(messages: Sequence[Message], system: str | None) -> int:
    """At most this many input tokens: one per UTF-8 byte (byte-level BPE tokenizers never
    make a token of less than a byte) plus the per-message framing `estimate_tokens` counts.
    About 4x the usual estimate for English: a hard budget reserves for the worst case."""
    size = sum(len(m.text.encode()) for m in messages) + len((system or "").encode())
    return size + 3 * len(messages) + 1


def max_cost_pusd(price: ModelPrice | None, input_tokens: int, max_output_tokens: int) -> int:
    """The most a call can cost (pico-dollars): what a hard budget must hold for it."""
    return to_pusd(cost_of(price, input_tokens, max_output_tokens))


@dataclass(frozen=True)
class Reservation:
    """A call's hold on its budgets, until `BudgetGuard.record` or `release`."""

    token: str
    amount_pusd: int
    over_budget: bool  # did not fit: held anyway (override / not enforced)


@dataclass(frozen=True)
class Crossing:
    scope: str
    period: str  # daily | monthly
    period_key: str
    threshold: int
    spent_usd: Decimal
    limit_usd: Decimal


class BudgetGuard:
    """Budget checks and ledger writes for one configuration (thread-safe).

    Spend totals are kept only for scopes that have a budget (a budget added mid-period
    counts from then on; the ledger itself has every call). A check reads the store at
    most every `sync_seconds` per scope; this process's own calls update the cached total
    at once, so only other processes' last `sync_seconds` of spend can be missed - the
    same bounded staleness the breakers accept, for a hot path without a read per call.
    """

    def __init__(
        self,
        settings: BedrockSettings,
        ledger: CostLedger,
        *,
        sync_seconds: float = 0.5,
        reservation_ttl: float = 900.0,
        override_sync_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.sync_seconds = sync_seconds
        self.reservation_ttl = reservation_ttl
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()
        self.override_sync_seconds = override_sync_seconds
        self._override_cache: tuple[float, dict[str, dict[str, Any]]] | None = None

    def scopes_of(self, scope: str) -> list[str]:
        """The budgeted scopes a call in `scope` counts towards."""
        candidates = [GLOBAL_SCOPE, scope] if scope != GLOBAL_SCOPE else [GLOBAL_SCOPE]
        return [s for s in candidates if self._limits(s)]

    def _limits(self, scope: str) -> dict[str, Decimal]:
        override = self._overrides().get(scope)  # an operator's `nura budgets set` wins
        if override is not None:
            out = {"daily": override["daily_usd"], "monthly": override["monthly_usd"]}
        else:
            budget = self.settings.budgets.scopes.get(scope)
            if budget is None:
                return {}
            out = {"daily": budget.daily_usd, "monthly": budget.monthly_usd}
        return {k: v for k, v in out.items() if v is not None}

    def _overrides(self) -> dict[str, dict[str, Any]]:
        """The store's budget overrides, re-read at most every `override_sync_seconds`."""
        from nura.core.stores.admin_overrides import budget_overrides

        now = time.monotonic()
        with self._lock:
            cached = self._override_cache
        if cached is not None and now - cached[0] < self.override_sync_seconds:
            return cached[1]
        rows = budget_overrides(self.ledger.engine)
        with self._lock:
            self._override_cache = (now, rows)
        return rows

    def _totals(self, scopes: list[str], keys: dict[str, str]) -> dict[tuple[str, str], int]:
        now = time.monotonic()
        wanted = [(s, k) for s in scopes for k in keys.values()]
        with self._lock:
            cached = {w: self._cache.get(w) for w in wanted}
        if all(c is not None and now - c[0] < self.sync_seconds for c in cached.values()):
            return {w: c[1] for w, c in cached.items() if c is not None}
        totals = self.ledger.spent(scopes)
        with self._lock:
            for w, value in totals.items():
                self._cache[w] = (now, value)
        return totals

    def reserve(self, scope: str, amount_pusd: int, override: bool) -> Reservation | None:
        """Hold `amount_pusd` on every budget of `scope` (None: no budget applies).

        BudgetExceeded when it does not fit a limit, unless overridden or not enforced:
        then the hold is taken anyway (the call in flight still counts for the others)
        and the reservation is flagged `over_budget`. Expired holds are swept and the
        reservation retried once before refusing: they no longer count.
        """
        budgeted = self.scopes_of(scope)
        if not budgeted:
            return None
        now = utcnow_ts()
        keys = periods(now)
        holds = [
            Hold(s, keys[period], to_pusd(limit))
            for s in budgeted
            for period, limit in self._limits(s).items()
        ]
        token = uuid.uuid4().hex
        ttl = self.reservation_ttl
        refusal = self.ledger.reserve(token, amount_pusd, holds, ttl_seconds=ttl, now=now)
        if refusal is not None and self.ledger.sweep(now):
            refusal = self.ledger.reserve(token, amount_pusd, holds, ttl_seconds=ttl, now=now)
        if refusal is None:
            return Reservation(token, amount_pusd, over_budget=False)
        period = "daily" if refusal.period.startswith("day:") else "monthly"
        message = (
            f"{period} budget of scope {refusal.scope!r} cannot take this call: "
            f"${to_usd(refusal.spent_pusd):.6f} spent + ${to_usd(refusal.reserved_pusd):.6f} "
            f"in flight + up to ${to_usd(amount_pusd):.6f} for this call > "
            f"${to_usd(refusal.limit_pusd)} ({refusal.period})"
        )
        if override or not self.settings.budgets.enforce:
            why = "override" if override else "not enforced"
            logger.warning("%s; calling anyway (%s)", message, why)
            unconditional = [Hold(h.scope, h.period, None) for h in holds]
            self.ledger.reserve(token, amount_pusd, unconditional, ttl_seconds=ttl, now=now)
            return Reservation(token, amount_pusd, over_budget=True)
        raise self._refused(message, refusal.scope, period, "budget.reserve")

    def _refused(self, message: str, scope: str, period: str, operation: str) -> BudgetExceeded:
        """The refusal, counted as a security event (a hard budget stopped a call)."""
        from nura.core.security_events import report_event

        detail = {"period": period, "operation": operation}
        report_event("budget_refusal", scope, detail, engine=self.ledger.engine)
        return BudgetExceeded(message, scope=scope, period=period, operation=operation)

    def release(self, reservation: Reservation | None) -> None:
        """Hand a hold back: the model did not answer (nothing billed)."""
        if reservation is not None:
            self.ledger.release(reservation.token)

    def check(self, scope: str, override: bool) -> bool:
        """Raise BudgetExceeded when a scope is spent; True when the call runs over budget.

        A read of the (cached) totals for status and quick refusals; the invoker enforces
        with `reserve`, which alone is exact under concurrency."""
        budgeted = self.scopes_of(scope)
        if not budgeted:
            return False
        keys = periods(utcnow_ts())
        totals = self._totals(budgeted, keys)
        for s in budgeted:
            for period, limit in self._limits(s).items():
                spent = totals[(s, keys[period])]
                if spent < to_pusd(limit):
                    continue
                message = (
                    f"{period} budget of scope {s!r} is spent: "
                    f"${to_usd(spent):.6f} of ${limit} ({keys[period]})"
                )
                if override or not self.settings.budgets.enforce:
                    why = "override" if override else "not enforced"
                    logger.warning("%s; calling anyway (%s)", message, why)
                    return True
                raise self._refused(message, s, period, "budget.check")
        return False

    def record(self, entry: LedgerEntry, reservation: Reservation | None = None) -> list[Crossing]:
        """Write the call to the ledger, settling its reservation in the same transaction;
        the thresholds it crossed (each claimed once)."""
        settle = reservation.token if reservation is not None else None
        totals = self.ledger.record(entry, self.scopes_of(entry.scope), settle=settle)
        now = time.monotonic()
        with self._lock:
            for w, value in totals.items():
                self._cache[w] = (now, value)
        crossings: list[Crossing] = []
        thresholds = sorted({int(self.settings.budgets.alert_percent), 100})
        for (scope, key), total in totals.items():
            period = "daily" if key.startswith("day:") else "monthly"
            limit = self._limits(scope).get(period)
            if limit is None:
                continue
            limit_p = to_pusd(limit)
            before = total - entry.cost_pusd
            for pct in thresholds:
                mark = limit_p * pct // 100
                if before < mark <= total and self.ledger.claim_alert(
                    scope, key, pct, total, limit_p
                ):
                    crossings.append(Crossing(scope, period, key, pct, to_usd(total), limit))
        return crossings


def deliver_alert(crossing: Crossing) -> None:
    """Notify, and emit `nura.budget.threshold` in every case."""
    title = f"Bedrock budget {crossing.threshold}% reached: {crossing.scope} ({crossing.period})"
    body = (
        f"Scope {crossing.scope!r} has spent ${crossing.spent_usd:.6f} of its "
        f"{crossing.period} budget of ${crossing.limit_usd} ({crossing.period_key})."
        + (" Further calls are blocked unless overridden." if crossing.threshold >= 100 else "")
    )
    details: dict[str, Any] = {
        "scope": crossing.scope,
        "period": crossing.period,
        "period_key": crossing.period_key,
        "threshold_percent": crossing.threshold,
        "spent_usd": str(crossing.spent_usd),
        "limit_usd": str(crossing.limit_usd),
    }
    severity = "critical" if crossing.threshold >= 100 else "high"
    # Budget alerts reach people through the notify room (the one cross-room import here).
    from nura.notify.dispatch import notify

    try:
        notify(title, body, severity, event="nura.budget.threshold", details=details)
    except Exception:  # the spend is committed; a failed alert is logged, never fatal
        logger.exception("budget alert delivery failed (%s)", title)
    try:
        from prefect.events import emit_event

        emit_event(
            event="nura.budget.threshold",
            resource={"prefect.resource.id": f"nura.bedrock.budget.{crossing.scope}"},
            payload={"title": title, "severity": severity, **details},
        )
    except Exception:
        logger.exception("could not emit nura.budget.threshold")

"""Cost of a call and the budgets that guard further calls.

cost = input_tokens x input_per_1k / 1000 + output_tokens x output_per_1k / 1000, in
Decimal and stored as integer pico-dollars (`nura.stores.ledger`): exact, never a float.

Budgets: every call counts towards the `global` scope and the call's own `scope`. Before a
call, a scope whose daily or monthly spend has reached 100 % refuses it with
`BudgetExceeded` (unless `enforce: false` or the call sets `budget_override`). After a
call, each threshold (`alert_percent`, 100 %) that the new total crossed alerts exactly
once per scope and period (claimed in the store, so concurrent workers do not repeat it):
through `tasks.notify` when that module exists, and always as the Prefect event
`nura.budget.threshold` that automations can act on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from config.sections.bedrock import GLOBAL_SCOPE, BedrockSettings, ModelPrice
from nura.stores.ledger import CostLedger, LedgerEntry, to_pusd, to_usd
from tasks.bedrock_models import BudgetExceeded

logger = logging.getLogger("nura.bedrock.pricing")
THOUSAND = Decimal(1000)


def cost_of(price: ModelPrice | None, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact USD cost; zero (with `cost_unknown` set by the caller) when there is no price."""
    if price is None:
        return Decimal(0)
    return (
        Decimal(input_tokens) * price.input_per_1k + Decimal(output_tokens) * price.output_per_1k
    ) / THOUSAND


@dataclass(frozen=True)
class Crossing:
    scope: str
    period: str  # daily | monthly
    period_key: str
    threshold: int
    spent_usd: Decimal
    limit_usd: Decimal


class BudgetGuard:
    """Budget checks and ledger writes for one configuration."""

    def __init__(self, settings: BedrockSettings, ledger: CostLedger) -> None:
        self.settings = settings
        self.ledger = ledger

    def scopes_of(self, scope: str) -> list[str]:
        return [GLOBAL_SCOPE, scope] if scope != GLOBAL_SCOPE else [GLOBAL_SCOPE]

    def _limits(self, scope: str) -> dict[str, Decimal]:
        budget = self.settings.budgets.scopes.get(scope)
        if budget is None:
            return {}
        out = {"daily": budget.daily_usd, "monthly": budget.monthly_usd}
        return {k: v for k, v in out.items() if v is not None}

    def check(self, scope: str, override: bool) -> bool:
        """Raise BudgetExceeded when a scope is spent; True when the call runs over budget."""
        budgeted = [s for s in self.scopes_of(scope) if self._limits(s)]
        if not budgeted:
            return False
        from nura.stores.ledger import periods, utcnow_ts

        keys = periods(utcnow_ts())
        totals = self.ledger.spent(budgeted)
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
                    logger.warning(
                        "%s; calling anyway (%s)",
                        message,
                        "override" if override else "not enforced",
                    )
                    return True
                raise BudgetExceeded(message, scope=s, period=period, operation="budget.check")
        return False

    def record(self, entry: LedgerEntry) -> list[Crossing]:
        """Write the call to the ledger; the thresholds it crossed (each claimed once)."""
        totals = self.ledger.record(entry, self.scopes_of(entry.scope))
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
    """Notify (when `tasks.notify` exists) and emit `nura.budget.threshold` in every case."""
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
    try:
        from tasks.notify import notify  # another area's task: optional at import time
    except ImportError:
        logger.warning(
            "tasks.notify is not available: budget alert cannot be delivered (%s)", title
        )
    else:
        try:
            notify(title, body, severity, event="nura.budget.threshold", details=details)
        except Exception:
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

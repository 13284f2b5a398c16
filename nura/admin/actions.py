"""Every operator action, once: the admin API's handlers and the local `nura` commands
both call `perform`, so a command does the same thing (and writes the same audit row)
whether it talks to the store directly or to a remote stack's admin API.

    result = perform("breakers.reset", {"service": "confluence"}, Context(engine, cfg, actor))

Each action declares its minimum role (viewer < operator < admin), the HTTP method the
API serves it with, and a pydantic model of its parameters (unknown keys refused).
"""

from __future__ import annotations

import getpass
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from sqlalchemy import Engine

from nura.admin.errors import AdminError
from nura.config import IntegrationsConfig
from nura.config.sections.admin import Role
from nura.core.stores import admin_overrides, audit


@dataclass
class Context:
    """Who acts, on which store and config. `now` is injectable for tests."""

    engine: Engine
    cfg: IntegrationsConfig
    actor: str
    role: Role | None = None  # None: a local `nura` command (the store's own access rules)
    now: float | None = None
    # Called after a successful action that changed something the serving process caches.
    changed: Callable[[str], None] = field(default=lambda _name: None)

    def ts(self) -> float:
        return time.time() if self.now is None else self.now


def local_context(engine: Engine, cfg: IntegrationsConfig) -> Context:
    """A `nura` command run against the store directly: the actor is the OS user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry or $USER
        user = "unknown"
    return Context(engine, cfg, actor=f"cli:{user}")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Action:
    name: str
    role: Role
    method: Literal["GET", "POST"]
    params: type[Params]
    run: Callable[[Context, Any], dict[str, Any]]
    target: Callable[[Any], str | None] = lambda _p: None

    @property
    def path(self) -> str:
        return "/" + self.name.replace(".", "/")


ACTIONS: dict[str, Action] = {}


def action(
    name: str,
    role: Role,
    params: type[Params],
    method: Literal["GET", "POST"] = "POST",
    target: Callable[[Any], str | None] = lambda _p: None,
) -> Callable[[Callable[[Context, Any], dict[str, Any]]], Callable[[Context, Any], dict[str, Any]]]:
    def register(fn: Callable[[Context, Any], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        ACTIONS[name] = Action(name, role, method, params, fn, target)
        return fn

    return register


def parse(act: Action, raw: dict[str, Any]) -> Params:
    try:
        return act.params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise AdminError(400, "invalid_parameters", problems) from None


def perform(name: str, raw: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Validate, run and audit one action (the caller checked the role already)."""
    act = ACTIONS[name]
    target: str | None = None
    try:
        params = parse(act, raw)
        target = act.target(params)
        result = act.run(ctx, params)
    except AdminError as exc:
        _audit(ctx, act, target, exc.outcome, {"status": exc.status, "error": exc.error})
        raise
    except Exception as exc:
        _audit(ctx, act, target, "error", {"error": type(exc).__name__})
        raise
    if act.method == "POST":
        ctx.changed(name)
    _audit(ctx, act, target, "ok", result.get("audit"))
    result.pop("audit", None)
    return result


def _audit(
    ctx: Context, act: Action, target: str | None, outcome: str, detail: dict[str, Any] | None
) -> None:
    audit.record(
        ctx.engine,
        actor=ctx.actor,
        role=ctx.role,
        action=act.name,
        target=target,
        outcome=outcome,
        detail=detail,
        now=ctx.now,
    )


def record_refused(ctx: Context, name: str, outcome: str, status: int) -> None:
    """A call refused before it ran: `denied` (401 no/bad token, 403 role too low) or
    `invalid` (400, a body that is not a JSON object)."""
    audit.record(
        ctx.engine,
        actor=ctx.actor,
        role=ctx.role,
        action=name,
        outcome=outcome,
        detail={"status": status},
        now=ctx.now,
    )


# -- reads (viewer) ---------------------------------------------------------------------
class NoParams(Params):
    pass


@action("status", "viewer", NoParams, method="GET")
def status(ctx: Context, _p: NoParams) -> dict[str, Any]:
    """Breakers, dead letters, endpoint flags, budget overrides, maintenance windows."""
    from nura.core.breaker import CircuitBreakers
    from nura.core.stores.dead_letters import dead_letter_stats

    breakers = [
        {"service": s.service, "state": s.state.value, "failures": s.failures}
        for s in CircuitBreakers(ctx.engine).all()
    ]
    budgets = {
        scope: {k: _usd(v) if k.endswith("_usd") else v for k, v in row.items()}
        for scope, row in admin_overrides.budget_overrides(ctx.engine).items()
    }
    return {
        "breakers": breakers,
        "dead_letters": dead_letter_stats(ctx.engine),
        "endpoint_flags": admin_overrides.endpoint_flag_rows(ctx.engine),
        "budget_overrides": budgets,
        "maintenance": _maintenance_active(ctx),
    }


class ListDeliveries(Params):
    status: list[str] = Field(default_factory=lambda: ["pending", "exhausted"])
    target: str | None = None
    limit: int = Field(default=100, gt=0, le=1000)


@action("deliveries.list", "viewer", ListDeliveries, method="GET")
def list_deliveries(ctx: Context, p: ListDeliveries) -> dict[str, Any]:
    from nura.core.stores import dead_letters as dl

    bad = [s for s in p.status if s not in dl.STATUSES]
    if bad:
        raise AdminError(400, "invalid_parameters", f"unknown status {', '.join(bad)}")
    rows = dl.list_entries(ctx.engine, statuses=p.status, target=p.target, limit=p.limit)
    return {"entries": [{k: v for k, v in r.items() if k != "payload"} for r in rows]}


class ListAudit(Params):
    action: str | None = None
    actor: str | None = None
    since: float | None = None
    limit: int = Field(default=100, gt=0, le=1000)


@action("audit.list", "viewer", ListAudit, method="GET")
def list_audit(ctx: Context, p: ListAudit) -> dict[str, Any]:
    rows = audit.entries(ctx.engine, action=p.action, actor=p.actor, since=p.since, limit=p.limit)
    return {"entries": rows}


# -- dead letters -------------------------------------------------------------------------
class RetryParams(Params):
    ids: list[str] = Field(default_factory=list)
    target: str | None = None
    all_exhausted: bool = False
    deliver: bool = Field(
        default=True, description="Send the requeued entries now (else the next redrive does)."
    )


def _which(ids: list[str], target: str | None) -> str | None:
    return target if not ids else f"{target or '*'}:{','.join(ids)[:400]}"


@action("deliveries.retry", "operator", RetryParams, target=lambda p: _which(p.ids, p.target))
def retry(ctx: Context, p: RetryParams) -> dict[str, Any]:
    from nura.core.stores import dead_letters as dl

    if not p.ids and not p.target and not p.all_exhausted:
        raise AdminError(400, "invalid_parameters", "say which: ids, target or all_exhausted")
    statuses = ["exhausted"] if p.all_exhausted else []
    keys = dl.requeue(ctx.engine, ids=p.ids, statuses=statuses, target=p.target, now=ctx.now)
    out: dict[str, Any] = {"requeued": [{"target": t, "id": i} for t, i in keys]}
    if keys and p.deliver:
        from nura.webhooks.delivery import redrive_due

        summary = redrive_due(keys=keys, engine=ctx.engine)
        out["redrive"] = summary.model_dump(mode="json", exclude={"targets"})
        out["deferred_targets"] = sorted(n for n, r in summary.targets.items() if r.deferred)
    out["audit"] = {"requeued": len(keys), "deliver": p.deliver}
    return out


class PurgeParams(Params):
    ids: list[str] = Field(default_factory=list)
    target: str | None = None
    status: list[Literal["pending", "exhausted"]] = Field(default_factory=list)
    older_than_days: float | None = Field(default=None, ge=0)


@action("deliveries.purge", "admin", PurgeParams, target=lambda p: _which(p.ids, p.target))
def purge(ctx: Context, p: PurgeParams) -> dict[str, Any]:
    from nura.core.stores import dead_letters as dl

    if not p.ids and not p.target and p.older_than_days is None and not p.status:
        raise AdminError(
            400, "invalid_parameters", "say which: ids, target, status or older_than_days"
        )
    count = dl.purge(
        ctx.engine,
        ids=p.ids,
        statuses=p.status or ["pending", "exhausted"],
        target=p.target,
        older_than=None if p.older_than_days is None else p.older_than_days * 86400,
        now=ctx.now,
    )
    return {"purged": count, "audit": {"purged": count}}


# -- breakers -----------------------------------------------------------------------------
class ServiceParams(Params):
    service: str = Field(min_length=1, max_length=200)


def _breakers(ctx: Context) -> Any:
    """This process's call-layer breakers when they share the store (their read cache
    must see the reset at once), else a fresh view of the store's."""
    from nura.core import runtime
    from nura.core.breaker import CircuitBreakers

    layer = runtime._layer  # only if this process built one; never build it here
    if layer is not None and layer.breakers.engine is ctx.engine:
        return layer.breakers
    return CircuitBreakers(ctx.engine)


@action("breakers.reset", "operator", ServiceParams, target=lambda p: p.service)
def reset_breaker(ctx: Context, p: ServiceParams) -> dict[str, Any]:
    breakers = _breakers(ctx)
    known = set(ctx.cfg.policies()) | {s.service for s in breakers.all()}
    known |= {f"webhooks.{t}" for t in ctx.cfg.webhooks.outgoing.targets}
    if p.service not in known:
        raise AdminError(404, "unknown_service", f"unknown service {p.service!r}")
    previous = breakers.snapshot(p.service, fresh=True).state.value
    breakers.reset(p.service)
    return {"service": p.service, "state": "closed", "audit": {"previous": previous}}


# -- maintenance windows (nura.health.maintenance) ----------------------------------------
def _maintenance() -> Any:
    try:  # helper module of the maintenance-windows feature (may be absent in a build)
        maintenance = importlib.import_module("nura.health.maintenance")
    except ImportError:
        raise AdminError(501, "not_available", "maintenance windows are not installed") from None
    return maintenance


def _maintenance_active(ctx: Context) -> list[dict[str, Any]] | None:
    try:
        return list(_maintenance().active(ctx.engine, ctx.ts(), ctx.cfg))
    except AdminError:
        return None


class MaintenanceStart(Params):
    service: str = Field(min_length=1, max_length=200)
    duration_s: float = Field(gt=0, le=7 * 86400)
    reason: str = Field(min_length=1, max_length=500)


def _maintenance_call(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """B's errors as HTTP statuses: unknown service 404, bad window 400, conflict 409."""
    m = _maintenance()
    try:
        return fn()
    except m.UnknownMaintenanceService as exc:
        raise AdminError(404, "unknown_service", str(exc)) from None
    except m.InvalidMaintenance as exc:
        raise AdminError(400, "invalid_parameters", str(exc)) from None
    except (m.MaintenanceActive, m.NoActiveMaintenance) as exc:
        raise AdminError(409, "conflict", str(exc)) from None


@action("maintenance.start", "operator", MaintenanceStart, target=lambda p: p.service)
def maintenance_start(ctx: Context, p: MaintenanceStart) -> dict[str, Any]:
    window = _maintenance_call(
        lambda: _maintenance().start(
            ctx.engine, p.service, p.duration_s, p.reason, ctx.actor, now=ctx.now, config=ctx.cfg
        )
    )
    return {"window": window, "audit": {"duration_s": p.duration_s, "reason": p.reason}}


@action("maintenance.end", "operator", ServiceParams, target=lambda p: p.service)
def maintenance_end(ctx: Context, p: ServiceParams) -> dict[str, Any]:
    window = _maintenance_call(
        lambda: _maintenance().end(ctx.engine, p.service, ctx.actor, now=ctx.now, config=ctx.cfg)
    )
    return {"window": window}


# -- incoming webhook endpoints -------------------------------------------------------------
class EndpointParams(Params):
    endpoint: str = Field(min_length=1, max_length=200)


def _endpoint_switch(ctx: Context, p: EndpointParams, enabled: bool) -> dict[str, Any]:
    if p.endpoint not in ctx.cfg.webhooks.incoming:
        raise AdminError(404, "unknown_endpoint", f"no incoming endpoint {p.endpoint!r}")
    admin_overrides.set_endpoint(
        ctx.engine, p.endpoint, enabled=enabled, actor=ctx.actor, now=ctx.now
    )
    return {"endpoint": p.endpoint, "enabled": enabled}


@action("endpoints.disable", "operator", EndpointParams, target=lambda p: p.endpoint)
def disable_endpoint(ctx: Context, p: EndpointParams) -> dict[str, Any]:
    return _endpoint_switch(ctx, p, enabled=False)


@action("endpoints.enable", "operator", EndpointParams, target=lambda p: p.endpoint)
def enable_endpoint(ctx: Context, p: EndpointParams) -> dict[str, Any]:
    return _endpoint_switch(ctx, p, enabled=True)


# -- outgoing webhook targets (`nura deliveries enable/disable`) -------------------------------
class TargetParams(Params):
    target: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="disabled by an operator", max_length=500)


def _known_target(ctx: Context, name: str) -> None:
    if name not in ctx.cfg.webhooks.outgoing.targets:
        raise AdminError(404, "unknown_target", f"no outgoing webhook target {name!r}")


@action("targets.disable", "operator", TargetParams, target=lambda p: p.target)
def disable_target(ctx: Context, p: TargetParams) -> dict[str, Any]:
    from nura.core.stores import dead_letters as dl

    _known_target(ctx, p.target)
    dl.disable_endpoint(ctx.engine, p.target, p.reason, now=ctx.now)
    return {"target": p.target, "enabled": False, "audit": {"reason": p.reason}}


@action("targets.enable", "operator", TargetParams, target=lambda p: p.target)
def enable_target(ctx: Context, p: TargetParams) -> dict[str, Any]:
    from nura.core.stores import dead_letters as dl

    _known_target(ctx, p.target)
    was_disabled = dl.enable_endpoint(ctx.engine, p.target)
    return {"target": p.target, "enabled": True, "was_disabled": was_disabled}


# -- budgets --------------------------------------------------------------------------------
def _usd(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class BudgetSet(Params):
    scope: str = Field(min_length=1, max_length=200)
    daily_usd: Decimal | None = Field(default=None, gt=0)
    monthly_usd: Decimal | None = Field(default=None, gt=0)


@action("budgets.set", "admin", BudgetSet, target=lambda p: p.scope)
def set_budget(ctx: Context, p: BudgetSet) -> dict[str, Any]:
    admin_overrides.set_budget(
        ctx.engine,
        p.scope,
        daily_usd=p.daily_usd,
        monthly_usd=p.monthly_usd,
        actor=ctx.actor,
        now=ctx.now,
    )
    ceilings = {"daily_usd": _usd(p.daily_usd), "monthly_usd": _usd(p.monthly_usd)}
    return {"scope": p.scope, **ceilings, "audit": ceilings}


class ScopeParams(Params):
    scope: str = Field(min_length=1, max_length=200)


@action("budgets.clear", "admin", ScopeParams, target=lambda p: p.scope)
def clear_budget(ctx: Context, p: ScopeParams) -> dict[str, Any]:
    return {"scope": p.scope, "cleared": admin_overrides.clear_budget(ctx.engine, p.scope)}


# -- secrets and tokens ------------------------------------------------------------------------
class RotateParams(Params):
    block: str = Field(
        pattern=r"^[a-z0-9-]+/[A-Za-z0-9_.-]+$",
        description="`block-type-slug/block-name`, e.g. `nura-confluence-credentials/prod`.",
    )
    field: str = Field(min_length=1, max_length=100)
    value: SecretStr


@action("secrets.rotate", "admin", RotateParams, target=lambda p: f"{p.block}.{p.field}")
def rotate_secret(_ctx: Context, p: RotateParams) -> dict[str, Any]:
    from nura.admin.secrets import rotate

    rotate(p.block, p.field, p.value)
    return {"block": p.block, "field": p.field, "rotated": True}


@action("tokens.list", "admin", NoParams, method="GET")
def list_tokens(ctx: Context, _p: NoParams) -> dict[str, Any]:
    return {
        "tokens": [{"name": t.name, "role": t.role, "block": t.block} for t in ctx.cfg.admin.tokens]
    }

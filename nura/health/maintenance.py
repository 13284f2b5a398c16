"""Maintenance windows: checks keep running, alerts are held, the SLA excludes the time.

    window = start(engine, "confluence", 1800, "upgrade", actor="cli:ana")   # -> dict
    active(engine, now)                  # store windows + `maintenance_windows` in config
    end(engine, "confluence", actor="cli:ana")                               # -> dict
    spans = intervals(engine, since, until)    # service -> merged [(start, end)] for the SLA
    maintenance_round(now=now)           # the monitor's step: notices, held alerts released

A window comes from the store (`nura maintenance start`, the admin API) or from
`health_monitoring.maintenance_windows` in the configuration. While one is in effect for a
service:
- its checks run and are recorded, its status is evaluated and its alert state moves as
  always (every transition is in the alert history and is a Prefect event, flagged
  `maintenance`), but nothing is sent to people (`hold`);
- a low-severity notice goes out once when the window starts and once when it ends
  (claimed in `nura_maintenance_notices`, so once across processes and runs); the end
  notice lists what was held. An alert still open at the end whose last notification was
  held is sent then ("STILL ..."), so an outage that outlasts the window is not silent;
- its SLA windows leave the time out: checks and calls inside a window count neither
  for availability, error rate nor p95, and the report says how much was excluded.
"""

from __future__ import annotations

import getpass
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, update

from nura.core.errors import NuraError
from nura.core.stores import maintenance as store

logger = logging.getLogger("nura.health.maintenance")

MAX_DURATION_S = 7 * 86400.0  # the longest SLA window: a longer "maintenance" is an outage
NOTICE_LOOKBACK_S = 86400.0  # end notices still owed for windows that ended this recently
Notifier = Callable[..., Any]


class MaintenanceError(NuraError):
    """Base of the maintenance errors."""


class UnknownMaintenanceService(MaintenanceError, ValueError):
    """The service is not one the health monitor knows; `.known` lists those it does."""

    def __init__(self, service: str, known: Iterable[str]) -> None:
        self.service = service
        self.known = sorted(known)
        super().__init__(f"unknown service {service!r}; known: {', '.join(self.known)}")


class InvalidMaintenance(MaintenanceError, ValueError):
    """A duration or reason that cannot make a window."""


class MaintenanceActive(MaintenanceError):
    """The service already has a window in effect (end it first)."""


class NoActiveMaintenance(MaintenanceError):
    """`end` for a service with no window in effect that can be ended."""


@dataclass(frozen=True)
class Window:
    """One window, from the store or the configuration; `ends_at` is its effective end."""

    key: str  # "store:<id>" | "config:<service>:<start>"
    service: str
    starts_at: float
    ends_at: float
    reason: str
    actor: str
    source: str  # store | config
    id: int | None = None
    created_at: float | None = None
    ended_at: float | None = None
    ended_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- where windows come from ---------------------------------------------------------------
def _config(config: Any = None) -> Any:
    if config is not None:
        return config
    from nura import get_config

    return get_config()


def known_services(config: Any = None) -> list[str]:
    """Services the health report can show: the call layer's and the platform's own."""
    from nura.health.checks import COMPONENTS

    return sorted(set(_config(config).policies()) | set(COMPONENTS))


def _require_known(service: str, config: Any) -> None:
    known = known_services(config)
    if service not in known:
        raise UnknownMaintenanceService(service, known)


def _from_row(row: Mapping[str, Any]) -> Window:
    end = row["ended_at"] if row["ended_at"] is not None else row["ends_at"]
    return Window(
        key=f"store:{row['id']}",
        service=row["service"],
        starts_at=float(row["starts_at"]),
        ends_at=float(end),
        reason=row["reason"] or "",
        actor=row["actor"],
        source="store",
        id=int(row["id"]),
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
    )


def config_windows(config: Any = None) -> list[Window]:
    """The windows `health_monitoring.maintenance_windows` declares; none when the
    configuration cannot be loaded (a reader such as /metrics still shows the store's)."""
    from nura.config import ConfigError

    try:
        declared = _config(config).health_monitoring.maintenance_windows
    except ConfigError as exc:
        logger.warning("configured maintenance windows not read: %s", exc)
        return []
    out = []
    for w in declared:
        start = w.start.timestamp()
        out.append(
            Window(
                key=f"config:{w.service}:{start:.0f}",
                service=w.service,
                starts_at=start,
                ends_at=w.end.timestamp(),
                reason=w.reason,
                actor="config",
                source="config",
            )
        )
    return out


def windows_between(engine: Engine, since: float, until: float, config: Any = None) -> list[Window]:
    """Every window overlapping `(since, until]`, store and configuration, oldest first."""
    found = [_from_row(r) for r in store.windows_between(engine, since, until)]
    found += [w for w in config_windows(config) if w.starts_at <= until and w.ends_at > since]
    return sorted(found, key=lambda w: (w.starts_at, w.key))


def active_windows(engine: Engine, now: float, config: Any = None) -> list[Window]:
    return [w for w in windows_between(engine, now, now, config) if w.starts_at <= now]


def active(engine: Engine, now: float, config: Any = None) -> list[dict[str, Any]]:
    """Windows in effect at `now` (store and configuration), as dicts."""
    return [w.as_dict() for w in active_windows(engine, now, config)]


def upcoming(engine: Engine, now: float, config: Any = None) -> list[dict[str, Any]]:
    """Windows in effect at `now` or starting later (what `nura maintenance list` shows)."""
    found = [_from_row(r) for r in store.upcoming_windows(engine, now)]
    found += [w for w in config_windows(config) if w.ends_at > now]
    return [w.as_dict() for w in sorted(found, key=lambda w: (w.starts_at, w.key))]


# -- operator actions --------------------------------------------------------------------
def default_actor() -> str:
    """Who runs this process, for the record: `user@host`."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def start(
    engine: Engine,
    service: str,
    duration_s: float,
    reason: str,
    actor: str,
    now: float | None = None,
    *,
    config: Any = None,
    notify: bool = True,
) -> dict[str, Any]:
    """Start a window for `service` now, lasting `duration_s`; the start notice goes out
    at once (`notify=False`: the next monitor run sends it)."""
    cfg = _config(config)
    _require_known(service, cfg)
    if not 0 < duration_s <= MAX_DURATION_S:
        raise InvalidMaintenance(
            f"duration must be more than 0 s and at most {MAX_DURATION_S / 86400:g} days"
        )
    if not actor:
        raise InvalidMaintenance("actor is required (who started the window)")
    now = time.time() if now is None else now
    current = [w for w in active_windows(engine, now, cfg) if w.service == service]
    if current:
        raise MaintenanceActive(
            f"{service} is already in maintenance until {_when(current[-1].ends_at)} "
            f"({current[-1].source}); end it first"
        )
    row = store.add_window(
        engine,
        service,
        starts_at=now,
        ends_at=now + duration_s,
        reason=reason,
        actor=actor,
        now=now,
    )
    window = _from_row(row)
    if notify:
        _notice(engine, window, "started", now, cfg)
    return window.as_dict()


def end(
    engine: Engine,
    service: str,
    actor: str,
    now: float | None = None,
    *,
    config: Any = None,
    notify: bool = True,
) -> dict[str, Any]:
    """End the service's window(s) started at run time; returns the (last) one ended.

    A window declared in the configuration ends when the configuration says; it is
    changed there, not here (`NoActiveMaintenance` says so)."""
    cfg = _config(config)
    _require_known(service, cfg)
    now = time.time() if now is None else now
    ended = [
        store.end_window(engine, row["id"], actor=actor, now=now)
        for row in store.active_windows(engine, now, service)
    ]
    done = [_from_row(r) for r in ended if r is not None]
    if not done:
        declared = [w for w in active_windows(engine, now, cfg) if w.service == service]
        hint = (
            f"; the window until {_when(declared[0].ends_at)} is declared in the configuration "
            "(health_monitoring.maintenance_windows): change it there"
            if declared
            else ""
        )
        raise NoActiveMaintenance(f"{service} has no maintenance window to end{hint}")
    if notify:
        for window in done:
            _finish(engine, window, now, cfg)
    return done[-1].as_dict()


# -- what maintenance changes in a monitor run --------------------------------------------
def intervals(
    engine: Engine, since: float, until: float, config: Any = None
) -> dict[str, list[tuple[float, float]]]:
    """Per service, the maintenance time inside `(since, until]` as merged, sorted spans."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for w in windows_between(engine, since, until, config):
        spans.setdefault(w.service, []).append((max(w.starts_at, since), min(w.ends_at, until)))
    return {service: _merge(found) for service, found in spans.items()}


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        elif hi > lo:
            out.append((lo, hi))
    return out


def excluded_seconds(spans: Iterable[tuple[float, float]], since: float, until: float) -> float:
    """How much of `(since, until]` the (merged) spans cover."""
    return sum(max(0.0, min(hi, until) - max(lo, since)) for lo, hi in spans)


def maintenance_round(
    now: float | None = None, notifier: Notifier | None = None, config: Any = None
) -> dict[str, Any]:
    """The monitor's maintenance step: start and end notices still owed (once each), and
    the alerts held through a window that ended while they were open, sent now.

    Returns {active: [service...], notices: [{service, kind}...], released: [alert key...]}.
    """
    from nura import store_url
    from nura.core.stores.db import get_engine

    cfg = _config(config)
    now = time.time() if now is None else now
    engine = get_engine(store_url(cfg))
    sent: list[dict[str, str]] = []
    released: list[str] = []
    for window in windows_between(engine, now - NOTICE_LOOKBACK_S, now, cfg):
        if window.starts_at > now:
            continue
        if _notice(engine, window, "started", now, cfg, notifier):
            sent.append({"service": window.service, "kind": "started"})
        if window.ends_at <= now:
            finished = _finish(engine, window, now, cfg, notifier)
            if finished is not None:
                sent.append({"service": window.service, "kind": "ended"})
                released += finished
    return {
        "active": sorted({w.service for w in active_windows(engine, now, cfg)}),
        "notices": sent,
        "released": released,
    }


def _finish(
    engine: Engine, window: Window, now: float, cfg: Any, notifier: Notifier | None = None
) -> list[str] | None:
    """The end notice (once) and the held alerts it releases; None if already done."""
    if not _notice(engine, window, "ended", now, cfg, notifier):
        return None
    return _release(engine, window, now, cfg, notifier)


def _release(
    engine: Engine, window: Window, now: float, cfg: Any, notifier: Notifier | None
) -> list[str]:
    """Send the service's open alert if its last notification was held by maintenance."""
    from nura.core.stores.alerts import AlertChange, alerts, open_alerts
    from nura.health.alerts import deliver_alert

    if any(w.service == window.service for w in active_windows(engine, now, cfg)):
        return []  # another window still holds it
    out = []
    for alert in open_alerts(engine):
        if alert["key"] != window.service or alert["last_notified_at"] < window.starts_at:
            continue
        change = AlertChange(
            "reminder",
            alert["key"],
            alert["alert_id"],
            alert["level"],
            alert["level"],
            alert["severity"],
            f"{alert['reason']} (held during maintenance)",
            alert["opened_at"],
            now,
            notify=True,
        )
        with engine.begin() as conn:  # reminders count from this notification
            conn.execute(
                update(alerts).where(alerts.c.key == alert["key"]).values(last_notified_at=now)
            )
        deliver_alert(change.as_dict(), notifier=notifier, now=now)
        out.append(alert["key"])
    return out


# -- notices -------------------------------------------------------------------------------
def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _held_summary(engine: Engine, window: Window) -> str:
    from nura.core.stores.alerts import history

    lines = [
        f"{h['kind']} {h['level']} at {_when(h['ts'])}: {h['reason'] or ''}".strip()
        for h in history(engine, window.service)
        if window.starts_at <= h["ts"] <= window.ends_at
    ]
    return "Held during the window: " + ("; ".join(lines) if lines else "nothing")


def notice_text(window: Window, kind: str, held: str = "") -> tuple[str, str]:
    """Title and body of a start / end notice."""
    if kind == "started":
        title = f"MAINTENANCE {window.service} until {_when(window.ends_at)}"
        body = (
            f"{window.service} is in maintenance from {_when(window.starts_at)} to "
            f"{_when(window.ends_at)} ({window.source}, by {window.actor}): "
            f"{window.reason or 'no reason given'}. Checks keep running; alerts are held; "
            "the SLA leaves this time out."
        )
        return title, body
    minutes = (window.ends_at - window.starts_at) / 60
    early = f", ended early by {window.ended_by}" if window.ended_by else ""
    title = f"MAINTENANCE OVER {window.service}"
    body = (
        f"{window.service} maintenance from {_when(window.starts_at)} to "
        f"{_when(window.ends_at)} ({minutes:.0f} min{early}) is over; alerts are live again."
    )
    return title, body + (f"\n{held}" if held else "")


def _notice(
    engine: Engine,
    window: Window,
    kind: str,
    now: float,
    cfg: Any,
    notifier: Notifier | None = None,
) -> bool:
    """Send the window's `kind` notice unless some process already did; True if sent here."""
    if not store.claim_notice(engine, window.key, kind, service=window.service, now=now):
        return False
    held = _held_summary(engine, window) if kind == "ended" else ""
    title, body = notice_text(window, kind, held)
    event = f"nura.maintenance.{kind}"
    try:
        _emit(window, event, title)
    except Exception as exc:  # an event bus hiccup must not lose the notice
        logger.warning("maintenance event %s not emitted: %s", event, exc)
    send = notifier or _default_notifier()
    try:
        send(
            title,
            body,
            "low",
            event=event,
            details={"service": window.service, "window": window.key, "actor": window.actor},
            dedupe_key=f"maintenance:{window.key}:{kind}",
            now=now,
        )
    except Exception as exc:  # queued notices are retried by the outbox; this is not
        logger.warning("maintenance notice %r not delivered: %s", title, exc)
    return True


def _default_notifier() -> Notifier:
    from nura.notify.dispatch import send_notification

    return send_notification


def _emit(window: Window, event: str, title: str) -> None:
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return  # no server to tell; emitting would start an ephemeral one (seconds)

    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"nura.service.{window.service}",
            "prefect.resource.name": window.service,
        },
        payload={**window.as_dict(), "title": title},
    )

"""Security events: refusals and failed logins, counted per kind and subject for the alerts.

    record_event(engine, "signature_failure", "partner", {"errors": {"bad_signature": 3}},
                 now=time.time(), count=3)
    counts(engine, "signature_failure", since=now - 600, until=now)   # {"partner": 3}
    auth_failures(engine, since=now - 900, until=now)                 # {"confluence": 7}

A row may stand for several events of one kind and subject (the receiver aggregates a
second of refusals into one row, so a flood of bad signatures costs one insert a second,
not one per request). `detail` is a small JSON object: `clean_detail` keeps scalar values
and short lists only and drops every key that could name a secret, a signature or a body,
so nothing an attacker sent and nothing we hold secret lands in the store.

401s from the services we call need no event of their own: the call layer already records
every call's status (`nura_call_records`), and `auth_failures` counts them from there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

from nura.core.stores.db import id_column, metadata
from nura.core.stores.tables import call_records

# Security alerts live in the alert store as `security.<kind>.<subject>`.
ALERT_PREFIX = "security."

security_events = Table(
    "nura_security_events",
    metadata,
    id_column(),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("count", Integer, nullable=False, default=1),
    Column("detail", Text, nullable=True),
    Index("ix_nura_security_events_kind_ts", "kind", "ts"),
)

# Keys never stored in a detail, whatever their value: secrets, signatures, bodies.
_SECRET_KEY = re.compile(
    r"secret|signature|token|password|passwd|authorization|cookie|credential|body|payload|key",
    re.IGNORECASE,
)
_MAX_TEXT = 200
_MAX_ITEMS = 10


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:_MAX_TEXT]


def clean_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """What of `detail` may be stored: scalars, short lists and counters ({code: n})."""
    out: dict[str, Any] = {}
    for key, value in (detail or {}).items():
        if _SECRET_KEY.search(str(key)):
            continue
        if isinstance(value, Mapping):  # counters only: {code: n}, numbers carry no secret
            out[str(key)] = {
                str(k)[:_MAX_TEXT]: v
                for k, v in list(value.items())[:_MAX_ITEMS]
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        elif isinstance(value, list | tuple | set | frozenset):
            out[str(key)] = [_scalar(v) for v in list(value)[:_MAX_ITEMS]]
        else:
            out[str(key)] = _scalar(value)
    return out


def _row(
    kind: str, subject: str, detail: Mapping[str, Any] | None, now: float, count: int
) -> dict[str, Any]:
    cleaned = clean_detail(detail)
    return {
        "ts": now,
        "kind": kind,
        "subject": subject[:200],
        "count": max(1, int(count)),
        "detail": json.dumps(cleaned, sort_keys=True) if cleaned else None,
    }


def record_event(
    engine: Engine,
    kind: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
    *,
    now: float,
    count: int = 1,
) -> None:
    """Store `count` events of `kind` for `subject` at `now` (detail cleaned first)."""
    record_events(engine, [(kind, subject, detail, now, count)])


def record_events(
    engine: Engine, events: Iterable[tuple[str, str, Mapping[str, Any] | None, float, int]]
) -> None:
    """Store several (kind, subject, detail, ts, count) in one transaction."""
    rows = [_row(*event) for event in events]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(security_events), rows)


def counts(engine: Engine, kind: str, *, since: float, until: float) -> dict[str, int]:
    """Events of `kind` per subject with `since <= ts <= until`."""
    t = security_events.c
    stmt = (
        select(t.subject, func.sum(t.count))
        .where(t.kind == kind, t.ts >= since, t.ts <= until)
        .group_by(t.subject)
    )
    with engine.connect() as conn:
        return {subject: int(n) for subject, n in conn.execute(stmt).all()}


def details(
    engine: Engine, kind: str, subject: str, *, since: float, until: float, limit: int = 50
) -> list[dict[str, Any]]:
    """The stored details of the latest events of `kind` for `subject`, newest first."""
    t = security_events.c
    stmt = (
        select(t.detail)
        .where(t.kind == kind, t.subject == subject[:200], t.ts >= since, t.ts <= until)
        .order_by(t.ts.desc(), t.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [json.loads(d) for (d,) in conn.execute(stmt).all() if d]


def totals(engine: Engine) -> dict[tuple[str, str], int]:
    """Every event ever stored, per (kind, subject): the Prometheus counter."""
    t = security_events.c
    stmt = select(t.kind, t.subject, func.sum(t.count)).group_by(t.kind, t.subject)
    with engine.connect() as conn:
        return {(kind, subject): int(n) for kind, subject, n in conn.execute(stmt).all()}


def auth_failures(engine: Engine, *, since: float, until: float) -> dict[str, int]:
    """Calls each service answered 401, from the call records (`since <= ts <= until`)."""
    c = call_records.c
    stmt = (
        select(c.service, func.count())
        .where(c.status_code == 401, c.ts >= since, c.ts <= until)
        .group_by(c.service)
    )
    with engine.connect() as conn:
        return {service: int(n) for service, n in conn.execute(stmt).all()}

"""Snapshots of the effective configuration and block documents (never a secret value).

    last = latest_snapshot(engine)          # dict or None
    record_snapshot(engine, seq=last["seq"] + 1, ...)   # False: another process was first

`entries` is a JSON object of flattened keys; a secret's value is only a keyed hash marker
(`nura.health.config_watch`). `seq` numbers the snapshots: two monitor runs seeing the
same change both try to write `seq` n + 1 and only one succeeds, so a change alerts once.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Column, Engine, Float, Integer, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError

from nura.core.stores.db import metadata

config_snapshots = Table(
    "nura_config_snapshots",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("salt", String(64), nullable=False),  # the secret markers' HMAC key
    Column("entries", Text, nullable=False),  # JSON {flattened key: value or marker}
    Column("source", String(100), nullable=False),  # health-monitor | ...
    Column("changes", Text, nullable=True),  # JSON diff from the previous one (no secrets)
    Column("changed_by", Text, nullable=True),
)


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["entries"] = json.loads(out["entries"])
    out["changes"] = json.loads(out["changes"]) if out["changes"] else []
    return out


def latest_snapshot(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(config_snapshots).order_by(config_snapshots.c.seq.desc()).limit(1)
        ).first()
    return _row(row) if row is not None else None


def snapshots(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(config_snapshots).order_by(config_snapshots.c.seq)).all()
    return [_row(r) for r in rows]


def record_snapshot(
    engine: Engine,
    *,
    seq: int,
    ts: float,
    digest: str,
    salt: str,
    entries: dict[str, Any],
    source: str,
    changes: list[dict[str, Any]] | None = None,
    changed_by: str | None = None,
) -> bool:
    """Insert snapshot `seq`; False when that number is already taken (lost the race)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(config_snapshots).values(
                    seq=seq,
                    ts=ts,
                    digest=digest,
                    salt=salt,
                    entries=json.dumps(entries, sort_keys=True),
                    source=source[:100],
                    changes=json.dumps(changes) if changes else None,
                    changed_by=changed_by,
                )
            )
    except IntegrityError:
        return False
    return True

"""Configuration-change alerts: the effective config and the saved blocks, watched.

    result = check_config(now=now)     # each health-monitor run
    result["status"]                   # "baseline" | "unchanged" | "changed"
    result["changes"]                  # [{key, change, old?, new?}]: secrets say "changed" only

What is watched: the resolved configuration (`integrations.yaml` with its `${VAR}`
substitutions, as loaded) and every named block document on the Prefect server (the
credential blocks among them). Both are flattened to `config.<path>` /
`block:<type>/<name>.<path>` keys. A secret (a `SecretStr` in the config, a block
schema's `secret_fields`, a key named like a password or token, a URL with a password in
it) is never kept: only `secret:<HMAC-SHA256>` of it, keyed by a random salt kept with
the snapshots, so a change is seen and the value is not stored, shown or logged.

The digest of those entries is compared with the last snapshot in
`nura_config_snapshots`: the first one is the baseline (no alert); a different digest
records a new snapshot and raises one low-severity "configuration changed" alert: a row
in the alert history (key `config`), a notification (routing of `low`) and the Prefect
event `nura.config.changed` on the resource `nura.config`, carrying the diff of keys and
who changed it when known: for a block, its document's update time and the actor of its
`prefect.block-document.updated` event when the server records one (Prefect OSS records
none: "unknown"); for the file, its path and modification time.

When the Prefect API cannot be read, the blocks' previous entries are carried over (a
server outage is not a change of every block).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr
from sqlalchemy import Engine, insert

from nura.core.stores import config_snapshots as store

logger = logging.getLogger("nura.health.config_watch")

Notifier = Callable[..., Any]
CONFIG_PREFIX = "config."
BLOCK_PREFIX = "block:"
ALERT_KEY = "config"
EVENT = "nura.config.changed"
# Key names whose values are secrets even when typed as plain strings.
SECRET_NAME = re.compile(
    r"(^|_)(secret|password|passwd|token|api_key|apikey|private_key|secret_access_key|"
    r"webhook_url|store_url|dsn|connection_url)$",
    re.IGNORECASE,
)
URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)
SHOWN_CHARS = 120


class Marker:
    """Turns a secret into `secret:<hmac>`: equal secrets compare equal, nothing leaks."""

    def __init__(self, salt: str) -> None:
        self._key = bytes.fromhex(salt)

    def __call__(self, key: str, value: Any) -> str:
        raw = value if isinstance(value, bytes) else str(value).encode()
        mac = hmac.new(self._key, key.encode() + b"\0" + raw, hashlib.sha256)
        return "secret:" + mac.hexdigest()[:32]


def is_marker(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("secret:")


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _scalar(value.value)
    return str(value)


def flatten(
    value: Any,
    prefix: str,
    out: dict[str, Any],
    marker: Marker,
    secret_paths: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`out[prefix.path] = value`, secrets as markers (see the module docstring)."""
    if isinstance(value, BaseModel):
        value = {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}", out, marker, secret_paths)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        for i, v in enumerate(items):
            flatten(v, f"{prefix}.{i}", out, marker, secret_paths)
        return out
    if isinstance(value, SecretStr | SecretBytes):
        out[prefix] = marker(prefix, value.get_secret_value())
    elif value is not None and _secret_key(prefix, secret_paths, value):
        out[prefix] = marker(prefix, value)
    else:
        out[prefix] = _scalar(value)
    return out


def _secret_key(path: str, secret_paths: tuple[str, ...], value: Any) -> bool:
    name = path.rsplit(".", 1)[-1]
    if SECRET_NAME.search(name):
        return True
    if isinstance(value, str) and URL_WITH_PASSWORD.match(value):
        return True
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in secret_paths)


# -- what is read --------------------------------------------------------------------------
def config_entries(cfg: Any, marker: Marker) -> dict[str, Any]:
    return flatten(cfg, CONFIG_PREFIX.rstrip("."), {}, marker)


def _block_docs() -> list[Any]:
    """Every named block document, secrets included (hashed at once, never kept)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        docs = client.read_block_documents(include_secrets=True)
    return [d for d in docs if not d.is_anonymous and d.name]


def block_label(doc: Any) -> str:
    slug = doc.block_type.slug if doc.block_type is not None else str(doc.block_type_id)
    return f"{slug}/{doc.name}"


def block_entries(docs: list[Any], marker: Marker) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for doc in docs:
        prefix = f"{BLOCK_PREFIX}{block_label(doc)}"
        fields = (doc.block_schema.fields if doc.block_schema is not None else {}) or {}
        patterns = tuple(f"{prefix}.{p}" for p in fields.get("secret_fields", []))
        out[f"{prefix}.@type"] = doc.block_type.slug if doc.block_type else None
        flatten(doc.data, prefix, out, marker, patterns)
    return out


def _prefect_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    # Without an API, a client would start an ephemeral server (seconds per process).
    return bool(PREFECT_API_URL.value())


def digest_of(entries: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


# -- the diff ------------------------------------------------------------------------------
def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Keys added, removed or changed; a secret's entry says only that it changed."""
    out: list[dict[str, Any]] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if key in old and key in new and before == after:
            continue
        change = "added" if key not in old else "removed" if key not in new else "changed"
        entry: dict[str, Any] = {"key": key, "change": change}
        if is_marker(before) or is_marker(after):
            entry["secret"] = True
        else:
            if key in old:
                entry["old"] = _shown(before)
            if key in new:
                entry["new"] = _shown(after)
        out.append(entry)
    return out


def describe(entry: Mapping[str, Any]) -> str:
    """One diff line, e.g. `config.x: 1 -> 2` or `block:.../token: changed (secret)`."""
    if entry.get("secret"):
        return f"{entry['key']}: {entry['change']} (secret)"
    if entry["change"] == "added":
        return f"{entry['key']}: added = {entry['new']}"
    if entry["change"] == "removed":
        return f"{entry['key']}: removed (was {entry['old']})"
    return f"{entry['key']}: {entry['old']} -> {entry['new']}"


# -- who changed it ------------------------------------------------------------------------
def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _file_origin(changes: list[dict[str, Any]]) -> list[str]:
    if not any(c["key"].startswith(CONFIG_PREFIX) for c in changes):
        return []
    from nura.config import config_path

    path = Path(config_path())
    try:
        mtime = f"modified {_when(path.stat().st_mtime)}"
    except OSError:
        mtime = "modification time unknown"
    return [f"config file {path} ({mtime}) or its environment variables; by unknown"]


def _block_actor(doc_id: Any, since: float) -> str:
    """The actor of the block document's latest lifecycle event, when the server records
    one (Prefect Cloud's audit events do; OSS does not), else "unknown"."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    query = EventFilter(
        occurred=EventOccurredFilter.model_validate({"since": datetime.fromtimestamp(since, UTC)}),
        event=EventNameFilter(prefix=["prefect.block-document."]),
        resource=EventResourceFilter(id=[f"prefect.block-document.{doc_id}"]),
    )
    try:
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=query, limit=10)
    except Exception as exc:  # who is a nice-to-have; the alert goes out without it
        logger.info("block events not readable: %s", exc)
        return "unknown"
    for event in sorted(page.events, key=lambda e: e.occurred, reverse=True):
        for related in event.related:
            if related.role == "actor":
                return related.name or related.id
    return "unknown"


def _block_origins(changes: list[dict[str, Any]], docs: list[Any], since: float) -> list[str]:
    changed = {c["key"][len(BLOCK_PREFIX) :].split(".", 1)[0] for c in changes}
    out = []
    for doc in docs:
        label = block_label(doc)
        if label in changed:
            updated = doc.updated.timestamp() if doc.updated is not None else None
            when = _when(updated) if updated is not None else "at an unknown time"
            out.append(f"block {label} updated {when} by {_block_actor(doc.id, since)}")
            changed.discard(label)
    out += [f"block {label} removed; by unknown" for label in sorted(changed)]
    return out


# -- the check -----------------------------------------------------------------------------
def _collect(cfg: Any, marker: Marker, previous: Mapping[str, Any] | None) -> tuple[dict, list]:
    """Current entries; block entries carried over from `previous` if blocks can't be read."""
    entries = config_entries(cfg, marker)
    docs: list[Any] = []
    carried = {k: v for k, v in (previous or {}).items() if k.startswith(BLOCK_PREFIX)}
    if not _prefect_configured():
        logger.info("no PREFECT_API_URL: block documents kept from the last snapshot")
        return {**entries, **carried}, docs
    try:
        docs = _block_docs()
    except Exception as exc:  # a Prefect outage is not a change of every block
        logger.warning("block documents not read (kept from the last snapshot): %s", exc)
        return {**entries, **carried}, docs
    return {**entries, **block_entries(docs, marker)}, docs


def check_config(
    now: float | None = None,
    *,
    source: str = "health-monitor",
    record: bool = True,
    notifier: Notifier | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """Compare the effective configuration and blocks with the last snapshot; on a change
    record it and raise the low alert (`record=False`: only report, e.g. `nura config
    check`). Returns {status, digest, changes, changed_by}."""
    from nura import get_config, store_url
    from nura.core.stores.db import get_engine

    cfg = config if config is not None else get_config()
    engine = get_engine(store_url(cfg))
    now = time.time() if now is None else now
    for _ in range(3):
        previous = store.latest_snapshot(engine)
        salt = previous["salt"] if previous else secrets.token_hex(32)
        entries, docs = _collect(cfg, Marker(salt), previous["entries"] if previous else None)
        digest = digest_of(entries)
        base = {"digest": digest, "changes": [], "changed_by": []}
        if previous is not None and previous["digest"] == digest:
            return {**base, "status": "unchanged", "since": previous["ts"]}
        if previous is None:
            if record and not store.record_snapshot(
                engine, seq=1, ts=now, digest=digest, salt=salt, entries=entries, source=source
            ):
                continue  # another process took the baseline: compare with it
            return {**base, "status": "baseline"}
        changes = diff(previous["entries"], entries)
        who = _file_origin(changes) + _block_origins(changes, docs, previous["ts"])
        result = {**base, "status": "changed", "changes": changes, "changed_by": who}
        if not record:
            return result
        if store.record_snapshot(
            engine,
            seq=previous["seq"] + 1,
            ts=now,
            digest=digest,
            salt=salt,
            entries=entries,
            source=source,
            changes=changes,
            changed_by="; ".join(who) or "unknown",
        ):
            raise_alert(engine, result, previous["digest"], now, notifier)
            return result
    raise RuntimeError("configuration snapshots kept changing under us")


def alert_text(result: Mapping[str, Any]) -> tuple[str, str]:
    changes = result["changes"]
    title = f"CONFIG CHANGED {len(changes)} key{'s' if len(changes) != 1 else ''}"
    lines = [describe(c) for c in changes[:30]]
    if len(changes) > 30:
        lines.append(f"... and {len(changes) - 30} more")
    who = "; ".join(result["changed_by"]) or "unknown"
    return title, "Changed by: " + who + "\n" + "\n".join(lines)


def raise_alert(
    engine: Engine,
    result: Mapping[str, Any],
    previous_digest: str,
    now: float,
    notifier: Notifier | None = None,
) -> None:
    """The low alert for one change: history row, Prefect event, notification."""
    from nura.core.stores.alerts import alert_history

    title, body = alert_text(result)
    alert_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(
            insert(alert_history).values(
                ts=now,
                key=ALERT_KEY,
                alert_id=alert_id,
                kind="changed",
                level="info",
                severity="low",
                reason=body[:2000],
            )
        )
    try:
        _emit(result, previous_digest, title)
    except Exception as exc:
        logger.warning("event %s not emitted: %s", EVENT, exc)
    send = notifier or _default_notifier()
    try:
        send(
            title,
            body,
            "low",
            event=EVENT,
            details={"digest": result["digest"][:12], "previous": previous_digest[:12]},
            dedupe_key=f"config:{previous_digest}:{result['digest']}:{alert_id}",
            now=now,
        )
    except Exception as exc:  # the history row and the event stand; the outbox retries
        logger.warning("configuration change not notified: %s", exc)


def _default_notifier() -> Notifier:
    from nura.notify.dispatch import send_notification

    return send_notification


def _emit(result: Mapping[str, Any], previous_digest: str, title: str) -> None:
    from prefect.events import emit_event

    if not _prefect_configured():
        return  # no server to tell; emitting would start an ephemeral one (seconds)

    emit_event(
        event=EVENT,
        resource={"prefect.resource.id": "nura.config", "prefect.resource.name": "config"},
        payload={
            "title": title,
            "digest": result["digest"],
            "previous_digest": previous_digest,
            "changes": list(result["changes"]),
            "changed_by": list(result["changed_by"]),
        },
    )


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """What `nura config check` prints about the last snapshot."""
    status = result["status"]
    if status == "unchanged":
        return [f"config digest {result['digest'][:12]}: unchanged since {_when(result['since'])}"]
    if status == "baseline":
        return [f"config digest {result['digest'][:12]}: no snapshot yet (the monitor takes it)"]
    title, body = alert_text(result)
    return [
        f"config digest {result['digest'][:12]}: {title.lower()} since the last snapshot "
        "(the next health-monitor run alerts)",
        *body.splitlines(),
    ]

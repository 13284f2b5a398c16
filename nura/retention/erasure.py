"""Erasure (the right to erasure): a document, or an email address, and what came of it.

    report = erase(engine, cfg, confluence_page="123456", actor="cli:ana")
    report = erase(engine, cfg, git_path="acme/docs:handbook/people.md", actor="cli:ana")
    report = erase(engine, cfg, email="ana@example.com", actor="cli:ana", dry_run=True)
    report.found, report.s3_objects, report.stores  # {"inbox_payloads": 2, ...}

What goes:
- the knowledge-base objects (every version in a versioned bucket) and manifest entries
  of a Confluence page or Git file (`nura.retention.kb`), and its chunks in the vector
  index, older index versions included (`nura.retention.vectors`);
- stored payloads that mention the subject (`Subject.mentions`, JSON-aware): webhook inbox
  bodies are emptied (the row and its ids stay for dedupe; one not yet dispatched is
  failed with "erased"), dead letters and notification-outbox rows are deleted, sent
  notification titles and answers are redacted;
- for an address: its place in SES feedback recipient lists.

One audit row per erasure (action `erase`): the kind, the sha256 of the identifier and the
counts, never the identifier, a key or any content. A dry run finds and counts only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Engine, Row, Table, delete, func, select, tuple_, update

from nura.config.schema import IntegrationsConfig
from nura.core.stores import audit
from nura.core.stores.dead_letters import dead_letters
from nura.core.stores.inbox import inbox
from nura.core.stores.notifications import email_feedback, notifications, outbox
from nura.retention.kb import find as find_in_kb
from nura.retention.kb import remove as remove_from_kb
from nura.retention.subject import InvalidSubject, Subject
from nura.retention.vectors import chunks_held, doc_ids
from nura.retention.vectors import remove as remove_from_index

logger = logging.getLogger("nura.retention")

SCAN_BATCH = 500
REDACTED = "[erased]"


@dataclass
class ErasureReport:
    kind: str
    digest: str  # sha256 of the identifier
    dry_run: bool
    s3_objects: list[str] = field(default_factory=list)
    s3_versions: int = 0
    versioned_bucket: bool = False
    manifest_entries: int = 0
    index_chunks: int = 0  # chunk rows of the vector index (every embedding model)
    stores: dict[str, int] = field(default_factory=dict)  # store -> rows erased
    warnings: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        held = self.s3_objects or self.manifest_entries or self.index_chunks
        return bool(held or any(self.stores.values()))

    def counts(self) -> dict[str, int]:
        return {
            "s3_objects": len(self.s3_objects),
            "s3_versions": self.s3_versions,
            "manifest_entries": self.manifest_entries,
            "index_chunks": self.index_chunks,
            **self.stores,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "found": self.found}


# -- stored payloads ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Mentions:
    """A table whose text columns may mention a subject, and what erasing a row does."""

    store: str
    table: Table
    columns: tuple[str, ...]
    apply: Callable[[Connection, list[Any], float], int]  # (conn, keys, now) -> rows changed
    only: Callable[[Table], Any] | None = None  # extra condition (rows worth reading)


def _key_column(table: Table) -> Any:
    cols = list(table.primary_key.columns)
    return cols[0] if len(cols) == 1 else tuple_(*cols)


def _pages(engine: Engine, spec: _Mentions) -> Iterator[list[Row[Any]]]:
    """The table's key and text columns, SCAN_BATCH rows at a time, in key order."""
    keys: list[Column[Any]] = list(spec.table.primary_key.columns)
    key = _key_column(spec.table)
    wanted = select(*keys, *(spec.table.c[c] for c in spec.columns)).order_by(*keys)
    if spec.only is not None:
        wanted = wanted.where(spec.only(spec.table))
    last: Any = None
    while True:
        query = wanted if last is None else wanted.where(key > last)
        with engine.connect() as conn:
            rows = list(conn.execute(query.limit(SCAN_BATCH)).all())
        if not rows:
            return
        yield rows
        last = rows[-1][0] if len(keys) == 1 else tuple_(*rows[-1][: len(keys)])
        if len(rows) < SCAN_BATCH:
            return


def _erase_mentions(
    engine: Engine, spec: _Mentions, subject: Subject, now: float, dry_run: bool
) -> int:
    width = len(spec.table.primary_key.columns)
    erased = 0
    for rows in _pages(engine, spec):
        hits = [r for r in rows if any(subject.mentions(v) for v in r[width:])]
        keys = [r[0] if width == 1 else tuple(r[:width]) for r in hits]
        if not keys:
            continue
        if dry_run:
            erased += len(keys)
            continue
        with engine.begin() as conn:
            erased += spec.apply(conn, keys, now)
    return erased


def _empty_inbox_bodies(conn: Connection, ids: list[Any], now: float) -> int:
    c = inbox.c
    conn.execute(
        update(inbox)
        .where(c.id.in_(ids), c.status == "accepted")
        .values(status="failed", last_error="erased: payload removed", finished_at=now)
    )
    return int(conn.execute(update(inbox).where(c.id.in_(ids)).values(body=b"")).rowcount)


def _deleter(table: Table) -> Callable[[Connection, list[Any], float], int]:
    def apply(conn: Connection, keys: list[Any], now: float) -> int:
        return int(conn.execute(delete(table).where(_key_column(table).in_(keys))).rowcount)

    return apply


def _redact_notifications(conn: Connection, ids: list[Any], now: float) -> int:
    stmt = update(notifications).where(notifications.c.id.in_(ids))
    return int(conn.execute(stmt.values(title=REDACTED, response=None)).rowcount)


MENTIONS = (
    _Mentions(
        "inbox_payloads",
        inbox,
        ("body",),
        _empty_inbox_bodies,
        only=lambda t: func.length(t.c.body) > 0,
    ),
    _Mentions("dead_letters", dead_letters, ("payload",), _deleter(dead_letters)),
    _Mentions("notification_outbox", outbox, ("title", "body", "details"), _deleter(outbox)),
    _Mentions("notifications", notifications, ("title", "response"), _redact_notifications),
)


def _feedback_without(subject: Subject) -> Callable[[Connection, list[Any], float], int]:
    """Take the address out of each row's recipient list (the bounce itself stays)."""

    def apply(conn: Connection, ids: list[Any], now: float) -> int:
        c = email_feedback.c
        changed = 0
        for row_id, recipients in conn.execute(select(c.id, c.recipients).where(c.id.in_(ids))):
            kept = [r for r in (recipients or "").split(",") if not subject.mentions(r)]
            stmt = update(email_feedback).where(c.id == row_id)
            changed += conn.execute(stmt.values(recipients=",".join(kept) or None)).rowcount
        return changed

    return apply


def _specs(subject: Subject) -> Sequence[_Mentions]:
    if subject.kind != "email":
        return MENTIONS
    feedback = _Mentions(
        "email_feedback", email_feedback, ("recipients",), _feedback_without(subject)
    )
    return (*MENTIONS, feedback)


# -- the erasure --------------------------------------------------------------------------------
def subject_of(
    confluence_page: str | None = None, git_path: str | None = None, email: str | None = None
) -> Subject:
    given = [(k, v) for k, v in (("page", confluence_page), ("git", git_path), ("email", email))]
    chosen = [(k, v) for k, v in given if v is not None]
    if len(chosen) != 1:
        raise InvalidSubject("give exactly one of a Confluence page, a Git path or an email")
    kind, value = chosen[0]
    assert value is not None
    build = {"page": Subject.confluence_page, "git": Subject.git_path, "email": Subject.email}
    return build[kind](value)


def erase(
    engine: Engine,
    cfg: IntegrationsConfig,
    *,
    confluence_page: str | None = None,
    git_path: str | None = None,
    email: str | None = None,
    actor: str,
    dry_run: bool = False,
    now: float | None = None,
) -> ErasureReport:
    """Erase one subject everywhere this platform keeps it (see the module docstring).
    Raises InvalidSubject for a bad identifier; a failure part-way is audited as `error`
    with what was erased until then, and raised."""
    subject = subject_of(confluence_page, git_path, email)
    report = ErasureReport(subject.kind, subject.digest, dry_run)
    moment = time.time() if now is None else now
    try:
        _erase(engine, cfg, subject, report, moment)
    except Exception as exc:
        if not dry_run:
            _audit(engine, report, actor, "error", moment, error=type(exc).__name__)
        raise
    if not dry_run:
        _audit(engine, report, actor, "ok", moment)
    return report


def _erase(
    engine: Engine, cfg: IntegrationsConfig, subject: Subject, report: ErasureReport, now: float
) -> None:
    if subject.kind != "email":
        found = find_in_kb(cfg, subject)
        report.s3_objects = list(found.objects)
        report.versioned_bucket = found.versioned
        report.manifest_entries = sum(len(ids) for ids in found.manifests.values())
        ids = doc_ids(subject.kind, subject.value, found.objects)
        report.index_chunks = chunks_held(cfg, ids)
        if not report.dry_run:
            remove_from_kb(found)
            report.s3_versions = found.versions
            report.index_chunks = remove_from_index(cfg, ids)
    for spec in _specs(subject):
        report.stores[spec.store] = _erase_mentions(engine, spec, subject, now, report.dry_run)
    if subject.kind == "email" and subject.mentioned_in(cfg.model_dump_json()):
        report.warnings.append(
            "the address is in the configuration (integrations.yaml): remove it there"
        )


def _audit(
    engine: Engine, report: ErasureReport, actor: str, outcome: str, now: float, **extra: Any
) -> None:
    audit.record(
        engine,
        actor=actor,
        action="erase",
        target=f"{report.kind}:sha256:{report.digest}",
        outcome=outcome,
        detail={"kind": report.kind, "counts": report.counts(), **extra},
        now=now,
    )

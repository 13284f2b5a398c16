"""Erasure of an email address from the stores (SQLite and PostgreSQL): SES feedback
recipient lists, notifications, the outbox, inbox payloads and dead letters that mention it.
"""

from __future__ import annotations

import json

import orjson
import pytest
from sqlalchemy import Engine, insert, select

from nura.config.schema import IntegrationsConfig
from nura.core.stores import audit
from nura.core.stores import dead_letters as dl
from nura.core.stores import notifications as notes
from nura.core.stores.db import get_engine
from nura.core.stores.inbox import inbox
from nura.retention import InvalidSubject, erase

ANA = "Ana.Perez@Example.com"


def _inbox(engine: Engine, delivery: str, body: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(inbox).values(
                endpoint="github", delivery_id=delivery, event_type="push", status="done",
                received_at=1.0, body=body, content_type="application/json", headers="{}",
                attempts=0, next_attempt_at=1.0,
            )
        )  # fmt: skip


def seed(engine: Engine) -> None:
    notes.record_notification(
        engine, channel="email", severity="high", title="s3 down", status="sent",
        message_id="ses-1", response="sent to ana.perez@example.com", ts=10.0,
    )  # fmt: skip
    notes.record_notification(
        engine, channel="slack", severity="high", title="s3 down", status="sent", ts=10.0
    )
    notes.record_feedback(
        engine, sns_message_id="sns-1", ses_message_id="ses-1", kind="bounce",
        recipients=["oncall@example.com", "ana.perez@example.com"], now=11.0,
    )  # fmt: skip
    notes.record_feedback(
        engine, sns_message_id="sns-2", ses_message_id="ses-1", kind="complaint",
        recipients=["ana.perez@example.com"], now=12.0,
    )  # fmt: skip
    notes.enqueue(
        engine, dedupe_key="k1", channel="email", severity="high", title="access for Ana",
        body="granted", event=None, details={"who": "ana.perez@example.com"}, now=10.0,
        expires_at=99.0,
    )  # fmt: skip
    # a push whose commit author is Ana; JSON escapes must not hide the address
    commit = {"author": {"name": "Ana", "email": "ana.perez\\u0040example.com"}}
    _inbox(engine, "push-1", orjson.dumps({"commits": [commit]}).replace(b"\\\\u", b"\\u"))
    _inbox(engine, "push-2", orjson.dumps({"commits": [{"author": {"email": "bo@example.com"}}]}))
    _inbox(engine, "push-3", orjson.dumps({"email": "xana.perez@example.com"}))  # not her
    dl.enqueue(engine, "crm", [("m1", "contact", json.dumps({"email": ANA}))], lease_seconds=60)


def test_erase_email_everywhere_in_the_stores(store_url: str) -> None:
    engine = get_engine(store_url)
    cfg = IntegrationsConfig.model_validate(
        {"health_monitoring": {"notifications": {"email": {"recipients": [ANA]}}}}
    )
    seed(engine)

    report = erase(engine, cfg, email=ANA, actor="cli:dpo", now=50.0)

    assert report.stores == {
        "inbox_payloads": 1, "dead_letters": 1, "notification_outbox": 1, "notifications": 1,
        "email_feedback": 2,
    }  # fmt: skip
    assert not report.s3_objects and report.warnings == [
        "the address is in the configuration (integrations.yaml): remove it there"
    ]
    feedback = {r["sns_message_id"]: r["recipients"] for r in notes.feedback_for(engine, "ses-1")}
    assert feedback == {"sns-1": "oncall@example.com", "sns-2": None}  # bounces still counted
    sent = notes.notification_by_message_id(engine, "ses-1")
    assert sent is not None and sent["title"] == "[erased]" and sent["response"] is None
    assert notes.outbox_rows(engine) == []
    assert dl.get(engine, "m1", "crm") is None
    with engine.connect() as conn:
        left = dict(conn.execute(select(inbox.c.delivery_id, inbox.c.body)).all())
    assert left["push-1"] == b"" and left["push-2"] and left["push-3"]
    (row,) = audit.entries(engine, action="erase")
    assert "example.com" not in json.dumps(row).lower() and row["detail"]["kind"] == "email"

    assert not erase(engine, cfg, email=ANA, actor="cli:dpo").found


@pytest.mark.parametrize(
    "given",
    [{}, {"email": "not-an-address"}, {"confluence_page": "12a"}, {"git_path": "../etc/passwd"},
     {"email": ANA, "confluence_page": "1"}, {"git_path": "bad repo:a.md"}],
)  # fmt: skip
def test_bad_subjects_are_refused_before_anything_is_touched(given: dict[str, str]) -> None:
    engine = get_engine("sqlite://")
    with pytest.raises(InvalidSubject):
        erase(engine, IntegrationsConfig(), actor="cli:dpo", **given)
    assert audit.entries(engine) == []

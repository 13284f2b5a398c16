"""Property: whatever arrives, the receiver answers 2xx/4xx (never 5xx) and stores only
deliveries whose signature verified."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from nura.core.stores.db import get_engine
from nura.core.stores.inbox import status_counts
from nura.webhooks.app import create_app
from tests.webhooks.helpers import SECRET, config, hex_sig, secrets

PATHS = [
    "/webhooks/git",
    "/webhooks/partner",
    "/webhooks/std",
    "/webhooks/confluence",
    "/webhooks/off",
    "/webhooks/nope",
    "/webhooks/",
    "/webhooks/git/../partner",
]
CTYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "",
    "application/x-www-form-urlencoded",
    "application/cloudevents+json",
    "\x00\x01",
]
EVENTS = [
    "push",
    "git.push",
    "external.integration",
    "user.activity",
    "system.alert",
    "",
    "ping",
    "x" * 150,
]

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=10,
).map(lambda v: json.dumps(v).encode())
bodies = st.one_of(
    st.binary(max_size=3000),
    json_bodies,
    st.sampled_from([b'{"type": "system.alert"}', b'{"event_type": "user.activity"}']),
)


@pytest.fixture(scope="module")
def app_and_engine(tmp_path_factory):
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'inbox.db'}")
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    with TestClient(app) as client:
        yield client, engine


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(PATHS),
    ctype=st.sampled_from(CTYPES),
    body=bodies,
    event=st.sampled_from(EVENTS),
    sign=st.sampled_from(["good", "bad", "none", "garbage"]),
    sig_header=st.sampled_from(
        ["X-Hub-Signature-256", "X-Signature", "X-Hub-Signature", "webhook-signature"]
    ),
    ts_shift=st.sampled_from([0, -400, 400, None]),
    delivery=header_text,
    valid=st.booleans(),
    extra=st.dictionaries(
        st.sampled_from(
            ["X-Timestamp", "webhook-id", "webhook-timestamp", "Content-Length", "X-GitHub-Event"]
        ),
        header_text,
        max_size=2,
    ),
)
def test_no_5xx_and_nothing_stored_without_a_valid_signature(
    app_and_engine, path, ctype, body, event, sign, sig_header, ts_shift, delivery, valid, extra
):
    client, engine = app_and_engine
    if valid:  # a correct GitHub delivery, still under the random `extra` headers below
        path, ctype, sign, sig_header, event = (
            "/webhooks/git",
            "application/json",
            "good",
            "X-Hub-Signature-256",
            "push",
        )
        body = json.dumps({"ref": "refs/heads/main", "n": delivery}).encode()
    headers = {
        "Content-Type": ctype,
        "X-GitHub-Event": event,
        "X-Event-Type": event,
        "X-GitHub-Delivery": delivery,
        "X-Delivery-Id": delivery,
    }
    if ts_shift is not None:
        headers["X-Timestamp"] = str(int(time.time()) + ts_shift)
    signature = {
        "good": hex_sig(body, SECRET),
        "bad": hex_sig(body, "wrong"),
        "garbage": delivery,
    }.get(sign)
    if signature is not None:
        headers[sig_header] = signature
    headers.update(extra)
    before = sum(status_counts(engine).values())
    try:
        r = client.post(path, content=body, headers=headers)
    except Exception as exc:  # a header the HTTP client itself refuses is not our answer
        if "Content-Length" in extra or "\x00" in ctype:
            return
        raise exc
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    after = sum(status_counts(engine).values())
    if after > before:
        assert sign == "good" and sig_header != "webhook-signature", (path, headers)
        assert r.status_code == 202


def test_the_property_run_reached_the_inbox(app_and_engine):
    """Guard against a vacuous property: some generated deliveries must have been stored."""
    _, engine = app_and_engine
    assert sum(status_counts(engine).values()) > 0

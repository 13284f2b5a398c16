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
from nura.platform.receiver_app import create_app
from tests.webhooks.helpers import SECRET, config, generic_sig, hex_sig, secrets

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

# Headers as the bytes a client can put on the wire: any byte, not printable ASCII only
# (a non-ASCII byte in a signature header once gave 503 and a traceback).
header_bytes = st.binary(max_size=80)
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
SIG_HEADERS = ["x-hub-signature-256", "x-signature", "x-hub-signature", "webhook-signature"]
# The signature header each path's scheme reads ("auto" below), so that most examples
# reach the signature check rather than stopping at a header nobody reads.
OWN_SIG = {
    "/webhooks/git": "x-hub-signature-256",
    "/webhooks/partner": "x-signature",
    "/webhooks/confluence": "x-hub-signature",
    "/webhooks/std": "webhook-signature",
}


@pytest.fixture(scope="module")
def app_and_engine(tmp_path_factory):
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'inbox.db'}")
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    with TestClient(app) as client:
        yield client, engine


def _good_signature(path: str, body: bytes, delivery: bytes, ts: bytes) -> bytes:
    """What a sender holding the secret sends on `path` (None-free: always some bytes)."""
    if path == "/webhooks/partner":
        return generic_sig(body, delivery.decode("latin-1"), ts.decode("latin-1")).encode()
    return hex_sig(body, SECRET).encode()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(PATHS),
    ctype=st.one_of(st.just("application/json"), st.sampled_from(CTYPES)),
    body=bodies,
    event=st.one_of(st.sampled_from(EVENTS).map(str.encode), header_bytes),
    sign=st.sampled_from(["good", "bad", "none", "garbage", "mangled"]),
    sig_header=st.one_of(st.just("auto"), st.sampled_from(SIG_HEADERS)),
    mangle=st.tuples(st.integers(0, 200), st.integers(0, 255)),
    ts=st.one_of(
        st.sampled_from([0, -400, 400]).map(lambda d: str(int(time.time()) + d).encode()),
        header_bytes,
        st.none(),
    ),
    delivery=header_bytes,
    garbage=header_bytes,
    valid=st.booleans(),
    extra=st.dictionaries(
        st.sampled_from(
            [b"x-timestamp", b"webhook-id", b"webhook-timestamp", b"x-github-event", b"x-other"]
        ),
        header_bytes,
        max_size=2,
    ),
)
def test_no_5xx_and_nothing_stored_without_a_valid_signature(
    app_and_engine,
    path,
    ctype,
    body,
    event,
    sign,
    sig_header,
    mangle,
    ts,
    delivery,
    garbage,
    valid,
    extra,
):
    client, engine = app_and_engine
    if valid:  # a correct GitHub delivery, still under the random `extra` headers below
        path, ctype, sign, sig_header, event = (
            "/webhooks/git",
            "application/json",
            "good",
            "x-hub-signature-256",
            b"push",
        )
        body = json.dumps({"ref": "refs/heads/main", "n": delivery.hex()}).encode()
    headers: dict[bytes, bytes] = {
        b"content-type": ctype.encode("latin-1"),
        b"x-github-event": event,
        b"x-event-type": event,
        b"x-github-delivery": delivery,
        b"x-delivery-id": delivery,
    }
    if ts is not None:
        headers[b"x-timestamp"] = ts
    headers.update(extra)
    if sig_header == "auto":
        sig_header = OWN_SIG.get(path, "x-signature")
    good = _good_signature(path, body, headers[b"x-delivery-id"], headers.get(b"x-timestamp", b""))
    at, byte = mangle[0] % len(good), mangle[1]
    signature = {
        "good": good,
        "bad": hex_sig(body, "wrong").encode(),
        "garbage": garbage,
        # one byte of a good signature replaced by any byte (non-ASCII: once a 503)
        "mangled": good[:at] + bytes([byte if byte != good[at] else 0x80]) + good[at + 1 :],
    }.get(sign)
    if signature is not None:
        headers[sig_header.encode()] = signature
    before = sum(status_counts(engine).values())
    try:
        r = client.post(path, content=body, headers=list(headers.items()))
    except Exception as exc:  # a header the HTTP client itself refuses is not our answer
        if "\x00" in ctype:
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

"""Exactly once under faults: a partner restart, one id for two targets, a poison target,
a batch longer than its lease with a concurrent redrive, and the operator's recovery.

The partner is the sink (it verifies every request with the `standardwebhooks` library and
counts an id it accepted before as a duplicate). The breaker's clock is a test clock that
the redrive passes share (`now=`), so cool-downs pass without waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from deployments.sandbox.webhook_sink import WebhookSink
from tests.outgoing.conftest import outgoing_config

pytestmark = pytest.mark.integration

COOLDOWN = 0.5  # api_gateway.circuit_breaker_cooldown_seconds in outgoing_config


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def _events(n: int, prefix: str):  # type: ignore[no-untyped-def]
    from nura.webhooks.delivery import OutgoingEvent

    return [OutgoingEvent(type="git.push", data={"n": i}, id=f"{prefix}_{i}") for i in range(n)]


def _engine():  # type: ignore[no-untyped-def]
    from nura import store_url
    from nura.core.stores.db import get_engine

    return get_engine(store_url())


def _stats() -> dict[str, Any]:
    from nura.core.stores import dead_letters as dl

    return dl.dead_letter_stats(_engine())


def _accepted(sink: WebhookSink, endpoint: str) -> list[str]:
    return [a["id"] for a in sink.received()["accepted"] if a["endpoint"] == endpoint]


def _wait_for(predicate, what: str, seconds: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds  # a safety net for a hung test, not a measurement
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("base_minutes", [5, 1e-6], ids=["default-base", "shortest-base"])
def test_a_partner_restart_exhausts_nothing_and_delivers_each_event_once(
    prefect_server, sink, nura_config, base_minutes
) -> None:
    """A partner that drops every request for a while (its restart) opens the target's
    breaker; entries it refuses wait for its probes without using attempts or redrives;
    the redrive passes during the outage send one probe each; when the partner is back,
    every event arrives exactly once and nothing is exhausted."""
    from nura.core.breaker import BreakerState
    from nura.core.runtime import get_call_layer
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import redrive_due, submit_events

    events = 200
    nura_config(
        outgoing_config(
            sink.url,
            retry_attempts=1,
            concurrency=8,
            dead_letters={"redrive_base_minutes": base_minutes, "max_redrives": 5},
        )
    )
    clock = Clock()
    layer = get_call_layer()
    layer.breakers.clock = clock
    results: list[Any] = []
    sender = threading.Thread(
        target=lambda: results.append(submit_events("partner", _events(events, "rs")))
    )
    sender.start()
    _wait_for(lambda: len(_accepted(sink, "partner")) >= 40, "the first deliveries")
    sink.control(down=True)  # restarting: every request is dropped unanswered
    sender.join(120)
    assert not sender.is_alive()
    first = results[0]
    assert layer.breakers.snapshot("webhooks.partner", fresh=True).state is BreakerState.OPEN
    assert first.delivered + first.pending + first.deferred == events
    assert first.exhausted == 0 and first.deferred > 0
    refused = [dl.get(_engine(), o.id, "partner") for o in first.outcomes if o.status == "deferred"]
    assert all(r is not None and r["redrives"] == 0 for r in refused)

    # Redrive passes while the partner is still down: one probe each, nothing exhausted.
    sent_before = sink.received()["attempts"]
    passes = 8
    for _ in range(passes):
        summary = redrive_due(now=clock.advance(COOLDOWN + 0.01))
        assert summary.exhausted == 0
    assert sink.received()["attempts"] - sent_before == passes  # only the probes went out
    assert _stats()["exhausted"] == 0

    sink.control(down=False)  # the partner is back
    for _ in range(20):
        redrive_due(now=clock.advance(max(COOLDOWN, base_minutes * 60 * 2**5) + 1))
        stats = _stats()
        if stats["count"] == stats["in_flight"] == 0:
            break
    stats = _stats()
    assert stats["exhausted"] == 0 and stats["count"] == 0 and stats["in_flight"] == 0
    got = sink.received()
    ids = _accepted(sink, "partner")
    assert sorted(ids) == sorted(f"rs_{i}" for i in range(events))
    assert got["duplicates"] == 0 and got["rejected"] == []
    assert stats["delivered"] == events


def test_one_event_id_to_two_targets_reaches_both(prefect_server, sink, nura_config) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import submit_events

    nura_config(outgoing_config(sink.url))
    shared = _events(3, "shared")
    assert submit_events("sandbox", shared).delivered == 3
    second = submit_events("partner", shared)
    assert second.delivered == 3 and second.duplicate == 0
    assert sorted(_accepted(sink, "sandbox")) == sorted(_accepted(sink, "partner"))
    assert len(_accepted(sink, "partner")) == 3
    # the same id again to the same target is the duplicate, per target
    assert submit_events("partner", shared).duplicate == 3
    for target in ("sandbox", "partner"):
        row = dl.get(_engine(), "shared_0", target)
        assert row is not None and row["status"] == "delivered"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:99999/x", "port 99999 is outside 1-65535"),
        ("http://0177.0.0.1:8080/", "not a valid URL"),
        ("http://2130706433/", "numeric host"),
        ("http://user:pw@127.0.0.1/", "credentials in the URL"),
    ],
)
def test_an_undeliverable_target_url_fails_at_config_load(tmp_path, url, reason) -> None:
    import yaml

    from nura.config import ConfigError, load_config

    cfg = outgoing_config("http://127.0.0.1:9")
    cfg["webhooks"]["outgoing"]["targets"]["partner"]["url"] = url
    path = tmp_path / "integrations.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert reason in str(err.value) and "partner" in str(err.value)
    assert "pw@" not in str(err.value)


def test_a_poison_target_fails_alone_and_never_stops_the_batch(
    prefect_server, sink, nura_config
) -> None:
    """A target URL that an older config accepted and delivery cannot use: its entries are
    recorded exhausted with the error (none left in flight), and a good target in the same
    pass delivers (before: a ValueError/InvalidURL out of the pass, entries in flight)."""
    from nura import get_config
    from nura.config.sections.outgoing import OutgoingTarget
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import redrive_due, submit_events

    nura_config(outgoing_config(sink.url, retry_attempts=0))
    sink.control(fail_next=6, fail_status=503)
    assert submit_events("sandbox", _events(3, "good")).pending == 3
    assert submit_events("partner", _events(3, "bad")).pending == 3
    targets = get_config().webhooks.outgoing.targets
    for bad_url in ("http://127.0.0.1:99999/x", "http://0177.0.0.1:1/"):
        # what validation now refuses, as a store written under an older config holds it
        targets["partner"] = OutgoingTarget.model_construct(
            **{**targets["partner"].__dict__, "url": bad_url}
        )
        summary = redrive_due(now=time.time() + 3600)
        assert summary.exhausted == 3 and summary.targets["partner"].exhausted == 3
        for i in range(3):
            row = dl.get(_engine(), f"bad_{i}", "partner")
            assert row is not None and row["status"] == "exhausted"
            assert row["last_error"] and (
                "Error" in row["last_error"] or "URL" in row["last_error"]
            )
        dl.requeue(_engine(), target="partner")
    assert sorted(_accepted(sink, "sandbox")) == [f"good_{i}" for i in range(3)]
    assert _stats()["in_flight"] == 0


def test_a_batch_longer_than_its_lease_is_sent_once(prefect_server, sink, nura_config) -> None:
    """A slow partner and a short lease: the batch takes several leases, a redrive runs
    beside it the whole time; the heartbeat keeps the sender's leases, nothing is sent
    twice, and every entry is recorded delivered."""
    from nura.webhooks.delivery import redrive_due, submit_events

    events = 24
    nura_config(
        outgoing_config(
            sink.url,
            concurrency=2,
            dead_letters={"lease_seconds": 0.6, "redrive_base_minutes": 5},
        )
    )
    sink.control(latency_ms=150)  # 24 x 150 ms / 2 = 1.8 s: three leases
    stop = threading.Event()
    redrives: list[Any] = []

    def redrive_loop() -> None:
        while not stop.is_set():
            redrives.append(redrive_due())
            time.sleep(0.05)

    other = threading.Thread(target=redrive_loop)
    other.start()
    try:
        summary = submit_events("partner", _events(events, "slow"))
    finally:
        stop.set()
        other.join(60)
    got = sink.received()
    assert got["duplicates"] == 0 and got["attempts"] == events
    assert summary.delivered + summary.taken == events
    assert sum(r.delivered for r in redrives) == summary.taken
    stats = _stats()
    assert stats["delivered"] == events and stats["in_flight"] == stats["count"] == 0


def test_operator_resets_a_target_breaker_and_retries_in_one_go(
    prefect_server, sink, nura_config
) -> None:
    """`nura breakers` lists the target's breaker, `reset webhooks.<target>` closes it, and
    one `nura deliveries retry --target` delivers everything; `--all-exhausted` replays only
    exhausted entries and its exit code is about them."""
    from nura.cli.main import app
    from nura.core.breaker import BreakerState
    from nura.core.runtime import get_call_layer
    from nura.webhooks.delivery import submit_events

    cfg = outgoing_config(sink.url, retry_attempts=0, circuit_breaker_threshold=3, concurrency=1)
    cfg["api_gateway"]["circuit_breaker_cooldown_seconds"] = 300
    nura_config(cfg)
    runner = CliRunner()
    sink.control(down=True)
    first = submit_events("partner", _events(10, "op"))
    assert first.pending == 3 and first.deferred == 7 and first.exhausted == 0
    layer = get_call_layer()
    assert layer.breakers.snapshot("webhooks.partner", fresh=True).state is BreakerState.OPEN
    sink.control(down=False)

    listed = runner.invoke(app, ["breakers"])
    assert listed.exit_code == 0 and "webhooks.partner" in listed.output
    blocked = runner.invoke(app, ["deliveries", "retry", "--target", "partner"])
    assert blocked.exit_code == 1 and "breakers reset webhooks.partner" in blocked.output
    assert _accepted(sink, "partner") == []
    reset = runner.invoke(app, ["breakers", "reset", "webhooks.partner"])
    assert reset.exit_code == 0, reset.output
    unknown = runner.invoke(app, ["breakers", "reset", "webhooks.nope"])
    assert unknown.exit_code == 2 and "unknown service" in unknown.output
    retried = runner.invoke(app, ["deliveries", "retry", "--target", "partner"])
    assert retried.exit_code == 0, retried.output
    assert "delivered 10" in retried.output
    assert sorted(_accepted(sink, "partner")) == sorted(f"op_{i}" for i in range(10))

    # --all-exhausted: one exhausted entry (a 400) beside a pending one (a 503)
    sink.control(fail_next=1, fail_status=400)
    assert submit_events("sandbox", _events(1, "ex")).exhausted == 1
    sink.control(fail_next=1, fail_status=503)
    assert submit_events("sandbox", _events(1, "pe")).pending == 1
    sink.control(fail_next=5, fail_status=503)  # the pending one would fail again
    replay = runner.invoke(app, ["deliveries", "retry", "--all-exhausted"])
    sink.control(fail_next=0)
    assert "requeued 1" in replay.output, replay.output
    assert replay.exit_code == 1  # the exhausted entry met the scripted 503
    replay = runner.invoke(app, ["deliveries", "retry", "--all-exhausted"])
    assert "nothing to retry" in replay.output  # it is pending now, not exhausted
    replay = runner.invoke(app, ["deliveries", "retry", "ex_0", "pe_0"])
    assert replay.exit_code == 0 and "delivered 2" in replay.output, replay.output

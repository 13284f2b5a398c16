"""The watch state when watch runs overlap (the scheduled poll and webhook page reads run
at once): S3's conditional write against moto over HTTP, and two real `run_watch` calls
whose writes race, forced into the losing order by the Confluence test server's latency."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PAGE_READ = "GET /wiki/api/v2/pages/{id}"


@pytest.fixture
def bucket(sync_env: Any) -> Any:
    from nura.kb.s3 import ensure_bucket

    cfg = sync_env()
    ensure_bucket()
    return cfg


def test_a_stale_etag_is_refused_and_the_first_write_needs_no_object(bucket: Any) -> None:
    from nura.kb.s3 import get_json, get_json_tagged, put_json_if

    key = "_manifests/confluence/_test_state.json"
    assert get_json_tagged(key) == (None, None)
    assert put_json_if(key, {"n": 1}, None) is True
    assert put_json_if(key, {"n": 99}, None) is False  # another writer created it first
    data, etag = get_json_tagged(key)
    assert data == {"n": 1} and etag
    assert put_json_if(key, {"n": 2}, etag) is True
    assert put_json_if(key, {"n": 3}, etag) is False  # stale: the object is {"n": 2} now
    assert get_json(key) == {"n": 2}


def test_two_overlapping_watch_runs_both_keep_their_record(confluence: Any, bucket: Any) -> None:
    """Run A reads the state, then waits on Confluence (3 s); run B reads the same state,
    reads its page and saves. A's save is then refused; A reads B's state, reads its page
    again and saves both. Without the conditional write A would overwrite B's record."""
    from nura.confluence.watch import load_state, run_watch

    confluence.generate(["TECH"], 3, body_bytes=200)
    a, b = sorted((p["id"] for p in confluence.space_pages("TECH")), key=int)[:2]
    confluence.edit(a)
    confluence.edit(b)
    confluence.stats.clear()
    confluence.set_faults(latency_ms=3000)
    results: dict[str, Any] = {}

    def run_a() -> None:
        try:
            results["a"] = run_watch(page_id=a)
        except BaseException as exc:  # reported by the assertion below
            results["a"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run_a,))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while confluence.stats[PAGE_READ] < 1:  # A has read the state and waits on its page
            assert time.monotonic() < deadline, "run A never read its page"
            time.sleep(0.02)
        confluence.set_faults(latency_ms=0)
        results["b"] = run_watch(page_id=b)
    finally:
        thread.join(60)
    assert not thread.is_alive()
    assert not isinstance(results["a"], BaseException), results["a"]
    assert results["a"]["updated"] == 1 and results["b"]["updated"] == 1
    assert confluence.stats[PAGE_READ] == 3  # A read its page twice: its first save lost
    state, _ = load_state()
    assert {a: 2, b: 2} == {p: int(v[0]) for p, v in state.seen.items()}

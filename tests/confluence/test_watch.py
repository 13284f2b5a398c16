"""`nura.confluence.watch.poll` against the Confluence test server over real HTTP.

The server's clock and the poll's `now` are the same injected clock, so minute boundaries
are chosen, not waited for. Calls are counted by the server (`stats`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nura.confluence.watch import PageChange, WatchState, changes_query, dedupe_key, poll

OVERLAP = timedelta(minutes=2)
EVERY_POLL = timedelta(0)
T0 = datetime(2026, 12, 7, 14, 0, 10, tzinfo=UTC)
SEARCH = "GET /wiki/rest/api/content/search"
WATCHED = ["TECH", "DOCS"]
LISTING = "GET /wiki/api/v2/pages"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def site(confluence):
    clock = Clock(T0)
    confluence.clock = clock
    confluence.generate(["TECH", "DOCS", "ARCH"], 4, body_bytes=200)
    return confluence, clock


def calls(server) -> int:
    return server.stats["requests"]


def run(client, state, now, trash_every=timedelta(minutes=5)):
    return poll(WATCHED, state, now, client=client, overlap=OVERLAP, trash_every=trash_every)


def ids(server, space: str) -> list[str]:
    return sorted((p["id"] for p in server.space_pages(space)), key=int)


def test_idle_polls_make_one_call_each(site, make_client) -> None:
    server, clock = site
    client = make_client(server)
    state = WatchState()
    first = run(client, state, clock.advance(60))  # the trash baseline is due too
    assert first.changes == [] and first.trash_checked
    server.stats.clear()
    for _ in range(4):  # the next trash check is due at the fifth minute
        result = run(client, state, clock.advance(60))
        assert result.changes == [] and result.calls == 1 and not result.trash_checked
        assert not result.state_changed  # nothing to write back either
    assert server.stats[SEARCH] == 4 and calls(server) == 4


def test_an_edit_is_one_updated_event_and_the_overlap_never_repeats_it(site, make_client) -> None:
    server, clock = site
    client = make_client(server)
    state = WatchState()
    run(client, state, clock.advance(60))
    page = ids(server, "TECH")[1]
    clock.advance(5)
    server.edit(page)
    # the same minute, the next minute, inside and just past the overlap: one event only
    seen: list[PageChange] = []
    for step in (1, 30, 60, 60, 60):
        seen += run(client, state, clock.advance(step)).changes
    assert [(c.kind, c.page_id, c.version, c.space) for c in seen] == [("updated", page, 2, "TECH")]
    assert seen[0].key == dedupe_key(page, 2, "updated") == f"confluence-page:{page}:2"
    server.edit(page)  # a second edit in the same minute as the poll: version 3 is new
    again = run(client, state, clock.advance(1)).changes
    assert [(c.page_id, c.version) for c in again] == [(page, 3)]


def test_two_edits_within_one_minute_both_arrive(site, make_client) -> None:
    """Minute resolution: the poll at :40 saw A; B (same minute, indexed later) still comes."""
    server, clock = site
    client = make_client(server)
    state = WatchState()
    run(client, state, clock.advance(60))
    a, b = ids(server, "TECH")[0], ids(server, "DOCS")[0]
    server.edit(a)
    assert [c.page_id for c in run(client, state, clock.advance(20)).changes] == [a]
    server.edit(b)
    later = run(client, state, clock.advance(20)).changes
    assert [(c.page_id, c.space) for c in later] == [(b, "DOCS")]


def test_unwatched_space_is_not_reported(site, make_client) -> None:
    server, clock = site
    client = make_client(server)
    state = WatchState()
    run(client, state, clock.advance(60))
    server.edit(ids(server, "ARCH")[0])
    assert run(client, state, clock.advance(60)).changes == []


def test_trash_is_one_removed_event_checked_every_n_seconds(site, make_client) -> None:
    server, clock = site
    client = make_client(server)
    state = WatchState()
    old = ids(server, "DOCS")[0]
    server.trash(old)  # before the watch started: the baseline, not an event
    assert run(client, state, clock.advance(60), EVERY_POLL).changes == []
    page = ids(server, "TECH")[2]
    server.trash(page)
    server.stats.clear()
    result = run(client, state, clock.advance(60), timedelta(minutes=5))
    assert result.changes == [] and not result.trash_checked and result.calls == 1
    removed = []
    for _ in range(5):  # due once within five minutes, then quiet again
        removed += run(client, state, clock.advance(60), timedelta(minutes=5)).changes
    assert [(c.kind, c.page_id, c.space, c.version) for c in removed] == [
        ("removed", page, "TECH", 1)
    ]
    assert server.stats[LISTING] == 1  # one listing covers both spaces
    assert removed[0].key == f"confluence-page:{page}:1:removed"


def test_restored_page_is_updated_again_and_can_be_trashed_again(site, make_client) -> None:
    server, clock = site
    client = make_client(server)
    state = WatchState()
    run(client, state, clock.advance(60), EVERY_POLL)
    page = ids(server, "TECH")[0]
    server.trash(page)
    assert [c.kind for c in run(client, state, clock.advance(60), EVERY_POLL).changes] == [
        "removed"
    ]
    server.pages[page]["status"] = "current"
    server.edit(page)  # restored and edited: version 2
    kinds = [(c.kind, c.version) for c in run(client, state, clock.advance(60), EVERY_POLL).changes]
    assert kinds == [("updated", 2)]
    server.trash(page)
    kinds = [(c.kind, c.version) for c in run(client, state, clock.advance(60), EVERY_POLL).changes]
    assert kinds == [("removed", 2)]


def test_state_survives_json(site, make_client) -> None:
    server, clock = site
    client = make_client(server)
    state = WatchState()
    run(client, state, clock.advance(60), EVERY_POLL)
    page = ids(server, "TECH")[0]
    server.edit(page)
    assert run(client, state, clock.advance(30)).changes
    restored = WatchState.from_json(state.to_json())
    assert run(client, restored, clock.advance(30)).changes == []
    assert WatchState.from_json({"schema": 99}) == WatchState()


def test_query_is_one_cql_over_all_spaces_with_minute_dates() -> None:
    cql = changes_query(["TECH", 'A"B'], datetime(2026, 12, 7, 14, 3, 59, tzinfo=UTC))
    assert cql == (
        '((space = "TECH" OR space = "A\\"B")) AND type = "page" '
        'AND lastmodified >= "2026-12-07 14:03" ORDER BY lastmodified ASC'
    )


def test_a_webhook_hint_and_a_poll_report_one_version_once(site, make_client) -> None:
    """Both orders: the webhook's page read and the poll's search agree on the key."""
    from nura.confluence.watch import hint

    server, clock = site
    client = make_client(server)
    state = WatchState()
    run(client, state, clock.advance(60), EVERY_POLL)
    a, b = ids(server, "TECH")[:2]
    server.edit(a)
    first = hint(a, state, clock.advance(1), spaces=WATCHED, client=client)
    assert [(c.kind, c.key, c.space) for c in first.changes] == [
        ("updated", f"confluence-page:{a}:2", "TECH")
    ]
    assert first.calls == 1
    assert run(client, state, clock.advance(30)).changes == []  # the poll: already reported
    server.edit(b)
    polled = run(client, state, clock.advance(30)).changes
    assert [c.key for c in polled] == [f"confluence-page:{b}:2"]
    assert hint(b, state, clock.advance(1), spaces=WATCHED, client=client).changes == []
    server.trash(b)
    gone = hint(b, state, clock.advance(1), spaces=WATCHED, client=client).changes
    assert [(c.kind, c.key) for c in gone] == [("removed", f"confluence-page:{b}:2:removed")]
    assert run(client, state, clock.advance(60), EVERY_POLL).changes == []  # trash: known


def test_a_webhook_for_a_space_not_watched_makes_no_event(site, make_client) -> None:
    """A site sends the events of every space: a page of ARCH (not watched) is read, and
    nothing is reported; the watched spaces' ids are looked up once, then kept."""
    from nura.confluence.watch import hint

    server, clock = site
    client = make_client(server)
    state = WatchState()  # no poll yet: the space ids are not known
    other, ours = ids(server, "ARCH")[0], ids(server, "DOCS")[0]
    server.edit(other)
    server.edit(ours)
    server.stats.clear()
    assert hint(other, state, clock.advance(1), spaces=WATCHED, client=client).changes == []
    assert server.stats["requests"] == 2  # the watched spaces' ids, then the page
    (change,) = hint(ours, state, clock.advance(1), spaces=WATCHED, client=client).changes
    assert (change.kind, change.space, change.version) == ("updated", "DOCS", 2)
    assert server.stats["requests"] == 3  # the ids were kept: the page only
    server.trash(other)
    assert hint(other, state, clock.advance(1), spaces=WATCHED, client=client).changes == []

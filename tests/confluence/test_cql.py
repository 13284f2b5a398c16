"""CQL is built only from escaped values: a hostile title cannot change the query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from deployments.sandbox.confluence_cql import compile_cql, tokenize
from nura.confluence.client import cql_and, cql_clause, cql_datetime, cql_string

HOSTILE = ['x" OR space = "DOCS', 'a\\" OR type = page OR title ~ "', "back\\slash\\", '"']


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_value_is_one_token(value: str) -> None:
    tokens = tokenize(cql_clause("title", "=", value))
    assert [t.kind for t in tokens] == ["word", "op", "str"]
    assert tokens[2].value == value


def test_cql_string_escapes_backslash_before_quote() -> None:
    assert cql_string('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        cql_string("line\nbreak")


def test_fields_and_operators_are_whitelisted() -> None:
    with pytest.raises(ValueError):
        cql_clause("space = TECH OR title", "=", "x")
    with pytest.raises(ValueError):
        cql_clause("title", "= x OR title =", "x")


def test_datetime_is_utc_minutes_and_must_be_aware() -> None:
    when = datetime(2026, 1, 2, 3, 4, 59, tzinfo=timezone(timedelta(hours=2)))
    assert cql_datetime(when) == "2026-01-02 01:04"
    with pytest.raises(ValueError):
        cql_datetime(datetime(2026, 1, 2))  # noqa: DTZ001 - naive on purpose


def test_and_parenthesises_or_groups() -> None:
    query = cql_and(cql_clause("space", "=", "A"), "(type = page OR type = blogpost)")
    predicate, _ = compile_cql(query)
    assert predicate({"space_key": "A", "type": "page"})
    assert not predicate({"space_key": "B", "type": "page"})


@pytest.mark.parametrize("title", HOSTILE)
def test_search_by_hostile_title_finds_only_that_page(confluence, make_client, title) -> None:
    confluence.generate(["TECH", "DOCS"], 5, body_bytes=500)
    target = confluence.add_page("TECH", title, "<p>x</p>")
    client = make_client(confluence)
    hits = client.find_page("TECH", title)
    assert hits is not None and hits["id"] == target["id"]
    query = cql_and(cql_clause("space", "=", "TECH"), cql_clause("title", "~", title))
    assert [h["id"] for h in client.search(query)] == [target["id"]]


def test_lastmodified_filter(confluence, make_client) -> None:
    confluence.generate(["TECH"], 4, body_bytes=500, age_days=3)
    page = sorted(confluence.pages)[1]
    confluence.edit(page)
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert [p["id"] for p in make_client(confluence).changed_since("TECH", since)] == [page]

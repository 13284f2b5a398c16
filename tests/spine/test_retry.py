"""Retry decisions: which statuses retry, Retry-After parsing, backoff bounds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from nura.core.retry import backoff_delay, is_retryable_status, parse_retry_after, retry_delay


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422, 301])
def test_client_errors_never_retry(status: int) -> None:
    assert not is_retryable_status(status)


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30.0)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5e3x", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_huge_retry_after_is_capped_not_overflowing() -> None:
    huge = parse_retry_after("9223372036854775807")
    assert huge is not None and huge > 1e9
    assert (
        retry_delay(0, base=0.5, cap=30, retry_after=huge, retry_after_cap=60, rng=random.Random(1))
        == 60
    )


def test_backoff_full_jitter_bounds() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        samples = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # full jitter spans the whole range
    assert backoff_delay(10_000, 0.5, 30.0, rng) <= 30.0  # no overflow on absurd attempts


def test_retry_after_wins_over_backoff() -> None:
    assert (
        retry_delay(5, base=0.5, cap=30, retry_after=2.0, retry_after_cap=60, rng=random.Random(1))
        == 2.0
    )


@pytest.mark.parametrize(
    "value",
    [
        "²",  # superscript two: str.isdigit() says yes, int() says no
        "١٢",  # Arabic-Indic digits
        "１２",  # fullwidth digits
        "7\u00b2",
        "\x00",
        "\ufffd",
        "Mon, 29 Nov 2026 12:00:00 GMT\u00b2",
        "Mon, 29 Nov 99999999999 12:00:00 GMT",
        "Sun, 31 Feb 2026 25:61:61 GMT",
        "1" * 5000,  # past int()'s 4300-digit limit
    ],
)
def test_any_retry_after_value_is_read_without_raising(value: str) -> None:
    result = parse_retry_after(value)
    assert result is None or result >= 0


def test_long_delta_seconds_with_leading_zeros_is_its_value() -> None:
    assert parse_retry_after("0" * 40 + "7") == 7.0
    assert parse_retry_after(" 12 ") == 12.0

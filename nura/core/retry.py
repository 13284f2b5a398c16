"""Pure retry decisions: which outcomes retry, how long to wait, how to read Retry-After."""

from __future__ import annotations

import logging
import math
import random
import re
import threading
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Seed defect 3: only these statuses can succeed on a second try.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)
# No server means a wait of more than a day between two attempts of one call: a larger
# Retry-After (Confluence has sent 9223372036854775807) is a server bug, and waiting even
# the capped value on every call turned an 11 s sync into 305 s. It counts as absent.
ABSURD_RETRY_AFTER_SECONDS = 86_400.0
# 429s are the service pacing us, not failing: they have their own retry budget (per
# call, within its deadline), so a few in a row on a throttling site do not fail a call
# that the service's `retry_attempts` (meant for failures) would give up on.
RATE_LIMITED_RETRIES = 10

logger = logging.getLogger("nura.calls")
_absurd_seen: set[str] = set()
_absurd_lock = threading.Lock()


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date).

    Returns None when absent or unreadable, whatever the value: it comes from the network.
    Only ASCII digits are delta-seconds (`"²".isdigit()` is true, `int("²")` raises).
    Never overflows: Confluence has sent 9223372036854775807, which is returned as a
    (huge) float for the caller to cap.
    """
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        digits = value.lstrip("0") or "0"  # int() refuses over 4300 digits: count first
        return float(10**12) if len(digits) > 13 else float(min(int(digits), 10**12))
    if not value.isascii():
        return None
    try:
        when = parsedate_to_datetime(value)
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = (when - (now or datetime.now(UTC))).total_seconds()
    except Exception:  # any malformed date: the header is advice, never a failure
        return None
    return max(0.0, delta)


def sane_retry_after(seconds: float | None, service: str = "") -> float | None:
    """`seconds` from a Retry-After, or None when it is absurd (over a day): the caller
    then backs off as if there were none. Logged once per service and process."""
    if seconds is None or seconds <= ABSURD_RETRY_AFTER_SECONDS:
        return seconds
    with _absurd_lock:
        first = service not in _absurd_seen
        _absurd_seen.add(service)
    if first:
        logger.warning(
            "%s sent a Retry-After of %.0f s, which no server means: ignored, normal "
            "backoff instead (logged once)",
            service or "a service",
            seconds,
        )
    return None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt)).

    `attempt` counts from 0 for the first retry. Full jitter spreads retrying clients
    evenly (AWS Architecture Blog, "Exponential Backoff And Jitter"). `rng` is the caller's
    own generator: the global `random` state is never touched (tests seed their own).
    """
    ceiling = min(cap, base * math.pow(2, min(attempt, 62)))
    return rng.uniform(0, ceiling)


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None,
    retry_after_cap: float,
    rng: random.Random,
) -> float:
    """The wait before the next attempt: the server's Retry-After (capped) wins over backoff."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), retry_after_cap)
    return backoff_delay(attempt, base, cap, rng)

"""A rate limit whose occupancy is above its limit (left by a bigger spec) still drains.

Prefect applies slot decay only on granted increments; a denied one resets the decay clock
without decaying. A leaser that retried a saturated limit more often than it drains kept
it saturated forever (seen in CI: a test after a high-rate test hung in `acquire`).
"""

from __future__ import annotations

import pytest

from nura.core.ratelimit import LimitSpec, PrefectSlotLeaser, _PrefectApi, ensure_limit

pytestmark = pytest.mark.integration


def test_occupancy_left_by_a_bigger_spec_does_not_block_forever(prefect_server) -> None:
    api = _PrefectApi()
    big = LimitSpec("nura-rate-drain-test", 600_000)
    ensure_limit(api, big)
    # A high-rate process leased most of the big limit, then the config shrank to 60/min.
    over = big.limit - 100
    api.request("PATCH", f"/v2/concurrency_limits/{big.name}", json={"active_slots": over})
    small = LimitSpec(big.name, 60)
    leaser = PrefectSlotLeaser(lambda: api, max_wait_step=0.2)
    # ~2,000 s of decay at the small rate if the over-occupancy were kept; a 20 s timeout
    # raises RateLimited in that case instead of hanging the suite.
    leaser.acquire("drain-test", small.per_minute, timeout=20)
    state = api.request("GET", f"/v2/concurrency_limits/{big.name}").json()
    assert state["limit"] == small.limit
    assert state["active_slots"] <= small.limit


def test_ensure_limit_clamps_occupancy_above_a_shrunk_limit(prefect_server) -> None:
    api = _PrefectApi()
    big = LimitSpec("nura-rate-clamp-test", 600_000)
    ensure_limit(api, big)
    api.request("PATCH", f"/v2/concurrency_limits/{big.name}", json={"active_slots": 5_000})
    small = LimitSpec(big.name, 120)
    ensure_limit(api, small)
    state = api.request("GET", f"/v2/concurrency_limits/{big.name}").json()
    assert state["limit"] == small.limit
    assert state["active_slots"] <= small.limit  # not the 5,000 written under the big spec

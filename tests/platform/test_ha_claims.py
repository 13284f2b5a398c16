"""Redis database pairs for throwaway HA stacks: two stacks on one Redis (two CI runs at
once) never get the same pair, so neither reads nor flushes the other's messages."""

from __future__ import annotations

import uuid

import pytest
import redis

from nura.platform.ha import CLAIM_KEY, claim_redis_pair, release_redis_pair

HOST, PORT = "127.0.0.1", 6379


def _redis_up() -> bool:
    try:
        return bool(redis.Redis(host=HOST, port=PORT, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379")


def test_concurrent_claims_get_distinct_pairs_and_release_frees_them() -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    first = claim_redis_pair(HOST, PORT, owner=a)
    try:
        second = claim_redis_pair(HOST, PORT, owner=b)
        try:
            assert first != second
            assert not set(first) & set(second)
            # Only the owner releases: b cannot free a's pair.
            release_redis_pair(HOST, PORT, b, first)
            assert redis.Redis(host=HOST, port=PORT).get(CLAIM_KEY.format(*first)) == a.encode()
        finally:
            release_redis_pair(HOST, PORT, b, second)
    finally:
        release_redis_pair(HOST, PORT, a, first)
    assert redis.Redis(host=HOST, port=PORT).get(CLAIM_KEY.format(*first)) is None

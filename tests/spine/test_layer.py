"""Call-layer decisions with respx: retries, Retry-After, typed errors, breaker, fallback."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import httpx
import pytest
import respx

from nura.config import parse_config
from nura.core.breaker import CircuitBreakers
from nura.core.call_records import CallRecorder
from nura.core.errors import (
    CircuitOpen,
    ClientError,
    RateLimited,
    ResponseTooLarge,
    ServerError,
    ServiceTimeout,
    ServiceUnavailable,
    UnknownService,
)
from nura.core.layer import CallLayer
from nura.core.ratelimit import NoLimiter
from nura.core.stores.db import get_engine
from nura.core.stores.tables import call_records

BASE = "https://svc.example.com"


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def layer(tmp_path: Path):
    cfg = parse_config(
        {
            "api_gateway": {
                "retry_default": 3,
                "backoff_base_seconds": 1,
                "backoff_max_seconds": 8,
                "retry_after_max_seconds": 20,
                "circuit_breaker_threshold": 3,
            },
            "external_services": {
                "partners": {
                    "svc": {"base_url": BASE, "fallback_enabled": True},
                    "nofb": {"base_url": BASE},
                }
            },
        }
    )
    engine = get_engine(f"sqlite:///{tmp_path / 'n.db'}")
    sleeps = Sleeps()
    built = CallLayer(
        cfg.policies(),
        breakers=CircuitBreakers(engine, sync_seconds=0),
        limiter=NoLimiter(),
        recorder=CallRecorder(engine),
        http_client=httpx.Client(),
        sleep=sleeps,
        rng=random.Random(7),
    )
    built.sleeps = sleeps  # type: ignore[attr-defined]
    built.engine = engine  # type: ignore[attr-defined]
    yield built
    built.close()


def records(layer) -> list:
    layer.recorder.flush()
    with layer.engine.connect() as conn:
        return list(conn.execute(call_records.select().order_by(call_records.c.id)))


@respx.mock
def test_success_first_try(layer) -> None:
    respx.get(f"{BASE}/ok").respond(200, json={"a": 1})
    res = layer.request("svc", "GET", "/ok")
    assert res.value.json() == {"a": 1} and res.attempts == 1 and not res.fallback_used
    (rec,) = records(layer)
    assert rec.outcome == "ok" and rec.status_code == 200 and rec.bytes_in == len(b'{"a":1}')


@respx.mock
def test_5xx_retries_with_backoff_then_succeeds(layer) -> None:
    route = respx.get(f"{BASE}/x").mock(
        side_effect=[httpx.Response(502), httpx.Response(500), httpx.Response(200)]
    )
    res = layer.request("svc", "GET", "/x")
    assert res.attempts == 3 and route.call_count == 3
    assert len(layer.sleeps) == 2
    assert 0 <= layer.sleeps[0] <= 1 and 0 <= layer.sleeps[1] <= 2


@respx.mock
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_4xx_fails_at_once_without_retry(layer, status: int) -> None:
    route = respx.get(f"{BASE}/x").respond(status)
    with pytest.raises(ClientError) as err:
        layer.request("svc", "GET", "/x")
    assert err.value.status == status and err.value.attempts == 1 and route.call_count == 1
    assert layer.sleeps == []


@respx.mock
def test_expected_status_is_an_answer(layer) -> None:
    respx.get(f"{BASE}/x").respond(404)
    assert layer.request("svc", "GET", "/x", expected=(404,)).value.status_code == 404


@respx.mock
def test_retry_after_is_honoured_and_capped(layer) -> None:
    respx.get(f"{BASE}/x").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503, headers={"Retry-After": "9223372036854775807"}),
            httpx.Response(200),
        ]
    )
    res = layer.request("svc", "GET", "/x")
    assert res.attempts == 3
    assert layer.sleeps[0] == 3.0  # 429's Retry-After
    assert layer.sleeps[1] <= 8  # 503 is not a RateLimited answer: backoff, not 9e18


@respx.mock
def test_huge_retry_after_on_429_is_ignored(layer) -> None:
    respx.get(f"{BASE}/x").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "9223372036854775807"}),
            httpx.Response(200),
        ]
    )
    layer.request("svc", "GET", "/x")
    assert len(layer.sleeps) == 1 and layer.sleeps[0] <= 1  # backoff, not the 20 s cap


@respx.mock
def test_exhausted_retries_raise_typed_error_with_attempts(layer) -> None:
    respx.get(f"{BASE}/x").respond(429)
    with pytest.raises(RateLimited) as err:
        layer.request("nofb", "GET", "/x", deadline=10_000)
    # 429s have their own budget (tests/spine/test_retry_budget.py)
    assert err.value.attempts == 11 and err.value.service == "nofb" and err.value.status == 429


@respx.mock
def test_timeout_and_connect_errors_are_typed(layer) -> None:
    respx.get(f"{BASE}/t").mock(side_effect=httpx.ReadTimeout("slow"))
    respx.get(f"{BASE}/c").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ServiceTimeout):
        layer.request("nofb", "GET", "/t", retries=0)
    with pytest.raises(ServiceUnavailable):
        layer.request("nofb", "GET", "/c", retries=0)


@respx.mock
def test_redirect_is_not_followed(layer) -> None:
    respx.get(f"{BASE}/r").respond(302, headers={"Location": "http://169.254.169.254/"})
    with pytest.raises(ClientError, match="redirect"):
        layer.request("svc", "GET", "/r")


def test_unknown_service_is_typed(layer) -> None:
    with pytest.raises(UnknownService, match="nope"):
        layer.request("nope", "GET", "/x")


@respx.mock
def test_breaker_opens_and_fails_fast_without_network(layer) -> None:
    route = respx.get(f"{BASE}/x").respond(500)
    with pytest.raises(ServerError):
        layer.request("nofb", "GET", "/x")  # 3 failures open it (threshold 3), retries stop
    assert route.call_count == 3
    with pytest.raises(CircuitOpen):
        layer.request("nofb", "GET", "/x")
    assert route.call_count == 3
    outcomes = [r.outcome for r in records(layer)]
    assert outcomes == ["error", "rejected"]


@respx.mock
def test_4xx_does_not_move_the_breaker(layer) -> None:
    respx.get(f"{BASE}/x").respond(400)
    for _ in range(5):
        with pytest.raises(ClientError):
            layer.request("nofb", "GET", "/x")
    assert layer.breakers.snapshot("nofb", fresh=True).failures == 0


@respx.mock
def test_fallback_is_marked_logged_and_recorded(layer, caplog) -> None:
    respx.get(f"{BASE}/x").respond(503)
    layer.register_fallback("svc", lambda err: {"cached": True})
    with caplog.at_level(logging.WARNING):
        res = layer.request("svc", "GET", "/x", retries=0)
    assert res.fallback_used and res.value == {"cached": True}
    assert "service unavailable" in (res.fallback_reason or "")
    assert any("FALLBACK" in r.message for r in caplog.records)
    (rec,) = records(layer)
    assert rec.outcome == "fallback" and rec.fallback


@respx.mock
def test_fallback_not_used_for_client_errors_or_when_disabled(layer) -> None:
    respx.get(f"{BASE}/x").respond(400)
    respx.get(f"{BASE}/y").respond(503)
    layer.register_fallback("svc", lambda err: "fb")
    layer.register_fallback("nofb", lambda err: "fb")
    with pytest.raises(ClientError):
        layer.request("svc", "GET", "/x")
    with pytest.raises(ServiceUnavailable):
        layer.request("nofb", "GET", "/y", retries=0)


@respx.mock
def test_payload_digest_recorded_and_secrets_never(layer, caplog) -> None:
    secret = "s3cr3t-token-value"
    respx.post(f"{BASE}/x").respond(500)
    with caplog.at_level(logging.DEBUG), pytest.raises(ServerError) as err:
        layer.request(
            "nofb",
            "POST",
            "/x",
            json={"a": 1},
            headers={"Authorization": f"Bearer {secret}"},
            auth=httpx.BasicAuth("user", secret),
            retries=1,
        )
    (rec,) = records(layer)
    import hashlib

    assert rec.payload_sha256 == hashlib.sha256(b'{"a":1}').hexdigest()
    assert rec.bytes_out == 7
    texts = [str(err.value), repr(err.value), *(r.getMessage() for r in caplog.records)]
    texts += [str(v) for v in rec._mapping.values()]
    assert not any(secret in t for t in texts)


def test_boto_errors_are_typed(layer) -> None:
    from botocore.exceptions import ClientError as BotoClientError
    from botocore.exceptions import EndpointConnectionError

    def throttled() -> None:
        raise BotoClientError(
            {
                "Error": {"Code": "ThrottlingException", "Message": "slow down"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "Converse",
        )

    def invalid() -> None:
        raise BotoClientError(
            {
                "Error": {"Code": "ValidationException", "Message": "bad"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "Converse",
        )

    def down() -> None:
        raise EndpointConnectionError(endpoint_url="http://x")

    with pytest.raises(RateLimited) as err:
        layer.call("nofb", "converse", throttled, retries=1)
    assert err.value.code == "ThrottlingException" and err.value.attempts == 2
    with pytest.raises(ClientError) as err2:
        layer.call("nofb", "converse", invalid)
    assert err2.value.code == "ValidationException" and err2.value.attempts == 1
    with pytest.raises(ServiceUnavailable):
        layer.call("nofb", "converse", down, retries=0)
    assert layer.call("nofb", "ok", lambda: 42).value == 42


def test_call_or_none_answers_a_missing_key_without_counting_an_error(layer) -> None:
    from botocore.exceptions import ClientError as BotoClientError

    def boto_error(code: str, status: int):  # type: ignore[no-untyped-def]
        def fn() -> None:
            raise BotoClientError(
                {
                    "Error": {"Code": code, "Message": code},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                },
                "GetObject",
            )

        return fn

    result = layer.call_or_none("nofb", "get_object", boto_error("NoSuchKey", 404))
    assert result.value is None
    assert layer.call_or_none("nofb", "get_object", lambda: {"Body": b"x"}).value == {"Body": b"x"}
    with pytest.raises(ClientError) as err:  # any other error is still an error
        layer.call_or_none("nofb", "get_object", boto_error("AccessDenied", 403))
    assert err.value.code == "AccessDenied"
    layer.recorder.flush()
    outcomes = [(r.operation, r.outcome, r.status_code) for r in records(layer)]
    assert outcomes == [
        ("get_object", "ok", 404),
        ("get_object", "ok", None),
        ("get_object", "error", 403),
    ]


async def test_async_variants(layer) -> None:
    with respx.mock:
        respx.get(f"{BASE}/ok").respond(200, json={"ok": True})
        res = await layer.arequest("svc", "GET", "/ok")
    assert res.value.json() == {"ok": True}
    assert (await layer.acall("svc", "op", lambda x: x * 2, 21)).value == 42


def test_errors_pickle_roundtrip() -> None:
    import pickle

    err = RateLimited("limited", service="s", status=429, attempts=3, code="X")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RateLimited and str(back) == str(err)


# -- limits: deadline, size cap, nothing but IntegrationError leaves ----------------------
class FakeTime:
    """A clock that moves only when the layer sleeps (or a fake attempt takes time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _timed_layer(layer: CallLayer, fake: FakeTime, policies=None) -> CallLayer:  # type: ignore[no-untyped-def]
    return CallLayer(
        policies or layer.policies,
        breakers=layer.breakers,
        limiter=NoLimiter(),
        http_client=httpx.Client(),
        sleep=fake.sleep,
        rng=random.Random(7),
        clock=fake.clock,
    )


@respx.mock
def test_deadline_bounds_retries_and_retry_after_waits(layer) -> None:
    fake = FakeTime()
    timed = _timed_layer(layer, fake)
    route = respx.get(f"{BASE}/x").respond(429, headers={"Retry-After": "1"})
    with pytest.raises(RateLimited) as err:
        timed.request("nofb", "GET", "/x", retries=10, deadline=2.5)
    # t=0 fail, wait 1; t=1 fail, wait 1; t=2 fail: a third wait would end past 2.5
    assert err.value.attempts == 3 and route.call_count == 3
    assert fake.sleeps == [1.0, 1.0]


@respx.mock
def test_default_deadline_is_four_timeouts(layer) -> None:
    fake = FakeTime()
    timed = _timed_layer(layer, fake)
    timeout = timed.policy("nofb").timeout_seconds

    def slow_failure(request: httpx.Request) -> httpx.Response:
        fake.now += timeout / 2  # each attempt takes half the timeout, then fails
        return httpx.Response(503)

    respx.get(f"{BASE}/x").mock(side_effect=slow_failure)
    with pytest.raises(ServiceUnavailable) as err:
        timed.request("nofb", "GET", "/x", retries=20)
    assert 1 < err.value.attempts < 21
    assert fake.now <= 4 * timeout  # no attempt or wait started past the deadline


@respx.mock
def test_configured_limits_on_the_policy_are_honoured(layer) -> None:
    import dataclasses

    # What config's max_response_bytes / deadline_seconds give the service's policy.
    policy = dataclasses.replace(layer.policy("nofb"), max_response_bytes=10, deadline_seconds=1.5)
    fake = FakeTime()
    timed = _timed_layer(layer, fake, {"nofb": policy})
    respx.get(f"{BASE}/big").respond(200, content=b"x" * 11)
    with pytest.raises(ResponseTooLarge):
        timed.request("nofb", "GET", "/big")
    respx.get(f"{BASE}/x").respond(429, headers={"Retry-After": "1"})
    with pytest.raises(RateLimited) as err:
        timed.request("nofb", "GET", "/x", retries=10)
    assert err.value.attempts == 2  # 0 fail, wait 1, 1 fail: a second wait ends past 1.5


@respx.mock
def test_response_over_the_cap_is_typed_not_retried_and_recorded(layer) -> None:
    route = respx.get(f"{BASE}/big").respond(200, content=b"x" * 2048)
    with pytest.raises(ResponseTooLarge) as err:
        layer.request("svc", "GET", "/big", max_response_bytes=1024)
    assert err.value.attempts == 1 and route.call_count == 1 and layer.sleeps == []
    assert not err.value.retryable
    (rec,) = records(layer)
    assert rec.outcome == "error" and rec.error_type == "ResponseTooLarge"
    # an error status whose body is too big is still that status
    respx.get(f"{BASE}/big503").respond(503, content=b"x" * 2048)
    with pytest.raises(ServiceUnavailable):
        layer.request("nofb", "GET", "/big503", max_response_bytes=1024, retries=0)
    # at the cap exactly: an answer
    respx.get(f"{BASE}/fits").respond(200, content=b"x" * 1024)
    assert len(layer.request("svc", "GET", "/fits", max_response_bytes=1024).value.content) == 1024


@respx.mock
def test_non_ascii_retry_after_falls_back_to_backoff(layer) -> None:
    route = respx.get(f"{BASE}/x").mock(
        side_effect=[
            httpx.Response(429, headers=[(b"Retry-After", "²".encode())]),
            httpx.Response(200),
        ]
    )
    res = layer.request("nofb", "GET", "/x")
    assert res.attempts == 2 and route.call_count == 2
    assert len(layer.sleeps) == 1 and 0 <= layer.sleeps[0] <= 1  # backoff, not the header


class BrokenAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug in an auth flow")
        yield request


@respx.mock
def test_unexpected_exception_becomes_a_logged_integration_error(layer, caplog) -> None:
    from nura.core.errors import UnexpectedError

    route = respx.get(f"{BASE}/x").respond(200)
    caplog.set_level(logging.ERROR, logger="nura.calls")
    with pytest.raises(ServiceUnavailable) as err:
        layer.request("svc", "GET", "/x", auth=BrokenAuth())
    assert isinstance(err.value, UnexpectedError) and not err.value.retryable
    assert isinstance(err.value.__cause__, RuntimeError)
    assert err.value.attempts == 1 and route.call_count == 0 and layer.sleeps == []
    assert layer.breakers.snapshot("svc", fresh=True).failures == 0  # a bug is not an outage
    assert any(r.exc_info and "RuntimeError" in r.getMessage() for r in caplog.records)
    (rec,) = records(layer)
    assert rec.outcome == "error" and rec.error_type == "UnexpectedError"  # no fallback


@respx.mock
def test_a_raising_fallback_is_still_an_integration_error(layer) -> None:
    from nura.core.errors import UnexpectedError

    respx.get(f"{BASE}/x").respond(503)

    def broken(err: Exception) -> None:
        raise KeyError("cache")

    with pytest.raises(UnexpectedError) as err:
        layer.request("svc", "GET", "/x", fallback=broken, retries=0)
    assert isinstance(err.value.__cause__, KeyError)


def test_unserializable_json_is_invalid_input(layer) -> None:
    from nura.core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        layer.request("svc", "POST", "/x", json={"when": object()})

"""Health checks: every registered service and the platform's own parts, concurrently.

    results = check_round()          # list[CheckResult], recorded in the store
    run_health_checks()              # the same as a Prefect task (list of dicts)

What is checked (one `Check` each, built from the configuration):
- services with a `health_check_endpoint`: GET through the call layer (status, latency);
- s3: `head_bucket` on the knowledge-base bucket; ses: `get_send_quota` (>= 90 % of the
  24 h quota used is "degraded"); cloudwatch: `describe_alarms(MaxRecords=1)`;
- bedrock: an unsigned GET on the runtime endpoint. Any HTTP answer (403/404 included)
  proves DNS, TLS and the endpoint are up, and no model is invoked, so no tokens are
  spent. A control-plane `bedrock:ListFoundationModels` call was rejected: it is another
  endpoint (bedrock.<region>) that can be up while the runtime is down, and it needs an
  IAM permission the runtime role does not otherwise need;
- confluence: an authenticated `GET /wiki/api/v2/spaces?limit=1` with the saved block;
- prefect_api: the API's /health; database: a real query on the call records;
- webhook_inbox / dead_letters: backlog figures from their stores.

Why checks bypass the breaker's admission and the rate limiter: a check is an observation
at a fixed, low rate (one per interval). Through the breaker, a service whose breaker is
open could never be seen recovering; through the Prefect-held rate limits, a Prefect
outage would fail every check. Checks still go through the call layer's request/call
machinery (the pooled client, timeouts, typed errors, call records with operation
`health.check`).

Recovery: the check of a service whose breaker is open (or half-open with no live probe)
*is* the probe. It is admitted with `CircuitBreakers.admit_probe` and its result goes
back through the same single-probe path as a traffic probe's: a passing check closes the
breaker, a failing one re-opens it (the cool-down restarts). A closed breaker is never
touched by a check, and a traffic probe in flight keeps its turn.

Every check runs in its own thread with its own timeout; the round waits for each check
until its own deadline only, so one hung service never delays the round beyond it.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

from nura import IntegrationError, RateLimited, get_call_layer, get_config, store_url
from nura.config import IntegrationsConfig
from nura.core.breaker import Admission, BreakerState, CircuitBreakers
from nura.core.errors import NuraError
from nura.core.layer import CallLayer
from nura.core.ratelimit import NoLimiter
from nura.core.stores.db import get_engine
from nura.core.stores.dead_letters import dead_letter_stats
from nura.core.stores.inbox import inbox_stats

logger = logging.getLogger("nura.health")

CHECK_OPERATION = "health.check"
# Extra time the round grants a check beyond its timeout before declaring it hung.
GRACE_SECONDS = 0.25
COMPONENTS = ("prefect_api", "database", "webhook_inbox", "dead_letters")


@dataclass
class CheckResult:
    """One check's outcome. `level` is the check's own verdict floor (None: SLA rules decide)."""

    service: str
    kind: str
    ok: bool
    latency_ms: float | None = None
    status_code: int | None = None
    error_type: str | None = None
    detail: str | None = None
    level: str | None = None
    configured: bool = True
    metrics: dict[str, float | None] = field(default_factory=dict)
    breaker_probe: bool = False
    ts: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NotConfigured(NuraError):
    """The check has nothing to check (no endpoint, no block, store not installed)."""


@dataclass
class Check:
    service: str
    kind: str
    run: Callable[[], CheckResult]
    timeout: float


# -- the health lane of the call layer ---------------------------------------------------
class _CheckBreakers:
    """Admits every check. A closed breaker is only observed; the check of a service whose
    breaker is not closed is admitted as its half-open probe and reports its result with
    that admission (see the module docstring)."""

    def __init__(self, real: CircuitBreakers | None, not_closed: set[str]) -> None:
        self.real = real
        self.not_closed = not_closed

    def admit(self, service: str, cooldown: float) -> Admission:
        if self.real is not None and service in self.not_closed:
            probe = self.real.admit_probe(service)
            if probe.allowed:
                return probe
        return Admission(True)  # observe only: no token, nothing is recorded

    def record_success(self, service: str, admission: Admission | None = None) -> None:
        if self.real is not None and admission is not None and admission.probe_token:
            self.real.record_success(service, admission)

    def record_failure(
        self, service: str, threshold: int, admission: Admission | None = None
    ) -> BreakerState:
        if self.real is not None and admission is not None and admission.probe_token:
            return self.real.record_failure(service, threshold, admission)
        return BreakerState.CLOSED


def health_lane(layer: CallLayer) -> CallLayer:
    """The layer's policies, pooled client and recorder, without rate limit; the breakers
    are only observed, except that a check is the probe of a breaker that is not closed."""
    real = layer.breakers if isinstance(layer.breakers, CircuitBreakers) else None
    not_closed = (
        {b.service for b in real.all() if b.state is not BreakerState.CLOSED} if real else set()
    )
    return CallLayer(
        layer.policies,
        breakers=_CheckBreakers(real, not_closed),  # type: ignore[arg-type]
        limiter=NoLimiter(),
        recorder=layer.recorder,
        http_client=layer.http,
    )


# -- individual checks -------------------------------------------------------------------
def _failure(service: str, kind: str, err: Exception) -> CheckResult:
    if isinstance(err, IntegrationError):
        return CheckResult(
            service,
            kind,
            ok=False,
            status_code=err.status,
            error_type=type(err).__name__,
            detail=str(err)[:300],
        )
    return CheckResult(
        service, kind, ok=False, error_type=type(err).__name__, detail=str(err)[:300]
    )


def http_check(
    lane: CallLayer,
    service: str,
    url: str,
    timeout: float,
    *,
    auth: Any = None,
    expected: tuple[int, ...] = (),
) -> CheckResult:
    """GET `url` once (no retries) within `timeout`; 2xx (or `expected`) is healthy."""
    try:
        res = lane.request(
            service,
            "GET",
            url,
            operation=CHECK_OPERATION,
            timeout=timeout,
            retries=0,
            auth=auth,
            expected=expected,
        )
    except RateLimited as err:
        # Throttled means alive: the check passes but the service is "degraded".
        out = _failure(service, "http", err)
        out.ok, out.level, out.detail = True, "degraded", "rate limited (429)"
        return out
    except IntegrationError as err:
        return _failure(service, "http", err)
    return CheckResult(
        service, "http", ok=True, latency_ms=res.latency_ms, status_code=res.value.status_code
    )


def aws_check(
    lane: CallLayer, service: str, fn: Callable[..., Any], **kwargs: Any
) -> tuple[CheckResult, Any]:
    """One boto3 call through the lane; returns the result and the SDK's answer."""
    try:
        res = lane.call(service, CHECK_OPERATION, fn, retries=0, **kwargs)
    except RateLimited as err:
        out = _failure(service, "aws", err)
        out.ok, out.level, out.detail = True, "degraded", f"throttled ({err.code})"
        return out, None
    except IntegrationError as err:
        return _failure(service, "aws", err), None
    return CheckResult(service, "aws", ok=True, latency_ms=res.latency_ms), res.value


_prebuilt: dict[tuple[str, float], Any] = {}


def _aws_client(service: str, timeout: float) -> Any:
    """The boto3 client, built before the round starts (see `prebuild_aws_clients`)."""
    client = _prebuilt.get((service, timeout))
    if isinstance(client, Exception):
        raise client
    if client is None:
        from nura.core.aws_clients import aws_client

        client = aws_client(service, timeout=timeout)
    return client


def prebuild_aws_clients(cfg: IntegrationsConfig, timeouts: dict[str, float]) -> None:
    """Create boto3 clients outside the timed checks: creating one takes ~0.2-1 s of CPU
    (endpoint and model loading), which is not the service's latency. A creation error is
    kept and raised inside that service's check, where it becomes a failed check."""
    from nura.core.aws_clients import aws_client

    _prebuilt.clear()
    for service, timeout in timeouts.items():
        try:
            _prebuilt[(service, timeout)] = aws_client(service, timeout=timeout)
        except Exception as exc:
            _prebuilt[(service, timeout)] = exc


def _s3(lane: CallLayer, cfg: IntegrationsConfig, timeout: float) -> CheckResult:
    bucket = cfg.external_services.aws.s3.bucket_name
    result, _ = aws_check(lane, "s3", _aws_client("s3", timeout).head_bucket, Bucket=bucket)
    result.detail = result.detail or f"bucket {bucket} reachable"
    return result


def _ses(lane: CallLayer, cfg: IntegrationsConfig, timeout: float) -> CheckResult:
    result, quota = aws_check(lane, "ses", _aws_client("ses", timeout).get_send_quota)
    if quota:
        sent, cap = float(quota.get("SentLast24Hours", 0)), float(quota.get("Max24HourSend", 0))
        result.metrics = {"sent_24h": sent, "max_24h": cap}
        used = sent / cap * 100 if cap > 0 else 0.0
        result.detail = f"quota {sent:g}/{cap:g} in 24 h"
        if cap > 0 and used >= 90:
            result.level, result.detail = "degraded", f"SES quota {used:.0f} % used"
    return result


def _cloudwatch(lane: CallLayer, cfg: IntegrationsConfig, timeout: float) -> CheckResult:
    client = _aws_client("cloudwatch", timeout)
    return aws_check(lane, "cloudwatch", client.describe_alarms, MaxRecords=1)[0]


def bedrock_runtime_url(cfg: IntegrationsConfig) -> str:
    aws = cfg.external_services.aws
    return (
        aws.bedrock.endpoint_url
        or aws.endpoint_url
        or f"https://bedrock-runtime.{aws.region}.amazonaws.com"
    )


def _bedrock(lane: CallLayer, cfg: IntegrationsConfig, timeout: float) -> CheckResult:
    url = bedrock_runtime_url(cfg).rstrip("/") + "/"
    result = http_check(lane, "bedrock", url, timeout, expected=tuple(range(300, 500)))
    if result.ok:
        result.detail = f"runtime endpoint answered {result.status_code} (no model invoked)"
    return result


def load_confluence_auth(cfg: IntegrationsConfig) -> tuple[str, Any] | Exception:
    """(site URL, httpx auth) from the saved block, loaded before the round starts: a block
    read is a Prefect API call, not Confluence's latency.

    A block that does not exist is `NotConfigured`; one that exists but cannot be loaded
    (API error, invalid document) is an error the check reports as unhealthy, never as
    "not configured"."""
    from prefect.settings import PREFECT_API_URL

    name = (
        cfg.health_monitoring.confluence_block or cfg.external_services.confluence.credentials_block
    )
    if not PREFECT_API_URL.value():
        # Loading a block without an API would start an ephemeral server (seconds).
        return NotConfigured("credentials block needs PREFECT_API_URL")
    from nura.confluence.blocks import ConfluenceCredentials
    from nura.core.blocks import load_block

    try:
        creds: Any = load_block(ConfluenceCredentials, name)
        if creds is None:
            return NotConfigured(f"credentials block {name!r} does not exist")
        if creds.oauth_access_token is not None:
            # OAuth 2.0 (3LO) tokens are accepted only through Atlassian's gateway
            from nura.confluence.client import gateway_url, resolve_cloud_id
            from nura.core.runtime import get_call_layer

            api, auth = creds.oauth_api_url.rstrip("/"), creds.auth()
            cloud_id = creds.oauth_cloud_id or resolve_cloud_id(
                get_call_layer(), api, str(creds.base_url).rstrip("/"), auth
            )
            return gateway_url(api, cloud_id), auth
        return str(creds.base_url or ""), creds.auth()
    except Exception as exc:  # handed to the check, which reports it as a failure
        from pydantic import ValidationError

        # A validation error quotes the document's values: its type only, then.
        why = "" if isinstance(exc, ValidationError) else f": {str(exc)[:200]}"
        return IntegrationError(
            f"credentials block {name!r} could not be loaded ({type(exc).__name__}{why})",
            service="confluence",
        )


def _confluence(
    lane: CallLayer, cfg: IntegrationsConfig, timeout: float, creds: Any = None
) -> CheckResult:
    if isinstance(creds, Exception):
        raise creds
    site, auth = creds if creds is not None else ("", None)
    policy = lane.policy("confluence")
    base = site or policy.base_url or ""
    path = policy.health_check_endpoint or "/wiki/api/v2/spaces?limit=1"
    url = path if path.startswith("http") else base.rstrip("/") + "/" + path.lstrip("/")
    return http_check(lane, "confluence", url, timeout, auth=auth)


def _endpoint(lane: CallLayer, service: str, timeout: float) -> CheckResult:
    policy = lane.policy(service)
    path = policy.health_check_endpoint
    if not path:
        raise NotConfigured("no health_check_endpoint")
    if not path.startswith(("http://", "https://")) and not policy.base_url:
        raise NotConfigured("relative health_check_endpoint without base_url")
    return http_check(lane, service, path, timeout)


def _prefect_api(timeout: float) -> CheckResult:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise NotConfigured("PREFECT_API_URL is not set (ephemeral mode)")
    started = time.perf_counter()
    with get_client(sync_client=True) as client:
        error = client.api_healthcheck()
    latency = (time.perf_counter() - started) * 1000
    if error is not None:
        return CheckResult(
            "prefect_api",
            "prefect",
            ok=False,
            latency_ms=latency,
            error_type=type(error).__name__,
            detail=str(error)[:300],
        )
    return CheckResult("prefect_api", "prefect", ok=True, latency_ms=latency)


def _database(cfg: IntegrationsConfig, engine: Any) -> CheckResult:
    from sqlalchemy import func, select

    from nura.core.stores.tables import call_records

    started = time.perf_counter()
    with engine.connect() as conn:
        calls_1h = conn.execute(
            select(func.count())
            .select_from(call_records)
            .where(call_records.c.ts >= time.time() - 3600)
        ).scalar_one()
    latency = (time.perf_counter() - started) * 1000
    limit = cfg.health_monitoring.component_thresholds.database_latency_degraded_ms
    out = CheckResult(
        "database",
        "database",
        ok=True,
        latency_ms=latency,
        detail=f"{engine.dialect.name}: {calls_1h} call records in the last hour",
        metrics={"call_records_1h": float(calls_1h)},
    )
    if latency > limit:
        out.level, out.detail = "degraded", f"query took {latency:.0f} ms > {limit:g} ms"
    return out


def _queue(
    service: str,
    stats_fn: Callable[[Any], Mapping[str, Any]],
    engine: Any,
    degraded: float,
    unhealthy: float,
    figure: str,
) -> CheckResult:
    """Backlog of one of the platform's queues; thresholds on `figure` of its stats."""
    started = time.perf_counter()
    stats = stats_fn(engine)
    latency = (time.perf_counter() - started) * 1000
    metrics: dict[str, float | None] = {
        k: (float(v) if v is not None else None)
        for k, v in stats.items()
        if v is None or (isinstance(v, int | float) and not isinstance(v, bool))
    }
    value = metrics.get(figure) or 0.0
    out = CheckResult(service, "queue", ok=True, latency_ms=latency, metrics=metrics)
    out.detail = ", ".join(f"{k}={v:g}" for k, v in metrics.items() if v is not None) or "empty"
    if value >= unhealthy:
        out.level = "unhealthy"
    elif value >= degraded:
        out.level = "degraded"
    return out


# -- building and running a round -------------------------------------------------------
def build_checks(
    cfg: IntegrationsConfig, layer: CallLayer, engine: Any, timeout: float | None = None
) -> list[Check]:
    """One check per registered service and platform component, each with its timeout."""
    hm = cfg.health_monitoring
    limit = timeout or hm.check_timeout_seconds
    lane = health_lane(layer)
    checks: list[Check] = []
    special: dict[str, Callable[[CallLayer, IntegrationsConfig, float], CheckResult]] = {
        "s3": _s3,
        "ses": _ses,
        "cloudwatch": _cloudwatch,
        "bedrock": _bedrock,
    }
    for name, policy in layer.policies.items():
        t = min(limit, policy.timeout_seconds)
        fn = special.get(name)
        if name == "confluence":
            auth = load_confluence_auth(cfg)
            checks.append(
                Check(name, "http", functools.partial(_confluence, lane, cfg, t, auth), t)
            )
        elif fn is not None:
            checks.append(Check(name, "aws", functools.partial(fn, lane, cfg, t), t))
        else:
            checks.append(Check(name, "http", functools.partial(_endpoint, lane, name, t), t))
    prebuild_aws_clients(
        cfg,
        {c.service: c.timeout for c in checks if c.service in ("s3", "ses", "cloudwatch")},
    )
    ct = hm.component_thresholds
    checks += [
        Check("prefect_api", "prefect", lambda: _prefect_api(limit), limit),
        Check("database", "database", lambda: _database(cfg, engine), limit),
        Check(
            "webhook_inbox",
            "queue",
            lambda: _queue(
                "webhook_inbox",
                inbox_stats,
                engine,
                ct.inbox_oldest_degraded_seconds,
                ct.inbox_oldest_unhealthy_seconds,
                "oldest_age_s",
            ),
            limit,
        ),
        Check(
            "dead_letters",
            "queue",
            lambda: _queue(
                "dead_letters",
                dead_letter_stats,
                engine,
                ct.dead_letters_degraded,
                ct.dead_letters_unhealthy,
                "count",
            ),
            limit,
        ),
    ]
    return checks


def _timed(check: Check) -> CheckResult:
    started = time.perf_counter()
    try:
        result = check.run()
    except NotConfigured as exc:
        return CheckResult(check.service, check.kind, ok=True, configured=False, detail=str(exc))
    except Exception as exc:  # a check's own bug must not hide the other checks
        logger.warning("health check of %s raised %s", check.service, type(exc).__name__)
        result = _failure(check.service, check.kind, exc)
    if result.latency_ms is None:
        result.latency_ms = (time.perf_counter() - started) * 1000
    return result


def run_round(checks: list[Check], *, now: float | None = None) -> list[CheckResult]:
    """Run every check concurrently; each is waited for until its own deadline only."""
    ts = time.time() if now is None else now
    if not checks:
        return []
    pool = ThreadPoolExecutor(max_workers=min(len(checks), 256), thread_name_prefix="nura-check")
    started = time.monotonic()
    # Each thread runs in a copy of this context: Prefect settings and the run logger follow.
    futures = [
        (check, pool.submit(contextvars.copy_context().run, _timed, check)) for check in checks
    ]
    results: list[CheckResult] = []
    for check, future in futures:
        remaining = started + check.timeout + GRACE_SECONDS - time.monotonic()
        try:
            result = future.result(timeout=max(0.0, remaining))
        except FutureTimeout:
            result = CheckResult(
                check.service,
                check.kind,
                ok=False,
                latency_ms=check.timeout * 1000,
                error_type="CheckTimeout",
                detail=f"no answer within {check.timeout:g}s",
            )
        result.ts = ts
        results.append(result)
    # A hung check's thread is abandoned, not awaited: its own HTTP timeout ends it.
    pool.shutdown(wait=False, cancel_futures=True)
    return results


def _not_closed(layer: CallLayer) -> set[str]:
    if not isinstance(layer.breakers, CircuitBreakers):
        return set()
    return {b.service for b in layer.breakers.all() if b.state is not BreakerState.CLOSED}


def mark_recovered(results: list[CheckResult], layer: CallLayer, before: set[str]) -> None:
    """Flag the checks whose probe closed a breaker that was not closed before the round."""
    if not before:
        return
    still = _not_closed(layer)
    for r in results:
        if r.service in before and r.service not in still:
            r.breaker_probe = True
            logger.info("%s passed its health check: its breaker is closed again", r.service)


def check_round(
    cfg: IntegrationsConfig | None = None,
    layer: CallLayer | None = None,
    *,
    now: float | None = None,
    timeout: float | None = None,
    record: bool = True,
) -> list[CheckResult]:
    """Build, run and record one round of checks; a passing check closes its service's
    open breaker (it is the probe)."""
    from nura.core.stores.health import purge_checks, record_checks

    cfg = cfg or get_config()
    layer = layer or get_call_layer()
    engine = get_engine(store_url(cfg))
    before = _not_closed(layer)
    results = run_round(build_checks(cfg, layer, engine, timeout), now=now)
    mark_recovered(results, layer, before)
    if record:
        record_checks(engine, [r.as_dict() for r in results if r.configured])
        # Keep what the longest (7 d) window reads, plus an hour.
        purge_checks(engine, (time.time() if now is None else now) - 7 * 86400 - 3600)
    return results


def run_health_checks(timeout: float | None = None) -> list[dict[str, Any]]:
    """One round of health checks (see the module docstring), as plain dicts."""
    return [r.as_dict() for r in check_round(timeout=timeout)]

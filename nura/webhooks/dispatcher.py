"""The dispatcher: inbox entries -> flow runs of the deployment routed for their event type.

    nura webhooks dispatch          # standalone; the receiver also runs one in-process

Each cycle claims due `accepted` entries, creates their flow runs through the bulk
endpoint `POST /deployments/{id}/create_flow_run/bulk` (6-30 ms a run instead of 50-75;
PREFECT-FACTS.md), checks every item's status (the endpoint answers 200 with per-item
`FAILED`), emits one `nura.webhook.received` event per delivery (resource = endpoint,
related = flow run) and marks the entries `dispatched` with their flow run id.

Never two runs for one delivery: the idempotency key is `nura-webhook:{endpoint}:{delivery
id}`, so a retried or concurrent dispatch gets the existing run back; the event id is
derived from the same key, so a re-emitted event is the same event.

Prefect API down: nothing is marked; the whole loop backs off (doubling, capped) and probes
`/health` until the API answers, then carries on. Item failures (unknown deployment,
parameters the flow refuses) back off per entry and fail after `max_attempts`.

The Prefect REST API is called with a plain pooled httpx client rather than
`PrefectClient`: the client's own retry loop (2, 4, 8 ... s per request) would hold a cycle
for a minute during an outage, and it has no method for the bulk endpoint.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import orjson
from sqlalchemy import Engine

from nura.config import IntegrationsConfig
from nura.core.stores.inbox import (
    claim_due,
    dispatched_runs,
    fail_entries,
    mark_dispatched,
    mark_finished,
    release,
    reschedule,
)
from nura.webhooks.errors import ApiDown, InvalidPayload
from nura.webhooks.schemes import Rejection, parse_payload

logger = logging.getLogger("nura.dispatcher")
EVENT_NAME = "nura.webhook.received"
_NS = uuid.UUID("5b0f8f4e-6a43-4c1e-9a51-0d6c2b7f9e11")
FINAL_OK = {"COMPLETED"}
FINAL_BAD = {"FAILED", "CRASHED", "CANCELLED"}
EVENT_BODY_MAX = 32 * 1024
# One bulk call creates up to 100 runs in one server transaction: allow it time.
BULK_TIMEOUT_S = 60.0


def idempotency_key(endpoint: str, delivery_id: str) -> str:
    return f"nura-webhook:{endpoint}:{delivery_id}"


def event_id(endpoint: str, delivery_id: str) -> str:
    return str(uuid.uuid5(_NS, idempotency_key(endpoint, delivery_id)))


def _confluence_params(payload: dict[str, Any]) -> dict[str, Any]:
    page: dict[str, Any] = payload["page"] if isinstance(payload.get("page"), dict) else {}
    content: dict[str, Any] = payload["content"] if isinstance(payload.get("content"), dict) else {}
    page_id = payload.get("page_id") or page.get("id") or content.get("id") or payload.get("id")
    if page_id in (None, ""):
        raise InvalidPayload("confluence.page.updated payload has no page id")
    space = (
        payload.get("space")
        or page.get("spaceKey")
        or content.get("spaceKey")
        or content.get("space")  # Forge: content.space.key
    )
    if isinstance(space, dict):
        space = space.get("key")
    if space is None and isinstance(page.get("space"), dict):
        space = page["space"].get("key")
    return {"page_id": str(page_id), "space": str(space) if space else None}


def flow_parameters(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the routed flow run: the page for Confluence, else the payload."""
    if event_type.startswith("confluence.page."):  # every page event: the page ingest
        return _confluence_params(payload)
    return {"payload": payload}


def api_client(api_url: str | None = None) -> httpx.AsyncClient:
    """An httpx client on `api_url` or PREFECT_API_URL, with the configured key/auth string."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    url = api_url or api.url
    if not url:
        raise RuntimeError("PREFECT_API_URL is not set: the dispatcher needs a Prefect server")
    headers = {}
    auth = None
    if api.key:
        headers["Authorization"] = f"Bearer {api.key.get_secret_value()}"
    elif api.auth_string:
        user, _, password = api.auth_string.get_secret_value().partition(":")
        auth = httpx.BasicAuth(user, password)
    return httpx.AsyncClient(
        base_url=url.rstrip("/") + "/",
        headers=headers,
        auth=auth,
        timeout=httpx.Timeout(15.0, connect=3.0),
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
    )


class Dispatcher:
    # Acknowledging comes first. While deliveries arrive back to back (less than
    # `burst_gap` apart, as the receiver pokes) the next cycle waits for a gap, at most
    # `burst_hold` after the burst began; a steady stream is dispatched at full speed once
    # that has passed. A cycle keeps the Prefect server busy for a second or more (a bulk
    # call of 100 runs, their events) and on a small machine that is the CPU the receiver
    # needs (docs/benchmarks.md, "Design measurements"). The deliveries are stored; they
    # wait seconds.
    burst_gap = 0.05
    burst_hold = 2.0

    def __init__(
        self,
        engine: Engine,
        cfg: IntegrationsConfig,
        *,
        api_url: str | None = None,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.cfg = cfg
        self.settings = cfg.webhooks.dispatcher
        self.client_factory = client_factory or (lambda: api_client(api_url))
        self.clock = clock
        self.monotonic = monotonic  # pokes and the burst hold (tests: a virtual clock)
        self.rng = rng or random.Random()
        self.owner = uuid.uuid4().hex  # this dispatcher's claims on inbox entries
        self._client: httpx.AsyncClient | None = None
        self._deployments: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_poke = self._burst_began = float("-inf")  # self.monotonic()
        self.dispatched = 0
        self.errors = 0
        self.last_lag: float | None = None
        self.api_down_since: float | None = None
        # Runs per bulk call: halved when a call times out (a struggling server), grown
        # back after successes, so a slow API still makes progress.
        self.chunk = self.settings.batch_size

    # -- lifecycle -----------------------------------------------------------------------
    def poke(self) -> None:
        """A new entry was stored: do not wait for the poll interval."""
        now = self.monotonic()
        if now - self._last_poke >= self.burst_gap:
            self._burst_began = now
        self._last_poke = now
        self._wake.set()

    async def _let_burst_pass(self) -> None:
        while not self._stopping:
            now = self.monotonic()
            quiet_for = now - self._last_poke
            held_for = now - self._burst_began
            if quiet_for >= self.burst_gap or held_for >= self.burst_hold:
                return
            await asyncio.sleep(min(self.burst_gap - quiet_for, self.burst_hold - held_for))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    async def run(self) -> None:
        """Dispatch until `stop()`; back off while the Prefect API is unreachable."""
        outage = 0
        last_reconcile = 0.0
        try:
            # Built now, not on the first delivery: an httpx client loads the CA bundle into
            # an SSL context: 65-160 ms of this event loop (which the receiver shares) here.
            _ = self.client
        except Exception:  # no API URL: every cycle will say so too
            logger.exception("Prefect API client not created")
        try:
            while not self._stopping:
                try:
                    await self._let_burst_pass()
                    if outage:
                        await self._probe()
                    n = await self.cycle()
                    if self.clock() - last_reconcile >= self.settings.reconcile_interval_seconds:
                        last_reconcile = self.clock()
                        await self.reconcile()
                    if outage:
                        logger.warning("Prefect API is back; dispatching resumes")
                    outage = 0
                    self.api_down_since = None
                except ApiDown as exc:
                    outage += 1
                    self.errors += 1
                    self.api_down_since = self.api_down_since or self.clock()
                    delay = min(
                        self.settings.outage_probe_max_seconds, 0.25 * 2 ** min(outage, 10)
                    ) * self.rng.uniform(0.5, 1.0)
                    # Once at the start of an outage, then every 30th probe: no log flood.
                    log = logger.warning if outage % 30 == 1 else logger.debug
                    log("Prefect API unavailable (%s); retry in %.1fs", exc, delay)
                    await self._sleep(delay)
                    continue
                except Exception:
                    self.errors += 1
                    logger.exception("dispatch cycle failed")
                    await self._sleep(1.0)
                    continue
                if n == 0:
                    await self._sleep(self.settings.poll_interval_seconds)
        finally:
            if self._client is not None:
                await self._client.aclose()
                self._client = None

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def run_until_empty(self, max_seconds: float = 60.0) -> int:
        """Dispatch what is due now, then return how many were handled (CLI `--once`)."""
        total = 0
        deadline = self.clock() + max_seconds
        try:
            while self.clock() < deadline:
                n = await self.cycle()
                total += n
                if n == 0:
                    break
            await self.reconcile()
        finally:
            if self._client is not None:
                await self._client.aclose()
                self._client = None
        return total

    # -- HTTP ----------------------------------------------------------------------------
    async def _call(
        self, method: str, path: str, *, json: Any = None, **kwargs: Any
    ) -> httpx.Response:
        if json is not None:
            # orjson: the dispatcher shares the receiver's event loop, and httpx's stdlib
            # encoder takes ~15x longer (0.6 ms against 0.04 for a bulk body of 100 runs).
            kwargs["content"] = orjson.dumps(json)
            kwargs["headers"] = {"content-type": "application/json"}
        try:
            response = await self.client.request(method, path, **kwargs)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise ApiDown(type(exc).__name__) from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ApiDown(f"HTTP {response.status_code}")
        return response

    async def _probe(self) -> None:
        r = await self._call("GET", "health")
        if r.status_code != 200:
            raise ApiDown(f"health HTTP {r.status_code}")

    async def _deployment_id(self, name: str) -> str | None:
        if name in self._deployments:
            return self._deployments[name]
        flow, _, deployment = name.partition("/")
        r = await self._call("GET", f"deployments/name/{flow}/{deployment}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        self._deployments[name] = r.json()["id"]
        return self._deployments[name]

    # -- one cycle -----------------------------------------------------------------------
    async def cycle(self) -> int:
        """Dispatch one batch of due entries; returns how many entries were handled."""
        s = self.settings
        entries = await anyio.to_thread.run_sync(
            functools.partial(
                claim_due,
                self.engine,
                self.chunk * s.concurrency,
                self.clock(),
                owner=self.owner,
                lease_seconds=s.claim_lease_seconds,
            )
        )
        if not entries:
            return 0
        try:
            return await self._dispatch(entries)
        finally:
            # whatever this cycle did not settle (the API went down) is due again at once
            await anyio.to_thread.run_sync(
                release, self.engine, [e["id"] for e in entries], self.owner, self.clock()
            )

    async def _dispatch(self, entries: list[dict[str, Any]]) -> int:
        s = self.settings
        by_route: dict[str | None, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        bad: list[tuple[int, str]] = []
        for entry in entries:
            try:
                payload = parse_payload(entry["body"], entry["content_type"])
            except Rejection as rej:  # cannot happen for what the receiver stored
                bad.append((entry["id"], f"unreadable body: {rej.message}"))
                continue
            route = self.cfg.webhooks.deployment_for(entry["endpoint"], entry["event_type"])
            by_route[route].append((entry, payload))

        created: list[tuple[dict[str, Any], dict[str, Any], str | None, str | None]] = []
        retry: list[tuple[dict[str, Any], str]] = []
        sem = asyncio.Semaphore(s.concurrency)

        async def create(route: str, chunk: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
            async with sem:
                done, failed, invalid = await self._create_runs(route, chunk)
            created.extend(done)
            retry.extend(failed)
            bad.extend(invalid)

        jobs = []
        for route, items in by_route.items():
            if route is None:  # no deployment: the event is the whole dispatch
                created.extend((e, p, None, None) for e, p in items)
                continue
            for i in range(0, len(items), self.chunk):
                jobs.append(create(route, items[i : i + self.chunk]))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        down = next((r for r in results if isinstance(r, ApiDown)), None)
        if down is not None and "Timeout" in str(down):
            self.chunk = max(5, self.chunk // 2)
        elif down is None and jobs:
            self.chunk = min(s.batch_size, self.chunk * 2)
        if created:
            # Runs exist now; the event and the mark follow. If the event cannot be sent,
            # the entries stay accepted and the next cycle gets the same runs back.
            await self._emit(created)
            now = self.clock()
            await anyio.to_thread.run_sync(
                mark_dispatched,
                self.engine,
                [(e["id"], route, run_id) for e, _, route, run_id in created],
                now,
                self.owner,
            )
            lags = [now - e["received_at"] for e, *_ in created]
            self.last_lag = statistics.median(lags)
            self.dispatched += len(created)
        if bad:
            await anyio.to_thread.run_sync(fail_entries, self.engine, bad, self.owner)
        if retry:
            self.errors += len(retry)
            await anyio.to_thread.run_sync(self._reschedule, retry)
        if down is not None:
            raise down
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return len(entries)

    def _reschedule(self, items: list[tuple[dict[str, Any], str]]) -> None:
        s = self.settings
        now = self.clock()
        rows = []
        for entry, error in items:
            attempts = int(entry["attempts"]) + 1
            delay = min(s.backoff_max_seconds, s.backoff_base_seconds * 2 ** (attempts - 1))
            rows.append((entry["id"], attempts, now + delay * self.rng.uniform(0.5, 1.0), error))
        reschedule(self.engine, rows, max_attempts=s.max_attempts, owner=self.owner)

    async def _create_runs(
        self, route: str, chunk: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> tuple[list[Any], list[tuple[dict[str, Any], str]], list[tuple[int, str]]]:
        deployment_id = await self._deployment_id(route)
        if deployment_id is None:
            return [], [(e, f"deployment {route} not found") for e, _ in chunk], []
        body = []
        ok_items: list[tuple[dict[str, Any], dict[str, Any]]] = []
        invalid: list[tuple[int, str]] = []
        for entry, payload in chunk:
            try:
                params = flow_parameters(entry["event_type"], payload)
            except InvalidPayload as exc:
                invalid.append((entry["id"], str(exc)))
                continue
            ok_items.append((entry, payload))
            body.append(
                {
                    "parameters": params,
                    "idempotency_key": idempotency_key(entry["endpoint"], entry["delivery_id"]),
                    "tags": ["nura-webhook", f"webhook:{entry['endpoint']}"],
                }
            )
        if not body:
            return [], [], invalid
        r = await self._call(
            "POST",
            f"deployments/{deployment_id}/create_flow_run/bulk",
            json=body,
            timeout=httpx.Timeout(BULK_TIMEOUT_S, connect=3.0),
        )
        if r.status_code == 404:
            self._deployments.pop(route, None)
            return [], [(e, f"deployment {route} not found") for e, _ in ok_items], invalid
        if r.status_code >= 400:
            detail = r.text[:300]
            return [], [(e, f"HTTP {r.status_code}: {detail}") for e, _ in ok_items], invalid
        results = r.json().get("results", [])
        done, failed = [], []
        for (entry, payload), item in zip(ok_items, results, strict=False):
            if item.get("status") == "CREATED" and item.get("flow_run_id"):
                done.append((entry, payload, route, str(item["flow_run_id"])))
            else:
                failed.append((entry, str(item.get("error") or "not created")[:500]))
        for entry, _ in ok_items[len(results) :]:
            failed.append((entry, "missing from the bulk answer"))
        return done, failed, invalid

    async def _emit(self, created: list[Any]) -> None:
        events = []
        for entry, payload, route, run_id in created:
            related = []
            if run_id:
                related.append(
                    {
                        "prefect.resource.id": f"prefect.flow-run.{run_id}",
                        "prefect.resource.role": "flow-run",
                    }
                )
            data: dict[str, Any] = {
                "event_type": entry["event_type"],
                "delivery_id": entry["delivery_id"],
                "deployment": route,
                "inbox_id": entry["id"],
            }
            if len(entry["body"]) <= EVENT_BODY_MAX:
                data["body"] = payload
            events.append(
                {
                    "id": event_id(entry["endpoint"], entry["delivery_id"]),
                    "occurred": datetime.fromtimestamp(entry["received_at"], UTC).isoformat(),
                    "event": EVENT_NAME,
                    "resource": {
                        "prefect.resource.id": f"nura.webhook.endpoint.{entry['endpoint']}",
                        "prefect.resource.name": entry["endpoint"],
                        "nura.webhook.event-type": entry["event_type"],
                    },
                    "related": related,
                    "payload": data,
                }
            )
        for i in range(0, len(events), 200):
            r = await self._call("POST", "events", json=events[i : i + 200])
            if r.status_code >= 400:
                raise ApiDown(f"events HTTP {r.status_code}")

    # -- final states --------------------------------------------------------------------
    async def reconcile(self) -> int:
        """Mark dispatched entries done/failed once their flow run reached a final state."""
        pending = await anyio.to_thread.run_sync(dispatched_runs, self.engine, 200)
        if not pending:
            return 0
        by_run = {run: entry_id for entry_id, run in pending}
        r = await self._call(
            "POST",
            "flow_runs/filter",
            json={"flow_runs": {"id": {"any_": list(by_run)}}, "limit": len(by_run)},
        )
        if r.status_code >= 400:
            return 0
        finished: list[tuple[int, str, str | None]] = []
        for run in r.json():
            state = (run.get("state") or {}).get("type")
            if state in FINAL_OK:
                finished.append((by_run[run["id"]], "done", None))
            elif state in FINAL_BAD:
                finished.append((by_run[run["id"]], "failed", f"flow run {state}"))
        if finished:
            await anyio.to_thread.run_sync(mark_finished, self.engine, finished)
        return len(finished)

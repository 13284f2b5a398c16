"""Sync Confluence spaces (or one page) into the S3 knowledge base.

Per space: list every current page id + version (v2, 250 a call) while the manifest is
read -> pick what to fetch (full: everything not stored since this full sync began;
incremental: CQL `lastmodified >= watermark - overlap` - synced while the listing still
runs - plus any listed version that differs from the manifest) -> a pipeline: fetch
bodies (threads, bounded by the rate limit), convert in a process pool (CPU-bound, both
cores), put changed Markdown to S3 (threads) -> delete what is no longer listed ->
checkpoint the manifest every `checkpoint_pages` pages -> move the watermark when the
space completed without failures. The flow syncs its spaces at the same time; they share
the threads and the processes.

Fetching page by page (not listing with bodies) is deliberate: the manifest's versions
let a resumed or incremental run skip pages it already has, so nothing is downloaded twice.

Where a full sync's CPU goes (benchmark, 3,000 pages of ~10 KB, per page): conversion
~2.2 ms (conversion processes), Confluence GET through httpx and the call layer ~1.5 ms,
signed S3 PUT ~1 ms, the rest of this process ~0.8 ms; outside it, moto's S3 ~4.5 ms
and the Prefect server ~1 ms (the rate-limit leases, artifacts). Before this pipeline:
~20 ms of conversion (BeautifulSoup) and ~10 ms of boto3 `put_object` and call layer a page.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact, update_progress_artifact

from nura import get_config
from nura.confluence.client import ConfluenceAuthError, ConfluenceClient, ConfluenceError
from nura.confluence.markdown import convert_batch
from nura.confluence.state import (
    Manifest,
    document_key,
    iso,
    load_manifest,
    now_utc,
    parse_iso,
    save_manifest,
)
from nura.core.errors import CircuitOpen, IntegrationError
from nura.kb import s3

logger = logging.getLogger("nura.confluence")


OUTCOMES = ("created", "updated", "unchanged", "deleted", "failed")


@dataclass
class SpaceReport:
    space: str
    mode: str = "incremental"
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0  # listed, same version as the manifest: not fetched
    flagged: int = 0  # converted with warnings (malformed XHTML, unknown macros)
    api_calls: int = 0
    duration_s: float = 0.0
    error: str | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    flagged_pages: list[dict[str, str]] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("failures")
        data.pop("flagged_pages")
        data["duration_s"] = round(self.duration_s, 2)
        return data

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0


# -- conversion pool ---------------------------------------------------------------------

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _process_pool() -> ProcessPoolExecutor:
    """One spawn-context pool per process (fork would copy the run's threads and sockets)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = get_config().external_services.confluence.convert_processes or (
                os.cpu_count() or 1
            )
            _pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


_threads: dict[str, ThreadPoolExecutor] = {}


def _thread_pool(kind: str, size: int) -> ThreadPoolExecutor:
    """The process's fetch or S3 threads, shared by the spaces that sync at the same time
    (so their number does not grow with the spaces)."""
    with _pool_lock:
        executor = _threads.get(kind)
        if executor is None:
            executor = _threads[kind] = ThreadPoolExecutor(size, thread_name_prefix=f"cf-{kind}")
        return executor


def shutdown_pool() -> None:
    """Stop the conversion processes and the page threads (end of a flow run: nothing is
    left behind)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
        for executor in _threads.values():
            executor.shutdown(wait=True, cancel_futures=True)
        _threads.clear()
    with _progress_lock:
        _progress_shares.clear()
        _progress_sent.clear()


Payload = tuple[str, str, str, str]  # storage, base_url, space, page_id
Converted = tuple[str, list[str], bool]  # markdown, warnings, malformed
Converter = Callable[[list[Payload]], "Future[list[Converted]]"]

# Pages handed to a conversion process at once (see `convert_batch`).
CONVERT_BATCH = 8


def _convert_here(payloads: list[Payload]) -> Future[list[Converted]]:
    done: Future[list[Converted]] = Future()
    done.set_result(convert_batch(payloads))
    return done


def _converter(pages: int) -> Converter:
    cfg = get_config().external_services.confluence
    if pages < cfg.process_pool_min_pages:
        return _convert_here
    pool = _process_pool()
    return lambda payloads: pool.submit(convert_batch, payloads)


# -- one page ----------------------------------------------------------------------------


@dataclass
class PageResult:
    page_id: str
    outcome: str
    entry: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    title: str = ""


def _metadata(entry: dict[str, Any], source_url: str, space: str, page_id: str) -> dict[str, str]:
    return {
        "source-url": source_url,
        "version": str(entry["version"]),
        "sha256": entry["sha256"],
        "title": entry["title"],
        "last-modified": entry["last_modified"],
        "space": space,
        "page-id": page_id,
    }


# A fetched page: (page_id, the page or None when it is gone, or the error that failed it)
Fetched = tuple[str, dict[str, Any] | None, BaseException | None]


class PageSyncer:
    """Fetch -> convert -> (maybe) put for pages of one space, as a pipeline.

    `fetch_threads` threads each fetch `CONVERT_BATCH` pages and hand them to the
    conversion processes without waiting; the calling thread takes the converted batches
    in order, decides created / updated / unchanged and queues the changed ones for
    `s3_threads` writer threads. So fetching (network), conversion (other processes) and
    S3 writes overlap, and no thread sits idle waiting for another stage.
    """

    def __init__(self, client: ConfluenceClient, space: str, manifest: Manifest) -> None:
        cfg = get_config()
        conf = cfg.external_services.confluence
        self.client = client
        self.space = space
        self.manifest = manifest
        per_second = cfg.policies()["confluence"].rate_limit_per_minute / 60.0
        # More threads than the rate allows would only queue inside the limiter.
        self.fetch_threads = max(1, min(conf.concurrency, int(per_second) or 1))
        self.s3_threads = conf.s3_concurrency

    def run(
        self,
        page_ids: list[str],
        on_done: Callable[[PageResult], None],
        convert: Converter = _convert_here,
    ) -> None:
        """Process `page_ids`; every page ends in `on_done` (failures too), never raises
        for one page. Auth errors and an open breaker abort: every other page would fail."""
        abort: list[BaseException] = []

        def fetch(batch: list[str]) -> tuple[list[Fetched], Future[list[Converted]] | None]:
            fetched: list[Fetched] = []
            for page_id in batch:
                if abort:
                    break
                try:
                    fetched.append((page_id, self.client.get_page(page_id, body=True), None))
                except (ConfluenceAuthError, CircuitOpen) as exc:
                    abort.append(exc)
                except IntegrationError as exc:
                    fetched.append((page_id, None, exc))
            payloads = [
                (_storage(page), self.client.base_url, self.space, page_id)
                for page_id, page, _ in fetched
                if page is not None
            ]
            return fetched, (convert(payloads) if payloads else None)

        fetchers = _thread_pool("fetch", self.fetch_threads)
        putters = _thread_pool("s3", self.s3_threads)
        puts: list[Future[None]] = []
        try:
            # Few pages (an incremental run): one a batch, so that every fetcher has one.
            size = max(1, min(CONVERT_BATCH, -(-len(page_ids) // self.fetch_threads)))
            for fetched, converting in fetchers.map(fetch, list(_chunks(page_ids, size))):
                converted = iter(converting.result() if converting is not None else [])
                for page_id, page, error in fetched:
                    if error is not None:
                        on_done(PageResult(page_id, "failed", error=_describe(error)))
                    elif page is None:
                        on_done(PageResult(page_id, "deleted"))
                    else:
                        result, body = self._outcome(page_id, page, next(converted))
                        if body is None:
                            on_done(result)
                        else:
                            url = self.client.page_url(page)
                            puts.append(putters.submit(self._put, result, body, url, on_done))
        finally:
            for fut in puts:  # every queued write ends (in on_done) before we return
                fut.result()
        if abort:
            raise abort[0]

    def _outcome(
        self, page_id: str, page: dict[str, Any], converted: Converted
    ) -> tuple[PageResult, bytes | None]:
        markdown, warnings, _malformed = converted
        body = markdown.encode()
        version = page.get("version") or {}
        title = str(page.get("title") or "")
        entry: dict[str, Any] = {
            "version": int(version.get("number") or 0),
            "sha256": hashlib.sha256(body).hexdigest(),
            "key": document_key(self.space, page_id),
            "title": title,
            "last_modified": str(version.get("createdAt") or ""),
            "synced_at": iso(now_utc()),
            "flags": len(warnings),
        }
        previous = self.manifest.pages.get(page_id)
        if previous and previous.get("sha256") == entry["sha256"]:
            outcome = "unchanged"
        else:
            outcome = "updated" if previous else "created"
        result = PageResult(page_id, outcome, entry, warnings=warnings, title=title)
        return result, (body if outcome != "unchanged" else None)

    def _put(
        self, result: PageResult, body: bytes, url: str, on_done: Callable[[PageResult], None]
    ) -> None:
        assert result.entry is not None
        try:
            s3.put_document(
                result.entry["key"],
                body,
                _metadata(result.entry, url, self.space, result.page_id),
            )
        except IntegrationError as exc:
            on_done(PageResult(result.page_id, "failed", error=_describe(exc), title=result.title))
            return
        on_done(result)


def _storage(page: dict[str, Any]) -> str:
    return str(((page.get("body") or {}).get("storage") or {}).get("value") or "")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


# -- one space ---------------------------------------------------------------------------


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_progress_lock = threading.Lock()
_progress_shares: dict[str, dict[str, float]] = {}  # artifact id -> space -> percent done
_progress_sent: dict[str, float] = {}


class _Progress:
    """A space's share (`span` percent) of the run's progress artifact. Spaces sync at the
    same time, so the artifact shows the sum of the shares, which never moves back."""

    def __init__(self, artifact_id: Any, space: str, span: float) -> None:
        self.artifact_id = str(artifact_id) if artifact_id is not None else None
        self.space = space
        self.span = span

    def update(self, fraction: float) -> None:
        if self.artifact_id is None:
            return
        with _progress_lock:  # held while sending: updates reach the server in order
            shares = _progress_shares.setdefault(self.artifact_id, {})
            shares[self.space] = max(shares.get(self.space, 0.0), self.span * fraction)
            value = min(100.0, sum(shares.values()))
            if value - _progress_sent.get(self.artifact_id, 0.0) >= 1.0:
                _progress_sent[self.artifact_id] = value
                update_progress_artifact(UUID(self.artifact_id), value)


def _list_space(
    client: ConfluenceClient, space: str, space_id: str | None
) -> tuple[str, dict[str, int]]:
    """The space's id and its current pages (id -> version), from the v2 API. Only the
    versions are kept: thousands of page objects held for the run made the garbage
    collector's full passes over the heap (~0.3 s each) come more often."""
    space_id = space_id or str(client.get_space(space)["id"])
    return space_id, {str(p["id"]): _version(p) for p in client.iter_pages(space_id)}


_clients: dict[str, ConfluenceClient] = {}
_clients_lock = threading.Lock()


def _run_client() -> ConfluenceClient:
    """One client per flow run: its spaces share one read of the credentials block (a
    Prefect API call) instead of one each. Outside a flow run, a new client every time."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run_id = str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None
    if run_id is None:
        return ConfluenceClient.from_config()
    with _clients_lock:
        client = _clients.get(run_id)
        if client is None:
            _clients.clear()  # the previous run's: its credentials may have rotated since
            client = _clients[run_id] = ConfluenceClient.from_config()
        return client


def sync_space_impl(
    space: str,
    *,
    full: bool = False,
    client: ConfluenceClient | None = None,
    progress: _Progress | None = None,
    crash_after: int | None = None,
    space_id: str | None = None,
) -> SpaceReport:
    """Synchronise one space; see the module docstring. `space_id` when the caller has
    resolved the key already. `crash_after` (tests) raises after that many pages were
    checkpointed, as a worker dying mid-run would."""
    started = time.perf_counter()
    conf = get_config().external_services.confluence
    client = client or _run_client()
    calls_before = client.calls
    report = SpaceReport(space)
    run_started = now_utc()
    lock = threading.Lock()

    def on_done(result: PageResult) -> None:
        with lock:
            if result.outcome == "deleted":
                # Gone between listing and fetching: remove what we hold of it, if anything.
                entry = manifest.pages.pop(result.page_id, None)
                if entry is not None:
                    s3.delete_document(entry["key"])
                    report.count("deleted")
                return
            report.count(result.outcome)
            if result.outcome == "failed":
                report.failures.append(
                    {"page_id": result.page_id, "title": result.title, "error": result.error or ""}
                )
            elif result.entry is not None:
                manifest.pages[result.page_id] = result.entry
            if result.warnings:
                report.flagged += 1
                report.flagged_pages.append(
                    {"page_id": result.page_id, "warnings": "; ".join(result.warnings)[:300]}
                )

    early: list[str] = []  # incremental: the pages CQL reported, synced during the listing
    with ThreadPoolExecutor(1, thread_name_prefix="cf-list") as lister:
        # The listing (4 sequential requests for 1,000 pages) is what an incremental run
        # mostly waits for: meanwhile the manifest is read, the CQL search is made and
        # the pages it reports with a version the manifest lacks are fetched and stored.
        listing = lister.submit(_list_space, client, space, space_id)
        manifest = load_manifest(space)
        syncer = PageSyncer(client, space, manifest)
        watermark = parse_iso(manifest.watermark)
        incremental = not (full or watermark is None or manifest.full_started)
        if incremental:
            assert watermark is not None
            since = watermark - timedelta(minutes=conf.overlap_minutes)
            hits = client.changed_since(space, since)
            changed = {str(hit["id"]) for hit in hits}
            early = sorted(
                {
                    str(h["id"])
                    for h in hits
                    if _version(h) != _entry_version(manifest, str(h["id"]))
                }
            )
            if early:
                syncer.run(early, on_done, _converter(len(early)))
        space_id, listed = listing.result()  # SpaceNotFound: this space only
    manifest.space_id = space_id

    if not incremental:
        report.mode = "full"
        if manifest.full_started is None:
            manifest.full_started = iso(run_started)
            save_manifest(manifest)
        full_started = manifest.full_started
        wanted = [
            pid
            for pid, version in listed.items()
            if not _stored_since(manifest.pages.get(pid), version, full_started)
        ]
    else:
        drift = {pid for pid, version in listed.items() if version != _entry_version(manifest, pid)}
        missed = drift - changed
        if missed:
            logger.warning(
                "%s: %d page(s) changed but not reported by CQL since %s; fetching them too",
                space,
                len(missed),
                since.isoformat(),
            )
        tried = set(early)
        wanted = sorted(
            pid
            for pid in changed | drift
            if pid in listed and pid not in tried and listed[pid] != _entry_version(manifest, pid)
        )
    report.skipped = len(set(listed) - set(wanted) - set(early))
    logger.info(
        "%s: %s sync, %d listed, %d to fetch",
        space,
        report.mode,
        len(listed),
        len(wanted) + len(early),
    )

    convert = _converter(len(wanted))
    total = max(1, len(wanted) + len(early))
    stored = len(early)
    batches = list(_chunks(wanted, conf.checkpoint_pages))
    for number, batch in enumerate(batches, 1):
        syncer.run(batch, on_done, convert)
        stored += len(batch)
        if number < len(batches) or crash_after is not None:  # the last: saved below
            with lock:
                save_manifest(manifest)
            if progress:
                progress.update(stored / total)
        if crash_after is not None and stored >= crash_after:
            raise RuntimeError(f"simulated crash after {stored} pages (test hook)")

    # Deletion detection: anything in the manifest that Confluence no longer lists as
    # current (trashed, deleted, purged, moved away) leaves the knowledge base.
    for pid in sorted(set(manifest.pages) - set(listed)):
        try:
            s3.delete_document(manifest.pages[pid]["key"])
        except IntegrationError as exc:
            report.count("failed")
            report.failures.append({"page_id": pid, "title": "", "error": _describe(exc)})
            continue
        manifest.pages.pop(pid, None)
        report.count("deleted")

    if report.failed == 0:
        manifest.watermark = iso(run_started)
        manifest.full_started = None
    save_manifest(manifest)  # the flow moves the progress artifact to 100 % at the end
    report.api_calls = client.calls - calls_before
    report.duration_s = time.perf_counter() - started
    return report


def _version(page: dict[str, Any]) -> int:
    return int((page.get("version") or {}).get("number") or 0)


def _entry_version(manifest: Manifest, page_id: str) -> int | None:
    entry = manifest.pages.get(page_id)
    return int(entry["version"]) if entry else None


def _stored_since(entry: dict[str, Any] | None, version: int, since: str) -> bool:
    """True when this full sync already stored this version (resume: do not refetch)."""
    return bool(entry and int(entry["version"]) == version and str(entry.get("synced_at")) >= since)


@dataclass
class PageReport(SpaceReport):
    """A one-page ingest's report: `space` is the page's real space (from Confluence).

    `ignored` says why nothing was ingested (the page's space is not configured);
    `event_space` is the space the event named when it disagreed with Confluence (the
    event's space is a hint, never used for keys or manifests).
    """

    ignored: str | None = None
    event_space: str | None = None

    def row(self) -> dict[str, Any]:
        data = super().row()
        for extra in ("ignored", "event_space"):
            if data.get(extra) is None:
                data.pop(extra, None)
        return data


def _page_space(client: ConfluenceClient, page: dict[str, Any]) -> str:
    """The space key of `page`, asked of Confluence (its `spaceId`), never of the event."""
    space_id = page.get("spaceId")
    if not space_id:
        raise ConfluenceError(f"page {page.get('id')} at {client.base_url} has no spaceId")
    return str(client.get_space_by_id(str(space_id))["key"])


def _remove_gone_page(page_id: str, hint: str | None, configured: list[str]) -> PageReport:
    """A page Confluence no longer has: remove it from the configured space that holds it.

    The event's space is only tried first when it is configured; no other manifest or key
    is ever built from it."""
    spaces = ([hint] if hint in configured else []) + [s for s in configured if s != hint]
    for key in spaces:
        manifest = load_manifest(key)
        entry = manifest.pages.pop(page_id, None)
        if entry is not None:
            s3.delete_document(entry["key"])
            save_manifest(manifest)
            return PageReport(key, mode="page", deleted=1)
    # Nothing held: nothing to delete (an event for a page we never had, or already removed).
    return PageReport(hint if hint in configured else "-", mode="page")


def sync_page_impl(
    page_id: str, space: str | None = None, client: ConfluenceClient | None = None
) -> PageReport:
    """Synchronise one page (webhook ingest): store it, or remove it if it is gone.

    Scope comes from Confluence, not from the event: the page's space is looked up from
    its `spaceId`; a `space` argument that disagrees is ignored (and reported as
    `event_space`, with a warning); a page whose space is not in
    `external_services.confluence.spaces` is not ingested (`ignored` says so; the run
    does not fail: Confluence sends events of every space on the site).
    """
    started = time.perf_counter()
    configured = list(get_config().external_services.confluence.spaces)
    client = client or ConfluenceClient.from_config()
    calls_before = client.calls
    page = client.get_page(page_id, body=False)
    if page is None:
        report = _remove_gone_page(page_id, space, configured)
        report.api_calls = client.calls - calls_before
        report.duration_s = time.perf_counter() - started
        return report
    real = _page_space(client, page)
    report = PageReport(real, mode="page")
    if space and space != real:
        report.event_space = space
        logger.warning(
            "page %s is in space %s, not %r as the event says: the event's space is ignored",
            page_id,
            real,
            space[:100],
        )
    if real not in configured:
        report.ignored = (
            f"page {page_id} is in space {real}, which is not in "
            "external_services.confluence.spaces: not ingested"
        )
        logger.info("%s", report.ignored)
        report.api_calls = client.calls - calls_before
        report.duration_s = time.perf_counter() - started
        return report
    manifest = load_manifest(real)
    syncer = PageSyncer(client, real, manifest)

    def on_done(result: PageResult) -> None:
        report.count(result.outcome)
        if result.outcome == "failed":
            report.failures.append(
                {"page_id": page_id, "title": result.title, "error": result.error or ""}
            )
        elif result.entry is not None:
            manifest.pages[page_id] = result.entry
        elif result.outcome == "deleted":
            gone = manifest.pages.pop(page_id, None)
            if gone:
                s3.delete_document(gone["key"])

    syncer.run([page_id], on_done)
    save_manifest(manifest)
    report.api_calls = client.calls - calls_before
    report.duration_s = time.perf_counter() - started
    return report


def _slug(space: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", space.lower()).strip("-") or "space"


def artifact_key(report: SpaceReport) -> str:
    """The key of the report's table artifact: one per flow purpose and space.

    A single-page ingest (mode `page`, the webhook's deployment) has its own key, so the
    catalog's latest `confluence-sync-<space>` stays the last full or incremental sync
    instead of a one-page "unchanged 1".
    """
    purpose = "confluence-page-ingest" if report.mode == "page" else "confluence-sync"
    return f"{purpose}-{_slug(report.space)}"


def publish_report(report: SpaceReport) -> None:
    """The space's table artifact, and one listing its failed and flagged pages if any."""
    key = artifact_key(report)
    create_table_artifact(
        key=key,
        table=[report.row()],
        description=f"Confluence sync of space {report.space} ({report.mode})",
    )
    if report.failures or report.flagged_pages:
        rows = [{"kind": "failed", **f} for f in report.failures[:500]] + [
            {"kind": "flagged", "title": "", "error": f["warnings"], "page_id": f["page_id"]}
            for f in report.flagged_pages[:500]
        ]
        create_table_artifact(
            key=f"{key}-problems",
            table=rows,
            description=f"Pages of {report.space} that failed or were converted with warnings",
        )


def sync_space(
    space: str,
    full: bool = False,
    progress_id: str | None = None,
    progress_span: float = 100.0,
    space_id: str | None = None,
) -> SpaceReport:
    """Prefect task around `sync_space_impl` (the call layer retries calls; a task retry
    would re-list the space for nothing). Progress: `progress_span` percent of artifact
    `progress_id`."""
    progress = _Progress(progress_id, space, progress_span) if progress_id else None
    report = sync_space_impl(space, full=full, progress=progress, space_id=space_id)
    publish_report(report)
    return report


def prepare_spaces(keys: list[str]) -> dict[str, str]:
    """`ensure_knowledge_base` and `resolve_spaces` at the same time: the run's first S3 and
    Confluence round trips (each with its first rate-limit lease) overlap."""
    with ThreadPoolExecutor(1, thread_name_prefix="cf-start") as start:
        bucket = start.submit(contextvars.copy_context().run, ensure_knowledge_base)
        space_ids = resolve_spaces(keys)
        bucket.result()
    return space_ids


def resolve_spaces(keys: list[str]) -> dict[str, str]:
    """Space key -> id for the keys that exist, in one request (which also tells at once
    whether the credentials work: a 401 stops the run before any space starts). A plain
    function, like `ensure_knowledge_base`: one lookup is not worth a task run."""
    found = _run_client().get_spaces(keys)
    return {key: str(space["id"]) for key, space in found.items()}


def sync_page(page_id: str, space: str | None = None) -> SpaceReport:
    """Prefect task around `sync_page_impl` (see there: scope comes from Confluence); the
    report is a `PageReport` (typed as its base: callers hold it with space reports)."""
    report = sync_page_impl(page_id, space)
    publish_report(report)
    return report


def ensure_knowledge_base() -> None:
    s3.ensure_bucket()


__all__ = [
    "OUTCOMES",
    "PageReport",
    "SpaceReport",
    "ensure_knowledge_base",
    "prepare_spaces",
    "publish_report",
    "resolve_spaces",
    "shutdown_pool",
    "sync_page",
    "sync_page_impl",
    "sync_space",
    "sync_space_impl",
]

"""Sync one Confluence space (or one page) into the S3 knowledge base.

Per space: list every current page id + version (v2, 250 a call) -> pick what to fetch
(full: everything not stored since this full sync began; incremental: CQL
`lastmodified >= watermark - overlap`, plus any listed version that differs from the
manifest) -> fetch bodies concurrently (threads, bounded by the rate limit) -> convert in
a process pool (CPU-bound, both cores) -> put changed Markdown to S3 concurrently ->
delete what is no longer listed -> checkpoint the manifest every `checkpoint_pages`
pages -> move the watermark when the space completed without failures.

Fetching page by page (not listing with bodies) is deliberate: the manifest's versions
let a resumed or incremental run skip pages it already has, so nothing is downloaded twice.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import update_progress_artifact

from nura import get_config
from nura.errors import CircuitOpen, IntegrationError
from tasks import s3
from tasks.confluence import ConfluenceAuthError, ConfluenceClient, ConfluenceError
from tasks.confluence_markdown import convert_payload
from tasks.confluence_state import (
    Manifest,
    document_key,
    iso,
    load_manifest,
    now_utc,
    parse_iso,
    save_manifest,
)


def _logger() -> Any:
    """The run logger inside a flow/task run, else the module logger (benchmarks, tests)."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("nura.confluence")


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


def shutdown_pool() -> None:
    """Stop the conversion processes (end of a flow run: no process is left behind)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


Converter = Callable[[tuple[str, str, str, str]], tuple[str, list[str], bool]]


def _converter(pages: int) -> Converter:
    cfg = get_config().external_services.confluence
    if pages < cfg.process_pool_min_pages:
        return convert_payload
    pool = _process_pool()
    return lambda args: pool.submit(convert_payload, args).result()


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


class PageSyncer:
    """Fetch -> convert -> (maybe) put for pages of one space, with bounded concurrency."""

    def __init__(
        self, client: ConfluenceClient, space: str, manifest: Manifest, convert: Converter
    ) -> None:
        cfg = get_config()
        conf = cfg.external_services.confluence
        self.client = client
        self.space = space
        self.manifest = manifest
        self.convert = convert
        per_second = cfg.policies()["confluence"].rate_limit_per_minute / 60.0
        # More threads than the rate allows would only queue inside the limiter.
        self.fetch_threads = max(1, min(conf.concurrency, int(per_second) or 1))
        self.s3_threads = conf.s3_concurrency

    def fetch_and_convert(self, page_id: str) -> tuple[PageResult, bytes | None, str]:
        page = self.client.get_page(page_id, body=True)
        if page is None:
            return PageResult(page_id, "deleted"), None, ""
        storage = ((page.get("body") or {}).get("storage") or {}).get("value") or ""
        markdown, warnings, _malformed = self.convert(
            (storage, self.client.base_url, self.space, page_id)
        )
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
        return result, (body if outcome != "unchanged" else None), self.client.page_url(page)

    def run(self, page_ids: list[str], on_done: Callable[[PageResult], None]) -> None:
        """Process `page_ids`; every page ends in `on_done` (failures too), never raises
        for one page. Auth errors and an open breaker abort: every other page would fail."""
        abort: list[BaseException] = []
        with (
            ThreadPoolExecutor(self.fetch_threads, thread_name_prefix="cf-fetch") as fetchers,
            ThreadPoolExecutor(self.s3_threads, thread_name_prefix="cf-s3") as putters,
        ):
            puts: list[Future[None]] = []
            lock = threading.Lock()

            def one(page_id: str) -> None:
                if abort:
                    return
                try:
                    result, body, url = self.fetch_and_convert(page_id)
                except (ConfluenceAuthError, CircuitOpen) as exc:
                    abort.append(exc)
                    return
                except (IntegrationError, ConfluenceError, ValueError, KeyError) as exc:
                    on_done(PageResult(page_id, "failed", error=_describe(exc)))
                    return
                if body is None:
                    on_done(result)
                    return
                with lock:
                    puts.append(putters.submit(self._put, result, body, url, on_done))

            list(fetchers.map(one, page_ids))
            for fut in puts:
                fut.result()
        if abort:
            raise abort[0]

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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


# -- one space ---------------------------------------------------------------------------


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Progress:
    """Moves the run's progress artifact from `base` to `base + span` (percent)."""

    def __init__(self, artifact_id: Any, base: float, span: float) -> None:
        self.artifact_id = artifact_id
        self.base = base
        self.span = span
        self.last = 0.0

    def update(self, fraction: float) -> None:
        if self.artifact_id is None:
            return
        value = min(100.0, self.base + self.span * fraction)
        if value - self.last >= 1.0 or fraction >= 1.0:
            self.last = value
            update_progress_artifact(UUID(str(self.artifact_id)), value)


def sync_space_impl(
    space: str,
    *,
    full: bool = False,
    client: ConfluenceClient | None = None,
    progress: _Progress | None = None,
    crash_after: int | None = None,
) -> SpaceReport:
    """Synchronise one space; see the module docstring. `crash_after` (tests) raises after
    that many pages were checkpointed, as a worker dying mid-run would."""
    logger = _logger()
    started = time.perf_counter()
    conf = get_config().external_services.confluence
    client = client or ConfluenceClient.from_config()
    calls_before = client.calls
    report = SpaceReport(space)
    run_started = now_utc()
    manifest = load_manifest(space)
    info = client.get_space(space)  # SpaceNotFound: this space only
    manifest.space_id = str(info["id"])

    listed = {str(p["id"]): p for p in client.iter_pages(manifest.space_id)}
    watermark = parse_iso(manifest.watermark)
    if full or watermark is None or manifest.full_started:
        report.mode = "full"
        if manifest.full_started is None:
            manifest.full_started = iso(run_started)
            save_manifest(manifest)
        full_started = manifest.full_started
        wanted = [
            pid
            for pid, page in listed.items()
            if not _stored_since(manifest.pages.get(pid), page, full_started)
        ]
    else:
        since = watermark - timedelta(minutes=conf.overlap_minutes)
        changed = {str(hit["id"]) for hit in client.changed_since(space, since)}
        drift = {
            pid for pid, page in listed.items() if _version(page) != _entry_version(manifest, pid)
        }
        missed = drift - changed
        if missed:
            logger.warning(
                "%s: %d page(s) changed but not reported by CQL since %s; fetching them too",
                space,
                len(missed),
                since.isoformat(),
            )
        wanted = sorted(
            pid
            for pid in changed | drift
            if pid in listed and _version(listed[pid]) != _entry_version(manifest, pid)
        )
    report.skipped = len(listed) - len(wanted)
    logger.info("%s: %s sync, %d listed, %d to fetch", space, report.mode, len(listed), len(wanted))

    syncer = PageSyncer(client, space, manifest, _converter(len(wanted)))
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

    stored = 0
    for batch in _chunks(wanted, conf.checkpoint_pages):
        syncer.run(batch, on_done)
        with lock:
            save_manifest(manifest)
        stored += len(batch)
        if progress:
            progress.update(stored / max(1, len(wanted)))
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
    save_manifest(manifest)
    if progress:
        progress.update(1.0)
    report.api_calls = client.calls - calls_before
    report.duration_s = time.perf_counter() - started
    return report


def _version(page: dict[str, Any]) -> int:
    return int((page.get("version") or {}).get("number") or 0)


def _entry_version(manifest: Manifest, page_id: str) -> int | None:
    entry = manifest.pages.get(page_id)
    return int(entry["version"]) if entry else None


def _stored_since(entry: dict[str, Any] | None, page: dict[str, Any], since: str) -> bool:
    """True when this full sync already stored this version (resume: do not refetch)."""
    return bool(
        entry and int(entry["version"]) == _version(page) and str(entry.get("synced_at")) >= since
    )


def sync_page_impl(
    page_id: str, space: str | None = None, client: ConfluenceClient | None = None
) -> SpaceReport:
    """Synchronise one page (webhook ingest): store it, or remove it if it is gone."""
    started = time.perf_counter()
    client = client or ConfluenceClient.from_config()
    page = client.get_page(page_id, body=False)
    if page is not None and not space:
        space = str(client.get_space_by_id(str(page["spaceId"]))["key"])
    if not space:
        raise ConfluenceError(
            f"page {page_id} does not exist at {client.base_url} and no space was given"
        )
    report = SpaceReport(space, mode="page")
    manifest = load_manifest(space)
    if page is None:
        entry = manifest.pages.pop(page_id, None)
        if entry is not None:
            s3.delete_document(entry["key"])
            report.deleted = 1
    else:
        syncer = PageSyncer(client, space, manifest, convert_payload)

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
    report.api_calls = client.calls
    report.duration_s = time.perf_counter() - started
    return report


@task(name="confluence-sync-space", retries=0, task_run_name="sync-space-{space}")
def sync_space(
    space: str,
    full: bool = False,
    progress_id: str | None = None,
    progress_base: float = 0.0,
    progress_span: float = 100.0,
) -> SpaceReport:
    """Prefect task around `sync_space_impl` (the call layer retries calls; a task retry
    would re-list the space for nothing). Progress goes to artifact `progress_id`."""
    progress = _Progress(progress_id, progress_base, progress_span) if progress_id else None
    return sync_space_impl(space, full=full, progress=progress)


@task(name="confluence-sync-page", retries=0, task_run_name="sync-page-{page_id}")
def sync_page(page_id: str, space: str | None = None) -> SpaceReport:
    return sync_page_impl(page_id, space)


def ensure_knowledge_base() -> None:
    s3.ensure_bucket()


__all__ = [
    "OUTCOMES",
    "SpaceReport",
    "ensure_knowledge_base",
    "shutdown_pool",
    "sync_page",
    "sync_page_impl",
    "sync_space",
    "sync_space_impl",
]

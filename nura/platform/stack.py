"""`nura up` / `nura down`: the whole platform on one machine.

Order: validate config -> check ports -> embedded PostgreSQL (Prefect's database and the
stores) -> Prefect server -> sandbox stand-ins when no cloud credentials are configured ->
bootstrap (blocks, limits, work pool, deployments) -> worker -> webhook receiver -> one run
of each flow (sandbox) -> supervise until Ctrl-C, then stop everything in reverse order.

State lives in `platform.state_dir` (default `.nura/` in the project): `pg/` (PostgreSQL
data), `prefect/` (PREFECT_HOME), `logs/` (one log per child), `stack.json` (what runs, for
`nura down` and `nura up --detach`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nura.config import IntegrationsConfig
from nura.platform.launch_flow_run import ENV as LAUNCH_ENV
from nura.platform.processes import (
    Child,
    EmbeddedPostgres,
    StackError,
    prefect_server_child,
    require_free_port,
    wait_http,
)
from nura.platform.project import project_dir

MAX_RESTARTS = 3


class StackAlreadyRunning(StackError):
    """A stack already runs from this state directory."""


@dataclass
class StackState:
    state_dir: Path
    api_url: str = ""
    ui_url: str = ""
    receiver_url: str = ""
    store_url: str = ""
    config_path: str = ""
    source_config: str = ""  # the config `nura up` was given (config_path may derive from it)
    sandbox: bool = False
    first_runs: bool = False  # `nura up` triggered one run of each deployment
    sandbox_urls: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    # Each process's start time (clock ticks since boot): a pid alone may have been reused.
    starts: dict[str, int] = field(default_factory=dict)
    status: str = "starting"
    started_at: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.state_dir / "stack.json"

    def save(self) -> None:
        data = {k: v for k, v in self.__dict__.items() if k != "state_dir"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.path)  # atomic: `nura up --detach` and `nura status` read it meanwhile

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        path = state_dir / "stack.json"
        if not path.exists():
            return None
        state = cls(state_dir)
        for key, value in json.loads(path.read_text()).items():
            setattr(state, key, value)
        return state


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None if there is none.

    Where /proc is missing, 0 for any live process (the pid alone then identifies it).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return 0
    except OSError:
        return None
    # Fields 3 (state) and 22; the command name (field 2) is in parentheses, may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent: not running
        return None
    return int(fields[19])


def is_alive(pid: int, start: int | None) -> bool:
    """Process `pid` runs and is the one recorded (same start time), not a reused pid."""
    now = process_start(pid)
    return now is not None and (not start or not now or now == start)


def live_processes(state: StackState) -> dict[str, int]:
    """The recorded processes of `state` that still run."""
    return {n: p for n, p in state.pids.items() if is_alive(p, state.starts.get(n))}


def running_stack(state_dir: Path) -> StackState | None:
    """The stack recorded in `state_dir` if any of its processes still runs, else None.

    A record whose processes are all gone (a crash, a reboot) is stale: it is marked
    stopped, so nothing attaches to it and `nura up` starts afresh.
    """
    state = StackState.load(state_dir)
    if state is None or state.status == "stopped":
        return None
    if live_processes(state):
        return state
    state.status, state.pids, state.starts = "stopped", {}, {}
    state.save()
    return None


def has_cloud_credentials(env: dict[str, str] | None = None) -> bool:
    """Real services are used when AWS or Confluence credentials are configured."""
    env = dict(os.environ) if env is None else env
    aws = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")) or bool(
        env.get("AWS_PROFILE")
    )
    return aws or bool(env.get("CONFLUENCE_API_TOKEN"))


class Stack:
    def __init__(
        self,
        cfg: IntegrationsConfig,
        config_path: Path,
        *,
        sandbox: bool | None = None,
        trigger_runs: bool = True,
        say: Callable[[str], None] = print,
        status: Callable[[str], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        state_dir = Path(cfg.platform.state_dir)
        self.state_dir = state_dir if state_dir.is_absolute() else project_dir() / state_dir
        self.logs = self.state_dir / "logs"
        self.sandbox = (not has_cloud_credentials()) if sandbox is None else sandbox
        self.trigger_runs = trigger_runs
        self.say = say
        self.status = status
        self.pg = EmbeddedPostgres(self.state_dir / "pg")
        self.children: list[Child] = []
        self.state = StackState(
            self.state_dir,
            sandbox=self.sandbox,
            first_runs=self.sandbox and trigger_runs,
            source_config=str(Path(config_path).resolve()),
        )
        self._stopping = False

    # -- start -------------------------------------------------------------------------
    def _step(self, text: str) -> None:
        if self.status is not None:
            self.status(text)
        else:
            self.say(text)

    def _mark(self, name: str, started: float) -> None:
        self.state.timings[name] = round(time.monotonic() - started, 2)

    def up(self) -> StackState:
        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if running_stack(self.state_dir) is not None:
            # The caller checks first (`nura up` reports the running stack and exits 0);
            # this guard only keeps a second stack off the same directory.
            raise StackAlreadyRunning(f"a stack already runs from {self.state_dir}")
        port = self.cfg.platform.prefect_port
        receiver = self.cfg.webhooks.receiver
        require_free_port(port, "Prefect server")
        require_free_port(receiver.port, "webhook receiver", receiver.host)

        # Everything that does not need the Prefect API starts at once and overlaps the
        # server's start (its imports and migrations take most of the wait): the sandbox,
        # the receiver (it queues webhooks until Prefect answers), and the bootstrap, which
        # imports every flow and builds the parameter schemas before it waits for the API.
        if self.sandbox:
            self._step(
                "starting the sandbox (moto, Confluence, Bedrock, GitHub, Slack/webhook sink)"
            )
            self._start_sandbox()

        if self.cfg.platform.prefect_database == "sqlite":
            (self.state_dir / "prefect").mkdir(parents=True, exist_ok=True)
            prefect_db = f"sqlite+aiosqlite:///{self.state_dir / 'prefect' / 'prefect.db'}"
            self.state.store_url = f"sqlite:///{self.state_dir / 'nura.db'}"
            self._step("starting Prefect server")
            server = prefect_server_child(
                self.state_dir / "prefect", prefect_db, port, self.logs
            ).start()
            self.children.append(server)
        else:
            # The server imports itself while PostgreSQL starts, and waits for its URL.
            url_file = self.state_dir / "prefect" / "database-url"
            url_file.parent.mkdir(parents=True, exist_ok=True)
            url_file.unlink(missing_ok=True)
            self._step("starting embedded PostgreSQL and the Prefect server")
            server = prefect_server_child(
                self.state_dir / "prefect", "", port, self.logs, database_url_file=url_file
            ).start()
            self.children.append(server)
            self.pg.start()
            for db in ("prefect", "nura"):
                self.pg.ensure_database(db)
            tmp = url_file.with_suffix(".tmp")
            tmp.write_text(self.pg.url("prefect"))
            tmp.replace(url_file)  # atomic: the server never reads half a URL
            self.state.store_url = self.pg.url("nura", "psycopg")
        self._mark("database", t0)

        self.state.api_url = f"http://127.0.0.1:{port}/api"
        self.state.ui_url = f"http://127.0.0.1:{port}"
        env = self._child_env()
        receiver_child = self._start_receiver(env)
        self._start_preloader(env)
        bootstrap = self._start_bootstrap(env)
        self._save_pids()
        try:
            wait_http(f"{self.state.api_url}/health", 180, server.proc)
            self._mark("prefect_server", t0)

            self._step("bootstrapping blocks, limits, work pool and deployments")
            self._wait_work_pool(bootstrap)
            self._start_worker(env)
            self._mark("worker", t0)
            self._wait_bootstrap(bootstrap)
            self._mark("bootstrap", t0)
        finally:
            if bootstrap.poll() is None:  # up() failed or was interrupted meanwhile
                bootstrap.kill()
                bootstrap.wait()

        self._step("waiting for the webhook receiver and the sandbox")
        if receiver_child is not None:
            wait_http(f"{self.state.receiver_url}/healthz", 60, receiver_child.proc)
        if self.sandbox:
            self._wait_sandbox()
        self._mark("up", t0)
        self.state.status = "ready"
        self._save_pids()
        return self.state

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PREFECT_API_URL=self.state.api_url,
            NURA_CONFIG=self.state.config_path or str(self.config_path),
            NURA_STORE_URL=self.state.store_url,
            NURA_STATE_DIR=str(self.state_dir),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        if self.sandbox:
            env.setdefault("AWS_ACCESS_KEY_ID", "sandbox")
            env.setdefault("AWS_SECRET_ACCESS_KEY", "sandbox")
            env.setdefault("AWS_DEFAULT_REGION", self.cfg.external_services.aws.region)
        return env

    def _start_sandbox(self) -> None:
        import importlib.util

        from nura.platform.sandbox import sandbox_config, sandbox_ports, sandbox_urls

        missing = [m for m in ("moto", "standardwebhooks") if importlib.util.find_spec(m) is None]
        if missing:
            raise StackError(
                f"the sandbox needs {', '.join(missing)}: pip install -e '.[sandbox]' "
                "(or configure cloud credentials, or nura up --no-sandbox)"
            )

        ports = sandbox_ports()
        self.state.sandbox_urls = sandbox_urls(ports)
        path = self.state_dir / "sandbox-integrations.yaml"
        sandbox_config(self.config_path, self.state.sandbox_urls, path)
        self.state.config_path = str(path)
        self._sandbox_ready = self.state_dir / "sandbox.json"
        self._sandbox_ready.unlink(missing_ok=True)
        for name in ("sandbox-push.json", "sandbox-first-push.json"):
            (self.state_dir / name).unlink(missing_ok=True)
        child = Child(
            "sandbox",
            [
                sys.executable,
                "-m",
                "deployments.sandbox.stack",
                "--ports",
                json.dumps(ports),
                "--ready-file",
                str(self._sandbox_ready),
            ],
            self._child_env(),
            self.logs,
            project_dir(),
        ).start()
        self.children.append(child)
        self._sandbox_child = child
        self._save_pids()

    def _wait_sandbox(self) -> None:
        child = self._sandbox_child
        deadline = time.monotonic() + 60
        while not self._sandbox_ready.exists():
            if not child.alive():
                raise StackError(f"the sandbox exited early:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"the sandbox did not start within 60s:\n{child.tail()}")
            time.sleep(0.1)

    def _start_bootstrap(self, env: dict[str, str]) -> subprocess.Popen[str]:
        # In a child process: it must see this stack's API URL and config, not ours. With
        # --first-runs it also triggers the sandbox's runs once the deployments exist (it
        # has every flow imported by then; a separate process would import them again).
        args = [sys.executable, "-m", "nura.cli.main", "bootstrap"]
        args += ["--wait-api", "180"]
        args += ["--flow-run-command", f"{sys.executable} -m nura.platform.launch_flow_run"]
        if self.sandbox:
            args.append("--sandbox-blocks")
            if self.trigger_runs:
                args.append("--first-runs")
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / "bootstrap.log", "w")  # noqa: SIM115 - the child's output
        try:
            return subprocess.Popen(
                args, env=env, cwd=project_dir(), stdout=log, stderr=subprocess.STDOUT, text=True
            )
        finally:
            log.close()

    def _bootstrap_failed(self, proc: subprocess.Popen[str]) -> StackError:
        tail = (self.logs / "bootstrap.log").read_text(errors="replace")[-4000:]
        return StackError(f"bootstrap failed (exit code {proc.returncode}):\n{tail}")

    def _wait_work_pool(self, bootstrap: subprocess.Popen[str]) -> None:
        """The bootstrap creates the work pool first; the worker starts once it exists."""
        from nura.platform.processes import ProcessExited, WaitTimeout, answers_ok

        url = f"{self.state.api_url}/work_pools/{self.cfg.platform.work_pool}"
        try:
            wait_http(url, 180, bootstrap, accept=answers_ok, request_timeout=5)
        except WaitTimeout as exc:
            raise StackError(
                f"the work pool was not created within 180s (last: {exc.last})"
            ) from exc
        except ProcessExited:
            if bootstrap.returncode != 0:  # a bootstrap that finished made the pool
                raise self._bootstrap_failed(bootstrap) from None

    def _wait_bootstrap(self, bootstrap: subprocess.Popen[str]) -> None:
        try:
            bootstrap.wait(timeout=600)
        except subprocess.TimeoutExpired:
            bootstrap.kill()
            raise StackError("bootstrap did not finish within 600s") from None
        if bootstrap.returncode != 0:
            raise self._bootstrap_failed(bootstrap)

    def _start_worker(self, env: dict[str, str]) -> None:
        worker_env = dict(env)
        # Prefect polls every 10 s by default; a local stack picks runs up sooner.
        worker_env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
        worker_env[LAUNCH_ENV] = str(self.preloader_socket)
        worker = Child(
            "worker",
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                self.cfg.platform.work_pool,
                "--type",
                "process",
                "--limit",
                str(self.cfg.platform.worker_limit),
            ],
            worker_env,
            self.logs,
            project_dir(),
        ).start()
        self.children.append(worker)
        self._save_pids()

    @property
    def preloader_socket(self) -> Path:
        path = self.state_dir / "preloader.sock"
        if len(str(path)) < 100:  # a Unix socket path holds ~107 bytes
            return path
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"nura-preloader-{digest}.sock"

    def _start_preloader(self, env: dict[str, str]) -> None:
        """Prefect and every flow imported once; each run forks from it (preloader.py).
        Until it listens, and if it is gone, runs start the plain way: never a wait."""
        child = Child(
            "preloader",
            [
                sys.executable,
                "-m",
                "nura.platform.preloader",
                "--socket",
                str(self.preloader_socket),
            ],
            env,
            self.logs,
            project_dir(),
        ).start()
        self.children.append(child)

    def _start_receiver(self, env: dict[str, str]) -> Child:
        receiver = self.cfg.webhooks.receiver
        rec = Child(
            "receiver",
            [sys.executable, "-m", "nura.cli.main", "webhooks", "serve"],
            env,
            self.logs,
            project_dir(),
        ).start()
        self.children.append(rec)
        self.state.receiver_url = f"http://{receiver.host}:{receiver.port}"
        return rec

    def _save_pids(self) -> None:
        # The supervisor (this process) comes first: `nura down` asks it to stop the rest,
        # so it does not restart the children it sees dying.
        self.state.pids = {"supervisor": os.getpid()}
        self.state.pids.update({c.name: c.pid for c in self.children if c.pid})
        if self.pg.pid is not None:
            self.state.pids["postgresql"] = self.pg.pid
        self.state.starts = {
            name: start
            for name, pid in self.state.pids.items()
            if (start := process_start(pid)) is not None
        }
        self.state.save()

    # -- run ---------------------------------------------------------------------------
    def supervise(self, poll: float = 1.0) -> None:
        """Restart a crashed child (at most MAX_RESTARTS times), else stop the whole stack."""
        while not self._stopping:
            for child in self.children:
                if child.alive() or self._stopping:
                    continue
                code = child.proc.returncode if child.proc else None
                if child.restarts >= MAX_RESTARTS or child.name == "prefect-server":
                    self.say(
                        f"{child.name} exited with code {code} and cannot be kept running; "
                        f"stopping the stack. Last log lines ({child.log_path}):\n{child.tail()}"
                    )
                    self.down()
                    raise StackError(f"{child.name} crashed")
                child.restarts += 1
                self.say(
                    f"{child.name} exited with code {code}; "
                    f"restarting ({child.restarts}/{MAX_RESTARTS})"
                )
                child.start()
                self._save_pids()
            time.sleep(poll)

    # -- stop --------------------------------------------------------------------------
    def down(self) -> None:
        """Stop what this Stack started, nothing else (a refused start touches nothing)."""
        self._stopping = True
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.pg.started:
            self.pg.stop()
        if self.state.path.exists() and self.state.pids.get("supervisor") == os.getpid():
            self.state.status = "stopped"
            self.state.pids, self.state.starts = {}, {}
            self.state.save()


def stop_recorded_stack(state_dir: Path) -> dict[str, int]:
    """`nura down`: stop the processes stack.json records, each checked by pid and start
    time (never by name), the supervisor first (it stops its children in order).
    Returns what was running; raises StackError naming any process that did not stop."""
    state = StackState.load(state_dir)
    if state is None:
        return {}
    running = live_processes(state)
    supervisor = running.pop("supervisor", None)
    if supervisor is not None and supervisor != os.getpid():
        os.kill(supervisor, signal.SIGTERM)
        _wait_gone(state, {"supervisor": supervisor}, 60)
    for name, pid in reversed(list(running.items())):
        if name == "postgresql" or not is_alive(pid, state.starts.get(name)):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # children run in their own sessions
    _wait_gone(state, running, 20)
    for name, pid in running.items():
        if name != "postgresql" and is_alive(pid, state.starts.get(name)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    postmaster = running.get("postgresql")
    if postmaster is not None and is_alive(postmaster, state.starts.get("postgresql")):
        EmbeddedPostgres(state_dir / "pg").stop()
        _wait_gone(state, {"postgresql": postmaster}, 10)
        if is_alive(postmaster, state.starts.get("postgresql")):
            # pg_ctl could not act (its system user lost access to the data dir's parents,
            # e.g. a tmp dir re-made 0700): SIGINT is the fast shutdown pg_ctl would ask for
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGINT)
    _wait_gone(state, running, 10)
    if supervisor is not None:
        running = {"supervisor": supervisor, **running}
    left = {n: p for n, p in running.items() if is_alive(p, state.starts.get(n))}
    if left:
        raise StackError(f"still running after nura down: {left}")
    state.status, state.pids, state.starts = "stopped", {}, {}
    state.save()
    return running


def _wait_gone(state: StackState, pids: dict[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(is_alive(p, state.starts.get(n)) for n, p in pids.items()):
            return
        time.sleep(0.1)

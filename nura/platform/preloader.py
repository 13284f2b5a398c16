"""Flow-run preloader: one process with Prefect and every flow imported, forking per run.

    python -m nura.platform.preloader --socket PATH      # started by `nura up`

Why our own: Prefect's process worker starts a fresh interpreter per flow run, which
imports Prefect, the engine and the flow's modules again (~4-6 s of CPU per run on this
machine; the sandbox's nine first runs spent most of their first minute on it). Prefect has
no pre-forking launcher, so this is one, in the classic zygote shape: import once, fork per
run, and the child inherits the imported modules copy-on-write.

The worker still starts, watches and cancels each run through its own process: the work
pool's command is `python -m nura.platform.launch_flow_run`, which passes its argv,
environment, working directory and stdin/stdout/stderr here (SCM_RIGHTS), forwards signals,
and exits with the child's status. The child runs exactly what `python -m prefect.engine`
runs, after taking the launcher's environment and refreshing Prefect's settings from it.
It runs the engine module's code as `__main__` itself (`_run_as_main`), not through
`runpy.run_module`: runpy warns when the module is already imported ("'prefect.engine'
found in sys.modules ... may result in unpredictable behaviour"), and here it always is, on
purpose (and in a plain `python -m prefect.engine` too, as `prefect.flow_engine` imports it).

Fork safety: nothing here starts a thread, an event loop, a database connection or an HTTP
client before forking (checked at start: the preloader refuses to serve with threads).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("nura.preloader")

KILL_GRACE_SECONDS = 30.0


def preload(modules: list[str]) -> list[str]:
    """Import the modules (Prefect's engine, the flows); returns those that failed."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a broken flow is reported by its own run, not here
            failed.append(name)
    return failed


def flow_modules() -> list[str]:
    """Every flow module prefect.yaml deploys."""
    import yaml

    from nura.platform.project import prefect_yaml

    data = yaml.safe_load(prefect_yaml().read_text())
    return [
        d["entrypoint"].split(":", 1)[0].removesuffix(".py").replace("/", ".")
        for d in data.get("deployments", [])
    ]


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("launcher closed the connection during the handshake")
        data += chunk
    return data


def _set_parent_death_signal() -> None:
    """Linux: the child gets SIGTERM if the preloader dies (no orphaned runs)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_as_main(module: str) -> None:
    """Run `module`'s code as `__main__`, as `python -m module` does, with it already imported.

    The same steps as runpy's `-m` path (a fresh `__main__` namespace with the module's spec,
    `sys.argv[0]` its file) minus the already-imported check and its RuntimeWarning: the
    imported copy stays as it is, the code runs once more as `__main__`, as in a fresh
    `python -m prefect.engine` (whose `prefect.flow_engine` import loads the module again).
    """
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations is not None:  # a package
        module = f"{module}.__main__"
        spec = importlib.util.find_spec(module)
    if spec is None or spec.loader is None or spec.origin is None:
        raise ImportError(f"no module named {module!r} to run")
    code = spec.loader.get_code(module)  # type: ignore[attr-defined]
    if code is None:
        raise ImportError(f"{module!r} has no code to run")
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=spec.origin,
        __cached__=spec.cached,
        __loader__=spec.loader,
        __package__=spec.parent,
        __spec__=spec,
        __builtins__=builtins,
    )
    sys.modules["__main__"] = main
    sys.argv[0] = spec.origin
    exec(code, main.__dict__)  # noqa: S102 - the module's own code, as `python -m` runs it


def _run_child(module: str, request: dict[str, object], fds: list[int]) -> int:
    """In the forked child: become the launcher's engine process and run the flow."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _set_parent_death_signal()
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    sys.argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    if "prefect" in sys.modules:
        # Prefect read its settings from the preloader's environment at import: again.
        import prefect.context
        from prefect.logging.configuration import setup_logging

        prefect.context.refresh_global_settings_context()
        # Log as a fresh engine process would: Prefect's full configuration from these
        # settings, not an incremental one on top of the preloader's own root handler (its
        # format has no level: a run's ERROR lines were not recognisable in worker.log).
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        setup_logging(incremental=False)
    try:
        _run_as_main(module)
        return 0
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


@dataclass
class Run:
    pid: int
    conn: socket.socket
    kill_at: float | None = None


@dataclass
class Preloader:
    socket_path: Path
    module: str = "prefect.engine"  # what each child runs as __main__
    runs: dict[int, Run] = field(default_factory=dict)  # by child pid
    stopping: bool = False

    def serve(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)  # only this user may hand us a run
        listener.listen(64)
        self.sel = selectors.DefaultSelector()
        self.listener = listener
        self.sel.register(listener, selectors.EVENT_READ)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        print(f"preloader ready on {self.socket_path}", flush=True)
        try:
            while not self.stopping:
                for key, _ in self.sel.select(timeout=0.2):
                    if key.fileobj is listener:
                        self._accept()
                    else:
                        self._from_launcher(key.fileobj)  # type: ignore[arg-type]
                self._reap()
                self._escalate()
        finally:
            for run in self.runs.values():  # stopping: the runs go too, as with the worker
                with contextlib.suppress(OSError):
                    os.kill(run.pid, signal.SIGTERM)
            listener.close()
            self.socket_path.unlink(missing_ok=True)

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        try:
            head, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
            if len(head) != 4 or len(fds) != 3:
                raise ConnectionError("bad handshake")
            (length,) = struct.unpack("!I", head)
            request = json.loads(_recv_exact(conn, length))
        except (OSError, ValueError) as exc:
            logger.warning("rejected a launcher: %s", exc)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the loop
            code = 1
            try:
                self.sel.close()
                self.listener.close()
                conn.close()
                for run in self.runs.values():
                    run.conn.close()
                code = _run_child(self.module, request, fds)
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        for fd in fds:
            os.close(fd)
        conn.setblocking(False)
        self.runs[pid] = Run(pid, conn)
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def _from_launcher(self, conn: socket.socket) -> None:
        pid = self.sel.get_key(conn).data
        run = self.runs.get(pid)
        try:
            data = conn.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if run is None:
            return
        if not data:  # the launcher died (worker killed it): the run must not outlive it
            self.sel.unregister(conn)
            self._signal(run, signal.SIGTERM)
            run.kill_at = time.monotonic() + KILL_GRACE_SECONDS
            return
        for line in data.decode(errors="replace").splitlines():
            kind, _, value = line.partition(" ")
            if kind == "kill" and value.isdigit():
                self._signal(run, int(value))

    def _signal(self, run: Run, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, signum)

    def _reap(self) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.pop(pid, None)
            if run is None:
                continue
            if os.WIFSIGNALED(status):
                message = f"signal {os.WTERMSIG(status)}\n"
            else:
                message = f"exit {os.waitstatus_to_exitcode(status)}\n"
            with contextlib.suppress(OSError):
                run.conn.setblocking(True)
                run.conn.sendall(message.encode())
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(run.conn)
            run.conn.close()

    def _escalate(self) -> None:
        now = time.monotonic()
        for run in self.runs.values():
            if run.kill_at is not None and now >= run.kill_at:
                self._signal(run, signal.SIGKILL)
                run.kill_at = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--module", default="prefect.engine", help="run in each child")
    parser.add_argument(
        "--no-flows", action="store_true", help="preload only --module, not prefect.yaml's flows"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.process_time()
    modules = [args.module] + (["prefect.flow_engine"] if args.module == "prefect.engine" else [])
    failed = preload(modules + ([] if args.no_flows else flow_modules()))
    if failed:
        logger.warning("could not preload %s: their runs import them in the child", failed)
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate()]
        raise SystemExit(f"preloading started threads {names}: forking would be unsafe")
    logger.info("preloaded in %.1f s of CPU", time.process_time() - started)
    Preloader(args.socket, args.module).serve()


if __name__ == "__main__":
    main()

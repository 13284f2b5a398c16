"""The flow-run preloader and its launcher, as real processes over a real Unix socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nura.platform.launch_flow_run import ENV

PROJECT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def preloader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    sock = tmp_path_factory.mktemp("pre") / "p.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nura.platform.preloader",
            "--socket",
            str(sock),
            "--module",
            "tests.platform.preload_target",
            "--no-flows",
        ],
        cwd=PROJECT,
    )
    _wait_for(sock.exists)
    yield sock
    proc.terminate()
    assert proc.wait(20) == 0
    assert not sock.exists()


def _launch(sock: Path | None, *args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k != ENV}
    if sock is not None:
        environ[ENV] = str(sock)
    environ.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "nura.platform.launch_flow_run", *args],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_child_takes_the_launchers_cwd_env_argv_and_stdout_and_its_exit_code(
    preloader: Path, tmp_path: Path
) -> None:
    proc = _launch(preloader, "report", "7", cwd=tmp_path, MARKER="from-launcher")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    assert out.strip() == f"cwd={tmp_path} marker=from-launcher argv=['report', '7']"


def test_sigterm_to_the_launcher_reaches_the_child(preloader: Path, tmp_path: Path) -> None:
    flag, pidfile = tmp_path / "flag", tmp_path / "pid"
    proc = _launch(preloader, "wait", str(flag), str(pidfile), cwd=tmp_path)
    _wait_for(pidfile.exists)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143  # the child's own exit status, passed through
    assert flag.read_text() == "SIGTERM"


def test_a_killed_launcher_takes_its_run_with_it(preloader: Path, tmp_path: Path) -> None:
    flag, pidfile = tmp_path / "flag", tmp_path / "pid"
    proc = _launch(preloader, "wait", str(flag), str(pidfile), cwd=tmp_path)
    _wait_for(pidfile.exists)
    child = int(pidfile.read_text())
    proc.kill()  # no chance to forward anything: the preloader sees the socket close
    proc.wait(10)
    _wait_for(flag.exists)

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    _wait_for(gone)


def test_without_a_preloader_the_launcher_is_the_plain_engine(tmp_path: Path) -> None:
    proc = _launch(tmp_path / "none.sock", cwd=tmp_path, PREFECT__FLOW_RUN_ID="not-a-uuid")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Invalid flow run id" in err

"""README.md's 5-minute tour, as a new user runs it: a fresh project directory, the
commands read from the README, each in a fresh environment with no variable exported.

`nura up --detach` must report the first runs, a second `nura up` must leave the running
stack untouched, every other command must reach that stack (attaching through its
stack.json), and `nura down` must leave no process behind.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nura.config import DEFAULT_PATH
from nura.platform.stack import is_alive
from tests.platform.stack_support import PROJECT

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(1500)]

BIN = Path(sys.executable).parent


def tour_commands() -> list[str]:
    text = (PROJECT / "README.md").read_text()
    block = re.search(r"<!-- tour:[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no tour block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A new project directory: the project's files and its own integrations.yaml (free
    ports, so the test never meets a stack a developer runs)."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT / "prefect.yaml", root)
    for folder in ("flows", "tasks", "blocks", "deployments"):
        shutil.copytree(
            PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    raw["platform"]["prefect_port"] = _free_port()
    raw.setdefault("webhooks", {}).setdefault("receiver", {})["port"] = _free_port()
    (root / "integrations.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`command` as typed in a new terminal: only PATH (the venv's bin first) and HOME."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    env["COLUMNS"] = "200"  # wide enough that a failure's detail column is readable
    return subprocess.run(
        shlex.split(command),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _recorded(project: Path) -> dict:
    return json.loads((project / ".nura" / "stack.json").read_text())


def _alive(state: dict) -> dict[str, int]:
    return {n: p for n, p in state["pids"].items() if is_alive(p, state["starts"].get(n))}


def test_the_tour_in_a_fresh_project_with_no_variables(project: Path) -> None:
    commands = tour_commands()
    assert commands[0] == "nura up --detach" and commands[-1] == "nura down"
    up = _shell(commands[0], project)
    recorded = _recorded(project)
    try:
        out = up.stdout + up.stderr
        assert up.returncode == 0, out
        assert "Nura Integrations is up" in out and "SANDBOX" in out
        assert "first runs" in out and "✗" not in out, out  # every first run completed
        running = _alive(recorded)
        assert set(running) >= {"supervisor", "prefect-server", "worker", "receiver"}, running

        again = _shell("nura up --detach", project)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout
        assert _alive(_recorded(project)) == running  # untouched: same processes

        for command in commands[1:-1]:
            proc = _shell(command, project)
            out = proc.stdout + proc.stderr
            assert "Traceback" not in out, (command, out)
            # `nura health` answers 1 when degraded (a stand-in may still be warming up).
            allowed = (0, 1) if command.startswith("nura health") else (0,)
            assert proc.returncode in allowed, (command, out)
            if command.startswith("nura webhooks send"):
                assert re.search(r"\b202\b", out), out
            if command.startswith("nura invoke"):
                assert "answered by" in out, out
            if command.startswith("nura ask"):  # from the sandbox's synced, embedded pages
                assert re.search(r"\[\d+\] TECH ", out), out  # a numbered TECH source
        assert _alive(_recorded(project)) == running  # nothing the tour did harmed it
    finally:
        down = _shell(commands[-1], project)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _alive(recorded), _alive(recorded)  # by pid and start time: all gone
    gone = _shell("nura status", project)
    assert gone.returncode == 1 and "not running" in gone.stdout


def test_without_a_stack_a_command_says_so(project: Path) -> None:
    proc = _shell("nura health", project)
    assert proc.returncode == 2
    assert "no running stack" in proc.stderr and "Traceback" not in proc.stderr

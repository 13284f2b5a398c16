"""Start and stop a whole `nura up --detach` stack in a temporary state dir (tests, benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from nura.config import DEFAULT_PATH

PROJECT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempStack:
    """A sandbox stack on free ports with its own state dir."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="nura-stack-"))
        raw = yaml.safe_load(DEFAULT_PATH.read_text())
        raw.setdefault("platform", {}).update(
            state_dir=str(self.state_dir), prefect_port=_free_port()
        )
        raw.setdefault("webhooks", {}).setdefault("receiver", {})["port"] = _free_port()
        self.config = self.state_dir / "integrations.yaml"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(raw))
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "NURA_", "AWS_", "CONFLUENCE_"))
        }

    def _cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nura.cli.main", "--config", str(self.config), *args],
            env=self.env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self, *extra: str) -> dict:
        proc = self._cli("up", "--detach", "--sandbox", *extra)
        if proc.returncode != 0:
            log = (self.state_dir / "up.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"nura up failed:\n{proc.stdout}\n{proc.stderr}\n{log}")
        return self.state()

    def state(self) -> dict:
        return json.loads((self.state_dir / "stack.json").read_text())

    def down(self) -> None:
        self._cli("down", timeout=120)

    def post_git_push(self) -> int:
        """The sandbox's signed GitHub push webhook to this stack's receiver; the status
        (202 the first time; 200 for the same push again: a duplicate, no second run)."""
        import uuid

        import httpx
        from pydantic import SecretStr

        from nura.platform.sandbox import SANDBOX_WEBHOOK_SECRETS
        from nura.webhooks.blocks import WebhookSecret

        cfg = yaml.safe_load(self.config.read_text())
        receiver = f"http://127.0.0.1:{cfg['webhooks']['receiver']['port']}"
        body = (self.state_dir / "sandbox-push.json").read_bytes()
        secret = SecretStr(SANDBOX_WEBHOOK_SECRETS["git_updates"])
        answer = httpx.post(
            f"{receiver}/webhooks/git",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": WebhookSecret(current=secret).get_client().hex_digest(body),
            },
            timeout=30,
        )
        assert answer.status_code in (200, 202), answer.text
        return answer.status_code


FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def wait_run(
    api: str, deployment: str, states: tuple[str, ...] = FINAL_STATES, timeout: float = 300
) -> dict:
    """The first run of `deployment` in one of `states` (polled; `timeout` only stops a
    stuck stack from hanging the suite)."""
    import time

    import httpx

    deps = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    dep_id = next(d["id"] for d in deps if d["name"] == deployment)
    body = {
        "flow_runs": {"deployment_id": {"any_": [dep_id]}, "state": {"type": {"any_": states}}},
        "limit": 1,
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
        if runs:
            return dict(runs[0])
        time.sleep(1)
    raise AssertionError(f"no {deployment} run in {states} within {timeout}s")

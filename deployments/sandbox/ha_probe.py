"""What the HA fault test and `benchmarks.scale_out` run on the HA layout.

- `make_project(root, recorder_url, ...)`: a project directory (this project's flows,
  tasks, blocks and sandbox) whose only deployment is `ha-probe`: one call through the
  call layer to the recorder (service `probe`, one shared rate limit), started by a
  signed webhook (`probe.ping` at `/webhooks/probe`, Standard Webhooks) or a schedule.
- `Recorder`: records (arrival time, flow run id) of every call.
- `send(url, delivery_id)`: a webhook signed with the `standardwebhooks` library.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from deployments.sandbox.base import JsonHandler, LocalServer

PROJECT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"ha-probe-test-secret-0123456789ab").decode()
SECRET_ENV = "NURA_HA_PROBE_SECRET"  # noqa: S105 - a variable name, not a secret
TAG = "ha-probe"

PROBE_FLOW = '''"""A flow for the HA layout's tests: one recorded call through the call layer."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from nura import get_call_layer


@flow(name="ha-probe")
def ha_probe(payload: dict[str, Any] | None = None) -> str:
    run_id = str(flow_run.id)
    get_call_layer().request("probe", "POST", "/record", json={"run": run_id})
    return run_id
'''


class Recorder(LocalServer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[float, str]] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)


class _RecorderHandler(JsonHandler):
    server: Recorder

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = json.loads(self._read_body() or b"{}")
        with self.server.lock:
            self.server.calls.append((time.time(), str(body.get("run"))))
        self._send(200, {"ok": True})


def make_project(
    root: Path,
    recorder_url: str,
    *,
    rate_per_min: int = 120,
    schedule_seconds: float | None = 15,
) -> Path:
    root.mkdir(parents=True)
    for folder in ("flows", "tasks", "blocks", "deployments"):
        shutil.copytree(
            PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    (root / "flows" / "ha_probe.py").write_text(PROBE_FLOW)
    prefect_yaml = yaml.safe_load((PROJECT / "prefect.yaml").read_text())
    deployment: dict[str, Any] = {
        "name": "ha-probe",
        "entrypoint": "flows/ha_probe.py:ha_probe",
        "work_pool": {"name": "nura-process", "work_queue_name": "default"},
        "tags": ["nura", TAG],
        "parameters": {},
    }
    if schedule_seconds:
        deployment["schedules"] = [{"interval": schedule_seconds}]
    prefect_yaml["deployments"] = [deployment]
    (root / "prefect.yaml").write_text(yaml.safe_dump(prefect_yaml, sort_keys=False))
    config = {
        "external_services": {
            "partners": {"probe": {"base_url": recorder_url, "rate_limit_per_minute": rate_per_min}}
        },
        "webhooks": {
            "incoming": {
                "probe": {
                    "url_path": "/webhooks/probe",
                    "event_types": ["probe.ping"],
                    "scheme": "standard",
                    "secret_env": SECRET_ENV,
                    "rate_limit_per_minute": 100_000,
                    "routing": {"probe.ping": "ha-probe/ha-probe"},
                }
            },
            "routing": {},
        },
    }
    (root / "integrations.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def send(url: str, delivery_id: str, timeout: float = 10.0) -> int:
    """POST one signed `probe.ping`; its HTTP status, 0 when nothing answered."""
    from standardwebhooks import Webhook

    body = json.dumps({"n": delivery_id})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(delivery_id, now, body),
        "X-Event-Type": "probe.ping",
        "Content-Type": "application/json",
    }
    try:
        answer = httpx.post(f"{url}/webhooks/probe", content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError:
        return 0
    return answer.status_code


def probe_runs(api_url: str) -> list[dict[str, Any]]:
    """Every flow run of `ha-probe` (webhook ones carry an idempotency key)."""
    out: list[dict[str, Any]] = []
    with httpx.Client(base_url=api_url, timeout=60) as client:
        while True:
            page = client.post(
                "/flow_runs/filter",
                json={"flow_runs": {"tags": {"all_": [TAG]}}, "offset": len(out), "limit": 200},
            )
            page.raise_for_status()
            batch = page.json()
            out += batch
            if len(batch) < 200:
                return out

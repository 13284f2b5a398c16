"""No secret of a running sandbox stack appears in its logs or in any artifact.

The sandbox's secrets are known (nura/platform/sandbox.py), so after the stack has served
a signed webhook and run a flow, every log file and every artifact is scanned for them.
"""

from __future__ import annotations

import httpx
import pytest

from nura.platform.sandbox import (
    SANDBOX_CONFLUENCE_TOKEN,
    SANDBOX_SECRET,
    SANDBOX_WEBHOOK_SECRETS,
)
from tests.platform.stack_support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SECRETS = [
    SANDBOX_SECRET,
    SANDBOX_SECRET.removeprefix("whsec_"),
    SANDBOX_CONFLUENCE_TOKEN,
    "sandbox-git-token",
    *SANDBOX_WEBHOOK_SECRETS.values(),
]


def test_no_sandbox_secret_in_logs_or_artifacts(stack) -> None:
    s, state = stack
    s.post_git_push()
    wait_run(state["api_url"], "git-ingest")
    leaks = []
    for path in sorted((s.state_dir / "logs").glob("*")):
        text = path.read_text(errors="replace") if path.is_file() else ""
        leaks += [f"{path.name}: {secret[:6]}…" for secret in SECRETS if secret in text]
    artifacts = httpx.post(f"{state['api_url']}/artifacts/filter", json={}, timeout=30).json()
    assert artifacts, "the stack published no artifact to scan"
    for artifact in artifacts:
        text = str(artifact.get("data")) + str(artifact.get("description"))
        leaks += [f"artifact {artifact['key']}: {sec[:6]}…" for sec in SECRETS if sec in text]
    assert not leaks, leaks

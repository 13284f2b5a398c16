"""End to end: `nura up` (sandbox) -> signed webhook -> flow run -> the Prefect UI in Chromium.

The UI is checked in a real headless browser (Debian's chromium driven by Playwright): the
deployments page lists every deployment, the flow run page shows the completed run, and its
Artifacts tab shows the run's artifact.
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import yaml

from tests.platform.stack_support import PROJECT, wait_run

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(1200)]

CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (tests/run.sh installs it)"
)
def test_signed_webhook_run_and_artifacts_are_visible_in_the_ui(stack):
    from playwright.sync_api import sync_playwright

    s, state = stack
    s.post_git_push()
    run = wait_run(state["api_url"], "git-ingest", states=("COMPLETED",))
    artifacts = httpx.post(
        f"{state['api_url']}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}},
        timeout=10,
    ).json()
    assert artifacts, "the git-ingest run published no artifact"
    artifact_key = artifacts[0]["key"]

    deployments = [
        d["name"] for d in yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    ]
    ui = state["ui_url"]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{ui}/v2/deployments", timeout=120_000)
        page.get_by_text("git-ingest").first.wait_for(timeout=120_000)
        text = page.inner_text("body")
        # The page shows 10 a page: find the others with its search box, as a user would.
        missing = [d for d in deployments if d not in text]
        search = page.get_by_placeholder("Search deployments")
        for name in list(missing):
            search.fill(name)
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            missing.remove(name)
        search.fill("")
        assert not missing, f"deployments page misses {missing}"

        page.goto(f"{ui}/v2/runs/flow-run/{run['id']}", timeout=120_000)
        page.get_by_text(run["name"]).first.wait_for(timeout=120_000)
        page.get_by_text("Completed").first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Artifacts").or_(
            page.get_by_text("Artifacts", exact=True)
        ).first.click()
        page.get_by_text(artifact_key).first.wait_for(timeout=60_000)
        page.screenshot(path=str(s.state_dir / "flow-run.png"))
        browser.close()
    print(
        json.dumps(
            {
                "run": run["name"],
                "artifact": artifact_key,
                "screenshot": str(s.state_dir / "flow-run.png"),
            }
        )
    )

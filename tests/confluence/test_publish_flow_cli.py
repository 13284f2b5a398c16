"""confluence-publish as a flow, and both flows from the `nura confluence` CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.confluence_publish import PublishPage, confluence_publish
from nura.kb import s3

pytestmark = pytest.mark.integration


def test_publish_flow_reports_and_fails_on_conflict(confluence, sync_env) -> None:
    confluence.add_space("ARCH")
    parent = confluence.add_page("ARCH", "Docs", "<p>p</p>")["id"]
    sync_env(spaces=["ARCH"])
    page = PublishPage(title="Arch", content="# Arch\n", parent_id=parent, labels=["gen"])
    rows = confluence_publish(pages=[page])
    assert rows[0]["action"] == "created"
    confluence.race_next_update = True
    state = confluence_publish(
        pages=[page.model_copy(update={"content": "# New\n"})], return_state=True
    )
    assert state.is_failed() and "never overwrites" in state.message
    rows = confluence_publish(
        pages=[page.model_copy(update={"content": "# Newer\n"})], on_conflict="overwrite"
    )
    assert rows[0]["action"] == "updated"


def test_cli_sync_and_publish(confluence, sync_env, tmp_path) -> None:
    from nura.cli.main import app

    confluence.generate(["TECH"], 3, body_bytes=300)
    sync_env(spaces=["TECH"])
    runner = CliRunner()
    result = runner.invoke(app, ["confluence", "sync", "--space", "TECH"])
    assert result.exit_code == 0, result.output
    page = sorted(confluence.pages)[0]
    assert s3.head_document(f"confluence/TECH/{page}.md") is not None

    doc = tmp_path / "arch.md"
    doc.write_text("# Generated\n\nText é.\n", encoding="utf-8")
    result = runner.invoke(
        app,
        ["confluence", "publish", str(doc), "--title", "Generated", "--space", "TECH",
         "--label", "generated"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    created = [p for p in confluence.pages.values() if p["title"] == "Generated"]
    assert created and created[0]["labels"] == ["generated"] and "é" in created[0]["body"]

    result = runner.invoke(app, ["confluence", "sync", "--space", "NOPE"])
    assert result.exit_code == 1 and "NOPE" in result.output

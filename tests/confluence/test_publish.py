"""Publishing: create, update with version + 1, and the 409 policies fail/overwrite/skip."""

from __future__ import annotations

import pytest

from nura.confluence.markdown import check_well_formed
from nura.confluence.publish import PublishConflict, markdown_to_storage, publish_page

DOC = "# Architecture\n\nSome *text* <script>x</script>\n\n```python\nprint(']]>')\n```\n"


@pytest.fixture
def site(confluence):
    confluence.add_space("ARCH")
    parent = confluence.add_page("ARCH", "Generated docs", "<p>parent</p>")
    return confluence, parent["id"]


def publish(client, **kw):
    args = {"space": "ARCH", "title": "Architecture", "content": DOC, **kw}
    return publish_page(client, **args)


def test_markdown_becomes_well_formed_storage_with_code_macro() -> None:
    storage = markdown_to_storage(DOC)
    assert check_well_formed(storage) is None
    assert '<ac:parameter ac:name="language">python</ac:parameter>' in storage
    assert "<script>" not in storage  # raw HTML is escaped, never passed through


def test_create_under_parent_with_labels(site, make_client) -> None:
    server, parent = site
    result = publish(make_client(server), parent_id=parent, labels=["generated", "arch"])
    assert result.action == "created" and result.version == 1
    page = server.pages[result.page_id]
    assert page["parent_id"] == parent and page["labels"] == ["generated", "arch"]


def test_update_sends_current_plus_one_and_unchanged_is_not_written(site, make_client) -> None:
    server, _ = site
    client = make_client(server)
    created = publish(client)
    server.edit(created.page_id)  # remote is now at version 2
    updated = publish(client, content=DOC + "\nMore.\n")
    assert updated.action == "updated" and updated.version == 3
    again = publish(client, content=DOC + "\nMore.\n")
    assert again.action == "unchanged" and server.pages[created.page_id]["version"] == 3


def test_409_fail_policy_never_overwrites(site, make_client) -> None:
    server, _ = site
    client = make_client(server)
    created = publish(client)
    server.race_next_update = True  # someone saves between our read and our write
    with pytest.raises(PublishConflict, match="never overwrites"):
        publish(client, content="# Mine\n")
    page = server.pages[created.page_id]
    assert page["version"] == 2 and "Mine" not in page["body"]


def test_409_overwrite_policy_rereads_and_writes_remote_plus_one(site, make_client) -> None:
    server, _ = site
    client = make_client(server)
    created = publish(client)
    server.race_next_update = True
    result = publish(client, content="# Mine\n", policy="overwrite")
    assert result.action == "overwritten" and result.version == 3
    assert "Mine" in server.pages[created.page_id]["body"]
    assert "version 2" in result.detail


def test_409_skip_policy_leaves_remote(site, make_client) -> None:
    server, _ = site
    client = make_client(server)
    created = publish(client)
    server.race_next_update = True
    result = publish(client, content="# Mine\n", policy="skip")
    assert result.action == "skipped" and result.version == 2
    assert "Mine" not in server.pages[created.page_id]["body"]


def test_stale_base_version_is_a_conflict_too(site, make_client) -> None:
    server, _ = site
    client = make_client(server)
    created = publish(client)
    server.edit(created.page_id)
    with pytest.raises(PublishConflict):
        publish(client, content="# Mine\n", base_version=1)
    assert publish(client, content="# Mine\n", base_version=1, policy="skip").action == "skipped"


def test_hostile_title_is_created_not_matched_elsewhere(site, make_client) -> None:
    server, _ = site
    title = 'Generated docs" OR title ~ "'
    result = publish(make_client(server), title=title)
    assert result.action == "created" and server.pages[result.page_id]["title"] == title

"""Publish pages to Confluence: create or update from Markdown or storage format, with labels.

Updates send `version = current + 1`. A `409 Conflict` means someone saved the page
between our read and our write; the page is re-read and the policy decides:
  fail       (default) raise `PublishConflict`: a newer remote edit is never overwritten
             silently;
  overwrite  write our content as `remote version + 1` (once more; a second 409 fails);
  skip       leave the remote page as it is and report it.
`base_version` (optional) extends the same policy to edits made before our read: when
the page is no longer at the version the content was based on, it is a conflict too.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from markdown_it import MarkdownIt
from pydantic import BaseModel, Field

from nura.confluence.client import (
    ConfluenceClient,
    ConfluenceError,
    ConfluenceInputError,
    VersionConflict,
)
from nura.core.runtime import get_config

Policy = Literal["fail", "overwrite", "skip"]
CODE_BLOCK = re.compile(
    r'<pre><code(?: class="language-([A-Za-z0-9_+#.-]+)")?>(.*?)</code></pre>', re.S
)


class PublishConflict(ConfluenceError):
    """The page changed remotely and the policy is `fail`."""


@dataclass
class PublishResult:
    title: str
    action: str  # created | updated | unchanged | overwritten | skipped | failed
    page_id: str | None = None
    version: int | None = None
    url: str | None = None
    detail: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)


_md = MarkdownIt("commonmark", {"xhtmlOut": True, "html": False}).enable(["table", "strikethrough"])


def markdown_to_storage(markdown: str) -> str:
    """Markdown -> Confluence storage XHTML; fenced code becomes the code macro.

    Raw HTML in the Markdown is escaped, not passed through: storage format must stay
    well-formed XHTML, and a document must not inject macros.
    """
    rendered = _md.render(markdown)

    def code_macro(m: re.Match[str]) -> str:
        lang, code = m.group(1), html.unescape(m.group(2))
        param = f'<ac:parameter ac:name="language">{lang}</ac:parameter>' if lang else ""
        safe = code.replace("]]>", "]]]]><![CDATA[>")  # CDATA cannot contain its end marker
        return (
            f'<ac:structured-macro ac:name="code">{param}'
            f"<ac:plain-text-body><![CDATA[{safe}]]></ac:plain-text-body></ac:structured-macro>"
        )

    return CODE_BLOCK.sub(code_macro, rendered).strip()


def _same(a: str, b: str) -> bool:
    return re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)


def publish_page(
    client: ConfluenceClient,
    *,
    space: str,
    title: str,
    content: str,
    content_format: Literal["markdown", "storage"] = "markdown",
    parent_id: str | None = None,
    labels: list[str] | None = None,
    policy: Policy = "fail",
    base_version: int | None = None,
) -> PublishResult:
    """Create or update one page; conflicts follow `policy` (see the module docstring)."""
    if not title.strip():
        raise ConfluenceInputError("a page needs a title")
    storage = content if content_format == "storage" else markdown_to_storage(content)
    space_info = client.get_space(space)
    existing = client.find_page(space, title)
    if existing is None:
        page = client.create_page(str(space_info["id"]), title, storage, parent_id)
        client.add_labels(str(page["id"]), labels or [])
        return _result(client, title, "created", page)

    page_id = str(existing["id"])
    current = client.get_page(page_id, body=True)
    if current is None:
        raise ConfluenceError(f"page {page_id} ({title!r}) disappeared while publishing")
    remote_version = int(current["version"]["number"])
    if base_version is not None and remote_version != base_version:
        outcome = _conflict(client, policy, current, title, storage, base_version)
        if outcome.action != "skipped":
            client.add_labels(page_id, labels or [])
        return outcome
    remote_body = current.get("body", {}).get("storage", {}).get("value", "")
    if _same(remote_body, storage) and current.get("title") == title:
        client.add_labels(page_id, labels or [])
        return _result(client, title, "unchanged", current)
    try:
        page = client.update_page(page_id, title, storage, remote_version + 1)
    except VersionConflict as exc:
        latest = client.get_page(page_id, body=True)
        if latest is None:
            raise ConfluenceError(
                f"page {page_id} ({title!r}) was deleted during the update"
            ) from exc
        outcome = _conflict(client, policy, latest, title, storage, remote_version)
        if outcome.action != "skipped":
            client.add_labels(page_id, labels or [])
        return outcome
    client.add_labels(page_id, labels or [])
    return _result(client, title, "updated", page)


def _conflict(
    client: ConfluenceClient,
    policy: Policy,
    latest: dict[str, Any],
    title: str,
    storage: str,
    based_on: int,
) -> PublishResult:
    remote = int(latest["version"]["number"])
    page_id = str(latest["id"])
    note = f"remote is at version {remote}, our content was based on version {based_on}"
    if policy == "skip":
        return _result(client, title, "skipped", latest, f"conflict: {note}; left as is")
    if policy == "overwrite":
        try:
            page = client.update_page(page_id, title, storage, remote + 1)
        except VersionConflict as exc:
            raise PublishConflict(f"{title!r}: changed again while overwriting ({exc})") from exc
        return _result(client, title, "overwritten", page, f"conflict: {note}; overwritten")
    raise PublishConflict(
        f"{title!r} (page {page_id}) changed in Confluence: {note}. Policy 'fail' never "
        "overwrites a newer remote edit; re-run with on_conflict='overwrite' or 'skip'."
    )


def _result(
    client: ConfluenceClient, title: str, action: str, page: dict[str, Any], detail: str = ""
) -> PublishResult:
    return PublishResult(
        title=title,
        action=action,
        page_id=str(page["id"]),
        version=int((page.get("version") or {}).get("number") or 0),
        url=client.page_url(page),
        detail=detail,
    )


class PublishPage(BaseModel):
    """One page to publish."""

    title: str = Field(min_length=1, max_length=255, description="Page title (unique in space)")
    content: str = Field(description="Page body, Markdown or storage-format XHTML")
    content_format: Literal["markdown", "storage"] = "markdown"
    space: str | None = Field(default=None, description="Space key; default: first configured")
    parent_id: str | None = Field(default=None, pattern=r"^\d+$", description="Parent page id")
    labels: list[str] = Field(default_factory=list)
    base_version: int | None = Field(
        default=None, ge=1, description="Version the content was based on (conflict check)"
    )


class PublishFailed(ConfluenceError):
    """At least one page could not be published (see the run's table artifact)."""


def publish_one(page: PublishPage, policy: str) -> PublishResult:
    """Publish one page with the configured site's client (a flow's task)."""
    space = page.space or get_config().external_services.confluence.spaces[0]
    return publish_page(
        ConfluenceClient.from_config(),
        space=space,
        title=page.title,
        content=page.content,
        content_format=page.content_format,
        parent_id=page.parent_id,
        labels=page.labels,
        policy=policy,  # type: ignore[arg-type]
        base_version=page.base_version,
    )

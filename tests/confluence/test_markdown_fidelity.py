"""Markdown that means what the page means (issue 19): golden files from storage-format
snippets of Atlassian's storage format reference (and Cloud's ADF extensions), and what
the converter cannot represent flagged (`not representable in Markdown: ...`), never
dropped in silence.

Golden outputs are `*.md.golden` (formatters must not rewrite them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from nura.confluence.markdown import UNREPRESENTABLE, Conversion, storage_to_markdown
from nura.confluence.publish import markdown_to_storage

GOLDEN = Path(__file__).parent / "golden"
BASE = {"base_url": "https://acme.atlassian.net", "space": "TECH", "page_id": "4242"}
commonmark = MarkdownIt("commonmark").enable("table")  # what a downstream renderer does


def convert(name: str) -> Conversion:
    return storage_to_markdown((GOLDEN / f"{name}.xhtml").read_text(encoding="utf-8"), **BASE)


def lost(result: Conversion) -> list[str]:
    return [w for w in result.warnings if w.startswith(UNREPRESENTABLE)]


NAMES = [
    "escape",
    "html_text",
    "jira",
    "adf",
    "mentions",
    "table_spans",
    "other_page_attachment",
    "subsup_emoticons",
]


@pytest.mark.parametrize("name", NAMES)
def test_golden(name: str) -> None:
    expected = (GOLDEN / f"{name}.md.golden").read_text(encoding="utf-8")
    assert convert(name).markdown == expected


def test_text_that_looks_like_markdown_stays_text() -> None:
    html = commonmark.render(convert("escape").markdown)
    assert "<h1>" not in html and "<ol" not in html and "<blockquote>" not in html
    assert "<hr" not in html and html.count("<ul>") == 1  # only the real list
    assert "<p># not a heading</p>" in html and "<p>1. not a list</p>" in html
    assert "<p>&gt; not a quote</p>" in html and "# after a break" in html


def test_escaped_html_stays_text_for_a_renderer() -> None:
    result = convert("html_text")
    assert "<script>" not in result.markdown
    html = commonmark.render(result.markdown)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp;lt;b&amp;gt;" in html  # the text "&lt;b&gt;", not "<b>"
    assert "javascript:" not in result.markdown and "click me" in result.markdown
    assert "<code>&lt;b&gt;</code>" in html


def test_publish_then_sync_keeps_a_script_as_text() -> None:
    storage = markdown_to_storage("Say <script>alert(1)</script> please\n")
    markdown = storage_to_markdown(storage, **BASE).markdown
    assert "<script>" not in commonmark.render(markdown)
    assert "&lt;script>alert(1)&lt;/script>" in markdown


def test_jira_query_is_kept_and_flagged() -> None:
    result = convert("jira")
    assert "`project = CONF AND FixVersion=5.8`" in result.markdown
    assert "JIRA CONF-1234" in result.markdown
    assert lost(result) == [f"{UNREPRESENTABLE}: Jira issue list (its query is kept)"]


def test_cloud_adf_content_without_ids_or_duplicates() -> None:
    result = convert("adf")
    md = result.markdown
    assert md.count("Use PostgreSQL 16") == 1 and "d1ad1b" not in md and "DECIDED" not in md
    assert "- **Decision (decided):** Use PostgreSQL 16" in md
    assert md.count("Ship it on **Friday**.") == 1 and "E3FCEF" not in md
    assert any("future-thing" in w for w in result.warnings)


def test_mentions_keep_the_name() -> None:
    md = convert("mentions").markdown
    assert "[@Jane Doe](https://acme.atlassian.net/wiki/people/557058%3Aaaaa-bbbb-cccc)" in md
    assert "@ff8080814d5b1b0b014d5b1d2b8c0002" in md and "@user" not in md


def test_table_spans_keep_columns_and_code_in_cells() -> None:
    result = convert("table_spans")
    rows = result.markdown.splitlines()
    assert rows[2] == "| API | Alice | primary |"
    assert rows[3] == "|  | Bob | backup |"  # Bob stays under Owner
    assert rows[4] == "| Shared |  | both |"
    assert rows[5] == "| Code | `x = 1`<br>`y = x \\| 2` | ok |"
    assert "```" not in result.markdown
    assert len(lost(result)) == 1 and "merged" in lost(result)[0]
    html = commonmark.render(result.markdown)
    assert "<td>Bob</td>" in html and "<code>y = x | 2</code>" in html


def test_attachment_of_another_page_is_not_linked_under_this_page() -> None:
    result = convert("other_page_attachment")
    md = result.markdown
    assert "attachments/4242/atlassian_logo.gif" not in md and "4242/spec.pdf" not in md
    assert "(https://acme.atlassian.net/wiki/display/DOCS/Page+Title)" in md
    assert "(https://acme.atlassian.net/wiki/display/TECH/Specifications)" in md
    assert "![ours](https://acme.atlassian.net/wiki/download/attachments/4242/here.png)" in md
    assert len(lost(result)) == 2


def test_sub_sup_and_emoticons() -> None:
    result = convert("subsup_emoticons")
    md = result.markdown
    assert "H₂O" in md and "x²" in md and "note<sup>a long note</sup>" in md
    assert "✓ done" in md and "✗ not done" in md and ":tick:" not in md
    assert lost(result) == [f"{UNREPRESENTABLE}: emoticon 'custom-party'"]

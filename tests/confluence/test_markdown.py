"""Storage XHTML -> Markdown fidelity against golden files, and malformed input.

Golden outputs are `*.md.golden`, not `.md`: formatters must not rewrite the code blocks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.sandbox.confluence_pages import generate_body
from nura.confluence.markdown import check_well_formed, convert_payload, storage_to_markdown

GOLDEN = Path(__file__).parent / "golden"


def convert(name: str):
    source = (GOLDEN / f"{name}.xhtml").read_text(encoding="utf-8")
    return storage_to_markdown(
        source, base_url="https://acme.atlassian.net", space="TECH", page_id="4242"
    )


@pytest.mark.parametrize("name", ["rich", "cjk", "malformed"])
def test_golden(name: str) -> None:
    expected = (GOLDEN / f"{name}.md.golden").read_text(encoding="utf-8")
    assert convert(name).markdown == expected


def test_rich_page_keeps_every_construct() -> None:
    md = convert("rich").markdown
    assert "# Overview — Über Café 日本語" in md
    assert "````python\ndef f(x):" in md  # fence longer than the ``` inside the code
    assert "> **Warning**\n>\n> Warning body 警告" in md
    assert "> **Note: Careful**" in md
    assert "[the other page](https://acme.atlassian.net/wiki/display/DOCS/Other+Page)" in md
    assert "![Diagram](https://acme.atlassian.net/wiki/download/attachments/4242/arch.png)" in md
    assert "| a\\|b | x<br>y |" in md
    assert "- [x] done task" in md and "- [ ] open task" in md
    assert "entity é" in md


def test_unknown_macro_is_reported_not_lost() -> None:
    result = convert("rich")
    assert not result.malformed
    assert any("gadget-x" in w for w in result.warnings)


def test_malformed_is_flagged_and_converted_as_far_as_possible() -> None:
    result = convert("malformed")
    assert result.malformed
    assert result.warnings[0].startswith("malformed storage XHTML")
    for text in ("## Broken page", "raw ampersand", "- item two", "| cell |", "x = 1"):
        assert text in result.markdown


@pytest.mark.parametrize(
    "garbage", ["", "<<<>>>", "<ac:structured-macro", "\x00\x01", "<p>" * 500, "]]>"]
)
def test_garbage_never_raises(garbage: str) -> None:
    result = storage_to_markdown(garbage)
    assert isinstance(result.markdown, str)


def test_generated_pages_are_well_formed_and_convert_cleanly() -> None:
    body = generate_body("TECH", 7, ["Other"], 10_000)
    assert check_well_formed(body) is None
    markdown, warnings, malformed = convert_payload((body, "https://x", "TECH", "7"))
    assert not malformed and warnings == []
    assert "```" in markdown and "| Name | Value | Notes |" in markdown

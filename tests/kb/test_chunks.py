"""The Markdown chunker: structure kept (headings, fenced code, tables), size bounds,
overlap, hostile input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nura.kb.chunks import Chunk, chunk_markdown

GUIDE = """Intro before any heading.

# Guide

Welcome to the guide.

## Install

Run the installer.

```bash
# this is a comment, not a heading
pip install nura
```

| OS | Command |
|----|---------|
| Linux | apt install nura |
| macOS | brew install nura |

## Empty

### Deep
Deep text.

Setext heading
==============

After setext.
"""


def test_sections_follow_the_heading_path() -> None:
    chunks = chunk_markdown(GUIDE, max_chars=2000, overlap_chars=0)
    assert [(c.ordinal, c.section) for c in chunks] == [
        (0, ""),
        (1, "Guide"),
        (2, "Guide > Install"),
        (3, "Guide > Empty > Deep"),
        (4, "Setext heading"),
    ]
    assert chunks[0] == Chunk("Intro before any heading.", "", 0)
    install = chunks[2].text
    assert install.startswith("## Install\n\nRun the installer.")
    assert "```bash\n# this is a comment, not a heading\npip install nura\n```" in install
    assert "| macOS | brew install nura |" in install
    assert chunks[4].text == "Setext heading\n==============\n\nAfter setext."


def test_code_and_tables_are_never_cut_while_they_fit() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    table = "| a | b |\n|---|---|\n" + "\n".join(f"| {i} | {i * i} |" for i in range(20))
    text = f"# T\n\n{'word ' * 60}\n\n{code}\n\n{'more ' * 60}\n\n{table}\n"
    chunks = chunk_markdown(text, max_chars=400, overlap_chars=50)
    assert sum(code in c.text for c in chunks) == 1
    assert sum(table in c.text for c in chunks) == 1
    assert all(len(c.text) <= 400 for c in chunks)


def test_an_oversized_code_block_is_split_into_valid_fenced_pieces() -> None:
    lines = [f"print({i})  # line {i}" for i in range(100)]
    text = "```python\n" + "\n".join(lines) + "\n```\n"
    chunks = chunk_markdown(text, max_chars=300, overlap_chars=0)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.startswith("```python\n") and chunk.text.endswith("\n```")
        assert len(chunk.text) <= 300
    kept = [ln for c in chunks for ln in c.text.split("\n")[1:-1]]
    assert kept == lines  # every line once, in order, none cut


def test_an_oversized_table_repeats_its_header() -> None:
    rows = [f"| {i} | value {i} |" for i in range(60)]
    text = "| n | v |\n|---|---|\n" + "\n".join(rows)
    chunks = chunk_markdown(text, max_chars=200, overlap_chars=0)
    assert len(chunks) > 1
    assert all(c.text.startswith("| n | v |\n|---|---|\n") for c in chunks)
    assert [r for c in chunks for r in c.text.split("\n")[2:]] == rows


def test_overlap_repeats_the_tail_of_text_from_a_word_boundary() -> None:
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(40)]
    text = "# Notes\n\n" + "\n\n".join(sentences)
    chunks = chunk_markdown(text, max_chars=300, overlap_chars=80)
    assert len(chunks) > 2
    for before, after in zip(chunks, chunks[1:], strict=False):
        head = after.text.split("\n\n")[0]
        assert len(head) <= 80
        assert before.text.endswith(head)  # the carried text is the previous tail
        assert not head.startswith(" ")
    assert all(len(c.text) <= 300 for c in chunks)


def test_no_overlap_is_carried_out_of_code() -> None:
    text = "# A\n\n" + "para " * 50 + "\n\n```\n" + "code line\n" * 30 + "```\n\n" + "after " * 30
    chunks = chunk_markdown(text, max_chars=200, overlap_chars=60)
    for chunk in chunks:
        assert chunk.text.count("```") % 2 == 0  # every fence opened is closed


def test_a_long_paragraph_splits_on_sentences_then_words() -> None:
    text = " ".join(f"Word{i}." for i in range(400)) + " " + "x" * 500
    chunks = chunk_markdown(text, max_chars=250, overlap_chars=0)
    assert all(0 < len(c.text) <= 250 for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert "Word0." in joined and "Word399." in joined and "x" * 250 in joined


def test_hostile_bytes_and_unicode_are_made_safe() -> None:
    text = "# Ti\x00tle\r\n\r\nBody\x07 with NUL\x00 and \ud800 lone surrogate; 日本語 ✓\rend"
    chunks = chunk_markdown(text, max_chars=200, overlap_chars=0)
    assert len(chunks) == 1
    chunk = chunks[0]
    assert "\x00" not in chunk.text and "\x07" not in chunk.text and "\r" not in chunk.text
    chunk.text.encode("utf-8")  # no lone surrogate left
    assert "日本語 ✓" in chunk.text and chunk.section == "Ti tle"


def test_blank_and_heading_only_documents_give_no_chunks() -> None:
    assert chunk_markdown("") == []
    assert chunk_markdown("   \n\n\t") == []
    assert chunk_markdown("# Only\n\n## Headings\n") == []


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        chunk_markdown("x", max_chars=10)
    with pytest.raises(ValueError):
        chunk_markdown("x", max_chars=100, overlap_chars=60)


_markdownish = st.lists(
    st.one_of(
        st.text(min_size=0, max_size=300),
        st.builds(lambda t: f"# {t}", st.text(max_size=40)),
        st.builds(lambda t: f"```\n{t}\n```", st.text(max_size=400)),
        st.builds(lambda n: "| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * n, st.integers(0, 40)),
    ),
    max_size=12,
).map("\n\n".join)


@settings(max_examples=150, deadline=None)
@given(_markdownish, st.integers(60, 600), st.integers(0, 29))
def test_every_chunk_within_bounds_and_no_word_lost(text: str, size: int, overlap: int) -> None:
    chunks = chunk_markdown(text, max_chars=size, overlap_chars=overlap)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert all(0 < len(c.text) <= size and c.text.strip() for c in chunks)
    produced = " ".join(c.text for c in chunks)
    from nura.kb.chunks import clean_text

    for word in re.findall(r"\w{3,}", clean_text(text)):
        if not re.fullmatch(r"_+", word):
            assert word[:size] in produced or _in_heading_only(text, word)


def _in_heading_only(text: str, word: str) -> bool:
    """Words of headings without body text are kept only in section paths."""
    return any(word in line for line in text.split("\n") if line.lstrip().startswith("#"))

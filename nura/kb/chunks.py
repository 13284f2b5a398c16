"""Markdown -> retrieval chunks along the document's structure.

    chunks = chunk_markdown(markdown, max_chars=2000, overlap_chars=200)
    chunks[0].text, chunks[0].section ("Install > Linux"), chunks[0].ordinal (0, 1, ...)

Rules (docs/knowledge-base.md):
- the document's blocks come from markdown-it-py (the CommonMark parser the project already
  uses, GFM tables on): a `#` inside a code block is code, a setext heading is a heading;
- a heading starts a new section; a chunk never spans two sections, and its `section` is
  the heading path ("Guide > Install > Linux"); a heading with no text of its own gives
  no chunk (its path lives on in its subsections');
- blocks are packed into a chunk up to `max_chars`; a fenced code block and a table are
  never cut while they fit in one chunk; one that does not is split on line boundaries,
  each piece a valid block again (the fence reopened and closed, the table's header rows
  repeated); an over-long paragraph is split on lines, then sentences, then words;
- every chunk's text is at most `max_chars` characters;
- when a section continues in a new chunk after text, the new chunk starts with the tail
  of that text (at most `overlap_chars`, from a word boundary) - never with code or table
  lines, which would open a block the chunk does not close;
- hostile input is made safe first: CR/CRLF become LF, control characters (NUL
  included, tab and newline kept) become spaces, lone surrogates become U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

DEFAULT_MAX_CHARS = 2000
DEFAULT_OVERLAP_CHARS = 200

Kind = Literal["heading", "text", "code", "table", "overlap"]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Chunk:
    text: str
    section: str  # heading path "A > B" ("" before the first heading)
    ordinal: int  # 0, 1, ... within the document


@dataclass(frozen=True)
class _Block:
    kind: Kind
    text: str


@dataclass
class _Section:
    path: str
    blocks: list[_Block]


def chunk_markdown(
    text: str,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
) -> list[Chunk]:
    """The chunks of one Markdown document (blank text: no chunks)."""
    if max_chars < 20:
        raise ValueError("max_chars must be at least 20")
    if not 0 <= overlap_chars < max_chars // 2:
        raise ValueError("overlap_chars must be at least 0 and under half of max_chars")
    chunks: list[Chunk] = []
    for section in _sections(clean_text(text)):
        for piece in _pack(section.blocks, max_chars, overlap_chars):
            chunks.append(Chunk(piece, section.path, len(chunks)))
    return chunks


def clean_text(text: str) -> str:
    """LF line ends, no control characters, no lone surrogates (see the module docstring)."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(" ", text)


# -- structure ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


def _blocks(text: str) -> Iterator[tuple[_Block, int, str]]:
    """Top-level blocks in order: (block, heading level or 0, heading title)."""
    lines = text.split("\n")
    tokens = _parser().parse(text)
    for i, token in enumerate(tokens):
        if token.level != 0 or token.nesting == -1 or token.map is None:
            continue
        body = "\n".join(lines[token.map[0] : token.map[1]]).strip("\n")
        if not body.strip():
            continue
        if token.type == "heading_open":
            title = " ".join(tokens[i + 1].content.split()) if i + 1 < len(tokens) else ""
            yield _Block("heading", body), int(token.tag[1]), title
        elif token.type in ("fence", "code_block"):
            yield _Block("code", body), 0, ""
        elif token.type == "table_open":
            yield _Block("table", body), 0, ""
        else:
            yield _Block("text", body), 0, ""


def _sections(text: str) -> list[_Section]:
    """The document cut at its headings, each with its heading path; sections with no
    text besides their heading are left out."""
    sections = [_Section("", [])]
    trail: list[tuple[int, str]] = []
    for block, level, title in _blocks(text):
        if block.kind == "heading":
            while trail and trail[-1][0] >= level:
                trail.pop()
            trail.append((level, title))
            sections.append(_Section(" > ".join(t for _, t in trail if t), [block]))
        else:
            sections[-1].blocks.append(block)
    return [s for s in sections if any(b.kind != "heading" for b in s.blocks)]


# -- packing -----------------------------------------------------------------------------
def _pack(blocks: list[_Block], max_chars: int, overlap_chars: int) -> list[str]:
    """One section's blocks as chunk texts of at most `max_chars` each."""
    pieces: list[str] = []
    current: list[_Block] = []
    for block in blocks:
        for part in _fit(block, max_chars):
            if current and _size(current) + 2 + len(part.text) > max_chars:
                carry = _carry(current, overlap_chars)
                if any(b.kind not in ("heading", "overlap") for b in current):
                    pieces.append(_join(current))
                # A heading or overlap that cannot share a chunk with what follows is
                # dropped: the section path still names the heading.
                fits = carry and len(carry) + 2 + len(part.text) <= max_chars
                current = [_Block("overlap", carry)] if fits else []
            current.append(part)
    if any(b.kind not in ("heading", "overlap") for b in current):
        pieces.append(_join(current))
    return pieces


def _size(blocks: list[_Block]) -> int:
    return sum(len(b.text) for b in blocks) + 2 * (len(blocks) - 1)


def _join(blocks: list[_Block]) -> str:
    return "\n\n".join(b.text for b in blocks)


def _carry(blocks: list[_Block], overlap_chars: int) -> str:
    """The tail of the last block when it is text: at most `overlap_chars`, from a word."""
    last = blocks[-1]
    if overlap_chars == 0 or last.kind != "text":
        return ""
    tail = last.text[-overlap_chars:]
    if len(last.text) > overlap_chars:
        cut = re.search(r"\s", tail)
        tail = tail[cut.end() :] if cut else ""
    return tail.strip()


def _fit(block: _Block, max_chars: int) -> list[_Block]:
    """The block whole when it fits, else valid pieces of it that do."""
    if len(block.text) <= max_chars:
        return [block]
    if block.kind == "code":
        return [_Block("code", t) for t in _split_code(block.text, max_chars)]
    if block.kind == "table":
        return [_Block("table", t) for t in _split_table(block.text, max_chars)]
    kind: Kind = "text" if block.kind == "heading" else block.kind
    return [_Block(kind, t) for t in _split_text(block.text, max_chars)]


def _split_code(text: str, max_chars: int) -> list[str]:
    """A code block over the limit: pieces of whole lines, each fenced again."""
    lines = text.split("\n")
    opening = _FENCE.match(lines[0])
    if opening is None:  # an indented code block: plain lines
        return _group(lines, "\n", max_chars)
    head, fence = lines[0], opening.group(1)
    inner = lines[1:]
    if inner and inner[-1].strip().startswith(fence[0] * len(fence)):
        inner = inner[:-1]
    room = max_chars - len(head) - len(fence) - 2
    if room < 1:  # an absurd info string: the fence lines would not fit
        return _group(lines, "\n", max_chars)
    return [f"{head}\n{body}\n{fence}" for body in _group(inner, "\n", room)]


def _split_table(text: str, max_chars: int) -> list[str]:
    """A table over the limit: pieces of whole rows, each with the header rows again."""
    lines = text.split("\n")
    header = "\n".join(lines[:2])
    room = max_chars - len(header) - 1
    if room < 1 or len(lines) < 3:
        return _group(lines, "\n", max_chars)
    return [f"{header}\n{rows}" for rows in _group(lines[2:], "\n", room)]


def _split_text(text: str, max_chars: int) -> list[str]:
    """Text over the limit: lines, then sentences, then words, then characters."""
    return _group(text.split("\n"), "\n", max_chars)


def _group(units: list[str], sep: str, limit: int) -> list[str]:
    """Greedy packing of units joined by `sep`, each group at most `limit`; a unit longer
    than the limit is split finer first (sentences, words, then hard cuts)."""
    groups: list[str] = []
    current = ""
    for unit in units:
        for part in _finer(unit, sep, limit):
            candidate = f"{current}{sep}{part}" if current else part
            if len(candidate) <= limit:
                current = candidate
                continue
            if current.strip():
                groups.append(current)
            current = part
    if current.strip():
        groups.append(current)
    return groups


def _finer(unit: str, sep: str, limit: int) -> list[str]:
    if len(unit) <= limit:
        return [unit]
    if sep == "\n":
        return _group(_SENTENCE.split(unit), " ", limit)
    return _words(unit, limit)


def _words(unit: str, limit: int) -> list[str]:
    """Words packed up to `limit`; a word longer than the limit is cut."""
    groups: list[str] = []
    current = ""
    for word in unit.split(" "):
        for part in [word[i : i + limit] for i in range(0, len(word), limit)] or [""]:
            candidate = f"{current} {part}" if current else part
            if len(candidate) <= limit:
                current = candidate
            else:
                if current.strip():
                    groups.append(current)
                current = part
    if current.strip():
        groups.append(current)
    return groups

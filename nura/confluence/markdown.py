"""Confluence storage-format XHTML -> Markdown: a walker over lxml's HTML tree.

    result = storage_to_markdown(xhtml, base_url="https://acme.atlassian.net",
                                 space="TECH", page_id="123")
    result.markdown, result.warnings, result.malformed

Covers headings, paragraphs with inline formatting, nested and task lists, tables (GFM),
code/noformat macros (fenced, with their language), info/note/warning/tip/panel macros
(quoted, labelled), expand macros, links to other pages (`/wiki/display/SPACE/Title`),
links and images of attachments (`/wiki/download/attachments/{page}/{file}`), external
images, user mentions, emoticons, layouts. Text is kept as Unicode (accents, CJK).

Malformed input is converted as far as the lenient HTML parser gets, and flagged: the
strict XML check costs ~0.1 ms (lxml, C) and tells us whether the page was well formed.

Why lxml's tree and not BeautifulSoup (which the design names): most of BeautifulSoup's
cost is building its own tree from lxml's parser events; walking lxml's tree directly is
several times cheaper (figures in docs/benchmarks.md, "Design measurements"). The output
is byte-for-byte the one the BeautifulSoup walker produced (golden files, and `tests/confluence/
test_markdown_equivalence.py` against that walker on generated and malformed input),
because the tree is the same: the same libxml2 HTML parser, fed the whole text at once as
bs4 does, and the two rules bs4 adds on top are kept here (`_text_of`): a string of only
ASCII whitespace outside <pre>/<textarea> counts as one space or newline, and `get_text`
skips strings inside script/style/template/rt/rp. One known difference: a `<!DOCTYPE>` in
the middle of a page body (invalid storage format; the page is flagged) is dropped, where
bs4 kept its name as text.
This module imports only lxml, so process-pool workers start quickly.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.entities import name2codepoint
from typing import Any
from urllib.parse import quote, quote_plus

from lxml import etree

CDATA = re.compile(r"<!\[CDATA\[(.*?)(?:\]\]>|$)", re.S)  # unterminated: to the end
ENTITY = re.compile(r"&(?!(?:lt|gt|amp|quot|apos);)([A-Za-z][A-Za-z0-9]*);")  # not XML's
WS = re.compile(r"[ \t\r\n\f\v\xa0]+")
MD_SPECIAL = re.compile(r"([\\`*\[\]])")
# Text that would start a Markdown block at the start of a line: headings, quotes, list
# items, thematic breaks and setext underlines, tildes fences.
LINE_START = re.compile(
    r"^(?:(#{1,6}|>|[-+*]|\d{1,9}[.)])(?=\s|$)|(?:[-=_]\s*){2,}$|~{3,}|\\\*(?:\s*\\\*){2,}\s*$)"
)
ENTITY_LIKE = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
SAFE_SCHEMES = ("http:", "https:", "mailto:", "ftp:")
LONE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
WRAP = (
    '<r xmlns:ac="http://atlassian.com/content" xmlns:ri="http://atlassian.com/resource" '
    'xmlns:at="http://atlassian.com/template">{}</r>'
)

MACRO = "ac:structured-macro"
BLOCK_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre", "blockquote",
    "hr", "div", "section", "ac:layout", "ac:layout-section", "ac:layout-cell",
    "ac:task-list", "ac:rich-text-body", "dl", "center", "ac:adf-extension",
}  # fmt: skip
BLOCKISH = frozenset({*BLOCK_TAGS, MACRO})
CONTAINER_INLINE = {"strong", "b", "em", "i", "span", "u", "font", "a", "s", "del"}
PANELS = {"info": "Info", "note": "Note", "warning": "Warning", "tip": "Tip", "panel": "Panel"}
INLINE_MACROS = {"status", "jira", "anchor", "emoticon"}
# Confluence's emoticons (storage format reference: `<ac:emoticon ac:name="tick" />`) as
# the characters they show; a Cloud emoji carries its own `ac:emoji-fallback`.
EMOTICONS = {
    "smile": "🙂", "sad": "🙁", "cheeky": "😛", "laugh": "😀", "wink": "😉",
    "thumbs-up": "👍", "thumbs-down": "👎", "information": "ℹ️", "tick": "✓", "cross": "✗",
    "warning": "⚠️", "plus": "➕", "minus": "➖", "question": "❓", "light-on": "💡",
    "light-off": "💡", "yellow-star": "⭐", "red-star": "⭐", "green-star": "⭐",
    "blue-star": "⭐", "heart": "❤️", "broken-heart": "💔",
}  # fmt: skip
SUB = dict(zip("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ", strict=True))
SUP = dict(zip("0123456789+-=()in", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁱⁿ", strict=True))
UNREPRESENTABLE = "not representable in Markdown"


class Fence(str):
    """A fenced code block (its code kept, so that a table cell can show it inline)."""

    code: str

    def __new__(cls, code: str, lang: str = "") -> Fence:
        fence = super().__new__(cls, _fence(code, lang))
        fence.code = code
        return fence


SILENT_MACROS = {"toc", "children", "pagetree", "anchor", "recently-updated", "contentbylabel"}

# BeautifulSoup's text rules, kept so that the output does not change (see the docstring).
PRESERVE_WHITESPACE = {"pre", "textarea"}
STRING_CONTAINERS = {"rt", "rp", "style", "script", "template"}
ASCII_SPACES = frozenset("\x20\x0a\x09\x0c\x0d")

Element = Any  # lxml.etree._Element (lxml ships no type stubs)


@dataclass
class Conversion:
    markdown: str
    warnings: list[str] = field(default_factory=list)
    malformed: bool = False


def _numeric_entities(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        cp = name2codepoint.get(m.group(1))
        return f"&#{cp};" if cp else m.group(0)

    return ENTITY.sub(sub, text)


def check_well_formed(storage: str) -> str | None:
    """None when `storage` is well-formed XHTML, else the parser's first error."""
    try:
        etree.fromstring(WRAP.format(_numeric_entities(storage)).encode())
    except etree.XMLSyntaxError as exc:
        return str(exc)
    return None


# The three helpers below run for every string of a page: plain `in` tests skip the
# regular expressions when they would not change the text (a third of the walker's time).
def _fold(text: str) -> str:
    """`WS.sub(" ", text)`: every run of whitespace becomes one space."""
    if (
        "  " in text
        or "\n" in text
        or "\t" in text
        or "\r" in text
        or "\xa0" in text
        or "\f" in text
        or "\v" in text
    ):
        return WS.sub(" ", text)
    return text


def _escape(text: str) -> str:
    """Page text as Markdown text: Markdown specials escaped, and text that would read as
    HTML (`<`) or as a character reference (`&lt;`) kept as the text it is, so that a
    downstream renderer never executes a page's `<script>`."""
    if "\\" in text or "`" in text or "*" in text or "[" in text or "]" in text:
        text = MD_SPECIAL.sub(r"\\\1", text)
    if "_" in text:
        text = LONE_UNDERSCORE.sub(r"\_", text)
    if "&" in text:
        text = ENTITY_LIKE.sub("&amp;", text)
    if "<" in text:
        text = text.replace("<", "&lt;")
    return text


def _escape_line_start(line: str) -> str:
    """A line of paragraph text that would start a heading, quote, list or rule: its first
    character escaped, so that `<p># not a heading</p>` stays a paragraph."""
    match = LINE_START.match(line)
    if match is None:
        return line
    if line[0].isdigit():  # "1. x" -> "1\. x"
        end = match.end(1) - 1
        return line[:end] + "\\" + line[end:]
    return "\\" + line


def _safe_href(href: str) -> bool:
    """Links a reader can follow without running anything: http(s), mailto, ftp, relative
    and in-page; not `javascript:`, `data:` or `vbscript:`."""
    scheme = re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*:)", href)
    return scheme is None or scheme.group(1).lower() in SAFE_SCHEMES


def _text(text: str) -> str:
    """One string of running text, whitespace folded and Markdown-escaped."""
    return _escape(_fold(text))


def _fence(body: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{body.rstrip(chr(10))}\n{ticks}"


def _code_span(text: str) -> str:
    """`text` as a code span, with a backtick run longer than any inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _skip_covered(cells: list[str], pending: dict[int, int]) -> None:
    """Empty cells where a cell of a row above still spans (rowspan): the columns stay."""
    while pending.get(len(cells), 0) > 0:
        pending[len(cells)] -= 1
        cells.append("")


def _adf_attribute(node: Element, key: str) -> str | None:
    for child in node:
        if child.tag == "ac:adf-attribute" and child.get("key") == key:
            return _text_of(child).strip()
    return None


def _span(value: Any) -> int:
    text = str(value or "1")
    return max(1, min(int(text), 1000)) if text.isdigit() else 1


def _is_element(node: Element) -> bool:
    return node.tag.__class__ is str  # comments (and processing instructions) are not


def _has_block(tag: Element) -> bool:
    """bs4's `tag.find(_is_block)`: a block element or macro anywhere below `tag`."""
    if not len(tag):
        return False
    return any(node.tag in BLOCKISH for node in tag.iterdescendants())


def _child(tag: Element, name: str) -> Element | None:
    for child in tag:
        if child.tag == name:
            return child
    return None


def _param(macro: Element, name: str) -> str | None:
    for child in macro:
        if child.tag == "ac:parameter" and child.get("ac:name") == name:
            return _text_of(child)
    return None


def _text_of(tag: Element) -> str:
    """BeautifulSoup's `tag.get_text()`: the text of the subtree, each string as bs4 kept it
    (ASCII-whitespace-only strings outside <pre>/<textarea> folded to "\\n" or " ") and only
    the strings of the tag's own kind (none from inside script/style/template/rt/rp)."""
    container: str | None = None
    preserve = False
    for ancestor in tag.iterancestors():
        name = ancestor.tag
        if container is None and name in STRING_CONTAINERS:
            container = name
        if name in PRESERVE_WHITESPACE:
            preserve = True
    wanted = tag.tag if tag.tag in STRING_CONTAINERS else None
    parts: list[str] = []

    def add(text: str, kind: str | None, keep: bool) -> None:
        if kind != wanted:
            return
        if not keep and ASCII_SPACES.issuperset(text):
            text = "\n" if "\n" in text else " "
        parts.append(text)

    def walk(node: Element, kind: str | None, keep: bool) -> None:
        name = node.tag
        if name in STRING_CONTAINERS:
            kind = name
        if name in PRESERVE_WHITESPACE:
            keep = True
        if node.text:
            add(node.text, kind, keep)
        for child in node:
            if _is_element(child):
                walk(child, kind, keep)
            if child.tail:
                add(child.tail, kind, keep)

    walk(tag, container, preserve)
    return "".join(parts)


class _Renderer:
    def __init__(self, base_url: str, space: str, page_id: str) -> None:
        self.base = base_url.rstrip("/")
        self.space = space
        self.page_id = page_id
        self.warnings: list[str] = []

    def lost(self, what: str) -> None:
        """Flag something of the page that Markdown cannot show (counted per page)."""
        self.warnings.append(f"{UNREPRESENTABLE}: {what}")

    # -- URLs --------------------------------------------------------------------------
    def page_url(self, title: str, space: str | None) -> str:
        return f"{self.base}/wiki/display/{quote(space or self.space)}/{quote_plus(title)}"

    def attachment_url(self, filename: str, page_id: str | None = None) -> str:
        return f"{self.base}/wiki/download/attachments/{page_id or self.page_id}/{quote(filename)}"

    def attachment_target(self, attachment: Element, filename: str) -> str:
        """This page's attachment, or (`<ri:page>` inside) the page another one belongs to:
        its download URL needs that page's id, which the storage format does not give."""
        owner = _child(attachment, "ri:page")
        if owner is None:
            return self.attachment_url(filename)
        title = str(owner.get("ri:content-title") or "")
        self.lost(f"attachment {filename!r} of page {title!r}, linked to that page")
        return self.page_url(title, owner.get("ri:space-key"))

    # -- blocks ------------------------------------------------------------------------
    def blocks(self, node: Element) -> list[str]:
        out: list[str] = []
        run: list[str] = []

        def flush() -> None:
            if run:
                text = self.finish_inline("".join(run))
                if text:
                    out.append(text)
                run.clear()

        if node.text:
            run.append(_text(node.text))
        for child in node:
            name = child.tag
            if name.__class__ is str:
                if name in BLOCK_TAGS or (
                    name == MACRO and child.get("ac:name") not in INLINE_MACROS
                ):
                    flush()
                    try:
                        out.extend(b for b in self.block(child) if b)
                    except Exception as exc:  # one odd element must not lose the page
                        self.warnings.append(f"<{name}> converted as plain text: {exc}")
                        out.append(_escape(WS.sub(" ", _text_of(child)).strip()))
                elif name in CONTAINER_INLINE and _has_block(child):
                    # Malformed nesting (<strong><p>...): keep the structure, drop the emphasis.
                    flush()
                    out.extend(self.blocks(child))
                else:
                    run.append(self.inline(child))
            if child.tail:
                run.append(_text(child.tail))
        flush()
        return out

    @staticmethod
    def finish_inline(text: str) -> str:
        if "\n" not in text:
            return _escape_line_start(_fold(text).strip())
        lines = [_escape_line_start(_fold(line).strip()) for line in text.split("\n")]
        return "  \n".join(line for line in lines if line)

    def block(self, tag: Element) -> list[str]:
        name = tag.tag
        if name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            text = WS.sub(" ", self.inlines(tag)).strip()
            return [f"{'#' * int(name[1])} {text}"] if text else []
        if name == "p":
            if _has_block(tag):  # malformed nesting: keep the structure
                return self.blocks(tag)
            return [self.finish_inline(self.inlines(tag))]
        if name in ("ul", "ol"):
            return [self.list_(tag, ordered=name == "ol")]
        if name == "ac:task-list":
            return [self.tasks(tag)]
        if name == "table":
            return [self.table(tag)]
        if name == "pre":
            return [Fence(_text_of(tag))]
        if name == "blockquote":
            return [self.quote("\n\n".join(self.blocks(tag)))]
        if name == "hr":
            return ["---"]
        if name == MACRO:
            return self.macro(tag)
        if name == "ac:adf-extension":
            return self.adf(tag)
        return self.blocks(tag)  # div, layouts, rich-text bodies: transparent containers

    def adf(self, tag: Element) -> list[str]:
        """Cloud editor content kept as ADF in the storage format (`ac:adf-extension`): its
        node, else its HTML fallback; never its attributes (ids, states) as text."""
        node = _child(tag, "ac:adf-node")
        kind = str(node.get("type") or "") if node is not None else ""
        if node is not None and kind == "decision-list":
            items = []
            for item in node:
                if item.tag != "ac:adf-node" or item.get("type") != "decision-item":
                    continue
                state = (_adf_attribute(item, "state") or "").lower()
                content = _child(item, "ac:adf-content")
                text = self.finish_inline(self.inlines(content)) if content is not None else ""
                items.append(f"- **Decision{f' ({state})' if state else ''}:** {text}")
            return ["\n".join(items)] if items else []
        if node is not None and kind == "panel":
            content = _child(node, "ac:adf-content")
            inner = "\n\n".join(self.blocks(content)) if content is not None else ""
            return [self.quote(f"**Panel**\n\n{inner}" if inner else "**Panel**")]
        fallback = _child(tag, "ac:adf-fallback")
        if fallback is not None:
            self.warnings.append(f"Cloud element {kind or 'unknown'!r} converted from its fallback")
            return self.blocks(fallback)
        self.lost(f"Cloud element {kind or 'unknown'!r}")
        return [f"<!-- confluence element: {html.escape(kind)} -->"]

    def quote(self, text: str) -> str:
        return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))

    def list_(self, tag: Element, ordered: bool) -> str:
        items = []
        start = str(tag.get("start") or "1")
        number = int(start) if ordered and start.isdigit() else (1 if ordered else 0)
        for li in tag:
            if not _is_element(li):
                continue
            if li.tag in ("ul", "ol"):  # a list nested directly in a list (seen in exports)
                items.append(self.indent(self.list_(li, li.tag == "ol"), "  "))
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            body = "\n".join(self.blocks(li)) if li.tag == "li" else self.inline(li)
            lines = body.split("\n") if body else [""]
            pad = " " * len(marker)
            items.append(
                marker
                + lines[0]
                + "".join(f"\n{pad}{line}" if line else "\n" for line in lines[1:])
            )
        return "\n".join(items)

    @staticmethod
    def indent(text: str, pad: str) -> str:
        return "\n".join(pad + line if line else line for line in text.split("\n"))

    def tasks(self, tag: Element) -> str:
        out = []
        for task in tag:
            if task.tag != "ac:task":
                continue
            status = _child(task, "ac:task-status")
            body = _child(task, "ac:task-body")
            done = status is not None and _text_of(status).strip() == "complete"
            text = self.finish_inline(self.inlines(body)) if body is not None else ""
            out.append(f"- [{'x' if done else ' '}] {text}")
        return "\n".join(out)

    def cell(self, cell: Element) -> str:
        """A table cell on one line: paragraphs joined by <br>, code as code spans."""
        parts = []
        for block in self.blocks(cell):
            if isinstance(block, Fence):  # a fence cannot live in a GFM cell
                lines = [line for line in block.code.split("\n") if line.strip()]
                parts.append("<br>".join(_code_span(line) for line in lines))
            else:
                parts.append(block.replace("\n", "<br>"))
        return "<br>".join(parts).replace("|", "\\|")

    def table(self, tag: Element) -> str:
        rows: list[list[str]] = []
        header_row = False
        pending: dict[int, int] = {}  # column -> rows still covered by a rowspan above
        merged = False
        for tr in tag.iterdescendants("tr"):
            cells: list[str] = []
            for cell in tr:
                if cell.tag != "td" and cell.tag != "th":
                    continue
                _skip_covered(cells, pending)
                colspan, rowspan = _span(cell.get("colspan")), _span(cell.get("rowspan"))
                merged = merged or colspan > 1 or rowspan > 1
                start = len(cells)
                cells.append(self.cell(cell))
                cells.extend("" for _ in range(colspan - 1))
                for column in range(start, start + colspan):
                    if rowspan > 1:
                        pending[column] = rowspan - 1
            _skip_covered(cells, pending)
            if not rows and _child(tr, "th") is not None:
                header_row = True
            rows.append(cells)
        if merged:
            self.lost("merged table cells (rowspan/colspan), shown as empty cells")
        if not rows:
            return ""
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        if not header_row:
            rows.insert(0, [""] * width)
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] * width) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)

    def macro(self, tag: Element) -> list[str]:
        name = str(tag.get("ac:name") or "")
        if name in ("code", "noformat"):
            body = _child(tag, "ac:plain-text-body")
            lang = (_param(tag, "language") or "").strip() if name == "code" else ""
            title = _param(tag, "title")
            fence = Fence(_text_of(body) if body is not None else "", lang)
            return [f"**{_escape(title.strip())}**", fence] if title else [fence]
        if name in PANELS:
            label = PANELS[name]
            title = _param(tag, "title")
            head = f"**{label}: {_escape(title.strip())}**" if title else f"**{label}**"
            body = _child(tag, "ac:rich-text-body")
            inner = "\n\n".join(self.blocks(body)) if body is not None else ""
            return [self.quote(f"{head}\n\n{inner}" if inner else head)]
        if name == "expand":
            title = _param(tag, "title") or "Details"
            body = _child(tag, "ac:rich-text-body")
            return [
                f"**{_escape(title.strip())}**",
                *(self.blocks(body) if body is not None else []),
            ]
        if name in SILENT_MACROS:
            return []
        rich = _child(tag, "ac:rich-text-body")
        if rich is not None:
            return self.blocks(rich)
        plain = _child(tag, "ac:plain-text-body")
        if plain is not None:
            return [Fence(_text_of(plain))]
        if name == "jira":
            return [self.inline(tag)]
        self.lost(f"macro {name!r} has no Markdown equivalent; left as a comment")
        return [f"<!-- confluence macro: {html.escape(name)} -->"]

    # -- inline ------------------------------------------------------------------------
    def inlines(self, node: Element) -> str:
        parts = []
        if node.text:
            parts.append(_text(node.text))
        for child in node:
            name = child.tag
            if name.__class__ is str:
                if name in BLOCK_TAGS or name == MACRO:
                    if child.get("ac:name") in INLINE_MACROS:
                        parts.append(self.inline(child))
                    else:  # a block inside inline context: keep its text on its own line
                        parts.append("\n" + " ".join(self.block(child)) + "\n")
                else:
                    parts.append(self.inline(child))
            if child.tail:
                parts.append(_text(child.tail))
        return "".join(parts)

    def wrap(self, tag: Element, mark: str) -> str:
        inner = self.inlines(tag)
        stripped = inner.strip()
        if not stripped:
            return inner
        lead = " " if inner[:1].isspace() else ""
        trail = " " if inner[-1:].isspace() else ""
        return f"{lead}{mark}{stripped}{mark}{trail}"

    def inline(self, tag: Element) -> str:
        name = tag.tag
        if name in ("strong", "b"):
            return self.wrap(tag, "**")
        if name in ("em", "i", "cite"):
            return self.wrap(tag, "*")
        if name in ("s", "del", "strike"):
            return self.wrap(tag, "~~")
        if name == "code":
            text = _text_of(tag)
            ticks = "``" if "`" in text else "`"
            return f"{ticks}{text}{ticks}"
        if name == "br":
            return "\n"
        if name == "a":
            text = self.inlines(tag).strip()
            href = str(tag.get("href") or "")
            if not href:
                return text
            if not _safe_href(href):
                self.warnings.append("a link with a script or data URL was left out")
                return text
            return f"<{href}>" if text in ("", href) else f"[{text}]({href.replace(' ', '%20')})"
        if name == "ac:link":
            return self.link(tag)
        if name == "ac:image":
            return self.image(tag)
        if name == "ac:emoticon":
            emoticon = str(tag.get("ac:name") or "")
            shown = tag.get("ac:emoji-fallback") or EMOTICONS.get(emoticon)
            if shown:
                return str(shown)
            self.lost(f"emoticon {emoticon!r}")
            return f":{_escape(emoticon or 'emoticon')}:"
        if name in ("sub", "sup"):
            inner = self.inlines(tag)
            table = SUB if name == "sub" else SUP
            if inner and all(c in table for c in inner):
                return "".join(table[c] for c in inner)
            return f"<{name}>{inner}</{name}>" if inner.strip() else inner
        if name == "time":
            return str(tag.get("datetime") or _text_of(tag))
        if name == MACRO:
            macro = str(tag.get("ac:name") or "")
            if macro == "status":
                return f"[{_escape(_param(tag, 'title') or '')}]"
            if macro == "jira":
                key = _param(tag, "key")
                if key:
                    return f"JIRA {_escape(key)}"
                jql = _param(tag, "jqlQuery") or _param(tag, "jql")
                if jql:
                    self.lost("Jira issue list (its query is kept)")
                    return f"Jira issues: {_code_span(jql.strip())}"
                self.lost("Jira macro without an issue key or query")
                return "JIRA"
            return ""
        if name in ("ac:parameter", "ac:placeholder", "script", "style"):
            return ""
        return self.inlines(tag)  # span, u, sub, sup, font, unknown inline tags

    def link(self, tag: Element) -> str:
        body = _child(tag, "ac:plain-text-link-body")
        rich = _child(tag, "ac:link-body")
        if body is not None:
            text = _escape(_text_of(body))
        else:
            text = self.inlines(rich).strip() if rich is not None else ""
        anchor = tag.get("ac:anchor")
        target: str | None = None
        for child in tag:
            name = child.tag
            if name == "ri:page":
                title = str(child.get("ri:content-title") or "")
                target = self.page_url(title, child.get("ri:space-key"))
                text = text or _escape(title)
            elif name == "ri:attachment":
                filename = str(child.get("ri:filename") or "")
                target = self.attachment_target(child, filename)
                text = text or _escape(filename)
            elif name == "ri:user":
                account = child.get("ri:account-id")
                who = (
                    (_fold(_text_of(body)).strip() if body is not None else "")
                    or (self.inlines(rich).strip() if rich is not None else "")
                    or account
                    or child.get("ri:username")
                    or child.get("ri:userkey")
                    or "user"
                )
                label = "@" + (who if who.startswith("@") else who).lstrip("@")
                label = _escape(label) if body is not None or who == account else label
                if account:
                    return f"[{label}]({self.base}/wiki/people/{quote(str(account))})"
                return label
            elif name == "ri:url":
                target = str(child.get("ri:value") or "")
                if not _safe_href(target):
                    self.warnings.append("a link with a script or data URL was left out")
                    return text
            elif name == "ri:space":
                target = f"{self.base}/wiki/spaces/{quote(str(child.get('ri:space-key') or ''))}"
        if target is None:
            if anchor:
                return f"[{text or anchor}](#{quote(str(anchor))})"
            return text
        if anchor:
            target += f"#{quote(str(anchor))}"
        return f"[{text or target}]({target})"

    def image(self, tag: Element) -> str:
        alt = str(tag.get("ac:alt") or tag.get("ac:title") or "")
        for child in tag:
            name = child.tag
            if name == "ri:attachment":
                filename = str(child.get("ri:filename") or "")
                owner = _child(child, "ri:page")
                if owner is not None:  # attached to another page, known by its title only
                    title = str(owner.get("ri:content-title") or "")
                    self.lost(f"image {filename!r} of page {title!r}, linked to that page")
                    page = self.page_url(title, owner.get("ri:space-key"))
                    return f"[{_escape(alt or filename)} (image on {_escape(title)})]({page})"
                return f"![{_escape(alt or filename)}]({self.attachment_url(filename)})"
            if name == "ri:url":
                src = str(child.get("ri:value") or "")
                if not _safe_href(src):
                    self.warnings.append("an image with a script or data URL was left out")
                    return _escape(alt)
                return f"![{_escape(alt)}]({src})"
        self.warnings.append("image without a source")
        return ""


def _parse(markup: str) -> Element | None:
    """The root of lxml's HTML tree, parsed as BeautifulSoup("...", "lxml") parses: the
    whole text fed at once (libxml2's push parser can differ from a one-shot parse on
    broken markup), a leading BOM dropped, UTF-8 bytes if lxml refuses the str.
    None for a document without elements."""
    if markup[:1] == "\ufeff":
        markup = markup[1:]
    attempts: tuple[tuple[str | bytes, str | None], ...] = (
        (markup, None),
        (markup.encode("utf8"), "utf8"),
    )
    for data, encoding in attempts:
        parser = etree.HTMLParser(recover=True, encoding=encoding, default_doctype=False)
        try:
            parser.feed(data)
            return parser.close()
        except etree.XMLSyntaxError:  # nothing but text-free markup, comments, whitespace
            return None
        except (UnicodeDecodeError, LookupError, etree.ParserError):
            continue
    raise ValueError("the markup was rejected by the HTML parser in every encoding")


def _document(root: Element) -> Element:
    """A document without <body> (only head content) as one container element: bs4 then
    walks the whole document, its DOCTYPE string (kept by lxml as docinfo) included."""
    doc = etree.Element("_document")
    info = root.getroottree().docinfo
    if info.doctype:  # Doctype._string_for_name_and_ids
        value = info.root_name or ""
        if info.public_id is not None:
            value += f' PUBLIC "{info.public_id}"'
            if info.system_url is not None:
                value += f' "{info.system_url}"'
        elif info.system_url is not None:
            value += f' SYSTEM "{info.system_url}"'
        doc.text = value
    before = list(root.itersiblings(preceding=True))
    before.reverse()
    for node in [*before, root, *root.itersiblings()]:
        doc.append(node)
    return doc


def _render(prepared: str, renderer: _Renderer) -> list[str]:
    root = _parse(prepared)
    if root is None:
        return []
    body = next(root.iter("body"), None)
    return renderer.blocks(body if body is not None else _document(root))


def storage_to_markdown(
    storage: str, *, base_url: str = "", space: str = "", page_id: str = ""
) -> Conversion:
    """Convert one page's storage-format XHTML; never raises on bad markup (flags it)."""
    warnings: list[str] = []
    problem = check_well_formed(storage)
    if problem:
        warnings.append(f"malformed storage XHTML: {problem}")
    # lxml's HTML parser drops CDATA sections; their text is what code macros hold.
    prepared = CDATA.sub(lambda m: html.escape(m.group(1), quote=False), storage)
    try:
        renderer = _Renderer(base_url, space, page_id)
        markdown = "\n\n".join(b for b in _render(prepared, renderer) if b.strip())
        warnings.extend(renderer.warnings)
    except Exception as exc:  # last resort: the text survives even if the structure does not
        warnings.append(f"conversion fell back to plain text: {type(exc).__name__}: {exc}")
        markdown = WS.sub(" ", re.sub(r"<[^>]+>", " ", prepared)).strip()
    return Conversion(markdown.strip() + "\n" if markdown.strip() else "", warnings, bool(problem))


def convert_payload(args: tuple[str, str, str, str]) -> tuple[str, list[str], bool]:
    """Process-pool entry point: (storage, base_url, space, page_id) -> plain tuple."""
    storage, base_url, space, page_id = args
    result = storage_to_markdown(storage, base_url=base_url, space=space, page_id=page_id)
    return result.markdown, result.warnings, result.malformed


def convert_batch(
    payloads: list[tuple[str, str, str, str]],
) -> list[tuple[str, list[str], bool]]:
    """Process-pool entry point for several pages: one round trip instead of one a page
    (pickling and queue hand-offs cost the parent ~0.19 ms a task, ~0.03 ms a page in 8s)."""
    return [convert_payload(args) for args in payloads]

"""Reference for tests: the BeautifulSoup walker that `nura.confluence.markdown` replaced.

BeautifulSoup on the lxml parser (15-20 ms a page), so that `test_markdown_equivalence.py`
can show that the lxml walker (~2.4 ms a page) walks every input as BeautifulSoup's tree
does. The Markdown rules added since (issue 19: escaping, mentions, spans, ADF, ...) are
kept in step here, with the pure helpers (escaping, emoticons, code spans) imported from
the module itself. Not used by the sync.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.entities import name2codepoint
from urllib.parse import quote, quote_plus

from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from lxml import etree

from nura.confluence.markdown import (
    EMOTICONS,
    SUB,
    SUP,
    UNREPRESENTABLE,
    Fence,
    _code_span,
    _escape,
    _escape_line_start,
    _safe_href,
    _skip_covered,
    _span,
)

CDATA = re.compile(r"<!\[CDATA\[(.*?)(?:\]\]>|$)", re.S)  # unterminated: to the end
ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
WS = re.compile(r"[ \t\r\n\f\v\xa0]+")
MD_SPECIAL = re.compile(r"([\\`*\[\]])")
LONE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
XML_ENTITIES = {"lt", "gt", "amp", "quot", "apos"}
WRAP = (
    '<r xmlns:ac="http://atlassian.com/content" xmlns:ri="http://atlassian.com/resource" '
    'xmlns:at="http://atlassian.com/template">{}</r>'
)

BLOCK_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre", "blockquote",
    "hr", "div", "section", "ac:layout", "ac:layout-section", "ac:layout-cell",
    "ac:task-list", "ac:rich-text-body", "dl", "center", "ac:adf-extension",
}  # fmt: skip
CONTAINER_INLINE = {"strong", "b", "em", "i", "span", "u", "font", "a", "s", "del"}
PANELS = {"info": "Info", "note": "Note", "warning": "Warning", "tip": "Tip", "panel": "Panel"}
INLINE_MACROS = {"status", "jira", "anchor", "emoticon"}
SILENT_MACROS = {"toc", "children", "pagetree", "anchor", "recently-updated", "contentbylabel"}


@dataclass
class Conversion:
    markdown: str
    warnings: list[str] = field(default_factory=list)
    malformed: bool = False


def _numeric_entities(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in XML_ENTITIES:
            return m.group(0)
        cp = name2codepoint.get(name)
        return f"&#{cp};" if cp else m.group(0)

    return ENTITY.sub(sub, text)


def check_well_formed(storage: str) -> str | None:
    """None when `storage` is well-formed XHTML, else the parser's first error."""
    try:
        etree.fromstring(WRAP.format(_numeric_entities(storage)).encode())
    except etree.XMLSyntaxError as exc:
        return str(exc)
    return None


def _fence(body: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{body.rstrip(chr(10))}\n{ticks}"


def _param(macro: Tag, name: str) -> str | None:
    for child in macro.children:
        if isinstance(child, Tag) and child.name == "ac:parameter" and child.get("ac:name") == name:
            return child.get_text()
    return None


def _adf_attribute(node: Tag, key: str) -> str | None:
    for child in node.children:
        if isinstance(child, Tag) and child.name == "ac:adf-attribute" and child.get("key") == key:
            return child.get_text().strip()
    return None


def _is_block(tag: Tag) -> bool:
    return tag.name in BLOCK_TAGS or tag.name == "ac:structured-macro"


def _child(tag: Tag, name: str) -> Tag | None:
    for child in tag.children:
        if isinstance(child, Tag) and child.name == name:
            return child
    return None


class _Renderer:
    def __init__(self, base_url: str, space: str, page_id: str) -> None:
        self.base = base_url.rstrip("/")
        self.space = space
        self.page_id = page_id
        self.warnings: list[str] = []

    def lost(self, what: str) -> None:
        self.warnings.append(f"{UNREPRESENTABLE}: {what}")

    # -- URLs --------------------------------------------------------------------------
    def page_url(self, title: str, space: str | None) -> str:
        return f"{self.base}/wiki/display/{quote(space or self.space)}/{quote_plus(title)}"

    def attachment_url(self, filename: str, page_id: str | None = None) -> str:
        return f"{self.base}/wiki/download/attachments/{page_id or self.page_id}/{quote(filename)}"

    def attachment_target(self, attachment: Tag, filename: str) -> str:
        owner = _child(attachment, "ri:page")
        if owner is None:
            return self.attachment_url(filename)
        title = str(owner.get("ri:content-title") or "")
        self.lost(f"attachment {filename!r} of page {title!r}, linked to that page")
        return self.page_url(title, owner.get("ri:space-key"))  # type: ignore[arg-type]

    # -- blocks ------------------------------------------------------------------------
    def blocks(self, node: Tag) -> list[str]:
        out: list[str] = []
        run: list[str] = []

        def flush() -> None:
            if run:
                text = self.finish_inline("".join(run))
                if text:
                    out.append(text)
                run.clear()

        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, Comment):
                    run.append(self.text(child))
                continue
            if not isinstance(child, Tag):
                continue
            if child.name in BLOCK_TAGS or (
                child.name == "ac:structured-macro" and child.get("ac:name") not in INLINE_MACROS
            ):
                flush()
                try:
                    out.extend(b for b in self.block(child) if b)
                except Exception as exc:  # one odd element must not lose the page
                    self.warnings.append(f"<{child.name}> converted as plain text: {exc}")
                    out.append(_escape(WS.sub(" ", child.get_text()).strip()))
            elif child.name in CONTAINER_INLINE and child.find(_is_block) is not None:
                # Malformed nesting (<strong><p>...): keep the structure, drop the emphasis.
                flush()
                out.extend(self.blocks(child))
            else:
                run.append(self.inline(child))
        flush()
        return out

    @staticmethod
    def finish_inline(text: str) -> str:
        lines = [_escape_line_start(WS.sub(" ", line).strip()) for line in text.split("\n")]
        return "  \n".join(line for line in lines if line)

    def block(self, tag: Tag) -> list[str]:
        name = tag.name
        if name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            text = WS.sub(" ", self.inlines(tag)).strip()
            return [f"{'#' * int(name[1])} {text}"] if text else []
        if name == "p":
            if tag.find(_is_block) is not None:  # malformed nesting: keep the structure
                return self.blocks(tag)
            return [self.finish_inline(self.inlines(tag))]
        if name in ("ul", "ol"):
            return [self.list_(tag, ordered=name == "ol")]
        if name == "ac:task-list":
            return [self.tasks(tag)]
        if name == "table":
            return [self.table(tag)]
        if name == "pre":
            return [Fence(tag.get_text())]
        if name == "blockquote":
            return [self.quote("\n\n".join(self.blocks(tag)))]
        if name == "hr":
            return ["---"]
        if name == "ac:structured-macro":
            return self.macro(tag)
        if name == "ac:adf-extension":
            return self.adf(tag)
        return self.blocks(tag)  # div, layouts, rich-text bodies: transparent containers

    def adf(self, tag: Tag) -> list[str]:
        node = _child(tag, "ac:adf-node")
        kind = str(node.get("type") or "") if node is not None else ""
        if node is not None and kind == "decision-list":
            items = []
            for item in node.children:
                if not isinstance(item, Tag) or item.name != "ac:adf-node":
                    continue
                if item.get("type") != "decision-item":
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

    def list_(self, tag: Tag, ordered: bool) -> str:
        items = []
        start = str(tag.get("start") or "1")
        number = int(start) if ordered and start.isdigit() else (1 if ordered else 0)
        for li in tag.children:
            if not isinstance(li, Tag):
                continue
            if li.name in ("ul", "ol"):  # a list nested directly in a list (seen in exports)
                items.append(self.indent(self.list_(li, li.name == "ol"), "  "))
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            body = "\n".join(self.blocks(li)) if li.name == "li" else self.inline(li)
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

    def tasks(self, tag: Tag) -> str:
        out = []
        for task in tag.find_all("ac:task", recursive=False):
            status = _child(task, "ac:task-status")
            body = _child(task, "ac:task-body")
            done = status is not None and status.get_text().strip() == "complete"
            text = self.finish_inline(self.inlines(body)) if body else ""
            out.append(f"- [{'x' if done else ' '}] {text}")
        return "\n".join(out)

    def cell(self, cell: Tag) -> str:
        parts = []
        for block in self.blocks(cell):
            if isinstance(block, Fence):
                lines = [line for line in block.code.split("\n") if line.strip()]
                parts.append("<br>".join(_code_span(line) for line in lines))
            else:
                parts.append(block.replace("\n", "<br>"))
        return "<br>".join(parts).replace("|", "\\|")

    def table(self, tag: Tag) -> str:
        rows: list[list[str]] = []
        header_row = False
        pending: dict[int, int] = {}
        merged = False
        for tr in tag.find_all("tr"):
            cells: list[str] = []
            for cell in tr.find_all(("td", "th"), recursive=False):
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
            if not rows and tr.find("th", recursive=False) is not None:
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

    def macro(self, tag: Tag) -> list[str]:
        name = str(tag.get("ac:name") or "")
        if name in ("code", "noformat"):
            body = _child(tag, "ac:plain-text-body")
            lang = (_param(tag, "language") or "").strip() if name == "code" else ""
            title = _param(tag, "title")
            fence = Fence(body.get_text() if body else "", lang)
            return [f"**{_escape(title.strip())}**", fence] if title else [fence]
        if name in PANELS:
            label = PANELS[name]
            title = _param(tag, "title")
            head = f"**{label}: {_escape(title.strip())}**" if title else f"**{label}**"
            body = _child(tag, "ac:rich-text-body")
            inner = "\n\n".join(self.blocks(body)) if body else ""
            return [self.quote(f"{head}\n\n{inner}" if inner else head)]
        if name == "expand":
            title = _param(tag, "title") or "Details"
            body = _child(tag, "ac:rich-text-body")
            return [f"**{_escape(title.strip())}**", *(self.blocks(body) if body else [])]
        if name in SILENT_MACROS:
            return []
        rich = _child(tag, "ac:rich-text-body")
        if rich is not None:
            return self.blocks(rich)
        plain = _child(tag, "ac:plain-text-body")
        if plain is not None:
            return [Fence(plain.get_text())]
        if name == "jira":
            return [self.inline(tag)]
        self.lost(f"macro {name!r} has no Markdown equivalent; left as a comment")
        return [f"<!-- confluence macro: {html.escape(name)} -->"]

    # -- inline ------------------------------------------------------------------------
    def inlines(self, node: Tag) -> str:
        parts = []
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, Comment):
                    parts.append(self.text(child))
            elif isinstance(child, Tag):
                if child.name in BLOCK_TAGS or child.name == "ac:structured-macro":
                    if child.get("ac:name") in INLINE_MACROS:
                        parts.append(self.inline(child))
                    else:  # a block inside inline context: keep its text on its own line
                        parts.append("\n" + " ".join(self.block(child)) + "\n")
                else:
                    parts.append(self.inline(child))
        return "".join(parts)

    @staticmethod
    def text(node: NavigableString) -> str:
        return _escape(WS.sub(" ", str(node)))

    def wrap(self, tag: Tag, mark: str) -> str:
        inner = self.inlines(tag)
        stripped = inner.strip()
        if not stripped:
            return inner
        lead = " " if inner[:1].isspace() else ""
        trail = " " if inner[-1:].isspace() else ""
        return f"{lead}{mark}{stripped}{mark}{trail}"

    def inline(self, tag: Tag) -> str:
        name = tag.name
        if name in ("strong", "b"):
            return self.wrap(tag, "**")
        if name in ("em", "i", "cite"):
            return self.wrap(tag, "*")
        if name in ("s", "del", "strike"):
            return self.wrap(tag, "~~")
        if name == "code":
            text = tag.get_text()
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
            return str(tag.get("datetime") or tag.get_text())
        if name == "ac:structured-macro":
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

    def link(self, tag: Tag) -> str:
        body = _child(tag, "ac:plain-text-link-body")
        rich = _child(tag, "ac:link-body")
        text = _escape(body.get_text()) if body else (self.inlines(rich).strip() if rich else "")
        anchor = tag.get("ac:anchor")
        target: str | None = None
        for child in tag.children:
            if not isinstance(child, Tag):
                continue
            if child.name == "ri:page":
                title = str(child.get("ri:content-title") or "")
                target = self.page_url(title, child.get("ri:space-key"))  # type: ignore[arg-type]
                text = text or _escape(title)
            elif child.name == "ri:attachment":
                filename = str(child.get("ri:filename") or "")
                target = self.attachment_target(child, filename)
                text = text or _escape(filename)
            elif child.name == "ri:user":
                account = child.get("ri:account-id")
                who = (
                    (WS.sub(" ", body.get_text()).strip() if body is not None else "")
                    or (self.inlines(rich).strip() if rich is not None else "")
                    or account
                    or child.get("ri:username")
                    or child.get("ri:userkey")
                    or "user"
                )
                label = "@" + str(who).lstrip("@")
                label = _escape(label) if body is not None or who == account else label
                if account:
                    return f"[{label}]({self.base}/wiki/people/{quote(str(account))})"
                return label
            elif child.name == "ri:url":
                target = str(child.get("ri:value") or "")
                if not _safe_href(target):
                    self.warnings.append("a link with a script or data URL was left out")
                    return text
            elif child.name == "ri:space":
                target = f"{self.base}/wiki/spaces/{quote(str(child.get('ri:space-key') or ''))}"
        if target is None:
            if anchor:
                return f"[{text or anchor}](#{quote(str(anchor))})"
            return text
        if anchor:
            target += f"#{quote(str(anchor))}"
        return f"[{text or target}]({target})"

    def image(self, tag: Tag) -> str:
        alt = str(tag.get("ac:alt") or tag.get("ac:title") or "")
        for child in tag.children:
            if not isinstance(child, Tag):
                continue
            if child.name == "ri:attachment":
                filename = str(child.get("ri:filename") or "")
                owner = _child(child, "ri:page")
                if owner is not None:
                    title = str(owner.get("ri:content-title") or "")
                    self.lost(f"image {filename!r} of page {title!r}, linked to that page")
                    page = self.page_url(title, owner.get("ri:space-key"))  # type: ignore[arg-type]
                    return f"[{_escape(alt or filename)} (image on {_escape(title)})]({page})"
                return f"![{_escape(alt or filename)}]({self.attachment_url(filename)})"
            if child.name == "ri:url":
                src = str(child.get("ri:value") or "")
                if not _safe_href(src):
                    self.warnings.append("an image with a script or data URL was left out")
                    return _escape(alt)
                return f"![{_escape(alt)}]({src})"
        self.warnings.append("image without a source")
        return ""


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
        soup = BeautifulSoup(prepared, "lxml")
        root = soup.body or soup
        renderer = _Renderer(base_url, space, page_id)
        markdown = "\n\n".join(b for b in renderer.blocks(root) if b.strip())
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

"""Property: the lxml walker converts exactly as the BeautifulSoup walker it replaced.

`bs4_reference.py` is that walker, unchanged (BeautifulSoup on the lxml parser). Every
input must give the same Markdown, warnings and malformed flag: generated pages, pages
cut or spliced at random places (broken markup), and random trees of storage-format
elements with awkward text (whitespace runs, Markdown specials, entities, CJK) and the
corners where BeautifulSoup adds rules to lxml's tree (whitespace-only strings, <pre>,
<textarea>, script/style/template/rt/rp, comments, processing instructions).
"""

from __future__ import annotations

import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployments.sandbox.confluence_pages import generate_body, page_title
from nura.confluence.markdown import storage_to_markdown
from tests.confluence import bs4_reference

BASE = {"base_url": "https://acme.atlassian.net", "space": "TECH", "page_id": "4242"}
TITLES = [page_title("TECH", n) for n in range(20)]


def same(storage: str) -> None:
    ours = storage_to_markdown(storage, **BASE)
    with warnings.catch_warnings():  # bs4's "looks like a URL / like XML" hints
        warnings.simplefilter("ignore")
        theirs = bs4_reference.storage_to_markdown(storage, **BASE)
    assert (ours.markdown, ours.warnings, ours.malformed) == (
        theirs.markdown,
        theirs.warnings,
        theirs.malformed,
    )


# -- random trees ----------------------------------------------------------------------

TEXT_PIECES = [
    "a", "word", " ", "  ", "\n", "\t", "\r\n", "\xa0", "\u3000", "\f", "é", "日本語", "_", "x_y",
    "_lead", "trail_", "*", "**", "`", "``", "[", "]", "\\", "|", "#", "&amp;", "&lt;", "&gt;",
    "&eacute;", "&nbsp;", "&#233;", "&#x1F600;", "&bogus;", "&", "<", ">", "'", '"', "1.",
    "- ", "https://example.com/a b", "complete", "incomplete", "# ", "> ", "1) ", "---",
    "&lt;script&gt;", "&amp;lt;", "2", "javascript:x()",
]  # fmt: skip
TAGS = [
    "p", "h1", "h3", "h6", "ul", "ol", "li", "table", "tbody", "tr", "td", "th", "pre",
    "blockquote", "div", "section", "span", "strong", "b", "em", "i", "u", "s", "del", "code",
    "a", "br", "hr", "sub", "sup", "font", "cite", "time", "dl", "dt", "dd", "center",
    "textarea", "script", "style", "template", "ruby", "rt", "rp", "title", "ac:layout",
    "ac:layout-section", "ac:layout-cell", "ac:rich-text-body", "ac:plain-text-body",
    "ac:task-list", "ac:task", "ac:task-status", "ac:task-body", "ac:link", "ac:link-body",
    "ac:plain-text-link-body", "ac:image", "ac:emoticon", "ac:parameter", "ac:placeholder",
    "ri:page", "ri:attachment", "ri:url", "ri:user", "ri:space", "body", "unknown-x",
    "ac:adf-extension", "ac:adf-node", "ac:adf-attribute", "ac:adf-content",
    "ac:adf-fallback",
]  # fmt: skip
MACROS = [
    "code", "noformat", "info", "note", "warning", "tip", "panel", "expand", "toc", "status",
    "jira", "anchor", "emoticon", "gadget-x", "children", "",
]  # fmt: skip
ATTRS = [
    ("href", ["https://example.com/x", "", "/wiki/x y", "a|b", "javascript:alert(1)"]),
    ("start", ["3", "0", "x", "²", "12"]),
    ("colspan", ["2", "1", "0", "x", "3"]),
    ("rowspan", ["2", "3", "x"]),
    ("type", ["decision-list", "decision-item", "panel", "other"]),
    ("key", ["state", "local-id"]),
    ("ri:userkey", ["ff80808"]),
    ("ac:name", ["language", "title", "key", "smile", "x"]),
    ("ac:anchor", ["sec-1", "Ü ber"]),
    ("ac:alt", ["alt text", ""]),
    ("ac:emoji-fallback", ["🙂", ""]),
    ("datetime", ["2026-01-01", ""]),
    ("ri:content-title", ["Other Page", "Ä/B?"]),
    ("ri:space-key", ["DOCS", ""]),
    ("ri:filename", ["a b.png", "x_y.pdf"]),
    ("ri:value", ["https://example.com/i.png"]),
    ("ri:account-id", ["557058:abc"]),
]  # fmt: skip

text = st.lists(st.sampled_from(TEXT_PIECES), min_size=1, max_size=5).map("".join)
attrs = st.lists(
    st.sampled_from(ATTRS).flatmap(lambda a: st.sampled_from(a[1]).map(lambda v: (a[0], v))),
    max_size=3,
).map(lambda pairs: "".join(f' {k}="{v}"' for k, v in pairs))
cdata = text.map(lambda t: f"<![CDATA[{t}]]>")
comment = text.map(lambda t: f"<!--{t.replace('-', '')}-->")
pi = st.just("<?php echo 1 ?>")
leaf = st.one_of(text, text, cdata, comment, pi, st.sampled_from(["<br/>", "<hr/>", "<br>"]))


def _element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def tag(name: str, attr: str, inner: list[str], close: int) -> str:
        body = "".join(inner)
        if close == 0:  # unclosed: malformed markup the lenient parser must cope with
            return f"<{name}{attr}>{body}"
        if close == 1 and not body:
            return f"<{name}{attr} />"
        return f"<{name}{attr}>{body}</{name}>"

    def macro(name: str, params: list[tuple[str, str]], inner: list[str], kind: int) -> str:
        ps = "".join(f'<ac:parameter ac:name="{k}">{v}</ac:parameter>' for k, v in params)
        body = "".join(inner)
        wrapper = ("ac:rich-text-body", "ac:plain-text-body", "div")[kind]
        return (
            f'<ac:structured-macro ac:name="{name}">{ps}<{wrapper}>{body}</{wrapper}>'
            "</ac:structured-macro>"
        )

    plain = st.builds(
        tag,
        st.sampled_from(TAGS),
        attrs,
        st.lists(children, max_size=4),
        st.sampled_from([0, 1, 2, 2, 2, 2]),
    )
    macros = st.builds(
        macro,
        st.sampled_from(MACROS),
        st.lists(
            st.tuples(st.sampled_from(["language", "title", "key", "jqlQuery", "x"]), text),
            max_size=2,
        ),
        st.lists(children, max_size=3),
        st.integers(0, 2),
    )
    return st.one_of(plain, plain, plain, macros)


documents = st.recursive(leaf, _element, max_leaves=40).map(str)
fragments = st.lists(documents, min_size=1, max_size=4).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragments)
def test_random_storage_trees_convert_the_same(storage: str) -> None:
    same(storage)


# -- generated pages, whole and broken -------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(0, 3))
def test_generated_pages_convert_the_same(number: int, version: int) -> None:
    same(generate_body("TECH", number, TITLES, 4_000, version=version))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.data())
def test_broken_pages_convert_the_same(number: int, data: st.DataObject) -> None:
    body = generate_body("DOCS", number, TITLES, 3_000)
    cut = data.draw(st.integers(0, len(body)))
    end = data.draw(st.integers(cut, min(len(body), cut + 400)))
    splice = data.draw(st.sampled_from(["", "<", "&", "]]>", "<![CDATA[", "</p>", "<li>", "\n"]))
    same(body[:cut] + splice + body[end:])


def test_golden_inputs_convert_the_same() -> None:
    from pathlib import Path

    for source in sorted((Path(__file__).parent / "golden").glob("*.xhtml")):
        same(source.read_text(encoding="utf-8"))


def test_corner_cases_convert_the_same() -> None:
    for storage in [
        "",
        " \n ",
        "<!-- only a comment -->",
        "<?xml version='1.0'?><p>x</p>",
        "\ufeff<p>bom</p>",
        "<title>Only head</title>",
        "<!DOCTYPE html><title>head</title>",
        "<p>a<!-- c -->_b</p>",
        "<pre>  keep \n  this  </pre>",
        "<p><code>  \n  </code><code> </code></p>",
        "<textarea><code>  \n </code></textarea>",
        "<ruby>x<rt><code>y</code></rt></ruby><p><script>var x</script>z</p>",
        "<template><p>t</p></template>",
        '<ol start="²"><li>x</li></ol>',
        '<table><tr><td colspan="²">x</td></tr></table>',
        "<p>" * 300,
        "<div>" * 200 + "deep" + "</div>" * 200,
        "<strong>" * 100 + "x",
        "<![CDATA[unterminated",
        "\x00\x01\x0b text",
    ]:
        same(storage)

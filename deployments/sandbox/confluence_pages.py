"""Realistic generated Confluence storage-format pages for the Confluence test server.

Deterministic (seeded by page number): headings, paragraphs with inline formatting and
accents/CJK, nested lists, tables, code macros with a language, info/note/warning panels,
links to other pages, images (attachments and URLs), an expand macro and a table of contents.
"""

from __future__ import annotations

import random
from html import escape

WORDS = (
    "service deployment pipeline cache latency schema révision Überblick café naïve "
    "façade Zürich déjà-vu 設計 データ 文書 架构 配置 索引 버전 throughput replica shard "
    "index queue worker retry backoff token audit ledger window budget cluster node"
).split()

LANGS = ("python", "java", "sql", "bash", "yaml", "json", "go", "typescript")

CODE = {
    "python": (
        'def handler(event):\n    """Return the payload."""\n'
        '    if event["n"] < 3 and x > 1:\n        return {"ok": True}\n'
    ),
    "java": (
        "public class Main {\n  public static void main(String[] a) "
        '{ System.out.println("héllo"); }\n}\n'
    ),
    "sql": "SELECT id, title FROM pages WHERE version > 3 AND title <> 'x';\n",
    "bash": 'for f in *.md; do echo "$f" && wc -l "$f"; done\n',
    "yaml": "service:\n  retries: 3\n  timeout: 30 # seconds\n",
    "json": '{"name": "nura", "tags": ["a", "b"], "nested": {"k": 1}}\n',
    "go": 'func main() {\n\tfmt.Println("<hello & goodbye>")\n}\n',
    "typescript": "const f = (x: number): string => `v${x}`;\n",
}


def _sentence(rng: random.Random, n: int = 12) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _inline(rng: random.Random) -> str:
    parts = []
    for _ in range(3):
        text = escape(_sentence(rng, rng.randint(6, 14)))
        style = rng.random()
        if style < 0.2:
            text = f"<strong>{text}</strong>"
        elif style < 0.35:
            text = f"<em>{text}</em>"
        elif style < 0.45:
            text = f"{text} <code>{rng.choice(WORDS)}_id</code>"
        parts.append(text)
    return " ".join(parts)


def page_title(space: str, number: int) -> str:
    rng = random.Random(number)
    return f"{space} {rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {number}"


def generate_body(
    space: str, number: int, titles: list[str], target_bytes: int = 10_000, version: int = 1
) -> str:
    """Storage-format XHTML of about `target_bytes` for page `number` of `space`."""
    rng = random.Random(number * 7919 + version)
    out: list[str] = [
        '<ac:structured-macro ac:name="toc" ac:schema-version="1" />',
        f"<h1>{escape(page_title(space, number))}</h1>",
        f"<p>{_inline(rng)} (v{version})</p>",
    ]
    section = 0
    while sum(len(p) for p in out) < target_bytes:
        section += 1
        out.append(f"<h2>Section {section}: {escape(rng.choice(WORDS))}</h2>")
        kind = section % 7
        if kind == 1:
            items = "".join(
                f"<li>{escape(_sentence(rng, 6))}"
                + (
                    "<ul><li>" + escape(_sentence(rng, 4)) + "</li></ul>"
                    if rng.random() < 0.3
                    else ""
                )
                + "</li>"
                for _ in range(4)
            )
            out.append(
                f"<ul>{items}</ul><ol><li>{escape(_sentence(rng, 5))}</li><li>é日本</li></ol>"
            )
        elif kind == 2:
            lang = rng.choice(LANGS)
            out.append(
                '<ac:structured-macro ac:name="code" ac:schema-version="1">'
                f'<ac:parameter ac:name="language">{lang}</ac:parameter>'
                f"<ac:plain-text-body><![CDATA[{CODE[lang]}]]></ac:plain-text-body>"
                "</ac:structured-macro>"
            )
        elif kind == 3:
            rows = "".join(
                f"<tr><td>{escape(rng.choice(WORDS))}</td><td>{rng.randint(1, 999)}</td>"
                f"<td>{escape(_sentence(rng, 3))}</td></tr>"
                for _ in range(4)
            )
            out.append(
                "<table><tbody><tr><th>Name</th><th>Value</th><th>Notes</th></tr>"
                f"{rows}</tbody></table>"
            )
        elif kind == 4:
            panel = ("info", "note", "warning", "tip")[section % 4]
            out.append(
                f'<ac:structured-macro ac:name="{panel}" ac:schema-version="1">'
                f"<ac:rich-text-body><p>{_inline(rng)}</p></ac:rich-text-body>"
                "</ac:structured-macro>"
            )
        elif kind == 5:
            other = rng.choice(titles) if titles else "Home"
            out.append(
                f"<p>See <ac:link><ri:page ri:content-title={_attr(other)} "
                f'ri:space-key="{space}" /><ac:plain-text-link-body>'
                f"<![CDATA[{other}]]></ac:plain-text-link-body></ac:link> and "
                f'<a href="https://example.com/docs?a=1&amp;b=2">the docs</a>.</p>'
                '<p><ac:image ac:alt="diagram">'
                f'<ri:attachment ri:filename="diagram-{number}.png" />'
                '</ac:image> <ac:image><ri:url ri:value="https://example.com/logo.svg" />'
                "</ac:image></p>"
            )
        elif kind == 6:
            out.append(
                '<ac:structured-macro ac:name="expand"><ac:parameter ac:name="title">Details'
                f"</ac:parameter><ac:rich-text-body><p>{_inline(rng)}</p>"
                "</ac:rich-text-body></ac:structured-macro>"
            )
        else:
            out.append(f"<p>{_inline(rng)}</p><p>中文段落：{escape(_sentence(rng, 5))}</p>")
    return "".join(out)


def _attr(value: str) -> str:
    return '"' + escape(value, quote=True) + '"'

"""What an erasure is about, and whether a stored payload mentions it.

    subject = Subject.confluence_page("123456")
    subject = Subject.git_path("acme/docs:handbook/people.md")  # or just "handbook/people.md"
    subject = Subject.email("Ana.Perez@example.com")
    subject.mentions(body_bytes)  # JSON-aware: looks at the decoded strings
    subject.digest                # sha256 of the identifier: what the audit log keeps

Matching is on whole tokens, so page 123 does not match 1234, and `a.md` does not match
`data.md`. A JSON body is decoded first (JSON escapes such as `\\/` or `\\u0040` cannot hide
a mention); a form-encoded body (GitHub's `payload=` form) is URL-decoded; anything else is
read as UTF-8 text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson

from nura.errors import NuraError

Kind = Literal["confluence_page", "git_path", "email"]

_PAGE_ID = re.compile(r"[0-9]{1,30}")
_EMAIL = re.compile(r"[^@\s,;<>\"']{1,64}@[^@\s,;<>\"']{1,255}")
_REPO = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+")


class InvalidSubject(NuraError, ValueError):
    """The identifier given to erase is not a page id, a repository path or an address."""


@dataclass(frozen=True)
class Subject:
    kind: Kind
    value: str  # the page id, the file path, or the address (lower case)
    repo: str | None = None  # git: only this `owner/repo` (None: every repository)

    # -- construction (validation) ---------------------------------------------------------
    @classmethod
    def confluence_page(cls, page_id: str) -> Subject:
        page_id = page_id.strip()
        if not _PAGE_ID.fullmatch(page_id):
            raise InvalidSubject(f"a Confluence page id is a number, not {page_id!r}")
        return cls("confluence_page", page_id)

    @classmethod
    def git_path(cls, spec: str) -> Subject:
        repo, sep, path = spec.strip().rpartition(":")
        if not sep:
            repo, path = "", spec.strip()
        if repo and not _REPO.fullmatch(repo):
            raise InvalidSubject(f"the repository must be OWNER/REPO, not {repo!r}")
        segments = path.split("/")
        if not path or path.startswith("/") or any(s in ("", ".", "..") for s in segments):
            raise InvalidSubject(f"not a file path in a repository: {path!r}")
        return cls("git_path", path, repo or None)

    @classmethod
    def email(cls, address: str) -> Subject:
        address = address.strip().lower()
        if not _EMAIL.fullmatch(address):
            raise InvalidSubject("not an email address")  # never echoed: it may be one
        return cls("email", address)

    # -- what is kept about it ------------------------------------------------------------
    @property
    def digest(self) -> str:
        """sha256 of the identifier (with the repository for a git path)."""
        ident = f"{self.repo}:{self.value}" if self.repo else self.value
        return hashlib.sha256(ident.encode()).hexdigest()

    # -- matching ---------------------------------------------------------------------------
    @property
    def pattern(self) -> re.Pattern[str]:
        v = re.escape(self.value)
        if self.kind == "confluence_page":
            return re.compile(rf"(?<![0-9A-Za-z]){v}(?![0-9A-Za-z])")
        if self.kind == "git_path":
            return re.compile(rf"(?<![\w.-]){v}(?![\w/-])(?!\.\w)")
        return re.compile(rf"(?<![\w.+-]){v}(?![\w-])(?!\.\w)", re.IGNORECASE)

    def mentioned_in(self, text: str) -> bool:
        if not self.pattern.search(text):
            return False
        return self.repo is None or self.repo.lower() in text.lower()

    def mentions(self, body: bytes | str | None) -> bool:
        """Does a stored payload mention the subject (JSON-aware)?"""
        if not body:
            return False
        strings = list(_strings(_decoded(body)))
        if not any(self.pattern.search(s) for s in strings):
            return False
        return self.repo is None or any(self.repo.lower() in s.lower() for s in strings)


def _decoded(body: bytes | str) -> Any:
    """The JSON value of a body, else its text with its URL-decoded form fields."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace")
    fields = parse_qs(text) if "=" in text else {}
    decoded = [(key, _maybe_json(v)) for key, values in fields.items() for v in values]
    return [text, *(item for pair in decoded for item in pair)]


def _maybe_json(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _strings(value: Any) -> Iterator[str]:
    """Every string (and number, as text) in a decoded JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)

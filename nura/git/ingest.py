"""Git providers (GitHub, GitLab): what a push changed and the files at the pushed revision.

Every call goes through the call layer (service "git"). GitHub: `GET /repos/{o}/{r}/compare/
{before}...{after}` for the changed files (accurate past the 20 commits a push payload
lists) and `GET /repos/{o}/{r}/contents/{path}?ref={sha}`; GitLab: the push's commit lists
and `GET /projects/{id}/repository/files/{path}?ref={sha}`.

Nothing of a payload reaches an API path or an S3 key unchecked: owner and repository must
be names GitHub/GitLab allow (`parse_push` refuses others), the shas are hex, every file path
is checked by `unsafe_path` (rejected row by row) and URL-encoded per segment; only
repositories on `external_services.git.repositories` are ingested (`repository_allowed`).
The token comes from the saved block through `BlockAuth`: a rotated token is picked up on
the next 401 (or after its TTL) without restarting the worker.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

import httpx
from pydantic import BaseModel, Field

from nura import get_call_layer, get_config
from nura.core.credentials import BlockAuth
from nura.core.errors import IntegrationError, InvalidInput
from nura.kb import s3

logger = logging.getLogger("nura.git")

ZERO_SHA = "0" * 40
Action = Literal["upsert", "delete"]


class GitPushError(InvalidInput):
    """The payload is not a push we can read (neither GitHub's nor GitLab's shape)."""

    default_service = "git"


class GitCredentialsError(IntegrationError):
    """The configured credentials block is not saved."""

    default_service = "git"


# -- names and paths ---------------------------------------------------------------------

# GitHub: owner letters, digits, `-` (and `_` of managed users), not starting with `-`;
# repository letters, digits, `.`, `_`, `-`. GitLab: every namespace segment and the
# project path letters, digits, `_`, `-`, `.`, not starting with `-` or `.`.
_GITHUB_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}")
_GITHUB_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_GITLAB_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_SHA = re.compile(r"[0-9a-f]{7,64}")
S3_KEY_MAX_BYTES = 1024


def _valid_name(provider: str, owner: str, repo: str) -> bool:
    if repo in (".", "..") or not owner:
        return False
    if provider == "github":
        return bool(_GITHUB_OWNER.fullmatch(owner) and _GITHUB_REPO.fullmatch(repo))
    return all(_GITLAB_SEGMENT.fullmatch(s) for s in [*owner.split("/"), repo])


def _bad_segment(segment: str) -> str | None:
    if segment == "":
        return "empty segment"
    if segment in (".", ".."):
        return f"{segment!r} segment"
    if "\\" in segment:
        return "backslash"
    for char in segment:
        category = unicodedata.category(char)
        if category == "Cc":
            return "control character"
        if category == "Cs":
            return "lone surrogate"
    return None


def unsafe_path(path: Any) -> str | None:
    """Why `path` may not become an API path or S3 key, or None when it is safe.

    Rejected: not a string, empty, a leading `/`, empty, `.` or `..` segments, backslashes,
    control characters, lone surrogates, and anything that turns into one of those, or
    gains a `/`, once percent-decoded (repeatedly) or NFKC-normalised (fullwidth dots and
    slashes); and paths too long for an S3 key. Git itself never produces `..`, empty
    segments or a leading `/`; backslashes and control characters are legal in git but not
    kept here.
    """
    if not isinstance(path, str) or not path:
        return "empty path"
    if path.startswith("/"):
        return "leading /"
    if len(path.encode("utf-8", "surrogatepass")) > S3_KEY_MAX_BYTES - 200:
        return "path too long"
    forms = [path]
    decoded = path
    for _ in range(5):  # %252e -> %2e -> .
        step = unquote(decoded)
        if step == decoded:
            break
        forms.append(decoded := step)
    forms += [unicodedata.normalize("NFKC", f) for f in forms if not _has_surrogate(f)]
    for n, form in enumerate(forms):
        if form.count("/") != path.count("/"):
            return "encoded or lookalike / in a name"
        for segment in form.split("/"):
            reason = _bad_segment(segment)
            if reason:
                return reason if n == 0 else f"{reason} once decoded"
    return None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _segments(path: str) -> str:
    """`path` URL-encoded segment by segment (`/` kept between them, nothing else)."""
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def _safe_url(url: str, fallback: str) -> str:
    ok = url.startswith(("https://", "http://")) and not any(
        c.isspace() or unicodedata.category(c) == "Cc" or ord(c) > 126 for c in url
    )
    return url.rstrip("/") if ok else fallback


class PushEvent(BaseModel):
    """A push, in a provider-neutral shape."""

    provider: Literal["github", "gitlab"]
    owner: str
    repo: str
    ref: str
    before: str
    after: str
    project_id: str | None = None  # GitLab
    web_url: str = ""
    # path -> action, folded over the payload's commits in order
    payload_changes: dict[str, Action] = Field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def deleted(self) -> bool:
        return self.after.strip("0") == ""

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    def project_ref(self) -> str:
        """GitLab's project in an API path: its numeric id, else the URL-encoded path."""
        if self.project_id and self.project_id.isdigit() and self.project_id.isascii():
            return self.project_id
        return quote(self.full_name, safe="")

    def key(self, path: str) -> str:
        """`git/{owner}/{repo}/{path}` from validated components only."""
        reason = unsafe_path(path)
        if reason or not _valid_name(self.provider, self.owner, self.repo):
            raise GitPushError(f"refusing to build an S3 key: {reason or 'invalid repository'}")
        return f"git/{self.owner}/{self.repo}/{path}"

    def source_url(self, path: str) -> str:
        sep = "/-/blob/" if self.provider == "gitlab" else "/blob/"
        return f"{self.web_url}{sep}{self.after}/{_segments(path)}"


def _fold(commits: Any) -> dict[str, Action]:
    changes: dict[str, Action] = {}
    for commit in commits if isinstance(commits, list) else []:
        if not isinstance(commit, dict):
            continue
        for field, action in (("added", "upsert"), ("modified", "upsert"), ("removed", "delete")):
            for path in commit.get(field) or []:
                if isinstance(path, str) and path:
                    changes[path] = action  # type: ignore[assignment]
    return changes


def parse_push(payload: dict[str, Any], provider: str | None = None) -> PushEvent:
    """GitHub (`repository.full_name`) or GitLab (`project.path_with_namespace`) push.

    Raises `GitPushError` for anything else, and for names, shas or refs that could not
    be a real push's (`..`, slashes, backslashes, control or percent-encoded characters).
    """
    push = _read_push(payload, provider)
    if not _valid_name(push.provider, push.owner, push.repo):
        raise GitPushError(
            f"push of {push.provider} repository {_shown(push.full_name)} refused: not a valid "
            "owner/repository name"
        )
    for field in ("before", "after"):
        if not _SHA.fullmatch(getattr(push, field)):
            raise GitPushError(f"push refused: `{field}` is not a commit sha")
    if any(unicodedata.category(c) == "Cc" for c in push.ref) or len(push.ref) > 512:
        raise GitPushError("push refused: `ref` contains control characters")
    return push


def _shown(text: str) -> str:
    """A payload string quoted for a message: escaped, shortened."""
    return ascii(text[:120])


def _read_push(payload: dict[str, Any], provider: str | None) -> PushEvent:
    try:
        if (
            provider == "gitlab"
            or ("project" in payload and "repository" not in payload)
            or (payload.get("object_kind") == "push")
        ):
            project = payload["project"]
            namespace, _, name = str(project["path_with_namespace"]).rpartition("/")
            web = f"https://gitlab.com/{namespace}/{name}"
            return PushEvent(
                provider="gitlab",
                owner=namespace,
                repo=name,
                ref=payload["ref"],
                before=payload.get("before") or ZERO_SHA,
                after=payload.get("checkout_sha") or payload["after"],
                project_id=str(project["id"]),
                web_url=_safe_url(str(project.get("web_url") or web), web),
                payload_changes=_fold(payload.get("commits")),
            )
        repo = payload["repository"]
        owner, _, name = str(repo["full_name"]).partition("/")
        web = f"https://github.com/{owner}/{name}"
        return PushEvent(
            provider="github",
            owner=owner,
            repo=name,
            ref=payload["ref"],
            before=payload.get("before") or ZERO_SHA,
            after=payload["after"],
            web_url=_safe_url(str(repo.get("html_url") or web), web),
            payload_changes=_fold(payload.get("commits")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GitPushError(
            f"not a GitHub or GitLab push payload ({type(exc).__name__} {_shown(str(exc))})"
        ) from None


def repository_allowed(push: PushEvent, patterns: list[str]) -> bool:
    """True when `owner/repo` matches one of the allow-list's patterns: fnmatch,
    case-insensitive (GitHub's names are), `*` within one segment. Empty list: False."""
    name = push.full_name.lower().split("/")
    for pattern in patterns:
        parts = pattern.lower().split("/")
        if len(parts) == len(name) and all(
            fnmatch.fnmatchcase(n, p) for n, p in zip(name, parts, strict=True)
        ):
            return True
    return False


def _not_allowed(push: PushEvent) -> str | None:
    allowed = get_config().external_services.git.repositories
    if repository_allowed(push, allowed):
        return None
    return f"repository {push.full_name} is not in external_services.git.repositories: not ingested"


def branch_allowed(push: PushEvent, patterns: list[str]) -> bool:
    if push.branch is None:
        return False  # tags and other refs are not ingested
    return not patterns or any(fnmatch.fnmatchcase(push.branch, p) for p in patterns)


class _Provider:
    """The saved credentials block of one loaded config: its API URL and a `BlockAuth`
    that reloads the block on a 401 (and after its TTL), so a rotated token takes effect
    in a running worker. The API URL follows the block's reloads too."""

    def __init__(self, config: Any, block_name: str) -> None:
        self.config = config
        self.block_name = block_name
        block = self._load()
        if block is None:
            raise GitCredentialsError(
                f"no nura-git-provider-credentials block named {block_name!r} is saved "
                "(external_services.git.credentials_block)"
            )
        self.block = block
        self.api_url = str(block.api_url).rstrip("/")
        self.auth = BlockAuth(lambda: self._load() or self.block, self._make_auth)

    def _load(self) -> Any:
        from nura.core.blocks import load_block
        from nura.git.blocks import GitProviderCredentials

        return load_block(GitProviderCredentials, self.block_name)

    def _make_auth(self, block: Any) -> httpx.Auth | None:
        self.block = block
        self.api_url = str(block.api_url).rstrip("/")
        return block.auth()  # type: ignore[no-any-return]


_provider: _Provider | None = None
_provider_lock = threading.Lock()


def _api() -> tuple[str, httpx.Auth | None]:
    global _provider
    cfg = get_config()
    git = cfg.external_services.git
    if not git.credentials_block:
        return (git.base_url or "https://api.github.com").rstrip("/"), None
    with _provider_lock:
        # One per loaded config (a reloaded config starts afresh), shared by every call.
        if (
            _provider is None
            or _provider.config is not cfg
            or _provider.block_name != git.credentials_block
        ):
            _provider = _Provider(cfg, git.credentials_block)
        provider = _provider
    return provider.api_url, provider.auth


def _get(url: str, operation: str, **params: Any) -> httpx.Response:
    base, auth = _api()
    headers = {"Accept": "application/vnd.github+json"}
    return (
        get_call_layer()
        .request(
            "git",
            "GET",
            f"{base}{url}",
            auth=auth,
            headers=headers,
            params=params or None,
            expected=(404,),
            operation=operation,
        )
        .value
    )


def changed_files(push: PushEvent) -> dict[str, Action]:
    """Path -> upsert/delete between `before` and `after`; {} (and no provider call) for a
    repository outside `external_services.git.repositories`. Paths are returned as the
    provider or payload names them: `sync_files` rejects the unsafe ones."""
    reason = _not_allowed(push)
    if reason:
        logger.warning("%s", reason)
        return {}
    if push.provider == "gitlab" or push.before.strip("0") == "":
        return dict(push.payload_changes)  # a new branch has no base to compare with
    changes: dict[str, Action] = {}
    repo = f"{quote(push.owner, safe='')}/{quote(push.repo, safe='')}"
    for page in range(1, 31):
        r = _get(
            f"/repos/{repo}/compare/{push.before}...{push.after}",
            "compare",
            per_page=100,
            page=page,
        )
        if r.status_code == 404:
            return dict(push.payload_changes)
        files = r.json().get("files") or []
        for f in files:
            status, name = f.get("status"), f.get("filename")
            if status == "renamed" and isinstance(f.get("previous_filename"), str):
                changes[f["previous_filename"]] = "delete"
            if isinstance(name, str):
                changes[name] = "delete" if status == "removed" else "upsert"
        if len(files) < 100:
            break
    return changes


@dataclass
class FileContent:
    path: str
    data: bytes | None  # None: not stored (see `skipped`)
    size: int
    skipped: str | None = None


def _looks_binary(data: bytes) -> bool:
    if b"\x00" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def fetch_file(push: PushEvent, path: str, max_bytes: int) -> FileContent:
    """The file at the pushed revision, or why it is skipped (missing, too large, binary)."""
    reason = unsafe_path(path)
    if reason:
        raise GitPushError(f"refusing to fetch an unsafe path ({reason})")
    if push.provider == "gitlab":
        url = f"/projects/{push.project_ref()}/repository/files/{quote(path, safe='')}"
    else:
        repo = f"{quote(push.owner, safe='')}/{quote(push.repo, safe='')}"
        url = f"/repos/{repo}/contents/{_segments(path)}"
    r = _get(url, "contents", ref=push.after)
    if r.status_code == 404:
        return FileContent(path, None, 0, "not found at revision")
    doc = r.json()
    if isinstance(doc, list) or doc.get("type", "file") != "file":
        return FileContent(path, None, 0, "not a file")
    size = int(doc.get("size") or 0)
    if size > max_bytes:
        return FileContent(path, None, size, f"over {max_bytes} bytes")
    if doc.get("encoding") != "base64":
        return FileContent(path, None, size, "no inline content")
    data = base64.b64decode(doc.get("content") or "")
    if len(data) > max_bytes:
        return FileContent(path, None, len(data), f"over {max_bytes} bytes")
    if _looks_binary(data):
        return FileContent(path, None, len(data), "binary")
    return FileContent(path, data, len(data))


def sync_files(push: PushEvent, changes: dict[str, Action]) -> list[dict[str, Any]]:
    """Store upserted files in the knowledge base, delete removed ones; one row per path.

    A repository outside `external_services.git.repositories`: one row "ignored", nothing
    read or written. An unsafe path (`unsafe_path`): a row "rejected", never fetched,
    stored or deleted; the other paths of the push go on.
    """
    git = get_config().external_services.git
    reason = _not_allowed(push)
    if reason:
        logger.warning("%s", reason)
        return [{"path": "*", "action": "ignored", "detail": reason, "bytes": 0}]
    rows: list[dict[str, Any]] = []
    for path, action in sorted(changes.items(), key=lambda item: str(item[0])):
        unsafe = unsafe_path(path)
        if unsafe:
            shown = _shown(str(path))
            logger.warning("%s: path %s rejected (%s)", push.full_name, shown, unsafe)
            rows.append({"path": shown, "action": "rejected", "detail": unsafe, "bytes": 0})
            continue
        if git.include_paths and not any(fnmatch.fnmatchcase(path, p) for p in git.include_paths):
            rows.append({"path": path, "action": "skipped", "detail": "not included", "bytes": 0})
            continue
        key = push.key(path)
        if action == "delete":
            s3.delete_document(key)
            rows.append({"path": path, "action": "deleted", "detail": key, "bytes": 0})
            continue
        content = fetch_file(push, path, git.max_file_bytes)
        if content.data is None:
            rows.append(
                {
                    "path": path,
                    "action": "skipped",
                    "detail": content.skipped,
                    "bytes": content.size,
                }
            )
            continue
        digest = hashlib.sha256(content.data).hexdigest()
        s3.put_document(
            key,
            content.data,
            {"source-url": push.source_url(path), "commit": push.after, "sha256": digest},
            content_type="text/plain; charset=utf-8",
        )
        rows.append({"path": path, "action": "stored", "detail": key, "bytes": content.size})
    return rows

"""Git providers (GitHub, GitLab): what a push changed and the files at the pushed revision.

Every call goes through the call layer (service "git"). Each branch is stored under its
own prefix `git/{owner}/{repo}/{branch}/` and made equal to the pushed revision:
- GitHub: `GET /repos/{o}/{r}/compare/{before}...{after}` for a fast-forward push under
  GitHub's 300-file cap; a forced, diverged or larger push diffs the two commits' trees
  (`GET /repos/{o}/{r}/git/trees/{sha}?recursive=1`, walked level by level when
  `truncated`) and deletes what the new tip lacks; a new branch stores the tree of
  `after`. Files: `GET /repos/{o}/{r}/contents/{path}?ref={sha}`, and over 1 MB (no
  inline content) the same with `Accept: application/vnd.github.raw+json`, up to
  `external_services.git.max_file_bytes`.
- GitLab: `GET /projects/{id}/repository/compare?from&to&straight=true` (the hook lists
  only the newest 20 commits and has no `forced` flag), `repository/tree` for a new
  branch or a compare cut short (`compare_timeout`), `repository/files/{path}?ref=`.

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
from nura.kb.sources import GitDocument, git_indexed, index_git

logger = logging.getLogger("nura.git")

ZERO_SHA = "0" * 40
Action = Literal["upsert", "delete"]


class GitPushError(InvalidInput):
    """The payload is not a push we can read (neither GitHub's nor GitLab's shape)."""

    default_service = "git"


class KnowledgeIndexError(IntegrationError):
    """Files were stored but the vector index could not take them (embedding failed)."""

    default_service = "bedrock"


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
    # GitHub's `forced` (a non-fast-forward push); GitLab's hook has no such flag
    forced: bool = False
    # commits pushed (GitLab `total_commits_count`; the hook lists the newest 20 only)
    total_commits: int | None = None

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

    @property
    def created(self) -> bool:
        """A new branch (or a first push): no `before` to compare with."""
        return self.before.strip("0") == ""

    def prefix(self) -> str:
        """`git/{owner}/{repo}/{branch}/`: each branch has its own documents. Owner and
        branch are URL-encoded into one segment each (`release%2F1`, GitLab `grp%2Fsub`),
        so no prefix can be another repository's or branch's."""
        branch = self.branch
        if branch is None or not valid_branch(branch):
            raise GitPushError("refusing to build an S3 key: not a valid branch name")
        if not _valid_name(self.provider, self.owner, self.repo):
            raise GitPushError("refusing to build an S3 key: invalid repository")
        return f"git/{quote(self.owner, safe='')}/{self.repo}/{quote(branch, safe='')}/"

    def key(self, path: str) -> str:
        """`git/{owner}/{repo}/{branch}/{path}` from validated components only."""
        reason = unsafe_path(path)
        if reason:
            raise GitPushError(f"refusing to build an S3 key: {reason}")
        return self.prefix() + path

    def source_url(self, path: str) -> str:
        sep = "/-/blob/" if self.provider == "gitlab" else "/blob/"
        return f"{self.web_url}{sep}{self.after}/{_segments(path)}"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# git check-ref-format: no `..`, `@{`, `//`, control characters, space, `~^:?*[\`, no
# leading or trailing `/`, no `.lock` ending, no segment starting with `.`.
_BAD_BRANCH = re.compile(r"\.\.|@\{|//|^/|/$|\.lock$|(^|/)\.|[\x00-\x20\x7f~^:?*\[\\]")


def valid_branch(name: str) -> bool:
    return 0 < len(name) <= 255 and name != "@" and not _BAD_BRANCH.search(name)


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
                total_commits=_count(payload.get("total_commits_count")),
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
            forced=payload.get("forced") is True,
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


def _get(
    url: str,
    operation: str,
    *,
    accept: str = "application/vnd.github+json",
    max_bytes: int | None = None,
    **params: Any,
) -> httpx.Response:
    base, auth = _api()
    return (
        get_call_layer()
        .request(
            "git",
            "GET",
            f"{base}{url}",
            auth=auth,
            headers={"Accept": accept},
            params=params or None,
            expected=(404,),
            operation=operation,
            max_response_bytes=max_bytes,
        )
        .value
    )


# GitHub's compare lists at most 300 changed files for the whole comparison, on its first
# page only ("Compare two commits", docs.github.com/en/rest/commits/commits).
COMPARE_FILE_CAP = 300
RAW = "application/vnd.github.raw+json"  # the bytes of a file or blob, any size to 100 MB
MAX_TREE_PAGES = 5000  # GitLab tree listing: 100 entries a page


class GitIngestError(IntegrationError):
    """The provider's answers do not let the ingest know what changed (never a partial
    result presented as a complete one)."""

    default_service = "git"


def changed_files(push: PushEvent) -> dict[str, Action]:
    """Path -> upsert/delete that makes the branch's knowledge-base prefix equal to the
    pushed revision; {} (and no provider call) for a repository outside
    `external_services.git.repositories`. Paths are returned as the provider names them:
    `sync_files` rejects the unsafe ones.

    GitHub: the compare `before...after` when the push is a fast-forward under 300 files;
    otherwise (forced, diverged or behind, the 300-file cap, `before` unknown) the two
    commits' trees are diffed, and what the new tip lacks is deleted (including files the
    knowledge base holds under the branch's prefix). A new branch: the whole tree of
    `after`. GitLab: the compare API `before..after` (`straight`: the two trees, so force
    pushes and pushes of more than the 20 commits the hook lists are exact); the tree of
    `after` for a new branch or when the compare was cut (`compare_timeout`). A deleted
    branch: every document under its prefix is deleted.
    """
    reason = _not_allowed(push)
    if reason:
        logger.warning("%s", reason)
        return {}
    if push.deleted:  # the branch is gone: so are its documents
        return dict.fromkeys(stored_paths(push), "delete")
    if push.provider == "gitlab":
        return _gitlab_changes(push)
    return _github_changes(push)


def _repo_path(push: PushEvent) -> str:
    return f"/repos/{quote(push.owner, safe='')}/{quote(push.repo, safe='')}"


def _github_changes(push: PushEvent) -> dict[str, Action]:
    if push.created:
        logger.info("%s: new branch %s, storing the tree of %s", push.full_name, push.branch,
                    push.after[:12])  # fmt: skip
        return _reconcile(push, None)
    if not push.forced:
        r = _get(
            f"{_repo_path(push)}/compare/{push.before}...{push.after}",
            "compare",
            per_page=1,
            page=1,
        )
        doc = r.json() if r.status_code != 404 else {}
        files = doc.get("files") or []
        status = doc.get("status")
        if status in ("ahead", "identical") and len(files) < COMPARE_FILE_CAP:
            changes: dict[str, Action] = {}
            for f in files:
                kind, name = f.get("status"), f.get("filename")
                if kind == "renamed" and isinstance(f.get("previous_filename"), str):
                    changes[f["previous_filename"]] = "delete"
                if isinstance(name, str):
                    changes[name] = "delete" if kind == "removed" else "upsert"
            return changes
        why = (
            "before is unknown to the provider"
            if r.status_code == 404
            else f"compare is {status}" if status not in ("ahead", "identical")
            else f"compare lists {len(files)} files (GitHub's cap is {COMPARE_FILE_CAP})"
        )  # fmt: skip
        logger.info("%s: %s, diffing the trees", push.full_name, why)
    return _reconcile(push, _github_tree(push, push.before))


def _github_tree(push: PushEvent, sha: str) -> dict[str, str] | None:
    """Path -> blob sha of every file at commit `sha`, or None when the commit is unknown
    (404). A recursive listing cut short (`truncated`) is walked one tree at a time, as
    GitHub's "Get a tree" documentation says to."""
    base = f"{_repo_path(push)}/git/trees"
    r = _get(f"{base}/{sha}", "tree", recursive=1)
    if r.status_code == 404:
        return None
    doc = r.json()
    if not doc.get("truncated"):
        return _blobs(doc.get("tree"), "")
    files: dict[str, str] = {}
    pending = [("", str(doc.get("sha") or sha))]
    while pending:
        prefix, tree_sha = pending.pop()
        if not _SHA.fullmatch(tree_sha):
            raise GitIngestError(f"{push.full_name}: tree listing names an invalid tree sha")
        level = _get(f"{base}/{tree_sha}", "tree")
        if level.status_code == 404:
            raise GitIngestError(f"{push.full_name}: tree {tree_sha[:12]} vanished mid-walk")
        for entry in level.json().get("tree") or []:
            if entry.get("type") == "tree" and isinstance(entry.get("path"), str):
                pending.append((f"{prefix}{entry['path']}/", str(entry.get("sha"))))
        files.update(_blobs(level.json().get("tree"), prefix))
    return files


def _blobs(entries: Any, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("type") == "blob":
            path = entry.get("path")
            if isinstance(path, str):
                out[prefix + path] = str(entry.get("sha") or entry.get("id") or "")
    return out


def _gitlab_changes(push: PushEvent) -> dict[str, Action]:
    if push.created:
        return _reconcile(push, None)
    if (push.total_commits or 0) > 20:  # the hook's lists are incomplete; compare is not
        logger.info("%s: push of %d commits", push.full_name, push.total_commits)
    # straight: `from..to`, the two trees (the default diffs from the merge base)
    query: dict[str, Any] = {"from": push.before, "to": push.after, "straight": "true"}
    r = _get(f"/projects/{push.project_ref()}/repository/compare", "compare", **query)
    doc = r.json() if r.status_code != 404 else {}
    if r.status_code == 404 or doc.get("compare_timeout") or not isinstance(doc.get("diffs"), list):
        logger.info("%s: compare unavailable or cut, storing the tree of %s", push.full_name,
                    push.after[:12])  # fmt: skip
        return _reconcile(push, None)
    changes: dict[str, Action] = {}
    for d in doc["diffs"]:
        if not isinstance(d, dict):
            continue
        old, new = d.get("old_path"), d.get("new_path")
        if d.get("renamed_file") and isinstance(old, str) and old != new:
            changes[old] = "delete"
        if isinstance(new, str):
            changes[new] = "delete" if d.get("deleted_file") else "upsert"
    return changes


def _gitlab_tree(push: PushEvent, sha: str) -> dict[str, str] | None:
    files: dict[str, str] = {}
    page = "1"
    for _ in range(MAX_TREE_PAGES):
        r = _get(
            f"/projects/{push.project_ref()}/repository/tree",
            "tree",
            ref=sha,
            recursive="true",
            per_page=100,
            page=page,
        )
        if r.status_code == 404:
            return None
        files.update(_blobs(r.json(), ""))
        page = r.headers.get("X-Next-Page", "").strip()
        if not page:
            return files
    raise GitIngestError(f"{push.full_name}: tree of {sha[:12]} has more than "
                         f"{MAX_TREE_PAGES * 100} entries")  # fmt: skip


def _reconcile(push: PushEvent, before: dict[str, str] | None) -> dict[str, Action]:
    """Changes that make the branch's prefix hold exactly the tree of `after`: files new or
    changed since `before` (every file when `before` is None) upserted; files of `before`
    and files stored under the prefix that `after` lacks deleted."""
    tree = _github_tree if push.provider == "github" else _gitlab_tree
    after = tree(push, push.after)
    if after is None:
        raise GitIngestError(f"{push.full_name}: the pushed commit {push.after[:12]} is unknown")
    changes: dict[str, Action] = {
        path: "upsert" for path, sha in after.items() if before is None or before.get(path) != sha
    }
    for path in (set(before or {}) | set(stored_paths(push))) - set(after):
        changes[path] = "delete"
    return changes


def stored_paths(push: PushEvent) -> list[str]:
    """The file paths the knowledge base holds for the push's repository and branch."""
    from nura.core.aws_clients import aws_client

    prefix = push.prefix()
    bucket = s3.knowledge_base().bucket
    client = aws_client("s3")
    paths: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = get_call_layer().call("s3", "list_objects_v2", client.list_objects_v2, **kwargs)
        listed = page.value
        paths += [o["Key"][len(prefix) :] for o in listed.get("Contents") or []]
        token = listed.get("NextContinuationToken") if listed.get("IsTruncated") else None
        if not token:
            return paths


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
    """The file at the pushed revision, or why it is skipped (missing, too large, binary).

    GitHub's contents API has the content inline only up to 1 MB (`encoding: "none"`,
    `content: ""` above): such a file is fetched again with the raw media type, when it
    is within `max_bytes`."""
    reason = unsafe_path(path)
    if reason:
        raise GitPushError(f"refusing to fetch an unsafe path ({reason})")
    if push.provider == "gitlab":
        url = f"/projects/{push.project_ref()}/repository/files/{quote(path, safe='')}"
    else:
        url = f"{_repo_path(push)}/contents/{_segments(path)}"
    r = _get(url, "contents", ref=push.after, max_bytes=max(2 * max_bytes, 1 << 20) + (1 << 16))
    if r.status_code == 404:
        return FileContent(path, None, 0, "not found at revision")
    doc = r.json()
    if isinstance(doc, list) or doc.get("type", "file") != "file":
        return FileContent(path, None, 0, "not a file")
    size = int(doc.get("size") or 0)
    if size > max_bytes:
        return FileContent(path, None, size, f"over {max_bytes} bytes")
    if doc.get("encoding") == "base64":
        data = base64.b64decode(doc.get("content") or "")
    elif push.provider == "github" and doc.get("encoding") == "none":
        raw = _get(url, "contents-raw", accept=RAW, max_bytes=max_bytes, ref=push.after)
        if raw.status_code == 404:
            return FileContent(path, None, 0, "not found at revision")
        data = raw.content
    else:
        return FileContent(path, None, size, "no inline content")
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
    indexed: list[GitDocument] = []  # stored files for the vector index
    deleted: list[str] = []
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
            deleted.append(key)
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
        if git_indexed(path):
            indexed.append(GitDocument(key, path, push.source_url(path), content.data))
    _refresh_index(push, indexed, deleted)
    return rows


def _refresh_index(push: PushEvent, stored: list[GitDocument], deleted: list[str]) -> None:
    """Chunk and embed the stored documents, drop the deleted ones' chunks
    (`nura.kb.sources`). The files are in S3 already; a failure raises after that, so the
    run fails and its retry embeds what is missing (unchanged digests are skipped)."""
    if not stored and not deleted:
        return
    report = index_git(push.full_name, stored, deleted)
    if report is not None and not report.ok:
        reason = next(iter(report.failed.values()))
        raise KnowledgeIndexError(
            f"{push.full_name}: {len(report.failed)} file(s) stored but not embedded: {reason}"
        )

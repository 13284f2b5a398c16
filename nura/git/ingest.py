"""Git providers (GitHub, GitLab): what a push changed and the files at the pushed revision.

Every call goes through the call layer (service "git"). GitHub: `GET /repos/{o}/{r}/compare/
{before}...{after}` for the changed files (accurate past the 20 commits a push payload
lists) and `GET /repos/{o}/{r}/contents/{path}?ref={sha}`; GitLab: the push's commit lists
and `GET /projects/{id}/repository/files/{path}?ref={sha}`.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from nura import get_call_layer, get_config
from nura.core.errors import InvalidInput
from nura.kb import s3

ZERO_SHA = "0" * 40
Action = Literal["upsert", "delete"]


class GitPushError(InvalidInput):
    """The payload is not a push we can read (neither GitHub's nor GitLab's shape)."""

    default_service = "git"


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

    def key(self, path: str) -> str:
        return f"git/{self.owner}/{self.repo}/{path}"

    def source_url(self, path: str) -> str:
        sep = "/-/blob/" if self.provider == "gitlab" else "/blob/"
        return f"{self.web_url}{sep}{self.after}/{quote(path)}"


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
    """GitHub (`repository.full_name`) or GitLab (`project.path_with_namespace`) push."""
    try:
        if (
            provider == "gitlab"
            or ("project" in payload and "repository" not in payload)
            or (payload.get("object_kind") == "push")
        ):
            project = payload["project"]
            namespace, _, name = str(project["path_with_namespace"]).rpartition("/")
            return PushEvent(
                provider="gitlab",
                owner=namespace,
                repo=name,
                ref=payload["ref"],
                before=payload.get("before") or ZERO_SHA,
                after=payload.get("checkout_sha") or payload["after"],
                project_id=str(project["id"]),
                web_url=str(project.get("web_url") or ""),
                payload_changes=_fold(payload.get("commits")),
            )
        repo = payload["repository"]
        owner, _, name = str(repo["full_name"]).partition("/")
        return PushEvent(
            provider="github",
            owner=owner,
            repo=name,
            ref=payload["ref"],
            before=payload.get("before") or ZERO_SHA,
            after=payload["after"],
            web_url=str(repo.get("html_url") or f"https://github.com/{owner}/{name}"),
            payload_changes=_fold(payload.get("commits")),
        )
    except (KeyError, TypeError) as exc:
        raise GitPushError(f"not a GitHub or GitLab push payload (missing {exc})") from None


def branch_allowed(push: PushEvent, patterns: list[str]) -> bool:
    if push.branch is None:
        return False  # tags and other refs are not ingested
    return not patterns or any(fnmatch.fnmatchcase(push.branch, p) for p in patterns)


@lru_cache(maxsize=4)
def _credentials(block_name: str) -> Any:
    from nura.git.blocks import GitProviderCredentials

    return GitProviderCredentials.load(block_name, _sync=True)  # type: ignore[call-arg]


def _api() -> tuple[str, httpx.Auth | None]:
    git = get_config().external_services.git
    if git.credentials_block:
        block = _credentials(git.credentials_block)
        return block.api_url.rstrip("/"), block.auth()
    return (git.base_url or "https://api.github.com").rstrip("/"), None


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
    """Path -> upsert/delete between `before` and `after`."""
    if push.provider == "gitlab" or push.before.strip("0") == "":
        return dict(push.payload_changes)  # a new branch has no base to compare with
    changes: dict[str, Action] = {}
    for page in range(1, 31):
        r = _get(
            f"/repos/{push.owner}/{push.repo}/compare/{push.before}...{push.after}",
            "compare",
            per_page=100,
            page=page,
        )
        if r.status_code == 404:
            return dict(push.payload_changes)
        files = r.json().get("files") or []
        for f in files:
            status, name = f.get("status"), f.get("filename")
            if status == "renamed" and f.get("previous_filename"):
                changes[f["previous_filename"]] = "delete"
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
    if push.provider == "gitlab":
        url = f"/projects/{push.project_id}/repository/files/{quote(path, safe='')}"
    else:
        url = f"/repos/{push.owner}/{push.repo}/contents/{quote(path)}"
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
    """Store upserted files in the knowledge base, delete removed ones; one row per path."""
    git = get_config().external_services.git
    rows: list[dict[str, Any]] = []
    for path, action in sorted(changes.items()):
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

"""A local Git provider speaking GitHub's REST API for the paths the ingest reads.

Each path behaves as GitHub's REST documentation says (https://docs.github.com/en/rest,
API version 2022-11-28), including the limits a client must cope with:

  GET /repos/{o}/{r}/compare/{base}...{head}       "Compare two commits" (commits/commits):
      three dots = from the merge base; `status` ahead/behind/diverged/identical,
      `merge_base_commit`, `ahead_by`, `behind_by`, `total_commits`; `commits` paginated
      (`page`/`per_page`; without either at most 250); `files` only on the first page and
      at most 300 for the whole comparison (`file_cap`); 404 when a commit is unknown.
  GET /repos/{o}/{r}/git/trees/{sha}[?recursive=1] "Get a tree" (git/trees): entries
      `path mode type(blob|tree) sha [size]`; with `recursive` at most 100,000 entries
      (`tree_limit`), then `truncated: true`; without it one level (subtrees by sha).
  GET /repos/{o}/{r}/git/blobs/{sha}               "Get a blob" (git/blobs): base64 JSON,
      or the bytes with `Accept: application/vnd.github.raw+json`; up to 100 MB.
  GET /repos/{o}/{r}/contents/{path}?ref=          "Get repository content"
      (repos/contents): up to 1 MB the content inline (base64); 1-100 MB `encoding: "none"`
      and `content: ""` unless the raw media type is asked for; over 100 MB 403.
  GET /stats                                       {"requests": N, "auth": [...]}

Repositories live in memory as commits (path -> bytes snapshots) with parents, on named
branches, so force pushes and diverged histories exist: `commit(..., parent=sha)` starts
from any commit. Blob shas are git's (`sha1("blob <size>\\0" + data)`).

With `tokens` set, every API request must carry one of them (`Authorization: Bearer|token
<t>`, or GitLab's `PRIVATE-TOKEN`), else 401 `{"message": "Bad credentials"}` as GitHub
answers a revoked token; `tokens = None` (the default) accepts anything.

    server = FakeGitHub().start()
    sha1 = server.commit("octo", "docs", {"README.md": b"# hi"})
    sha2 = server.commit("octo", "docs", {"README.md": b"# hi!", "old.txt": None})
    payload = server.push_payload("octo", "docs", sha1, sha2)
    python -m deployments.sandbox.github_server --port 8703

GitLab's API is served by `deployments.sandbox.gitlab_server.FakeGitLab` (same model).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlparse

from deployments.sandbox.base import JsonHandler, LocalServer, serve_main

ZERO = "0" * 40
DOCS = "https://docs.github.com/rest"
MB = 1024 * 1024
RAW_TYPES = ("application/vnd.github.raw", "application/vnd.github.v3.raw")


def blob_sha(data: bytes) -> str:
    """Git's object id of a blob."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


class FakeGitHub(LocalServer):
    handler: ClassVar[type[BaseHTTPRequestHandler]]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), type(self).handler)
        self.lock = threading.Lock()
        self.snapshots: dict[str, dict[str, bytes]] = {}  # commit sha -> path -> bytes
        self.parents: dict[str, str] = {}
        self.heads: dict[str, str] = {}  # "owner/repo" -> sha of the last commit made
        self.branches: dict[tuple[str, str], str] = {}  # ("owner/repo", branch) -> sha
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, list[dict[str, Any]]] = {}  # tree sha -> one level
        self.commit_trees: dict[str, str] = {}  # commit sha -> root tree sha
        self.requests = 0
        self.auth: list[str] = []
        self.paths: list[str] = []  # the raw request paths (percent-encoding kept)
        self.accepts: list[str] = []  # the Accept header of each request
        self.tokens: set[str] | None = None  # accepted tokens; None: no check
        # GitHub's documented limits (smaller values let a test reach them cheaply)
        self.file_cap = 300  # compare: changed files listed for the whole comparison
        self.tree_limit = 100_000  # trees?recursive: entries before `truncated`
        self.inline_limit = MB  # contents: larger files come without inline content
        self.max_blob = 100 * MB  # contents/blobs: larger files are refused

    # -- repository state ----------------------------------------------------------------
    def commit(
        self,
        owner: str,
        repo: str,
        changes: dict[str, bytes | None],
        *,
        parent: str | None = None,
        branch: str = "main",
        base: str | None = None,
    ) -> str:
        """Apply `changes` (None deletes) on `parent` (default: the branch's head, else the
        repository's last commit, else nothing; `base=ZERO` starts an unrelated history);
        the branch then points at the new commit, whose sha is returned."""
        name = f"{owner}/{repo}"
        with self.lock:
            if base == ZERO:
                parent = None
            elif parent is None:
                parent = self.branches.get((name, branch)) or self.heads.get(name)
            tree = dict(self.snapshots.get(parent, {})) if parent else {}
            for path, data in changes.items():
                if data is None:
                    tree.pop(path, None)
                else:
                    tree[path] = data
            seed = json.dumps([parent, sorted((p, blob_sha(d)) for p, d in tree.items())])
            sha = hashlib.sha256(f"{name}:{seed}:{len(self.snapshots)}".encode()).hexdigest()[:40]
            self.snapshots[sha] = tree
            self.heads[name] = sha
            self.branches[(name, branch)] = sha
            if parent:
                self.parents[sha] = parent
            for data in tree.values():
                self.blobs[blob_sha(data)] = data
            self.commit_trees[sha] = self._store_tree(tree)
            return sha

    def _store_tree(self, files: dict[str, bytes]) -> str:
        """Git-like tree objects (one level each, subtrees by sha); the root's sha."""
        entries: list[dict[str, Any]] = []
        subdirs: dict[str, dict[str, bytes]] = {}
        for path, data in files.items():
            head, sep, rest = path.partition("/")
            if sep:
                subdirs.setdefault(head, {})[rest] = data
            else:
                entries.append(
                    {"path": path, "mode": "100644", "type": "blob", "sha": blob_sha(data),
                     "size": len(data)}
                )  # fmt: skip
        for name, sub in subdirs.items():
            entries.append(
                {"path": name, "mode": "040000", "type": "tree", "sha": self._store_tree(sub)}
            )
        entries.sort(key=lambda e: e["path"])
        sha = hashlib.sha1(
            json.dumps(entries, sort_keys=True).encode(), usedforsecurity=False
        ).hexdigest()
        self.trees[sha] = entries
        return sha

    def tree_entries(self, tree_sha: str, recursive: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for entry in self.trees[tree_sha]:
            out.append(dict(entry))
            if recursive and entry["type"] == "tree":
                for sub in self.tree_entries(entry["sha"], True):
                    out.append({**sub, "path": f"{entry['path']}/{sub['path']}"})
        return out

    def ancestors(self, sha: str) -> list[str]:
        """`sha` and its ancestors, newest first."""
        chain = [sha]
        while chain[-1] in self.parents:
            chain.append(self.parents[chain[-1]])
        return chain

    def merge_base(self, base: str, head: str) -> str | None:
        seen = set(self.ancestors(base))
        return next((c for c in self.ancestors(head) if c in seen), None)

    def diff(self, base: str, head: str) -> list[dict[str, str]]:
        """Changed files between two snapshots (what `git diff base head` names)."""
        a, b = self.snapshots.get(base, {}), self.snapshots[head]
        files = []
        for path in sorted(set(a) | set(b)):
            if path not in b:
                files.append({"filename": path, "status": "removed", "sha": blob_sha(a[path])})
            elif path not in a:
                files.append({"filename": path, "status": "added", "sha": blob_sha(b[path])})
            elif a[path] != b[path]:
                files.append({"filename": path, "status": "modified", "sha": blob_sha(b[path])})
        return files

    def push_payload(
        self,
        owner: str,
        repo: str,
        before: str,
        after: str,
        branch: str = "main",
        *,
        forced: bool = False,
        default_branch: str = "main",
    ) -> dict[str, Any]:
        """GitHub's push payload shape: one commit per commit pushed (those `after` has and
        `before` lacks; none for a branch created on an existing commit), with the files
        each changed; `forced` as GitHub sets it for a non-fast-forward push."""
        pushed: list[str] = []
        if after != ZERO:
            known = set(self.ancestors(before)) if before != ZERO else set()
            if before == ZERO:  # commits not on any other branch are "new"
                for (name, other), head in self.branches.items():
                    if name == f"{owner}/{repo}" and other != branch:
                        known |= set(self.ancestors(head))
            pushed = [c for c in self.ancestors(after) if c not in known][::-1]
        commits = []
        for sha in pushed:
            files = self.diff(self.parents.get(sha, ""), sha)
            commits.append(
                {
                    "id": sha,
                    "message": "sandbox commit",
                    "added": [f["filename"] for f in files if f["status"] == "added"],
                    "modified": [f["filename"] for f in files if f["status"] == "modified"],
                    "removed": [f["filename"] for f in files if f["status"] == "removed"],
                }
            )
        return {
            "ref": f"refs/heads/{branch}",
            "before": before,
            "after": after,
            "created": before == ZERO,
            "deleted": after == ZERO,
            "forced": forced,
            "base_ref": None,
            "repository": {
                "name": repo,
                "full_name": f"{owner}/{repo}",
                "owner": {"login": owner, "name": owner},
                "html_url": f"https://github.com/{owner}/{repo}",
                "default_branch": default_branch,
            },
            "commits": commits,
            "head_commit": commits[-1] if commits else None,
        }

    def gitlab_payload(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """GitLab's push hook shape (see `deployments.sandbox.gitlab_server`)."""
        from deployments.sandbox.gitlab_server import gitlab_push_payload

        return gitlab_push_payload(self, *args, **kwargs)

    # -- answers -------------------------------------------------------------------------
    def compare(self, base: str, head: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if head not in self.snapshots or base not in self.snapshots:
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
        mb = self.merge_base(base, head)
        if mb is None:
            return 404, {"message": f"No common ancestor between {base} and {head}.",
                         "documentation_url": DOCS, "status": "404"}  # fmt: skip
        ahead = self.ancestors(head)[: self.ancestors(head).index(mb)][::-1]
        behind_by = self.ancestors(base).index(mb)
        if base == head:
            status = "identical"
        elif mb == base:
            status = "ahead"
        elif mb == head:
            status = "behind"
        else:
            status = "diverged"
        paged = "page" in query or "per_page" in query
        page = int(query.get("page", ["1"])[0])
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        commits = ahead[(page - 1) * per_page : page * per_page] if paged else ahead[-250:]
        body: dict[str, Any] = {
            "status": status,
            "ahead_by": len(ahead),
            "behind_by": behind_by,
            "total_commits": len(ahead),
            "base_commit": {"sha": base},
            "merge_base_commit": {"sha": mb},
            "commits": [{"sha": c, "parents": [{"sha": self.parents.get(c)}]} for c in commits],
        }
        if page == 1:
            body["files"] = self.diff(mb, head)[: self.file_cap]
        return 200, body


class _Handler(JsonHandler):
    server: FakeGitHub

    def _token(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and token:
            return token.strip()
        return self.headers.get("PRIVATE-TOKEN")

    def _raw_wanted(self) -> bool:
        accept = (self.headers.get("Accept") or "").lower()
        return any(t in accept for t in RAW_TYPES)

    def _send_raw(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.github.raw; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _too_large(self, size: int) -> None:
        return self._send(
            403,
            {"message": f"This API returns blobs up to 100 MB in size. The requested blob is "
                        f"{size} bytes.", "documentation_url": DOCS, "status": "403",
             "errors": [{"code": "too_large", "field": "data", "resource": "Blob"}]},
        )  # fmt: skip

    def _contents(self, tree: dict[str, bytes], path: str) -> None:
        srv = self.server
        if path not in tree:
            if any(p.startswith(path + "/") for p in tree):  # a directory: its listing
                names = sorted({p[len(path) + 1 :].split("/")[0] for p in tree if
                                p.startswith(path + "/")})  # fmt: skip
                return self._send(200, [{"name": n, "path": f"{path}/{n}"} for n in names])
            return self._send(404, {"message": "Not Found", "documentation_url": DOCS})
        data = tree[path]
        if len(data) > srv.max_blob:
            return self._too_large(len(data))
        if self._raw_wanted():
            return self._send_raw(data)
        large = len(data) > srv.inline_limit
        return self._send(
            200,
            {
                "type": "file",
                "encoding": "none" if large else "base64",
                "size": len(data),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "sha": blob_sha(data),
                "content": "" if large else base64.b64encode(data).decode(),
            },
        )

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlparse(self.path)
        query = parse_qs(url.query)
        srv = self.server
        with srv.lock:
            srv.requests += 1
            srv.auth.append(
                self.headers.get("Authorization") or self.headers.get("PRIVATE-TOKEN") or ""
            )
            srv.paths.append(url.path)
            srv.accepts.append(self.headers.get("Accept") or "")
            tokens = None if srv.tokens is None else set(srv.tokens)
        if url.path == "/stats":
            return self._send(200, {"requests": srv.requests, "auth": srv.auth})
        if tokens is not None and self._token() not in tokens:
            return self._send(
                401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
            )
        parts = url.path.split("/")
        if len(parts) < 6 or parts[1] != "repos":
            return self._send(404, {"message": "Not Found", "documentation_url": DOCS})
        name = f"{unquote(parts[2])}/{unquote(parts[3])}"
        with srv.lock:
            # /repos/{owner}/{repo}/compare/{base}...{head}
            if parts[4] == "compare":
                base, _, head = unquote("/".join(parts[5:])).partition("...")
                base = srv.branches.get((name, base), base)  # a branch name or a sha
                head = srv.branches.get((name, head), head)
                status, body = srv.compare(base, head, query)
                return self._send(status, body)
            # /repos/{owner}/{repo}/git/trees/{sha}
            if parts[4:6] == ["git", "trees"] and len(parts) == 7:
                ref = srv.branches.get((name, unquote(parts[6])), unquote(parts[6]))
                tree_sha = srv.commit_trees.get(ref, ref)  # a commit sha is a tree-ish
                if tree_sha not in srv.trees:
                    return self._send(404, {"message": "Not Found", "documentation_url": DOCS})
                recursive = "recursive" in query
                entries = srv.tree_entries(tree_sha, recursive)
                truncated = recursive and len(entries) > srv.tree_limit
                return self._send(
                    200,
                    {"sha": tree_sha, "tree": entries[: srv.tree_limit] if truncated else entries,
                     "truncated": truncated},
                )  # fmt: skip
            # /repos/{owner}/{repo}/git/blobs/{sha}
            if parts[4:6] == ["git", "blobs"] and len(parts) == 7:
                data = srv.blobs.get(parts[6])
                if data is None:
                    return self._send(404, {"message": "Not Found", "documentation_url": DOCS})
                if len(data) > srv.max_blob:
                    return self._too_large(len(data))
                if self._raw_wanted():
                    return self._send_raw(data)
                return self._send(
                    200,
                    {"sha": parts[6], "size": len(data), "encoding": "base64",
                     "content": base64.encodebytes(data).decode()},
                )  # fmt: skip
            # /repos/{owner}/{repo}/contents/{path...}
            if parts[4] == "contents":
                ref = query.get("ref", [""])[0]
                ref = srv.branches.get((name, ref), ref) or srv.heads.get(name, "")
                if ref not in srv.snapshots:
                    return self._send(
                        404, {"message": f"No commit found for the ref {ref}",
                              "documentation_url": DOCS},
                    )  # fmt: skip
                return self._contents(srv.snapshots[ref], unquote("/".join(parts[5:])))
        return self._send(404, {"message": "Not Found", "documentation_url": DOCS})


FakeGitHub.handler = _Handler


def main() -> None:
    def make(args: argparse.Namespace) -> FakeGitHub:
        server = FakeGitHub(args.host, args.port)
        files: dict[str, bytes | None] = {
            "README.md": b"# Nura handbook\n",
            "docs/setup.md": b"Setup\n",
        }
        server.commit("nura", "handbook", files)
        return server

    serve_main(
        __doc__ or "",
        8703,
        make,
        lambda s: f"fake GitHub on {s.url} (nura/handbook at {s.heads['nura/handbook']})",
    )


if __name__ == "__main__":
    main()

"""A local Git provider speaking GitHub's contents/compare API shape (and enough GitLab).

Repositories live in memory as a chain of commits (path -> bytes snapshots):
  GET /repos/{owner}/{repo}/compare/{base}...{head}        files[]: filename, status
  GET /repos/{owner}/{repo}/contents/{path}?ref={sha}      type, encoding=base64, content, size
  GET /api/v4/projects/{id}/repository/files/{path}?ref=   GitLab (id = "owner%2Frepo")
  GET /stats                                               {"requests": N, "auth": [...]}

With `tokens` set, every API request must carry one of them (`Authorization: Bearer|token
<t>`, or GitLab's `PRIVATE-TOKEN`), else 401 `{"message": "Bad credentials"}` as GitHub
answers a revoked token; `tokens = None` (the default) accepts anything.

    server = FakeGitHub().start()
    sha1 = server.commit("octo", "docs", {"README.md": b"# hi"})
    sha2 = server.commit("octo", "docs", {"README.md": b"# hi!", "old.txt": None})
    payload = server.push_payload("octo", "docs", sha1, sha2)
    python -m deployments.sandbox.github_server --port 8703
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from deployments.sandbox.base import JsonHandler, LocalServer, serve_main

ZERO = "0" * 40
DOCS = "https://docs.github.com/rest"


class FakeGitHub(LocalServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.lock = threading.Lock()
        self.snapshots: dict[str, dict[str, bytes]] = {}  # sha -> tree
        self.heads: dict[str, str] = {}  # "owner/repo" -> sha
        self.parents: dict[str, str] = {}
        self.requests = 0
        self.auth: list[str] = []
        self.paths: list[str] = []  # the raw request paths (percent-encoding kept)
        self.tokens: set[str] | None = None  # accepted tokens; None: no check

    # -- repository state ----------------------------------------------------------------
    def commit(self, owner: str, repo: str, changes: dict[str, bytes | None]) -> str:
        """Apply changes (None deletes) on the repo's head; returns the new commit sha."""
        name = f"{owner}/{repo}"
        with self.lock:
            parent = self.heads.get(name)
            tree = dict(self.snapshots.get(parent, {})) if parent else {}
            for path, data in changes.items():
                if data is None:
                    tree.pop(path, None)
                else:
                    tree[path] = data
            seed = json.dumps(
                [parent, sorted((p, hashlib.sha256(d).hexdigest()) for p, d in tree.items())]
            )
            sha = hashlib.sha256(f"{name}:{seed}:{len(self.snapshots)}".encode()).hexdigest()[:40]
            self.snapshots[sha] = tree
            self.heads[name] = sha
            if parent:
                self.parents[sha] = parent
            return sha

    def diff(self, base: str, head: str) -> list[dict[str, str]]:
        a, b = self.snapshots.get(base, {}), self.snapshots[head]
        files = []
        for path in sorted(set(a) | set(b)):
            if path not in b:
                files.append({"filename": path, "status": "removed"})
            elif path not in a:
                files.append({"filename": path, "status": "added"})
            elif a[path] != b[path]:
                files.append({"filename": path, "status": "modified"})
        return files

    def push_payload(
        self, owner: str, repo: str, before: str, after: str, branch: str = "main"
    ) -> dict[str, Any]:
        """GitHub's push payload shape (one commit listing the whole diff)."""
        files = self.diff(before, after) if before != ZERO else self.diff(ZERO, after)
        commit = {
            "id": after,
            "message": "sandbox commit",
            "added": [f["filename"] for f in files if f["status"] == "added"],
            "modified": [f["filename"] for f in files if f["status"] == "modified"],
            "removed": [f["filename"] for f in files if f["status"] == "removed"],
        }
        return {
            "ref": f"refs/heads/{branch}",
            "before": before,
            "after": after,
            "repository": {
                "name": repo,
                "full_name": f"{owner}/{repo}",
                "owner": {"login": owner, "name": owner},
                "html_url": f"https://github.com/{owner}/{repo}",
            },
            "commits": [commit],
            "head_commit": commit,
        }

    def gitlab_payload(
        self, owner: str, repo: str, before: str, after: str, branch: str = "main"
    ) -> dict[str, Any]:
        gh = self.push_payload(owner, repo, before, after, branch)
        return {
            "object_kind": "push",
            "ref": gh["ref"],
            "before": before,
            "after": after,
            "checkout_sha": after,
            "project": {
                "id": f"{owner}%2F{repo}",
                "path_with_namespace": f"{owner}/{repo}",
                "web_url": f"https://gitlab.example/{owner}/{repo}",
            },
            "commits": gh["commits"],
        }


class _Handler(JsonHandler):
    server: FakeGitHub

    def _token(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and token:
            return token.strip()
        return self.headers.get("PRIVATE-TOKEN")

    def _file(self, tree: dict[str, bytes], path: str) -> None:
        if path not in tree:
            return self._send(404, {"message": "Not Found"})
        data = tree[path]
        return self._send(
            200,
            {
                "type": "file",
                "encoding": "base64",
                "size": len(data),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "file_path": path,
                "content": base64.b64encode(data).decode(),
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
            tokens = None if srv.tokens is None else set(srv.tokens)
        if url.path == "/stats":
            return self._send(200, {"requests": srv.requests, "auth": srv.auth})
        if tokens is not None and self._token() not in tokens:
            if url.path.startswith("/api/v4/"):
                return self._send(401, {"message": "401 Unauthorized"})
            return self._send(
                401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
            )
        parts = url.path.split("/")
        # /repos/{owner}/{repo}/compare/{base}...{head}
        if len(parts) >= 6 and parts[1] == "repos" and parts[4] == "compare":
            base, _, head = unquote(parts[5]).partition("...")
            if head not in srv.snapshots or (base not in srv.snapshots and base != ZERO):
                return self._send(404, {"message": "Not Found"})
            files = srv.diff(base, head)
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["100"])[0])
            chunk = files[(page - 1) * per_page : page * per_page]
            return self._send(200, {"status": "ahead", "files": chunk})
        # /repos/{owner}/{repo}/contents/{path...}
        if len(parts) >= 6 and parts[1] == "repos" and parts[4] == "contents":
            ref = query.get("ref", [""])[0]
            tree = srv.snapshots.get(ref) or srv.snapshots.get(
                srv.heads.get(f"{parts[2]}/{parts[3]}", ""), {}
            )
            return self._file(tree, unquote("/".join(parts[5:])))
        # /api/v4/projects/{id}/repository/files/{path}
        if url.path.startswith("/api/v4/projects/") and "/repository/files/" in url.path:
            raw = url.path.removeprefix("/api/v4/projects/")
            _project, _, path = raw.partition("/repository/files/")
            tree = srv.snapshots.get(query.get("ref", [""])[0], {})
            return self._file(tree, unquote(path))
        return self._send(404, {"message": "Not Found"})


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

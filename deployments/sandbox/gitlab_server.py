"""A local GitLab speaking the REST API v4 paths the ingest reads, and its push hook.

Same in-memory repository model as `FakeGitHub` (commits with parents on named branches);
each path behaves as GitLab's documentation says (https://docs.gitlab.com/api/):

  GET /api/v4/projects/{id}/repository/compare?from=&to=&straight=   "Compare branches,
      tags or commits" (repositories API): `straight=false` (the default) diffs from the
      merge base (`from...to`), `true` directly (`from..to`); `diffs[]` with `old_path`,
      `new_path`, `new_file`, `renamed_file`, `deleted_file`; `compare_timeout: true` when
      the comparison exceeded its limits: then `diffs` may be incomplete (`diff_max_files`).
  GET /api/v4/projects/{id}/repository/tree?ref=&recursive=true&page=&per_page=
      "List repository tree": `id name type(blob|tree) path mode`, offset pagination
      (per_page default 20, max 100; `X-Next-Page` empty on the last page).
  GET /api/v4/projects/{id}/repository/files/{path}?ref=              "Get file from
      repository" (repository files API): `size`, `encoding: base64`, `content`, `blob_id`.
  GET /api/v4/projects/{id}/repository/files/{path}/raw?ref=          the raw bytes.

`{id}` is the project's numeric id or its URL-encoded path. The push hook
(`gitlab_push_payload`, "Push events" of the webhook events page) lists at most the 20
newest commits and counts them all in `total_commits_count`.

    server = FakeGitLab().start()
    a = server.commit("grp", "docs", {"a.md": b"a"})
    payload = server.gitlab_payload("grp", "docs", "0" * 40, a)
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from deployments.sandbox.base import JsonHandler
from deployments.sandbox.github_server import ZERO, FakeGitHub, blob_sha

PAYLOAD_COMMITS = 20  # GitLab's push hook: the newest 20 commits, all in the count


def gitlab_push_payload(
    srv: FakeGitHub,
    owner: str,
    repo: str,
    before: str,
    after: str,
    branch: str = "main",
    *,
    default_branch: str = "main",
    project_id: int | str | None = None,
) -> dict[str, Any]:
    gh = srv.push_payload(owner, repo, before, after, branch, default_branch=default_branch)
    commits = gh["commits"]
    pid = project_id if project_id is not None else _project_id(srv, f"{owner}/{repo}")
    return {
        "object_kind": "push",
        "event_name": "push",
        "ref": gh["ref"],
        "before": before,
        "after": after,
        "checkout_sha": None if after == ZERO else after,
        "project_id": pid,
        "project": {
            "id": pid,
            "path_with_namespace": f"{owner}/{repo}",
            "web_url": f"https://gitlab.example/{owner}/{repo}",
            "default_branch": default_branch,
        },
        "commits": commits[-PAYLOAD_COMMITS:],
        "total_commits_count": len(commits),
    }


def _project_id(srv: FakeGitHub, name: str) -> int:
    ids: dict[str, int] = srv.__dict__.setdefault("project_ids", {})
    return ids.setdefault(name, 100 + len(ids))


class FakeGitLab(FakeGitHub):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.project_ids: dict[str, int] = {}
        self.diff_max_files = 1000  # past it the compare is cut: `compare_timeout: true`

    def project(self, ref: str) -> str | None:
        """`owner/repo` of a numeric id or URL-encoded path."""
        if ref.isdigit():
            return next((n for n, i in self.project_ids.items() if str(i) == ref), None)
        name = unquote(ref)
        return name if any(n == name for n, _ in self.branches) else None

    def resolve(self, name: str, ref: str) -> str:
        return self.branches.get((name, ref), ref)


def _diff_entry(f: dict[str, str]) -> dict[str, Any]:
    status = f["status"]
    return {
        "old_path": f["filename"],
        "new_path": f["filename"],
        "a_mode": "0" if status == "added" else "100644",
        "b_mode": "0" if status == "removed" else "100644",
        "new_file": status == "added",
        "renamed_file": False,
        "deleted_file": status == "removed",
        "diff": "",
    }


class _Handler(JsonHandler):
    server: FakeGitLab

    def _not_found(self, what: str = "404 Not Found") -> None:
        return self._send(404, {"message": what})

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlparse(self.path)
        query = parse_qs(url.query)
        srv = self.server
        with srv.lock:
            srv.requests += 1
            srv.auth.append(self.headers.get("PRIVATE-TOKEN") or "")
            srv.paths.append(url.path)
            tokens = None if srv.tokens is None else set(srv.tokens)
        if tokens is not None and self.headers.get("PRIVATE-TOKEN") not in tokens:
            return self._send(401, {"message": "401 Unauthorized"})
        prefix = "/api/v4/projects/"
        if not url.path.startswith(prefix) or "/repository/" not in url.path:
            return self._not_found()
        project_ref, _, rest = url.path.removeprefix(prefix).partition("/repository/")
        with srv.lock:
            name = srv.project(project_ref)
            if name is None:
                return self._not_found("404 Project Not Found")
            if rest == "compare":
                return self._compare(name, query)
            if rest == "tree":
                return self._tree(name, query)
            if rest.startswith("files/"):
                return self._file(name, rest.removeprefix("files/"), query)
        return self._not_found()

    def _compare(self, name: str, query: dict[str, list[str]]) -> None:
        srv = self.server
        frm = srv.resolve(name, query.get("from", [""])[0])
        to = srv.resolve(name, query.get("to", [""])[0])
        if frm not in srv.snapshots or to not in srv.snapshots:
            return self._not_found("404 Ref Not Found")
        straight = query.get("straight", ["false"])[0] == "true"
        base = frm if straight else srv.merge_base(frm, to)
        files = srv.diff(base or ZERO, to)
        cut = len(files) > srv.diff_max_files
        mb = srv.merge_base(frm, to)
        ahead = srv.ancestors(to)
        ahead = ahead[: ahead.index(mb)] if mb in ahead else ahead
        return self._send(
            200,
            {
                "commit": {"id": to},
                "commits": [{"id": c} for c in ahead[::-1]],
                "diffs": [_diff_entry(f) for f in files[: srv.diff_max_files]],
                "compare_timeout": cut,
                "compare_same_ref": frm == to,
                "web_url": f"https://gitlab.example/{name}/-/compare/{frm}...{to}",
            },
        )

    def _tree(self, name: str, query: dict[str, list[str]]) -> None:
        srv = self.server
        ref = srv.resolve(name, query.get("ref", [""])[0])
        if ref not in srv.commit_trees:
            return self._not_found("404 Tree Not Found")
        recursive = query.get("recursive", ["false"])[0] == "true"
        entries = srv.tree_entries(srv.commit_trees[ref], recursive)
        page = max(1, int(query.get("page", ["1"])[0]))
        per_page = min(100, max(1, int(query.get("per_page", ["20"])[0])))
        chunk = entries[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(entries)
        rows = [
            {"id": e["sha"], "name": e["path"].rsplit("/", 1)[-1], "type": e["type"],
             "path": e["path"], "mode": e["mode"]}
            for e in chunk
        ]  # fmt: skip
        return self._send(
            200, rows, {"X-Page": str(page), "X-Per-Page": str(per_page),
                        "X-Next-Page": str(page + 1) if more else ""},
        )  # fmt: skip

    def _file(self, name: str, rest: str, query: dict[str, list[str]]) -> None:
        srv = self.server
        raw = rest.endswith("/raw")
        path = unquote(rest.removesuffix("/raw"))
        ref = srv.resolve(name, query.get("ref", [""])[0])
        tree = srv.snapshots.get(ref)
        if tree is None or path not in tree:
            return self._not_found("404 File Not Found")
        data = tree[path]
        if raw:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        return self._send(
            200,
            {
                "file_name": path.rsplit("/", 1)[-1],
                "file_path": path,
                "size": len(data),
                "encoding": "base64",
                "content": base64.b64encode(data).decode(),
                "ref": ref,
                "blob_id": blob_sha(data),
                "commit_id": ref,
                "last_commit_id": ref,
            },
        )


FakeGitLab.handler = _Handler

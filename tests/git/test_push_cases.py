"""Git pushes as GitHub and GitLab really send them (issue 23, items 1-6).

Each case runs the ingest (`changed_files` + `sync_files`, what the flow's tasks call)
against the stand-ins, whose behaviour is taken from the providers' documentation:
- GitHub "Compare two commits" (docs.github.com/en/rest/commits/commits#compare-two-commits):
  three dots diff from the merge base, `status` ahead/behind/diverged, at most 300 files,
  on the first page only;
- GitHub "Get a tree" (docs.github.com/en/rest/git/trees#get-a-tree): `recursive`,
  `truncated` past 100,000 entries, then one level at a time;
- GitHub "Get repository content" (docs.github.com/en/rest/repos/contents): no inline
  content over 1 MB (`encoding: "none"`), the raw media type `application/vnd.github.raw+json`;
- GitHub push webhook (docs.github.com/en/webhooks/webhook-events-and-payloads#push):
  `forced`, `created`, empty `commits` for a branch created on an existing commit;
- GitLab push hook (docs.gitlab.com/user/project/integrations/webhook_events/#push-events):
  the newest 20 commits, `total_commits_count`; GitLab "Compare branches, tags or commits"
  (docs.gitlab.com/api/repositories/#compare-branches-tags-or-commits): `straight`,
  `compare_timeout`; "List repository tree" (offset pagination).
"""

from __future__ import annotations

from typing import Any

import pytest

from deployments.sandbox.github_server import ZERO

pytestmark = pytest.mark.integration


def ingest(payload: dict[str, Any]) -> dict[str, Any]:
    """The flow's work without Prefect: parse, changes, store; a summary by action."""
    from nura import get_config
    from nura.git.ingest import branch_allowed, changed_files, parse_push, sync_files

    push = parse_push(payload)
    assert branch_allowed(push, get_config().external_services.git.branches)
    rows = sync_files(push, changed_files(push))
    summary: dict[str, Any] = {"rows": rows}
    for row in rows:
        summary[row["action"]] = summary.get(row["action"], 0) + 1
    return summary


def kb(bucket: str, repo_prefix: str = "git/octo/docs/", branch: str = "main") -> dict[str, bytes]:
    """Path -> content of the documents of one branch of a repository."""
    from nura.core.aws_clients import aws_client

    s3 = aws_client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=repo_prefix).get("Contents", [])
    out = {}
    for obj in listed:
        rest = obj["Key"][len(repo_prefix) :]
        head, _, path = rest.partition("/")
        if head == branch:
            out[path] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


# -- 1. force push ----------------------------------------------------------------------


@pytest.mark.parametrize("flagged", [True, False], ids=["forced-flag", "diverged-by-compare"])
def test_force_push_deletes_what_the_new_tip_lacks_and_reverts_content(
    fake_github: Any, git_env: Any, flagged: bool
) -> None:
    """c1 -> c2 is ingested; then c3 (a child of c1, not of c2) is force-pushed. GitHub's
    three-dot compare c2...c3 diffs from the merge base c1, so it lists only what c3
    added: `only-on-old-tip.md` would stay and `a.md` keep c2's text."""
    bucket = git_env(fake_github.url)
    c1 = fake_github.commit("octo", "docs", {"a.md": b"a one\n", "b.md": b"b\n"})
    c2 = fake_github.commit("octo", "docs", {"a.md": b"a two\n", "only-on-old-tip.md": b"x\n"})
    assert ingest(fake_github.push_payload("octo", "docs", ZERO, c1))["stored"] == 2
    assert ingest(fake_github.push_payload("octo", "docs", c1, c2))["stored"] == 2
    assert set(kb(bucket)) == {"a.md", "b.md", "only-on-old-tip.md"}

    c3 = fake_github.commit("octo", "docs", {"c.md": b"c\n"}, parent=c1)
    payload = fake_github.push_payload("octo", "docs", c2, c3, forced=flagged)
    summary = ingest(payload)
    assert kb(bucket) == {"a.md": b"a one\n", "b.md": b"b\n", "c.md": b"c\n"}, summary
    assert summary["deleted"] == 1 and summary["stored"] == 2  # b.md is not fetched again


def test_branch_reset_to_an_older_commit(fake_github: Any, git_env: Any) -> None:
    """A forced push back to an ancestor: compare says `behind` and lists no file."""
    bucket = git_env(fake_github.url)
    c1 = fake_github.commit("octo", "docs", {"a.md": b"a\n"})
    c2 = fake_github.commit("octo", "docs", {"a.md": b"a2\n", "b.md": b"b\n"})
    ingest(fake_github.push_payload("octo", "docs", ZERO, c2))
    ingest(fake_github.push_payload("octo", "docs", c2, c1, forced=True))
    assert kb(bucket) == {"a.md": b"a\n"}


def test_unknown_before_falls_back_to_the_stored_documents(fake_github: Any, git_env: Any) -> None:
    """`before` unknown to the provider (compare and tree 404): the tree of `after` is
    stored and every document under the branch's prefix it lacks is deleted."""
    bucket = git_env(fake_github.url)
    c1 = fake_github.commit("octo", "docs", {"a.md": b"a\n", "gone.md": b"g\n"})
    ingest(fake_github.push_payload("octo", "docs", ZERO, c1))
    c2 = fake_github.commit("octo", "docs", {"b.md": b"b\n"}, base=ZERO)  # unrelated history
    payload = fake_github.push_payload("octo", "docs", "f" * 40, c2)
    ingest(payload)
    assert kb(bucket) == {"b.md": b"b\n"}


def test_truncated_recursive_tree_is_walked_level_by_level(fake_github: Any, git_env: Any) -> None:
    """GitHub's recursive tree listing stops at its limit with `truncated: true`; the
    documented way on is the non-recursive listing, one subtree at a time."""
    bucket = git_env(fake_github.url)
    fake_github.tree_limit = 3
    files = {f"d{i}/e{j}/f{k}.md": f"{i}{j}{k}\n".encode() for i in range(2) for j in range(2)
             for k in range(2)}  # fmt: skip
    c1 = fake_github.commit("octo", "docs", {**files, "old.md": b"old\n"})
    ingest(fake_github.push_payload("octo", "docs", ZERO, c1))
    assert len(kb(bucket)) == 9
    c2 = fake_github.commit("octo", "docs", {"new.md": b"new\n"}, parent=c1)
    c2 = fake_github.commit("octo", "docs", {"old.md": None}, parent=c2)
    ingest(fake_github.push_payload("octo", "docs", c1, c2, forced=True))
    assert set(kb(bucket)) == set(files) | {"new.md"}
    tree_calls = [p for p in fake_github.paths if "/git/trees/" in p]
    assert len(tree_calls) > 4  # recursive answers were cut; the subtrees were listed


# -- 2. more than 300 changed files -----------------------------------------------------


def test_more_than_300_changed_files_fall_back_to_the_trees(fake_github: Any, git_env: Any) -> None:
    """GitHub lists at most 300 files, on page 1 only; a page 2 has no `files`."""
    from nura.git.ingest import changed_files, parse_push

    git_env(fake_github.url)
    c1 = fake_github.commit("octo", "docs", {"README.md": b"r\n"})
    many = {f"docs/{n:04}.md": b"%d\n" % n for n in range(320)}
    c2 = fake_github.commit("octo", "docs", {**many, "README.md": None})
    changes = changed_files(parse_push(fake_github.push_payload("octo", "docs", c1, c2)))
    assert changes == {**dict.fromkeys(many, "upsert"), "README.md": "delete"}
    assert any("/compare/" in p for p in fake_github.paths)


# -- 3. GitLab pushes of more than 20 commits -------------------------------------------


def test_gitlab_push_of_more_than_20_commits(fake_gitlab: Any, git_env: Any) -> None:
    """The hook lists the newest 20 commits; `total_commits_count` says 25."""
    bucket = git_env(fake_gitlab.url + "/api/v4", provider="gitlab")
    c0 = fake_gitlab.commit("octo", "docs", {"README.md": b"r\n"})
    ingest(fake_gitlab.gitlab_payload("octo", "docs", ZERO, c0))
    head = c0
    for n in range(25):
        head = fake_gitlab.commit("octo", "docs", {f"page-{n:02}.md": b"%d\n" % n})
    payload = fake_gitlab.gitlab_payload("octo", "docs", c0, head)
    assert len(payload["commits"]) == 20 and payload["total_commits_count"] == 25
    ingest(payload)
    assert set(kb(bucket)) == {"README.md", *(f"page-{n:02}.md" for n in range(25))}


def test_gitlab_force_push(fake_gitlab: Any, git_env: Any) -> None:
    """GitLab's hook has no `forced` flag: the straight compare (`from..to`) is exact."""
    bucket = git_env(fake_gitlab.url + "/api/v4", provider="gitlab")
    c1 = fake_gitlab.commit("octo", "docs", {"a.md": b"a\n"})
    c2 = fake_gitlab.commit("octo", "docs", {"a.md": b"a2\n", "old.md": b"o\n"})
    ingest(fake_gitlab.gitlab_payload("octo", "docs", ZERO, c2))
    c3 = fake_gitlab.commit("octo", "docs", {"new.md": b"n\n"}, parent=c1)
    ingest(fake_gitlab.gitlab_payload("octo", "docs", c2, c3))
    assert kb(bucket) == {"a.md": b"a\n", "new.md": b"n\n"}


def test_gitlab_compare_cut_short_stores_the_tree(fake_gitlab: Any, git_env: Any) -> None:
    """`compare_timeout: true`: the diffs may be incomplete; the tree is listed instead
    (offset pagination, 100 a page)."""
    bucket = git_env(fake_gitlab.url + "/api/v4", provider="gitlab")
    fake_gitlab.diff_max_files = 5
    c1 = fake_gitlab.commit("octo", "docs", {"a.md": b"a\n"})
    ingest(fake_gitlab.gitlab_payload("octo", "docs", ZERO, c1))
    many = {f"p/{n:03}.md": b"%d\n" % n for n in range(125)}
    names = sorted(many)
    head = c1
    for n in range(25):  # 25 commits of 5 files: more than the hook lists, compare cut
        head = fake_gitlab.commit("octo", "docs", {p: many[p] for p in names[5 * n : 5 * n + 5]})
    ingest(fake_gitlab.gitlab_payload("octo", "docs", c1, head))
    assert set(kb(bucket)) == {"a.md", *many}
    assert any("/repository/tree" in p for p in fake_gitlab.paths)


# -- 4. files over 1 MB -----------------------------------------------------------------


def test_file_over_1_mb_is_fetched_raw_and_over_the_limit_skipped(
    fake_github: Any, git_env: Any
) -> None:
    bucket = git_env(fake_github.url, max_file_bytes=2 * 1024 * 1024)
    big = b"line of text\n" * 100_000  # 1.3 MB: no inline content from the contents API
    huge = b"y" * (3 * 1024 * 1024)
    c1 = fake_github.commit("octo", "docs", {"big.md": big, "huge.md": huge, "s.md": b"s\n"})
    summary = ingest(fake_github.push_payload("octo", "docs", ZERO, c1))
    assert kb(bucket) == {"big.md": big, "s.md": b"s\n"}
    skipped = [r for r in summary["rows"] if r["action"] == "skipped"]
    assert skipped == [
        {"path": "huge.md", "action": "skipped", "detail": f"over {2 * 1024 * 1024} bytes",
         "bytes": len(huge)}
    ]  # fmt: skip
    assert "application/vnd.github.raw+json" in fake_github.accepts


# -- 5. a new branch on existing commits ------------------------------------------------


def test_new_branch_on_an_existing_commit_stores_its_tree(fake_github: Any, git_env: Any) -> None:
    """GitHub sends `created: true` and no commits: nothing new was pushed."""
    bucket = git_env(fake_github.url, branches=["main", "release/*"])
    c1 = fake_github.commit("octo", "docs", {"a.md": b"a\n", "docs/b.md": b"b\n"})
    payload = fake_github.push_payload("octo", "docs", ZERO, c1, branch="release/1")
    assert payload["commits"] == [] and payload["created"] is True
    summary = ingest(payload)
    assert summary.get("stored") == 2, summary
    assert kb(bucket, branch="release%2F1") == {"a.md": b"a\n", "docs/b.md": b"b\n"}


def test_gitlab_new_branch_on_an_existing_commit(fake_gitlab: Any, git_env: Any) -> None:
    bucket = git_env(fake_gitlab.url + "/api/v4", provider="gitlab", branches=["*"])
    c1 = fake_gitlab.commit("octo", "docs", {"a.md": b"a\n"})
    payload = fake_gitlab.gitlab_payload("octo", "docs", ZERO, c1, branch="feature")
    assert payload["commits"] == [] and payload["total_commits_count"] == 0
    ingest(payload)
    assert kb(bucket, branch="feature") == {"a.md": b"a\n"}


# -- 6. two branches of one repository --------------------------------------------------


def test_two_allowed_branches_do_not_overwrite_each_other(fake_github: Any, git_env: Any) -> None:
    bucket = git_env(fake_github.url, branches=["main", "dev"])
    c1 = fake_github.commit("octo", "docs", {"a.md": b"main\n"})
    d1 = fake_github.commit("octo", "docs", {"a.md": b"dev\n", "d.md": b"d\n"}, branch="dev")
    ingest(fake_github.push_payload("octo", "docs", ZERO, c1))
    ingest(fake_github.push_payload("octo", "docs", ZERO, d1, branch="dev"))
    c2 = fake_github.commit("octo", "docs", {"a.md": None, "m.md": b"m\n"}, parent=c1)
    ingest(fake_github.push_payload("octo", "docs", c1, c2))
    assert kb(bucket, branch="main") == {"m.md": b"m\n"}
    assert kb(bucket, branch="dev") == {"a.md": b"dev\n", "d.md": b"d\n"}


def test_branch_names_become_one_key_segment() -> None:
    from nura.git.ingest import GitPushError, parse_push

    base = {"before": ZERO, "after": "1" * 40, "repository": {"full_name": "o/r"}}
    push = parse_push({**base, "ref": "refs/heads/release/1.2"})
    assert push.key("a/b.md") == "git/o/r/release%2F1.2/a/b.md"
    for bad in ("a..b", "x/.hidden", "a b", "a\\b", "x.lock", "@{-1}"):
        with pytest.raises(GitPushError):
            parse_push({**base, "ref": f"refs/heads/{bad}"}).key("a.md")
    project = {"id": 3, "path_with_namespace": "g/s/r"}
    gl = parse_push({**base, "object_kind": "push", "ref": "refs/heads/main", "project": project})
    assert gl.prefix() == "git/g%2Fs/r/main/"  # a nested group cannot pose as a branch


def test_deleted_branch_takes_its_documents_with_it(fake_github: Any, git_env: Any) -> None:
    """GitHub's push for a deleted branch: `deleted: true`, `after` all zeros."""
    bucket = git_env(fake_github.url, branches=["main", "dev"])
    c1 = fake_github.commit("octo", "docs", {"a.md": b"a\n"})
    d1 = fake_github.commit("octo", "docs", {"d.md": b"d\n"}, branch="dev")
    ingest(fake_github.push_payload("octo", "docs", ZERO, c1))
    ingest(fake_github.push_payload("octo", "docs", ZERO, d1, branch="dev"))
    gone = fake_github.push_payload("octo", "docs", d1, ZERO, branch="dev")
    assert gone["deleted"] is True
    assert ingest(gone)["deleted"] == 2
    assert kb(bucket, branch="dev") == {} and kb(bucket, branch="main") == {"a.md": b"a\n"}

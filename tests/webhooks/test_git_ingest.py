"""git-ingest: payload shapes, branch filter, GitLab through the fake provider, routing params."""

from __future__ import annotations

import pytest

from nura.git.ingest import GitPushError, branch_allowed, parse_push
from nura.webhooks.dispatcher import flow_parameters


def test_parse_github_and_gitlab_shapes():
    from deployments.sandbox.github_server import FakeGitHub

    gh = FakeGitHub()  # not started: only its payload builders are used
    try:
        a = gh.commit("octo", "docs", {"a.md": b"a", "b.md": b"b"})
        b = gh.commit("octo", "docs", {"a.md": b"A", "b.md": None, "c.md": b"c"})
        push = parse_push(gh.push_payload("octo", "docs", a, b))
        assert (push.provider, push.owner, push.repo, push.branch) == (
            "github",
            "octo",
            "docs",
            "main",
        )
        assert push.payload_changes == {"a.md": "upsert", "b.md": "delete", "c.md": "upsert"}
        assert push.key("x/y.md") == "git/octo/docs/main/x/y.md"
        lab = parse_push(gh.gitlab_payload("grp/sub", "docs", a, b, project_id=7))
        assert (lab.provider, lab.owner, lab.repo) == ("gitlab", "grp/sub", "docs")
        assert lab.project_id == "7" and lab.total_commits == 1
        assert lab.key("a.md") == "git/grp%2Fsub/docs/main/a.md"
        assert lab.source_url("a.md").startswith("https://gitlab.example/grp/sub/docs/-/blob/")
    finally:
        gh.server_close()
    with pytest.raises(GitPushError):
        parse_push({"zen": "Keep it logically awesome."})


def test_branch_filter():
    base = {"before": "0" * 40, "after": "1" * 40, "repository": {"full_name": "o/r"}}
    assert branch_allowed(parse_push({**base, "ref": "refs/heads/main"}), ["main"])
    assert not branch_allowed(parse_push({**base, "ref": "refs/heads/dev"}), ["main"])
    assert branch_allowed(parse_push({**base, "ref": "refs/heads/release/1"}), ["release/*"])
    assert not branch_allowed(parse_push({**base, "ref": "refs/tags/v1"}), [])
    assert branch_allowed(parse_push({**base, "ref": "refs/heads/any"}), [])


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"page_id": 7, "space": "TECH"}, {"page_id": "7", "space": "TECH"}),
        ({"page": {"id": 42, "spaceKey": "DOCS"}}, {"page_id": "42", "space": "DOCS"}),
        ({"page": {"id": "9", "space": {"key": "ARCH"}}}, {"page_id": "9", "space": "ARCH"}),
        ({"content": {"id": 5}}, {"page_id": "5", "space": None}),
    ],
)
def test_confluence_parameters(payload, expected):
    assert flow_parameters("confluence.page.updated", payload) == expected


def test_confluence_without_page_id_is_an_error():
    with pytest.raises(ValueError):
        flow_parameters("confluence.page.updated", {"space": "TECH"})
    assert flow_parameters("git.push", {"a": 1}) == {"payload": {"a": 1}}


@pytest.fixture
def fake_gitlab():  # type: ignore[no-untyped-def]
    from deployments.sandbox.gitlab_server import FakeGitLab

    server = FakeGitLab().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.integration
def test_gitlab_push_and_branch_filter_through_the_flow(
    prefect_server, moto_reset, fake_gitlab, nura_config
):
    from flows.git_ingest import git_ingest
    from nura.core.aws_clients import aws_client
    from nura.kb.s3 import ensure_bucket

    nura_config(
        {
            "external_services": {
                "aws": {"endpoint_url": moto_reset, "s3": {"bucket_name": "kb-gl"}},
                "git": {
                    "base_url": fake_gitlab.url + "/api/v4",
                    "provider": "gitlab",
                    "branches": ["main"],
                    "repositories": ["grp/handbook"],
                },
            }
        }
    )
    ensure_bucket()
    a = fake_gitlab.commit("grp", "handbook", {"intro.md": b"hello\n", "bin.dat": b"\x00\xff"})
    summary = git_ingest(payload=fake_gitlab.gitlab_payload("grp", "handbook", "0" * 40, a))
    assert summary["stored"] == 1 and summary["skipped"] == 1
    head = aws_client("s3").head_object(Bucket="kb-gl", Key="git/grp/handbook/main/intro.md")
    assert head["Metadata"]["commit"] == a
    ignored = git_ingest(payload=fake_gitlab.gitlab_payload("grp", "handbook", a, a, branch="dev"))
    assert ignored["ignored"] is True and ignored["stored"] == 0


@pytest.mark.integration
def test_force_push_through_the_flow(prefect_server, moto_reset, fake_github, nura_config):
    """The flow reads GitHub's `forced` and leaves the branch's prefix equal to the new tip
    (the cases one by one: tests/git/test_push_cases.py)."""
    from flows.git_ingest import git_ingest
    from nura.core.aws_clients import aws_client
    from nura.kb.s3 import ensure_bucket

    nura_config(
        {
            "external_services": {
                "aws": {"endpoint_url": moto_reset, "s3": {"bucket_name": "kb-force"}},
                "git": {"base_url": fake_github.url, "repositories": ["octo/docs"]},
            }
        }
    )
    ensure_bucket()
    c1 = fake_github.commit("octo", "docs", {"a.md": b"one\n"})
    c2 = fake_github.commit("octo", "docs", {"a.md": b"two\n", "old.md": b"old\n"})
    git_ingest(payload=fake_github.push_payload("octo", "docs", "0" * 40, c2))
    c3 = fake_github.commit("octo", "docs", {"new.md": b"new\n"}, parent=c1)
    summary = git_ingest(payload=fake_github.push_payload("octo", "docs", c2, c3, forced=True))
    assert summary["forced"] is True and summary["deleted"] == 1 and summary["stored"] == 2
    listed = aws_client("s3").list_objects_v2(Bucket="kb-force")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "git/octo/docs/main/a.md",
        "git/octo/docs/main/new.md",
    ]

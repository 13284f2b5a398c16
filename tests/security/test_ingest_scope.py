"""Ingest scope is decided by configuration and by the provider, never by the payload.

Git: a repository allow-list (`external_services.git.repositories`), owner/repo names and
file paths validated before they reach an API path or an S3 key (hostile tables against
the GitHub stand-in and moto), and a rotated token picked up on the next 401.
(Confluence page scope: tests/confluence/test_sync_flow.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nura.git.ingest import GitPushError, parse_push, repository_allowed, unsafe_path

SHA_A, SHA_B = "a" * 40, "b" * 40


@pytest.fixture
def fake_github() -> Iterator[Any]:
    from deployments.sandbox.github_server import FakeGitHub

    server = FakeGitHub().start()
    try:
        yield server
    finally:
        server.stop()


def _github(full_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "before": SHA_A,
        "after": SHA_B,
        "repository": {"full_name": full_name},
        **extra,
    }


def _gitlab(path: str, project_id: Any = 7) -> dict[str, Any]:
    return {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "before": SHA_A,
        "after": SHA_B,
        "project": {"id": project_id, "path_with_namespace": path},
    }


HOSTILE_GITHUB_NAMES = [
    "../docs",
    "octo/..",
    "octo/.",
    "./docs",
    "octo/docs/extra",
    "/octo/docs",
    "octo//docs",
    "octo\\docs",
    "octo/do\\cs",
    "octo/docs\x00",
    "oc\nto/docs",
    "octo/%2e%2e",
    "%2e%2e/docs",
    "octo/do%2Fcs",
    "oc to/docs",
    "-octo/docs",
    "octo/",
    "/docs",
    "octo",
    "",
    "ｏｃｔｏ/docs",
    "octo/" + "d" * 101,
]


@pytest.mark.parametrize("full_name", HOSTILE_GITHUB_NAMES)
def test_hostile_github_repository_names_are_refused(full_name: str) -> None:
    with pytest.raises(GitPushError):
        parse_push(_github(full_name))


@pytest.mark.parametrize(
    "path",
    ["grp/../docs", "../docs", "grp//docs", "/grp/docs", "grp/docs/", "grp\\x/docs",
     "grp/do cs", "grp/%2e%2e/docs", "grp/.", "grp/-docs", "grp/docs\x7f", "docs"],
)  # fmt: skip
def test_hostile_gitlab_project_paths_are_refused(path: str) -> None:
    with pytest.raises(GitPushError):
        parse_push(_gitlab(path))


@pytest.mark.parametrize(
    "payload",
    [
        _github("octo/docs", after="../../x"),
        _github("octo/docs", before="abc/../def" + "0" * 30),
        _github("octo/docs", after="b" * 39 + "\n"),
        _github("octo/docs", ref="refs/heads/main\r\nX: y"),
    ],
)
def test_hostile_shas_and_refs_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(GitPushError):
        parse_push(payload)


def test_valid_names_pass_and_gitlab_project_id_is_only_used_when_numeric() -> None:
    gh = parse_push(_github("Octo-Org/.github"))
    assert (gh.owner, gh.repo) == ("Octo-Org", ".github")
    assert parse_push(_github("my_emu/docs.v2-x")).repo == "docs.v2-x"
    lab = parse_push(_gitlab("grp/sub.group/my_proj", project_id="1/../../users"))
    assert lab.project_ref() == "grp%2Fsub.group%2Fmy_proj"  # not the payload's id
    assert parse_push(_gitlab("grp/docs", project_id=42)).project_ref() == "42"


UNSAFE_PATHS = [
    "../secret.md",
    "docs/../../confluence/TECH/1.md",
    "docs/..",
    "./README.md",
    "docs/./a.md",
    "/etc/passwd",
    "docs\\..\\..\\x.md",
    "docs\\a.md",
    "a\x00.md",
    "a\n.md",
    "a\x1b[31m.md",
    "a\x7f.md",
    "a\x85.md",
    "docs//a.md",
    "docs/",
    "",
    "%2e%2e/secret.md",
    "docs/%2E%2E/%2e%2e/x.md",
    "%252e%252e/x.md",
    "docs%2f..%2f..%2fx.md",
    "docs%5c..%5cx.md",
    "%00.md",
    "\uff0e\uff0e/x.md",  # fullwidth dots: ".." after NFKC
    "docs\uff0fx.md",  # fullwidth solidus: "/" after NFKC
    "\ud800.md",  # a lone surrogate (JSON allows it, UTF-8 cannot carry it)
    "a/" * 600 + "x.md",  # longer than an S3 key can be
]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_unsafe_file_paths_are_named(path: str) -> None:
    assert unsafe_path(path)


@pytest.mark.parametrize(
    "path",
    ["README.md", "docs/a b.md", "docs/100%.md", "ünï/cödé.md", ".github/workflows/ci.yml",
     "a..b/c", "...", "docs/.hidden", "docs/x%zz.md", "👩‍💻/notes.md"],
)  # fmt: skip
def test_ordinary_file_paths_are_accepted(path: str) -> None:
    assert unsafe_path(path) is None


@pytest.mark.parametrize(
    ("name", "patterns", "allowed"),
    [
        ("octo/docs", [], False),  # empty allow-list: nothing outside it is ingested
        ("octo/docs", ["octo/docs"], True),
        ("Octo/Docs", ["octo/docs"], True),  # GitHub names are case-insensitive
        ("octo/docs", ["octo/*"], True),
        ("octo/docs", ["*/*"], True),
        ("evil/docs", ["octo/*"], False),
        ("octo-evil/docs", ["octo*/docs"], True),
        ("grp/sub/docs", ["grp/*"], False),  # `*` stays within one path segment
        ("grp/sub/docs", ["grp/*/*"], True),
        ("grp/sub/docs", ["grp/sub/docs"], True),
    ],
)
def test_repository_allow_list(name: str, patterns: list[str], allowed: bool) -> None:
    owner, _, repo = name.rpartition("/")
    push = parse_push(_gitlab(name)) if name.count("/") > 1 else parse_push(_github(name))
    assert (push.owner, push.repo) == (owner, repo)
    assert repository_allowed(push, patterns) is allowed


@pytest.mark.parametrize("pattern", ["octo", "octo/", "/docs", "../docs", "octo/do cs", "*"])
def test_allow_list_patterns_are_validated_at_load(pattern: str) -> None:
    from pydantic import ValidationError

    from nura.config.sections.git import GitSettings

    with pytest.raises(ValidationError) as info:
        GitSettings(repositories=[pattern])
    assert "repositories" in str(info.value)


def test_the_sandbox_allows_its_handbook_repository_only() -> None:
    from nura.platform.sandbox import SERVICES, sandbox_overrides

    urls = {name: "http://127.0.0.1:1" for name in SERVICES}
    git = sandbox_overrides(urls)["external_services"]["git"]
    assert git["repositories"] == ["nura/handbook"]


# -- through the flow: the GitHub stand-in and moto ------------------------------------


def _env(nura_config: Any, moto: str, github_url: str, **git: Any) -> str:
    from nura.kb.s3 import ensure_bucket

    bucket = "kb-scope"
    nura_config(
        {
            "api_gateway": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
            "external_services": {
                "aws": {"endpoint_url": moto, "s3": {"bucket_name": bucket}},
                "git": {"base_url": github_url, "branches": ["main"], **git},
            },
        }
    )
    ensure_bucket()
    return bucket


def _keys(bucket: str) -> list[str]:
    from nura.core.aws_clients import aws_client

    listed = aws_client("s3").list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


HOSTILE_IN_A_PUSH = [
    "../../confluence/TECH/1.md",
    "/etc/passwd",
    "docs\\..\\..\\x.md",
    "docs//x.md",
    "%2e%2e/%2e%2e/confluence/TECH/1.md",
    "a\x1fb.md",
]
# NUL cannot even travel in flow-run parameters (PostgreSQL refuses it in JSON): only the
# provider's compare answer can carry it.
FROM_THE_PROVIDER_ONLY = ["a\x00b.md"]


@pytest.mark.integration
def test_hostile_paths_in_a_push_never_reach_the_api_or_s3(
    prefect_server, moto_reset, fake_github, nura_config
) -> None:
    """Hostile paths from the provider's compare and from its tree listing (a new branch)
    are rejected row by row; the good files of the same push are stored; nothing outside
    `git/octo/docs/main/` is written or deleted."""
    from flows.git_ingest import git_ingest
    from nura.kb import s3

    bucket = _env(nura_config, moto_reset, fake_github.url, repositories=["octo/docs"])
    s3.put_document("confluence/TECH/1.md", b"# keep me", {"sha256": "x"})
    hostile = HOSTILE_IN_A_PUSH + FROM_THE_PROVIDER_ONLY
    tree: dict[str, bytes | None] = {p: b"evil" for p in hostile}
    sha1 = fake_github.commit("octo", "docs", {"README.md": b"# one\n"})
    sha2 = fake_github.commit("octo", "docs", {**tree, "docs/ok.md": b"ok\n"})
    fake_github.paths.clear()
    payload = fake_github.push_payload("octo", "docs", sha1, sha2)
    payload["commits"], payload["head_commit"] = [], {}  # the compare answer lists the files
    summary = git_ingest(payload=payload)
    assert summary["stored"] == 1 and summary["rejected"] == len(hostile), summary
    contents = [p for p in fake_github.paths if "/contents/" in p]
    assert contents == ["/repos/octo/docs/contents/docs/ok.md"], contents

    # a new branch: the changes come from the tree of `after` (the payload's commit lists,
    # hostile here too, are not read)
    payload = fake_github.push_payload("octo", "docs", "0" * 40, sha2)
    payload["commits"] = [
        {"id": sha2, "added": ["docs/ok.md", *HOSTILE_IN_A_PUSH], "removed": HOSTILE_IN_A_PUSH}
    ]
    payload["head_commit"] = payload["commits"][0]
    summary = git_ingest(payload=payload)
    assert summary["rejected"] == len(hostile) and summary.get("deleted", 0) == 0
    assert _keys(bucket) == [
        "confluence/TECH/1.md",
        "git/octo/docs/main/README.md",
        "git/octo/docs/main/docs/ok.md",
    ]


@pytest.mark.integration
def test_repositories_outside_the_allow_list_are_ignored(
    prefect_server, moto_reset, fake_github, nura_config
) -> None:
    """Not on the list: the run completes, says so, makes no provider call, stores nothing.
    The default list is empty: nothing is ingested until ops name their repositories."""
    from flows.git_ingest import git_ingest
    from nura.git.ingest import changed_files, sync_files

    sha = fake_github.commit("evil", "docs", {"README.md": b"# mine now\n"})
    payload = fake_github.push_payload("evil", "docs", "0" * 40, sha)
    for git in ({"repositories": ["octo/*"]}, {}):
        bucket = _env(nura_config, moto_reset, fake_github.url, **git)
        before = fake_github.requests
        summary = git_ingest(payload=payload)
        assert summary["stored"] == 0 and summary["ignored"], summary
        assert fake_github.requests == before and _keys(bucket) == []
        # the package functions refuse on their own too (not only the flow)
        push = parse_push(payload)
        assert changed_files(push) == {}
        rows = sync_files(push, {"README.md": "upsert"})
        assert [r["action"] for r in rows] == ["ignored"] and _keys(bucket) == []
        assert "external_services.git.repositories" in rows[0]["detail"]


@pytest.mark.integration
def test_rotated_git_token_is_picked_up_on_the_next_401(
    prefect_server, moto_reset, fake_github, nura_config
) -> None:
    """Ops save the credentials block anew with a new token; the provider rejects the old
    one (401 Bad credentials); the next ingest in the same process succeeds."""
    from pydantic import SecretStr

    from flows.git_ingest import git_ingest
    from nura.git.blocks import GitProviderCredentials

    name = "test-git-rotation"
    fake_github.tokens = {"token-one"}
    GitProviderCredentials(api_url=fake_github.url, token=SecretStr("token-one")).save(
        name, overwrite=True
    )
    bucket = _env(
        nura_config, moto_reset, fake_github.url, repositories=["octo/docs"],
        credentials_block=name,
    )  # fmt: skip
    sha1 = fake_github.commit("octo", "docs", {"a.md": b"one\n"})
    assert git_ingest(payload=fake_github.push_payload("octo", "docs", "0" * 40, sha1))["stored"]

    fake_github.tokens = {"token-two"}  # the old token is revoked at the provider
    GitProviderCredentials(api_url=fake_github.url, token=SecretStr("token-two")).save(
        name, overwrite=True
    )
    sha2 = fake_github.commit("octo", "docs", {"a.md": b"two\n"})
    fake_github.auth.clear()
    summary = git_ingest(payload=fake_github.push_payload("octo", "docs", sha1, sha2))
    assert summary["stored"] == 1, summary
    assert fake_github.auth[0] == "Bearer token-one" and fake_github.auth[-1] == "Bearer token-two"
    assert _keys(bucket) == ["git/octo/docs/main/a.md"]


def test_stand_in_rejects_unknown_tokens_like_github() -> None:
    import httpx

    from deployments.sandbox.github_server import FakeGitHub

    server = FakeGitHub().start()
    try:
        server.tokens = {"good"}
        sha = server.commit("octo", "docs", {"a.md": b"a"})
        url = f"{server.url}/repos/octo/docs/contents/a.md?ref={sha}"
        bad = httpx.get(url, headers={"Authorization": "Bearer old"})
        assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
        assert httpx.get(url, headers={"Authorization": "Bearer good"}).status_code == 200
        assert httpx.get(url, headers={"Authorization": "token good"}).status_code == 200
    finally:
        server.stop()

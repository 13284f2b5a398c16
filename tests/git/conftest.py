"""Fixtures of the git ingest tests: the GitHub and GitLab stand-ins, moto, a KB reader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def fake_github() -> Iterator[Any]:
    from deployments.sandbox.github_server import FakeGitHub

    server = FakeGitHub().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_gitlab() -> Iterator[Any]:
    from deployments.sandbox.gitlab_server import FakeGitLab

    server = FakeGitLab().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_server(prefect_server):  # type: ignore[no-untyped-def]
    """The session server, also in Prefect's settings: the call layer leases its rate
    limits from it (threads read the process-global context, hence both)."""
    from tests.support.prefect_settings import prefect_settings

    with prefect_settings(prefect_server.api_url):
        yield prefect_server


@pytest.fixture
def git_env(prefect_server: Any, nura_config: Any, moto_reset: str) -> Callable[..., str]:
    """Configure the knowledge base (moto) and `external_services.git`; the bucket name."""

    def make(base_url: str, **git: Any) -> str:
        from nura.kb.s3 import ensure_bucket

        bucket = "kb-git"
        settings = {"base_url": base_url, "branches": ["main"], "repositories": ["octo/docs"],
                    "rate_limit_per_minute": 60000}  # fmt: skip
        nura_config(
            {
                "api_gateway": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
                "external_services": {
                    "aws": {
                        "endpoint_url": moto_reset,
                        "s3": {"bucket_name": bucket, "rate_limit_per_minute": 60000},
                    },
                    "git": {**settings, **git},
                },
            }
        )
        ensure_bucket()
        return bucket

    return make

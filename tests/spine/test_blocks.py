"""Block standards over every Nura block, plus save/load against a real Prefect server."""

from __future__ import annotations

import re

import httpx
import pytest
from prefect.blocks.core import Block
from pydantic import SecretStr

from blocks import NURA_BLOCKS, ConfluenceCredentials, GitProviderCredentials, WebhookSecret


@pytest.mark.parametrize("block", NURA_BLOCKS, ids=lambda b: b.__name__)
class TestBlockStandards:
    def test_has_description_and_docstring_example(self, block: type[Block]) -> None:
        assert block.get_description()
        assert block.__doc__ and "Example" in block.__doc__ and "```python" in block.__doc__

    def test_slug_is_stable_and_namespaced(self, block: type[Block]) -> None:
        slug = block.get_block_type_slug()
        assert slug.startswith("nura-") and re.fullmatch(r"[a-z0-9-]+", slug)

    def test_secret_fields_are_secretstr(self, block: type[Block]) -> None:
        for name, field in block.model_fields.items():
            if any(w in name for w in ("token", "secret", "password", "key")) and not name.endswith(
                ("_url", "_id", "_expires_at")
            ):
                assert "SecretStr" in str(field.annotation), f"{block.__name__}.{name}"

    def test_has_get_client(self, block: type[Block]) -> None:
        assert callable(getattr(block, "get_client", None))

    def test_schema_is_valid(self, block: type[Block]) -> None:
        schema = block.model_json_schema()
        assert schema["properties"] and "block_type_slug" in schema


def test_confluence_auth_schemes_are_per_scheme() -> None:
    basic = ConfluenceCredentials(base_url="https://x", email="a@b", api_token=SecretStr("t"))
    req = httpx.Request("GET", "https://x")
    assert next(basic.auth().auth_flow(req)).headers["Authorization"].startswith("Basic ")
    oauth = ConfluenceCredentials(base_url="https://x", oauth_access_token=SecretStr("o"))
    assert next(oauth.auth().auth_flow(req)).headers["Authorization"] == "Bearer o"
    gitlab = GitProviderCredentials(provider="gitlab", api_url="https://gl", token=SecretStr("g"))
    assert next(gitlab.auth().auth_flow(req)).headers["PRIVATE-TOKEN"] == "g"
    with pytest.raises(ValueError, match="https://x"):
        ConfluenceCredentials(base_url="https://x").auth()


def test_secrets_are_masked_in_repr() -> None:
    creds = ConfluenceCredentials(base_url="https://x", email="a@b", api_token=SecretStr("hunter2"))
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds.model_dump())


def test_webhook_secret_rotation_window() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 29, tzinfo=UTC)
    secret = WebhookSecret(
        current=SecretStr("new"),
        previous=SecretStr("old"),
        previous_expires_at=now + timedelta(hours=1),
    )
    body = b'{"a":1}'
    old_sig = WebhookSecret(current=SecretStr("old")).get_client().hex_digest(body)
    assert secret.get_client(now).verify_hex(body, old_sig)
    assert not secret.get_client(now + timedelta(hours=2)).verify_hex(body, old_sig)


def test_github_published_test_vector() -> None:
    signer = WebhookSecret(current=SecretStr("It's a Secret to Everybody")).get_client()
    assert signer.verify_hex(
        b"Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )


@pytest.mark.integration
def test_blocks_save_load_and_rotation_takes_effect(prefect_server, flaky_service) -> None:
    """A saved block is loaded by BlockAuth; saving it anew is picked up on the next 401."""
    from nura.core.credentials import BlockAuth

    ConfluenceCredentials(base_url="https://x", email="bot@x", api_token=SecretStr("v1")).save(
        "rotation-test", overwrite=True
    )
    loaded = ConfluenceCredentials.load("rotation-test")
    assert loaded.api_token is not None and loaded.api_token.get_secret_value() == "v1"

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        import base64

        user = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
        return httpx.Response(200 if user.endswith(":v2") else 401)

    auth = BlockAuth(lambda: ConfluenceCredentials.load("rotation-test"), lambda b: b.auth())
    client = httpx.Client(transport=httpx.MockTransport(handler))
    assert client.get("https://x/wiki", auth=auth).status_code == 401  # still v1 everywhere
    ConfluenceCredentials(base_url="https://x", email="bot@x", api_token=SecretStr("v2")).save(
        "rotation-test", overwrite=True
    )
    assert client.get("https://x/wiki", auth=auth).status_code == 200  # reloaded on 401
    assert len(seen) == 3


def test_boto_client_is_shared_by_equal_blocks_and_renewed_by_a_changed_one() -> None:
    """aws_client() loads the AWS block on every call: equal contents must reuse the client
    (keyed on the object, each load built a new client and grew the cache)."""
    from prefect_aws import AwsCredentials

    from nura.core.aws import boto_client

    def block(secret: str = "s1", region: str = "eu-west-1") -> AwsCredentials:
        return AwsCredentials(
            aws_access_key_id="AKIATEST", aws_secret_access_key=secret, region_name=region
        )

    first = boto_client("s3", credentials=block(), endpoint_url="http://127.0.0.1:1")
    assert boto_client("s3", credentials=block(), endpoint_url="http://127.0.0.1:1") is first
    rotated = boto_client("s3", credentials=block("s2"), endpoint_url="http://127.0.0.1:1")
    assert rotated is not first
    moved = boto_client(
        "s3", credentials=block(region="us-west-2"), endpoint_url="http://127.0.0.1:1"
    )
    assert moved is not first and moved.meta.region_name == "us-west-2"


def test_boto_client_of_an_assumed_role_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its session holds temporary credentials that expire: a new client each time the
    block is loaded anew, never a cached one."""
    from prefect_aws import AwsCredentials

    from nura.core.aws import boto_client

    real = AwsCredentials.get_boto3_session
    sessions: list[AwsCredentials] = []

    def session(self: AwsCredentials):  # type: ignore[no-untyped-def]
        sessions.append(self)  # no STS here: the block's own keys stand in for the role's
        return real(self.model_copy(update={"assume_role_arn": None}))

    monkeypatch.setattr(AwsCredentials, "get_boto3_session", session)
    block = AwsCredentials(
        aws_access_key_id="AKIATEST",
        aws_secret_access_key="s1",
        region_name="eu-west-1",
        assume_role_arn="arn:aws:iam::123456789012:role/nura",
    )
    first = boto_client("s3", credentials=block, endpoint_url="http://127.0.0.1:1")
    second = boto_client("s3", credentials=block, endpoint_url="http://127.0.0.1:1")
    assert first is not second and len(sessions) == 2

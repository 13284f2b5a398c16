"""The authenticated Confluence check loads the block the sync uses unless told otherwise
(the sandbox saves `sandbox-confluence`; the check looked for `confluence` and reported
"not loadable")."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from nura.confluence.blocks import ConfluenceCredentials
from nura.health.checks import NotConfigured, load_confluence_auth

pytestmark = pytest.mark.integration


def test_check_uses_the_syncs_block_unless_one_is_named(prefect_server, nura_config) -> None:
    ConfluenceCredentials(
        base_url="https://sync.example", email="bot@x", api_token=SecretStr("t")
    ).save("health-test-sync-block", overwrite=True)

    cfg = nura_config(
        {"external_services": {"confluence": {"credentials_block": "health-test-sync-block"}}}
    )
    loaded = load_confluence_auth(cfg)
    assert not isinstance(loaded, NotConfigured), loaded
    assert loaded[0] == "https://sync.example"

    cfg = nura_config(
        {
            "external_services": {"confluence": {"credentials_block": "health-test-sync-block"}},
            "health_monitoring": {"confluence_block": "health-test-no-such-block"},
        }
    )
    missing = load_confluence_auth(cfg)
    assert isinstance(missing, NotConfigured)
    assert "health-test-no-such-block" in str(missing)

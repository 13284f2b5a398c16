"""Configuration errors name the key path and never echo the value (it may be a secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nura.config import ConfigError, load_config, parse_config

SECRET = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        # A mapping holding a secret where a string belongs (the report's case).
        (
            {
                "external_services": {
                    "aws": {"bedrock": {"langsmith": {"project": {"api_key": SECRET}}}}
                }
            },
            "external_services.aws.bedrock.langsmith.project",
        ),
        # The secret itself where a mapping belongs.
        (
            {"external_services": {"aws": {"bedrock": {"langsmith": SECRET}}}},
            "external_services.aws.bedrock.langsmith",
        ),
        # A secret pasted into a number, a boolean, an enum and a list of enums.
        ({"api_gateway": {"timeout_default": SECRET}}, "api_gateway.timeout_default"),
        (
            {"webhooks": {"outgoing": {"exponential_backoff": SECRET}}},
            "webhooks.outgoing.exponential_backoff",
        ),
        (
            {"external_services": {"aws": {"s3": {"encryption": SECRET}}}},
            "external_services.aws.s3.encryption",
        ),
        (
            {"health_monitoring": {"notifications": {"severity_levels": [SECRET]}}},
            "health_monitoring.notifications.severity_levels[0]",
        ),
    ],
)
def test_errors_name_the_path_not_the_value(data, path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    message = str(err.value)
    assert f"{path}:" in message
    assert SECRET not in message and "lsv2_pt" not in message
    assert all(SECRET not in p for p in err.value.problems)


def test_yaml_syntax_errors_do_not_quote_the_line(tmp_path: Path) -> None:
    config = tmp_path / "integrations.yaml"
    config.write_text(f"api_gateway:\n  token: {SECRET}: oops\n")
    with pytest.raises(ConfigError) as err:
        load_config(config, env={})
    message = str(err.value)
    assert "not valid YAML" in message and "line 2" in message
    # PyYAML's own message quotes the line (trimmed): no fragment of the value may appear.
    assert "lsv2_pt" not in message and "abcdef_0123456789" not in message

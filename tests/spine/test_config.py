"""Configuration: the seed's schema, interpolation, and errors that name the YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from nura.config import DEFAULT_PATH, ConfigError, load_config, parse_config


def test_packaged_default_loads_with_seed_values() -> None:
    cfg = load_config(DEFAULT_PATH, env={})
    assert cfg.api_gateway.circuit_breaker_threshold == 5
    assert cfg.external_services.confluence.spaces == ["TECH", "DOCS", "ARCH"]
    assert cfg.external_services.aws.bedrock.models[0] == "global.anthropic.claude-sonnet-4-6"
    assert cfg.webhooks.incoming["git_updates"].event_types == ["git.push"]
    assert cfg.health_monitoring.alert_thresholds.availability_percentage == 95.0


def test_policies_apply_gateway_defaults() -> None:
    cfg = parse_config(
        {
            "api_gateway": {"rate_limit_default": 7, "timeout_default": 9},
            "external_services": {"confluence": {"rate_limit_per_minute": 30}},
        }
    )
    policies = cfg.policies()
    assert policies["confluence"].rate_limit_per_minute == 30
    assert policies["git"].rate_limit_per_minute == 7
    assert policies["git"].timeout_seconds == 9
    assert policies["confluence"].limit_name == "nura-rate-confluence"


def test_bound_violation_names_the_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"external_services": {"confluence": {"rate_limit_per_minute": 0}}})
    assert "external_services.confluence.rate_limit_per_minute: must be > 0" in str(err.value)


def test_unknown_key_names_the_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"api_gateway": {"retry_defualt": 3}})
    assert "api_gateway.retry_defualt: unknown key" in str(err.value)


def test_wrong_type_names_the_path_and_kind_never_the_value() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"api_gateway": {"timeout_default": "soon"}})
    message = str(err.value)
    assert "api_gateway.timeout_default:" in message and "got a string" in message
    assert "soon" not in message  # values are never echoed: any of them may be a secret


def test_list_index_in_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"health_monitoring": {"notifications": {"severity_levels": ["high", "loud"]}}}
        )
    assert "health_monitoring.notifications.severity_levels[1]" in str(err.value)


def test_env_interpolation_and_default() -> None:
    cfg = parse_config(
        {
            "external_services": {
                "confluence": {"base_url": "${CF_URL}", "spaces": ["${SPACE:-TECH}"]}
            }
        },
        env={"CF_URL": "https://acme.atlassian.net"},
    )
    assert cfg.external_services.confluence.base_url == "https://acme.atlassian.net"
    assert cfg.external_services.confluence.spaces == ["TECH"]


def test_missing_env_var_names_key_and_variable() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"health_monitoring": {"notifications": {"slack_webhook_url": "${SLACK_WEBHOOK_URL}"}}},
            env={},
        )
    assert (
        "health_monitoring.notifications.slack_webhook_url: environment variable "
        "SLACK_WEBHOOK_URL is not set"
    ) in str(err.value)


def test_nura_config_env_points_at_another_file(tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("api_gateway:\n  retry_default: 1\n")
    monkeypatch.setenv("NURA_CONFIG", str(other))
    assert load_config().api_gateway.retry_default == 1


def test_unreadable_and_invalid_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("api_gateway: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)

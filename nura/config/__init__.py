"""Configuration: `integrations.yaml` loaded into validated pydantic models."""

from nura.config.loader import DEFAULT_PATH, ConfigError, config_path, load_config, parse_config
from nura.config.schema import IntegrationsConfig, ServicePolicy

__all__ = [
    "DEFAULT_PATH",
    "ConfigError",
    "IntegrationsConfig",
    "ServicePolicy",
    "config_path",
    "load_config",
    "parse_config",
]

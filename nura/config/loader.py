"""Load `integrations.yaml`: `${ENV}` interpolation, then pydantic validation.

Every error names the YAML path of the offending key, e.g.
`external_services.confluence.rate_limit_per_minute: must be > 0`, and never the value
found there (it may be a secret in the wrong place).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nura.config.project import project_dir
from nura.config.schema import IntegrationsConfig
from nura.errors import NuraError, ProjectNotFound

DEFAULT_PATH = Path(__file__).with_name("integrations.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class ConfigError(NuraError, ValueError):
    """The configuration file is missing, unreadable or invalid. Lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration {source}:\n  " + "\n  ".join(problems))


PROJECT_CONFIG = "integrations.yaml"


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file to load: an explicit path, else `NURA_CONFIG`, else the project's own
    `integrations.yaml` (next to its prefect.yaml), else the packaged defaults."""
    chosen = explicit or os.environ.get("NURA_CONFIG")
    if chosen:
        return Path(chosen)
    try:
        local = project_dir() / PROJECT_CONFIG
    except ProjectNotFound:
        return DEFAULT_PATH
    return local if local.is_file() else DEFAULT_PATH


def _join(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _interpolate(node: Any, path: tuple[str | int, ...], env: Mapping[str, str], errors: list[str]):
    if isinstance(node, dict):
        return {k: _interpolate(v, (*path, str(k)), env, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*path, i), env, errors) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        errors.append(f"{_join(path)}: environment variable {name} is not set")
        return ""

    return _ENV_REF.sub(substitute, node)


_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _describe(err: Mapping[str, Any]) -> str:
    """What is wrong at one key, never the value there: any value may be a secret (an API
    key pasted one level off), so the input is not echoed, not even as its type's repr."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        return f"must be {symbol} {ctx[key]}"
    message = str(err["msg"])
    value = err.get("input")
    # pydantic's messages describe the expectation; a few (union tags, our validators) may
    # quote the input, and then only the kind of problem is reported.
    if isinstance(value, str | int | float) and len(str(value)) >= 3 and str(value) in message:
        return f"invalid value ({kind}); the value is not shown"
    return f"{message[:1].lower()}{message[1:]} (got a {_kind_of(value)})"


def _kind_of(value: Any) -> str:
    """The YAML kind of a value, safe to show (no content, no length)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return "null" if value is None else "value"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where the YAML is broken and why, without PyYAML's quote of the offending line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    if mark is None:
        return f"not valid YAML: {problem}"
    return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def parse_config(
    data: Any, source: str = "<memory>", env: Mapping[str, str] | None = None
) -> IntegrationsConfig:
    """Validate an already-parsed YAML document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: expected a mapping of sections"])
    errors: list[str] = []
    data = _interpolate(data, (), os.environ if env is None else env, errors)
    if errors:
        raise ConfigError(source, errors)
    try:
        return IntegrationsConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_join(tuple(e['loc']))}: {_describe(e)}" for e in exc.errors()]
        raise ConfigError(source, problems) from None


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> IntegrationsConfig:
    """Load and validate the configuration (see `config_path` for which file)."""
    file = config_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(file), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), [_yaml_problem(exc)]) from None
    return parse_config(data, str(file), env)

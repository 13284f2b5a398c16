"""Every terminal talks to the running stack.

A `nura` command or `python -m flows.<name>` started without `PREFECT_API_URL` attaches to
the stack `nura up` runs from this project (its `stack.json`): the same Prefect API, the
same configuration, the same store and, in the sandbox, the sandbox's credentials. It must
happen before Prefect is imported (Prefect reads its settings from the environment then).

    eval "$(nura env)"     # the same for Prefect's own CLI
"""

from __future__ import annotations

import os
import shlex
from collections.abc import MutableMapping
from pathlib import Path

from nura.platform.stack import StackState, running_stack

# Variables that say "this process is configured already": no attaching then.
CONFIGURED = ("PREFECT_API_URL",)
OPT_OUT = "NURA_NO_ATTACH"  # tests and scripts that must never attach


def state_dir() -> Path | None:
    """The state directory of this project's stack (config `platform.state_dir`)."""
    from nura.config import ConfigError, load_config
    from nura.config.project import project_dir
    from nura.errors import ProjectNotFound

    try:
        cfg = load_config()
        path = Path(cfg.platform.state_dir)
        return path if path.is_absolute() else project_dir() / path
    except (ConfigError, ProjectNotFound):
        return None


def stack_env(state: StackState, environ: MutableMapping[str, str]) -> dict[str, str]:
    """What a process needs to use `state`'s stack (the variables `nura up` gives its own
    children), without overriding a config the caller chose that is not the stack's."""
    env = {
        "PREFECT_API_URL": state.api_url,
        "NURA_STORE_URL": state.store_url,
        "NURA_STATE_DIR": str(state.state_dir),
    }
    chosen = environ.get("NURA_CONFIG")
    if not chosen or (state.source_config and _same(chosen, state.source_config)):
        env["NURA_CONFIG"] = state.config_path
    if state.sandbox:
        env.update(
            AWS_ACCESS_KEY_ID="sandbox",
            AWS_SECRET_ACCESS_KEY="sandbox",  # noqa: S106 - the sandbox moto accepts any key
            AWS_DEFAULT_REGION=environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
    return env


def _same(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def attach(environ: MutableMapping[str, str] | None = None) -> StackState | None:
    """Point this process at the running stack when nothing else is configured; returns
    the stack attached to, or None (configured already, opted out, or no stack running)."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT) or any(env.get(k) for k in CONFIGURED):
        return None
    where = state_dir()
    state = running_stack(where) if where is not None else None
    if state is None or state.status != "ready":
        return None
    env.update(stack_env(state, env))
    return state


def exports(state: StackState, environ: MutableMapping[str, str] | None = None) -> str:
    """`export NAME=value` lines for a shell (`eval "$(nura env)"`)."""
    env = stack_env(state, {} if environ is None else environ)
    env.setdefault("NURA_CONFIG", state.config_path)
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))


__all__ = ["attach", "exports", "stack_env", "state_dir"]

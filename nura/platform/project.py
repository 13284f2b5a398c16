"""Loading the project's flows (the project directory itself: `nura.config.project`)."""

from __future__ import annotations

import sys
from typing import Any

from nura.config.project import MARKER, prefect_yaml, project_dir

__all__ = ["MARKER", "load_flow", "prefect_yaml", "project_dir"]


def load_flow(entrypoint: str) -> Any:
    """The flow at `entrypoint` (`flows/<file>.py:<function>`, as in prefect.yaml) of the
    project, loaded the way a Prefect worker loads it; the project directory goes on
    `sys.path` so the flow's own imports (`tasks`, `blocks`) resolve."""
    from prefect.flows import load_flow_from_entrypoint

    root = project_dir()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return load_flow_from_entrypoint(str(root / entrypoint))

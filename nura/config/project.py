"""The project directory: where `prefect.yaml`, `flows/`, `tasks/`, `blocks/` and
`deployments/` live, as in any Prefect project. Found by its `prefect.yaml` (never from
this package's own location, which is site-packages after `pip install .`).

Order: an explicit path (`nura --project DIR`, which sets `NURA_PROJECT`), then
`NURA_PROJECT`, then the current directory and its parents.
"""

from __future__ import annotations

import os
from pathlib import Path

from nura.errors import ProjectNotFound

MARKER = "prefect.yaml"


def project_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The project directory, or `ProjectNotFound` naming where it looked."""
    chosen = explicit or os.environ.get("NURA_PROJECT")
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if (path / MARKER).is_file():
            return path
        raise ProjectNotFound(f"{path} has no {MARKER}: not a Nura Integrations project")
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / MARKER).is_file():
            return candidate
    raise ProjectNotFound(
        f"no {MARKER} in {here} or its parents: run nura from the project directory "
        "or pass --project DIR"
    )


def prefect_yaml(explicit: str | os.PathLike[str] | None = None) -> Path:
    return project_dir(explicit) / MARKER


__all__ = ["MARKER", "prefect_yaml", "project_dir"]

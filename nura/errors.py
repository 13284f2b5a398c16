"""The root of nura's exception tree, below every room (the config, the floor, uses it).

The tree itself is drawn in `nura.core.errors`.
"""


class NuraError(Exception):
    """Root of every error this package raises on purpose."""


class ProjectNotFound(NuraError):
    """No `prefect.yaml` where the project directory was looked for."""


__all__ = ["NuraError", "ProjectNotFound"]

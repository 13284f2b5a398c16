"""The root of nura's exception tree, below every room (the config, the floor, uses it).

The tree itself is drawn in `nura.core.errors`.
"""


class NuraError(Exception):
    """Root of every error this package raises on purpose."""


__all__ = ["NuraError"]

"""Loading saved Prefect blocks: "not saved" is an answer, any other failure is an error."""

from __future__ import annotations

from typing import Any, TypeVar

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound

B = TypeVar("B", bound=Block)


def load_block(cls: type[B], name: str) -> B | None:
    """The block document `name` of type `cls`, or None when no such document is saved.

    Prefect reports a missing document as a `ValueError` raised from `ObjectNotFound`;
    every other failure (API down, a document that no longer validates) propagates.
    """
    try:
        block: Any = cls.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        if isinstance(exc.__cause__, ObjectNotFound):
            return None
        raise
    return block

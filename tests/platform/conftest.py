"""One sandbox stack (`nura up --detach`) shared by the whole-stack tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.platform.stack_support import TempStack


@pytest.fixture(scope="session")
def stack() -> Iterator[tuple[TempStack, dict[str, Any]]]:
    s = TempStack()
    try:
        state = s.up("--no-runs")
        yield s, state
    finally:
        s.down()

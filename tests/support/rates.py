"""Checking a shared rate limit from the arrival times a stand-in service recorded."""

from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    calls: int
    seconds: float
    excess: float  # calls - rate * seconds


def worst_window(times: list[float], rate: float) -> Window:
    """The window between two arrivals that holds the most calls beyond `rate` per second."""
    return max(
        (
            Window(j - i + 1, times[j] - times[i], j - i + 1 - rate * (times[j] - times[i]))
            for i in range(len(times))
            for j in range(i, len(times))
        ),
        key=lambda w: w.excess,
    )

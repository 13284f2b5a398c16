"""Point this process's Prefect at a server: its settings and its process-global context.

Prefect snapshots settings when a context is entered, so `PREFECT_API_URL` must be switched
with `temporary_settings`; threads (the rate-limit leaser's refill, task runners) read the
process-global settings context, so that one is switched too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def prefect_settings(api_url: str, *, quiet_task_logs: bool = False) -> Iterator[None]:
    """`quiet_task_logs`: tasks called outside a flow (the invoker's nested `notify`) log
    without an API warning."""
    from prefect.context import SettingsContext, _temporary_global_settings_context
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW,
        temporary_settings,
    )

    settings: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if quiet_task_logs:
        settings[PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW] = "ignore"
    with temporary_settings(settings):
        ctx = SettingsContext.get()
        assert ctx is not None
        with _temporary_global_settings_context(ctx):
            yield

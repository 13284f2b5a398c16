"""Every `nura.*` log record emitted inside a flow or task run goes to that run's logs in
the Prefect UI, whatever module logged it (the call layer, a notifier, a client).

Prefect's own mechanism for extra loggers (`PREFECT_LOGGING_EXTRA_LOGGERS`) sends them
through its API handler, which warns for every record outside a run: the receiver, the
CLI and tests log outside runs all the time. This handler forwards only records made in
a run's context, to Prefect's `APILogHandler` (which batches them to the API).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

ROOT = "nura"


class RunLogHandler(logging.Handler):
    """Forwards records made inside a flow or task run to Prefect's API log handler."""

    def __init__(self) -> None:
        super().__init__()
        self._api: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        context: Any = sys.modules.get("prefect.context")
        if context is None:
            return  # Prefect is not even imported: there is no run
        if context.FlowRunContext.get() is None and context.TaskRunContext.get() is None:
            return
        if self._api is None:
            from prefect.logging.handlers import APILogHandler

            self._api = APILogHandler()
        self._api.handle(record)


def install_run_log_handler(level: int | str | None = None) -> RunLogHandler:
    """Attach the handler to the `nura` logger once (idempotent) and let its INFO records
    through (`level`, default Prefect's logging level) as Prefect's run loggers do."""
    root = logging.getLogger(ROOT)
    for handler in root.handlers:
        if isinstance(handler, RunLogHandler):
            return handler
    if level is None:
        from prefect.settings import get_current_settings

        level = get_current_settings().logging.level
    handler = RunLogHandler()
    root.addHandler(handler)
    if root.level == logging.NOTSET:
        root.setLevel(level)
    return handler


__all__ = ["RunLogHandler", "install_run_log_handler"]

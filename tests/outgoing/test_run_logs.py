"""Records of `nura.*` loggers made during a flow run are in that run's logs (the UI's)."""

from __future__ import annotations

import logging
import threading
import uuid
from contextvars import copy_context

import pytest

pytestmark = pytest.mark.integration


def _run_logs(flow_run_id) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [(log.name, log.message) for log in logs]


def test_nura_records_of_a_run_reach_its_logs(prefect_server) -> None:
    from prefect import flow, task

    import tasks  # noqa: F401 - installs the run log handler, as every flow module does

    marker = uuid.uuid4().hex

    @task
    def work() -> None:
        logging.getLogger("nura.test.task").info("in the task %s", marker)
        # A worker thread that carries the run's context (as the sync's pools do).
        thread = threading.Thread(
            target=copy_context().run,
            args=(logging.getLogger("nura.test.thread").warning, f"in a thread {marker}"),
        )
        thread.start()
        thread.join()

    @flow
    def logs_flow() -> None:
        logging.getLogger("nura.test.flow").info("in the flow %s", marker)
        work()

    state = logs_flow(return_state=True)
    logging.getLogger("nura.test.outside").warning("outside any run %s", marker)
    found = _run_logs(state.state_details.flow_run_id)
    assert ("nura.test.flow", f"in the flow {marker}") in found
    assert ("nura.test.task", f"in the task {marker}") in found
    assert ("nura.test.thread", f"in a thread {marker}") in found
    assert not any("outside any run" in message for _, message in found)


def test_a_disabled_webhook_target_is_in_the_deliver_runs_logs(
    prefect_server, sink, nura_config
) -> None:
    from flows.webhook_deliver import webhook_deliver
    from nura.webhooks.models import OutgoingEvent
    from tests.outgoing.conftest import outgoing_config  # noqa: I001

    nura_config(outgoing_config(sink.url, retry_attempts=0))
    sink.control(fail_next=1, fail_status=410)
    state = webhook_deliver(
        target="partner",
        events=[OutgoingEvent(type="system.alert", data={"n": 1})],
        return_state=True,
    )
    found = _run_logs(state.state_details.flow_run_id)
    assert any(
        name == "nura.webhooks.outgoing" and "webhook target partner disabled" in message
        for name, message in found
    ), found

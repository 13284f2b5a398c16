"""Generic calls to any configured service through the call layer.

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task

from nura.core import http_calls

http_call = task(name="http-call", task_run_name="{service} {method} {path}")(http_calls.http_call)

__all__ = ["http_call"]

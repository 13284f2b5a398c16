"""Retention: the sweep of every store (nura.retention).

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task

from nura.retention import sweep

# No Prefect retries: a failed sweep is audited as an error, and the next run takes up
# where it stopped (every batch that committed stays done).
apply_retention = task(name="retention-sweep", retries=0)(sweep.run_retention)
report_rows = sweep.report_rows

__all__ = ["apply_retention", "report_rows"]

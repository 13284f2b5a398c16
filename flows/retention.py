"""The `retention` flow: every store keeps its rows only as long as `retention` says.

Scheduled daily (deployment `retention`, `retention.interval_hours`); see docs/retention.md.

    from flows.retention import retention
    retention()                                   # {"total": 1234, "results": [...], ...}
    retention(RetentionParams(dry_run=True))      # counts only

    python -m flows.retention [--dry-run]

One run: each store's rule in turn, in short batches (call records, inbox bodies and rows,
dead letters, health checks, alert history, notifications, ledger line items rolled up
into daily totals, the audit log) -> one audit row -> a table artifact `retention`.
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from tasks.retention import apply_retention, report_rows


class RetentionParams(BaseModel):
    dry_run: bool = Field(default=False, description="Count what would go; change nothing.")


@flow(name="retention", log_prints=True)
def retention(params: RetentionParams | None = None) -> dict[str, Any]:
    """Apply the retention rules once; returns the report as a dict."""
    params = params or RetentionParams()
    report = apply_retention(params.dry_run)
    create_table_artifact(
        key="retention",
        table=report_rows(report),
        description=f"retention sweep{' (dry run)' if params.dry_run else ''}: "
        f"{report.total} row(s)",
    )
    print(f"retention: {report.total} row(s) {'to remove' if params.dry_run else 'removed'}")
    return report.as_dict()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the retention flow once.")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    retention(RetentionParams(dry_run=args.dry_run))


if __name__ == "__main__":
    main()

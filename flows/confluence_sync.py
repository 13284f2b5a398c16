"""Flow `confluence-sync`: Confluence spaces -> Markdown in the encrypted S3 knowledge base.

    confluence_sync()                                 # every configured space, incremental
    confluence_sync(spaces=["TECH"], full=True)       # force a full sync of TECH
    confluence_sync(page_id="123456", space="TECH")   # one page (webhook ingest)

    python -m flows.confluence_sync [--space TECH] [--page-id 123456] [--full]

Each space gets a table artifact (created / updated / unchanged / deleted / failed,
duration); a progress artifact moves while the run works. A missing space or a page that
failed after the call layer's retries does not stop the other spaces or pages, but the
run ends Failed and lists them.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, create_table_artifact

from nura import get_config
from tasks.confluence import ConfluenceAuthError, ConfluenceError
from tasks.confluence_sync import (
    SpaceReport,
    ensure_knowledge_base,
    shutdown_pool,
    sync_page,
    sync_space,
)


class ConfluenceSyncFailed(Exception):
    """Some spaces or pages could not be synchronised (details in the run's artifacts)."""


def _slug(space: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", space.lower()).strip("-") or "space"


def _publish(report: SpaceReport) -> None:
    create_table_artifact(
        key=f"confluence-sync-{_slug(report.space)}",
        table=[report.row()],
        description=f"Confluence sync of space {report.space} ({report.mode})",
    )
    if report.failures or report.flagged_pages:
        rows = [{"kind": "failed", **f} for f in report.failures[:500]] + [
            {"kind": "flagged", "title": "", "error": f["warnings"], "page_id": f["page_id"]}
            for f in report.flagged_pages[:500]
        ]
        create_table_artifact(
            key=f"confluence-sync-{_slug(report.space)}-problems",
            table=rows,
            description=f"Pages of {report.space} that failed or were converted with warnings",
        )


@flow(name="confluence-sync", log_prints=False)
def confluence_sync(
    spaces: list[str] | None = None,
    page_id: str | None = None,
    space: str | None = None,
    full: bool = False,
) -> dict[str, dict[str, Any]]:
    """Sync `spaces` (default: config `external_services.confluence.spaces`) or one page.

    Args:
        spaces: space keys to sync; None = the configured spaces.
        page_id: sync only this page (the `confluence.page.updated` webhook ingest).
        space: the page's space key (optional with `page_id`; looked up when missing).
        full: ignore the watermark and re-fetch every page (unchanged content is still
            not rewritten).
    """
    ensure_knowledge_base()
    reports: list[SpaceReport] = []
    errors: list[str] = []
    try:
        if page_id:
            report = sync_page(str(page_id), space)
            reports.append(report)
        else:
            keys = spaces or list(get_config().external_services.confluence.spaces)
            progress = create_progress_artifact(
                progress=0.0,
                key="confluence-sync-progress",
                description=f"Confluence sync of {', '.join(keys)}",
            )
            span = 100.0 / max(1, len(keys))
            for i, key in enumerate(keys):
                try:
                    report = sync_space(key, full, str(progress), i * span, span)
                except ConfluenceAuthError:
                    raise  # every space would fail the same way: stop with the clear message
                except ConfluenceError as exc:
                    errors.append(f"{key}: {exc}")
                    report = SpaceReport(key, error=str(exc))
                reports.append(report)
    finally:
        shutdown_pool()
    for report in reports:
        _publish(report)
        if report.failures:
            errors.append(
                f"{report.space}: {report.failed} page(s) failed: "
                + ", ".join(f["page_id"] for f in report.failures[:20])
            )
    summary = {r.space: r.row() for r in reports}
    if errors:
        raise ConfluenceSyncFailed("; ".join(errors))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Sync Confluence spaces into the S3 knowledge base"
    )
    parser.add_argument("--space", action="append", help="space key (repeatable)")
    parser.add_argument("--page-id", help="sync only this page")
    parser.add_argument("--full", action="store_true", help="force a full sync")
    args = parser.parse_args(argv)
    page_space = args.space[0] if args.page_id and args.space else None
    print(
        confluence_sync(
            spaces=None if args.page_id else args.space,
            page_id=args.page_id,
            space=page_space,
            full=args.full,
        )
    )


if __name__ == "__main__":
    main()

"""Flow `confluence-sync`: Confluence spaces -> Markdown in the encrypted S3 knowledge base.

    confluence_sync()                                 # every configured space, incremental
    confluence_sync(spaces=["TECH"], full=True)       # force a full sync of TECH
    confluence_sync(page_id="123456", space="TECH")   # one page (webhook ingest)

    python -m flows.confluence_sync [--space TECH] [--page-id 123456] [--full]

The spaces sync at the same time (one task each; they share the fetch and S3 threads and
the conversion processes). Each space gets a table artifact (created / updated /
unchanged / deleted / failed, duration); a progress artifact moves while the run works.
A missing space or a page that failed after the call layer's retries does not stop the
other spaces or pages, but the run ends Failed and lists them.
"""

from __future__ import annotations

import argparse
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import wait

from nura import get_config
from nura.confluence.client import ConfluenceAuthError, ConfluenceError
from nura.confluence.sync import (
    SpaceReport,
    ensure_knowledge_base,
    prepare_spaces,
    publish_report,
    shutdown_pool,
)
from nura.core.errors import IntegrationError
from tasks.confluence import sync_page, sync_space


class ConfluenceSyncFailed(ConfluenceError):
    """Some spaces or pages could not be synchronised: the message names them and what was
    kept (details in the run's artifacts)."""


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
    reports: list[SpaceReport] = []
    errors: list[str] = []
    try:
        if page_id:
            ensure_knowledge_base()
            report = sync_page(str(page_id), space)
            reports.append(report)
        else:
            keys = list(dict.fromkeys(spaces or get_config().external_services.confluence.spaces))
            progress = create_progress_artifact(
                progress=0.0,
                key="confluence-sync-progress",
                description=f"Confluence sync of {', '.join(keys)}",
            )
            span = 100.0 / max(1, len(keys))
            # Wrong credentials fail here, once, with the clear message: no space starts.
            try:
                space_ids = prepare_spaces(keys)
            except ConfluenceAuthError:
                raise
            except IntegrationError as exc:  # an open breaker, Confluence or S3 down
                raise ConfluenceSyncFailed(
                    f"{', '.join(keys)}: not synchronised, nothing changed in the knowledge "
                    f"base ({type(exc).__name__}: {exc})"
                ) from exc
            # The spaces sync at the same time: their pages share the fetch and S3 threads
            # and the conversion processes, and their listing and checkpoint round trips
            # overlap. A missing key gets its SpaceNotFound from its own task.
            futures = [
                sync_space.submit(key, full, str(progress), span, space_ids.get(key))
                for key in keys
            ]
            wait(futures)  # all end before the shared threads and processes are stopped
            auth_error: ConfluenceAuthError | None = None
            for key, future in zip(keys, futures, strict=True):
                try:
                    report = future.result()
                except ConfluenceAuthError as exc:  # revoked while the run worked
                    auth_error = auth_error or exc
                    continue
                except IntegrationError as exc:
                    errors.append(f"{key}: {type(exc).__name__}: {exc}")
                    report = SpaceReport(key, error=str(exc))
                    publish_report(report)  # the others were published by their task
                reports.append(report)
            if auth_error is not None:
                raise auth_error
            update_progress_artifact(UUID(str(progress)), 100.0)  # spaces report checkpoints
    finally:
        shutdown_pool()
    for report in reports:
        if report.error and not any(e.startswith(f"{report.space}: ") for e in errors):
            errors.append(f"{report.space}: {report.error}")
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

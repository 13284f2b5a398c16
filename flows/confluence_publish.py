"""Flow `confluence-publish`: create or update Confluence pages from Markdown or storage XHTML.

    confluence_publish(pages=[PublishPage(title="Architecture", content="# ...",
                                          space="ARCH", parent_id="123", labels=["generated"])])
    python -m flows.confluence_publish docs/arch.md --title Architecture --space ARCH \
        --parent 123 --label generated [--on-conflict overwrite]

Updates send version = current + 1. On 409 Conflict the page is re-read and the policy
(`on_conflict`, default from config `publish_conflict_policy`, itself `fail`) decides:
fail / overwrite / skip. A table artifact reports what happened to every page; the run
ends Failed if any page failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.artifacts import create_table_artifact

from nura import get_config
from nura.confluence.client import ConfluenceAuthError
from nura.confluence.publish import PublishFailed, PublishPage, PublishResult
from nura.core.errors import IntegrationError
from tasks.confluence import publish_one


@flow(name="confluence-publish")
def confluence_publish(
    pages: list[PublishPage] | None = None,
    on_conflict: Literal["fail", "overwrite", "skip"] | None = None,
) -> list[dict[str, object]]:
    """Publish `pages`; `on_conflict` overrides config `publish_conflict_policy`."""
    policy = on_conflict or get_config().external_services.confluence.publish_conflict_policy
    results: list[PublishResult] = []
    for page in pages or []:
        try:
            results.append(publish_one(page, policy))
        except ConfluenceAuthError:
            raise
        except IntegrationError as exc:
            results.append(PublishResult(page.title, "failed", detail=str(exc)[:500]))
    rows = [r.row() for r in results]
    create_table_artifact(
        key="confluence-publish",
        table=rows or [{"title": "", "action": "nothing to publish"}],
        description=f"Confluence publish ({policy} on conflict)",
    )
    failed = [r for r in results if r.action == "failed"]
    if failed:
        raise PublishFailed("; ".join(f"{r.title}: {r.detail}" for r in failed))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish a Markdown/storage file to Confluence")
    parser.add_argument("file", type=Path)
    parser.add_argument("--title", required=True)
    parser.add_argument("--space")
    parser.add_argument("--parent")
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--storage", action="store_true", help="the file is storage XHTML")
    parser.add_argument("--on-conflict", choices=["fail", "overwrite", "skip"])
    args = parser.parse_args(argv)
    page = PublishPage(
        title=args.title,
        content=args.file.read_text(encoding="utf-8"),
        content_format="storage" if args.storage else "markdown",
        space=args.space,
        parent_id=args.parent,
        labels=args.label,
    )
    print(confluence_publish([page], args.on_conflict))


if __name__ == "__main__":
    main()

"""Flow `confluence-watch`: Confluence change events without webhooks.

    confluence_watch()                      # the configured spaces (every minute, scheduled)
    confluence_watch(spaces=["TECH"])

    python -m flows.confluence_watch [--space TECH] [--page-id 123456]

One poll: a CQL search for pages modified since the last change seen (one call when
nothing changed), the trash every few minutes, then `confluence.page.updated` /
`confluence.page.removed` Prefect events; the `nura-confluence-watch-ingest` automation
(created by `nura bootstrap`) runs `confluence-page-ingest` for each. See
docs/confluence.md, "Change events without webhooks".
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow

from tasks.confluence import watch_poll


@flow(name="confluence-watch", log_prints=False)
def confluence_watch(
    spaces: list[str] | None = None, page_id: str | None = None, space: str | None = None
) -> dict[str, Any]:
    """Poll Confluence once and emit a Prefect event per changed or trashed page.

    Args:
        spaces: space keys to watch; None = config `external_services.confluence.spaces`.
        page_id: a webhook named this page (routing `confluence.page.*` here): read it
            and emit its event as a poll would, with the same id (one ingest run).
        space: the webhook's space key (not trusted; the page's own space is used).
    """
    return watch_poll(spaces, page_id, space)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Poll Confluence for page changes once")
    parser.add_argument("--space", action="append", help="space key (repeatable)")
    parser.add_argument("--page-id", help="read this page now (what a routed webhook does)")
    args = parser.parse_args(argv)
    print(confluence_watch(spaces=args.space, page_id=args.page_id))


if __name__ == "__main__":
    main()

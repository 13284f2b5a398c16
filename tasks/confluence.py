"""Confluence: sync into the S3 knowledge base (a task per space and per page) and publish.

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task

from nura.confluence import publish, sync, watch

sync_space = task(name="confluence-sync-space", retries=0, task_run_name="sync-space-{space}")(
    sync.sync_space
)
sync_page = task(name="confluence-sync-page", retries=0, task_run_name="sync-page-{page_id}")(
    sync.sync_page
)

publish_one = task(name="confluence-publish-page", task_run_name="publish-{page.title}", retries=0)(
    publish.publish_one
)

# No Prefect retries: the next scheduled poll is the retry (the state only moves once the
# events were delivered), and the call layer already retried the Confluence calls.
watch_poll = task(name="confluence-watch-poll", retries=0)(watch.run_watch)

__all__ = ["publish_one", "sync_page", "sync_space", "watch_poll"]

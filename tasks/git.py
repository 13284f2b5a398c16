"""Git push -> S3 knowledge base: the changed files, then storing them.

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task

from nura.git import ingest

changed_files = task(name="git-changed-files")(ingest.changed_files)
sync_files = task(name="git-sync-files")(ingest.sync_files)

__all__ = ["changed_files", "sync_files"]

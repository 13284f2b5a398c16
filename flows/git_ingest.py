"""Flow `git-ingest`: a `git.push` webhook -> the pushed files in the S3 knowledge base.

The branch's prefix `git/{owner}/{repo}/{branch}/` is made equal to the pushed revision:
added and modified files are stored as `git/{owner}/{repo}/{branch}/{path}` (server-side
encrypted, metadata `source-url`, `commit`, `sha256`), files the new tip lacks are deleted
(force pushes included), a new branch stores its whole tree, a deleted branch's documents
are deleted; binaries and files over `external_services.git.max_file_bytes` are skipped;
only branches matching `external_services.git.branches` are ingested. A table artifact
lists what changed.

Example:
    ```python
    from flows.git_ingest import git_ingest
    git_ingest(payload=github_push_payload)          # GitHub or GitLab push shape
    ```
    python -m flows.git_ingest push.json
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from nura import get_config
from nura.git.ingest import branch_allowed, parse_push
from tasks.git import changed_files, sync_files


@flow(name="git-ingest", log_prints=False)
def git_ingest(
    payload: dict[str, Any] | None = None, provider: str | None = None
) -> dict[str, Any]:
    """Ingest one push. `payload`: the webhook body; `provider`: "github"/"gitlab" or guess."""
    logger = get_run_logger()
    push = parse_push(payload or {}, provider)
    git = get_config().external_services.git
    summary: dict[str, Any] = {
        "repository": f"{push.owner}/{push.repo}",
        "ref": push.ref,
        "commit": push.after,
        "branch": push.branch,
        "forced": push.forced,
        "stored": 0,
        "deleted": 0,
        "skipped": 0,
    }
    if not branch_allowed(push, git.branches):
        logger.info("push to %s not ingested (branch filter)", push.ref)
        summary["ignored"] = True
        return summary
    changes = changed_files(push)
    rows = sync_files(push, changes)
    for row in rows:
        summary[row["action"]] = summary.get(row["action"], 0) + 1
    key = re.sub(r"[^a-z0-9-]+", "-", f"git-ingest-{push.owner}-{push.repo}".lower())[:100]
    create_table_artifact(
        key=key.strip("-"),
        table=rows or [{"path": "-", "action": "none", "detail": "no file changes", "bytes": 0}],
        description=f"{push.owner}/{push.repo} @ {push.after[:12]} ({push.ref})",
    )
    logger.info(
        "%s@%s: %d stored, %d deleted, %d skipped",
        summary["repository"],
        push.after[:12],
        summary["stored"],
        summary["deleted"],
        summary["skipped"],
    )
    return summary


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m flows.git_ingest PUSH_PAYLOAD.json")
    with open(sys.argv[1], encoding="utf-8") as fh:
        data = json.load(fh)
    print(json.dumps(git_ingest(payload=data), indent=2))

"""`prefect server start`, importing the server while `nura up` still starts its database.

    python -m nura.platform.prefect_server --database-url-file F -- server start --port 4200

Importing Prefect's server costs ~5 s of CPU here and initialising plus starting the
embedded PostgreSQL ~3-4 s; `nura up` starts this process first and writes the database
URL to F once PostgreSQL accepts connections, so the two overlap instead of adding up.
Everything after the wait is Prefect's own `prefect server start`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def wait_for_file(path: Path, timeout: float) -> str:
    from nura.platform.processes import WaitTimeout, wait_until

    try:
        wait_until(path.exists, timeout, f"no {path}", interval=0.05)
    except WaitTimeout:
        raise SystemExit(f"no database URL in {path} after {timeout:.0f}s: not starting") from None
    return path.read_text().strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url-file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("prefect_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    prefect_args = [a for a in args.prefect_args if a != "--"] or ["server", "start"]

    import prefect.server.api.server  # noqa: F401 - the slow import, before the wait

    url = wait_for_file(args.database_url_file, args.timeout)
    # Settings are read from the environment when prefect is imported, so the URL that
    # arrives later goes into both the environment and the active settings context.
    os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = url
    from prefect.cli import app
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    sys.argv = ["prefect", *prefect_args]
    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}):
        app()


if __name__ == "__main__":
    main()

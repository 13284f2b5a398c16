"""`nura retention run` and `nura erase` as an operator runs them (subprocesses).

Exit codes: 0 done (nothing found included), 1 failure, 2 bad arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nura.core.stores import audit
from nura.core.stores import notifications as notes
from nura.core.stores.db import get_engine
from nura.core.stores.tables import call_records
from tests.retention.test_sweep import NOW, _call_record, rows

NURA = str(Path(sys.executable).with_name("nura"))
PROJECT = Path(__file__).resolve().parents[2]
DAY = 86_400.0


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, Any]:
    config = tmp_path / "integrations.yaml"
    config.write_text(yaml.safe_dump({"retention": {"call_records_days": 30}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NURA_", "PREFECT_API"))}
    store = f"sqlite:///{tmp_path / 'nura.db'}"
    env |= {"NURA_CONFIG": str(config), "NURA_STORE_URL": store}
    env["NURA_STATE_DIR"] = str(tmp_path / "state")
    return env


def nura(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NURA, *args], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=180
    )


def test_retention_run_dry_run_then_for_real(cli_env: dict[str, str]) -> None:
    import time

    engine = get_engine(cli_env["NURA_STORE_URL"])
    now = time.time()  # the CLI sweeps at its own now: rows far on either side of 30 days
    _call_record(engine, now - 90 * DAY)
    _call_record(engine, now - 1 * DAY)

    dry = nura(cli_env, "retention", "run", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] and report["total"] == 1 and rows(engine, call_records) == 2

    done = nura(cli_env, "retention", "run")
    assert done.returncode == 0, done.stderr
    assert "removed 1 row(s)" in done.stdout and "call_records" in done.stdout
    assert rows(engine, call_records) == 1
    (entry,) = audit.entries(engine, action="retention.sweep")
    assert entry["actor"].startswith("cli:") and entry["detail"]["counts"]["call_records"] == 1


def test_erase_email_reports_what_it_removed(cli_env: dict[str, str]) -> None:
    engine = get_engine(cli_env["NURA_STORE_URL"])
    notes.record_feedback(
        engine, sns_message_id="sns-1", ses_message_id="ses-1", kind="bounce",
        recipients=["ana@example.com"], now=NOW,
    )  # fmt: skip
    dry = nura(cli_env, "erase", "--email", "ana@example.com", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would erase (email)" in dry.stdout and "email feedback: 1" in dry.stdout
    assert audit.entries(engine, action="erase") == []

    done = nura(cli_env, "erase", "--email", "ana@example.com", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stores"]["email_feedback"] == 1
    assert notes.feedback_for(engine, "ses-1")[0]["recipients"] is None

    nothing = nura(cli_env, "erase", "--email", "ana@example.com")
    assert nothing.returncode == 0 and "nothing found to erase (email)" in nothing.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "exactly one"),
        (("--email", "a@b.c", "--confluence-page", "1"), "exactly one"),
        (("--email", "secret-not-an-address"), "not an email address"),
        (("--confluence-page", "abc"), "is a number"),
    ],
)
def test_erase_bad_arguments_exit_2(
    cli_env: dict[str, str], args: tuple[str, ...], said: str
) -> None:
    result = nura(cli_env, "erase", *args)
    assert result.returncode == 2 and said in result.stderr
    assert "secret-not-an-address" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_unreachable_store_exits_1(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "NURA_STORE_URL": "postgresql+psycopg://nura@127.0.0.1:1/nura"}
    result = nura(env, "retention", "run")
    assert result.returncode == 1 and "failed" in result.stderr
    assert "Traceback" not in result.stderr

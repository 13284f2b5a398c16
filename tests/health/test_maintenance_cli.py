"""`nura maintenance start|list|end` as an operator runs them: the real `nura` command in
a subprocess, against a store; an unknown service exits 2 and lists the known ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nura.core.stores.audit import audit_log
from nura.core.stores.db import get_engine
from nura.core.stores.maintenance import maintenance_windows

pytestmark = pytest.mark.integration
NURA = str(Path(sys.executable).with_name("nura"))


def _env(tmp_path: Path, store_url: str) -> dict[str, str]:
    config = tmp_path / "integrations.yaml"
    config.write_text(
        yaml.safe_dump(
            {"external_services": {"partners": {"alpha": {"base_url": "http://127.0.0.1:9"}}}}
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "NURA_"))}
    env.update(
        NURA_CONFIG=str(config), NURA_STORE_URL=store_url, NURA_STATE_DIR=str(tmp_path / "st")
    )
    return env


def nura(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NURA, "maintenance", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=env["NURA_STATE_DIR"].rsplit("/", 1)[0],
    )


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_start_list_end_and_unknown_service(tmp_path: Path, store_url: str) -> None:
    env = _env(tmp_path, store_url)

    started = nura(env, "start", "alpha", "--for", "30m", "--reason", "db upgrade")
    assert started.returncode == 0, started.stderr
    assert "alpha in maintenance until" in started.stdout and "(30 min)" in started.stdout

    listed = nura(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "alpha" in listed.stdout and "active" in listed.stdout
    assert "db upgrade" in listed.stdout

    again = nura(env, "start", "alpha", "--for", "5m", "--reason", "again")
    assert again.returncode == 2 and "already in maintenance" in again.stderr

    unknown = nura(env, "start", "nope", "--for", "5m", "--reason", "x")
    assert unknown.returncode == 2
    assert "unknown service 'nope'" in unknown.stderr
    assert "alpha" in unknown.stderr and "database" in unknown.stderr  # the known ones

    bad = nura(env, "start", "alpha", "--for", "soon", "--reason", "x")
    assert bad.returncode == 2 and "not a duration" in bad.stderr

    ended = nura(env, "end", "alpha")
    assert ended.returncode == 0, ended.stderr
    assert "alpha maintenance ended" in ended.stdout
    assert nura(env, "end", "alpha").returncode == 2  # nothing left to end
    assert "No maintenance window" in nura(env, "list").stdout

    engine = get_engine(store_url)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(maintenance_windows.select()).all()]
        audited = [dict(r._mapping) for r in conn.execute(audit_log.select()).all()]
    assert len(rows) == 1
    assert rows[0]["ends_at"] - rows[0]["starts_at"] == 1800 and rows[0]["ended_at"] is not None
    assert rows[0]["actor"].startswith("cli:") and rows[0]["reason"] == "db upgrade"
    # every operator action is in the audit log, refusals included
    ok = [(a["action"], a["outcome"]) for a in audited if a["outcome"] == "ok"]
    assert ok == [("maintenance.start", "ok"), ("maintenance.end", "ok")]
    assert len(audited) > len(ok)

"""`nura bootstrap` against a server that already has the deployments: every run leaves
each configured schedule exactly once, changes a changed interval in place, and keeps
what ops paused (a schedule or a whole deployment) paused.

The real bootstrap against the real Prefect server, checked through Prefect's API.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from nura.platform.bootstrap import SCHEDULE_SLUG

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
PAUSED_SCHEDULE = "webhook-redrive"  # ops pause this deployment's schedule in the UI
PAUSED_DEPLOYMENT = "confluence-sync"  # and pause this whole deployment


def _boot(cfg: Any) -> dict[str, str]:
    """Run the real bootstrap; deployment name -> "flow/deployment"."""
    from nura.platform.bootstrap import bootstrap

    report = bootstrap(cfg, save_env=False)
    return {full.split("/", 1)[1]: full for full in report.deployments}


def _read(full_names: dict[str, str]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            return {
                name: await client.read_deployment_by_name(full)
                for name, full in full_names.items()
            }

    return asyncio.run(read())


def _check(
    cfg: Any,
    full_names: dict[str, str],
    *,
    inactive: frozenset[str] = frozenset(),
    paused: frozenset[str] = frozenset(),
) -> dict[str, UUID]:
    """Every deployment with a configured interval has exactly one schedule, with that
    interval; the others have none. Returns deployment name -> schedule id."""
    from nura.platform.bootstrap import load_specs

    specs = load_specs(cfg)
    assert {s.name for s in specs} == set(full_names)
    deployments = _read(full_names)
    ids = {}
    for spec in specs:
        deployment = deployments[spec.name]
        assert deployment.paused is (spec.name in paused), spec.name
        if not spec.interval_seconds:
            assert deployment.schedules == [], spec.name
            continue
        got = [
            (s.schedule.interval.total_seconds(), s.active)
            for s in deployment.schedules
            if hasattr(s.schedule, "interval")
        ]
        assert len(deployment.schedules) == 1, (spec.name, got)
        assert got == [(spec.interval_seconds, spec.name not in inactive)], spec.name
        ids[spec.name] = deployment.schedules[0].id
    return ids


def _ops_pause(full_names: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client

    async def pause() -> None:
        async with get_client() as client:
            redrive = await client.read_deployment_by_name(full_names[PAUSED_SCHEDULE])
            await client.update_deployment_schedule(
                redrive.id, redrive.schedules[0].id, active=False
            )
            sync = await client.read_deployment_by_name(full_names[PAUSED_DEPLOYMENT])
            await client.pause_deployment(sync.id)

    asyncio.run(pause())


def _legacy_schedules(full_name: str, schedules: list[tuple[int, bool]]) -> list[UUID]:
    """Replace a deployment's schedules with unslugged ones (seconds, active), as
    bootstrap made them before it gave its schedule a slug."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import IntervalSchedule

    async def replace() -> list[UUID]:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(full_name)
            for schedule in deployment.schedules:
                await client.delete_deployment_schedule(deployment.id, schedule.id)
            created = await client.create_deployment_schedules(
                deployment.id,
                [(IntervalSchedule(interval=timedelta(seconds=s)), a) for s, a in schedules],
            )
            assert [c.slug for c in created] == [None] * len(schedules)
            return [c.id for c in created]

    return asyncio.run(replace())


def _ops_resume(full_names: dict[str, str]) -> None:
    """Leave the session's server as other tests expect it: nothing paused."""
    from prefect.client.orchestration import get_client

    async def resume() -> None:
        async with get_client() as client:
            for full in full_names.values():
                deployment = await client.read_deployment_by_name(full)
                for schedule in deployment.schedules:
                    if not schedule.active:
                        await client.update_deployment_schedule(
                            deployment.id, schedule.id, active=True
                        )
                if deployment.paused:
                    await client.resume_deployment(deployment.id)

    asyncio.run(resume())


@pytest.mark.timeout(600)
def test_repeated_bootstrap_keeps_schedules_once_and_ops_pauses(
    prefect_server, nura_config, monkeypatch
):
    monkeypatch.setenv("NURA_PROJECT", str(PROJECT))
    cfg = nura_config({})

    full_names = _boot(cfg)
    ids = _check(cfg, full_names)
    assert {"confluence-sync", "health-monitor", "webhook-redrive", "retention"} <= set(ids)
    for _ in range(2):  # again and again: nothing toggles, nothing is recreated
        assert _boot(cfg) == full_names
        assert _check(cfg, full_names) == ids

    _ops_pause(full_names)
    try:
        paused = {
            "inactive": frozenset({PAUSED_SCHEDULE}),
            "paused": frozenset({PAUSED_DEPLOYMENT}),
        }
        assert _check(cfg, full_names, **paused) == ids
        _boot(cfg)
        assert _check(cfg, full_names, **paused) == ids

        # An interval changed in config is changed in place; the pauses stay.
        changed = nura_config({"health_monitoring": {"check_interval_minutes": 7}})
        assert changed.health_monitoring.check_interval_minutes == 7
        _boot(changed)
        after = _check(changed, full_names, **paused)
        assert after == ids  # the same schedules, updated
        health = _read({"health-monitor": full_names["health-monitor"]})["health-monitor"]
        assert health.schedules[0].schedule.interval.total_seconds() == 7 * 60

        # Schedules without a slug (as bootstrap made them before): the one with the
        # configured interval is adopted as is (paused, so it stays paused), the other
        # one is deleted.
        adopted, _ = _legacy_schedules(
            full_names["health-monitor"], [(7 * 60, False), (3600, True)]
        )
        _boot(changed)
        legacy = {**paused, "inactive": frozenset({PAUSED_SCHEDULE, "health-monitor"})}
        assert _check(changed, full_names, **legacy) == {**ids, "health-monitor": adopted}
        health = _read({"health-monitor": full_names["health-monitor"]})["health-monitor"]
        assert health.schedules[0].slug == SCHEDULE_SLUG
        _boot(changed)
        assert _check(changed, full_names, **legacy) == {**ids, "health-monitor": adopted}
    finally:
        _ops_resume(full_names)

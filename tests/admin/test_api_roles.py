"""Every admin action over real HTTP: no token -> 401, a role too low -> 403, the right
role -> 200 with its effect in the store; every call one audit row (never the token)."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from nura.admin.actions import ACTIONS
from nura.core.stores import admin_overrides, audit
from nura.core.stores import dead_letters as dl
from tests.admin.conftest import ROLES, AdminStack

pytestmark = pytest.mark.integration

HAS_MAINTENANCE = importlib.util.find_spec("nura.health.maintenance") is not None


@dataclass
class Case:
    """How to call one action and what must have changed afterwards."""

    params: Callable[[AdminStack, str], dict[str, Any]]
    check: Callable[[AdminStack, str, dict[str, Any]], None]
    seed: Callable[[AdminStack, str], None] = field(default=lambda _s, _k: None)


def _dead_letter(stack: AdminStack, key: str) -> None:
    """One pending dead letter of `sandbox` with id `key`, due in a day."""
    dl.enqueue(stack.engine, "sandbox", [(key, "git.push", "{}")], lease_seconds=60, owner=key)
    dl.mark_failed(
        stack.engine,
        "sandbox",
        key,
        owner=key,
        attempts=3,
        error="HTTP 503",
        status_code=503,
        retryable=True,
        redrive=True,
        base_minutes=1440,
        max_redrives=5,
    )


def _status_of(stack: AdminStack, key: str) -> str:
    row = dl.get(stack.engine, key, "sandbox")
    assert row is not None
    return str(row["status"])


def _due_now(stack: AdminStack, key: str) -> bool:
    """Seeded due in a day (`_dead_letter`); a retry makes it due now."""
    import time

    row = dl.get(stack.engine, key, "sandbox")
    assert row is not None
    return row["status"] == "pending" and row["next_attempt_at"] <= time.time()


def _open_breaker(stack: AdminStack, _key: str) -> None:
    from nura.core.breaker import CircuitBreakers

    CircuitBreakers(stack.engine).record_failure("confluence", threshold=1)


def _breaker_state(stack: AdminStack) -> str:
    from nura.core.breaker import CircuitBreakers

    return CircuitBreakers(stack.engine).snapshot("confluence", fresh=True).state.value


def _rotate_block(_stack: AdminStack, key: str) -> None:
    from prefect.blocks.system import Secret

    Secret(value="before").save(f"nura-test-rotate-{key}", overwrite=True)


def _rotated(_stack: AdminStack, key: str, out: dict[str, Any]) -> None:
    from prefect.blocks.system import Secret

    assert Secret.load(f"nura-test-rotate-{key}").get() == f"after-{key}"
    assert f"after-{key}" not in str(out)


def _endpoint_flag(stack: AdminStack) -> bool | None:
    rows = {r["endpoint"]: r for r in admin_overrides.endpoint_flag_rows(stack.engine)}
    return rows["partner"]["enabled"] if "partner" in rows else None


def _maintenance_active(stack: AdminStack, service: str) -> bool:
    import time

    from nura.health import maintenance

    windows = maintenance.active(stack.engine, time.time(), stack.cfg)
    return any(w.get("service") == service for w in windows)


def _maintenance_started(stack: AdminStack, _key: str) -> None:
    from nura.health import maintenance

    if not _maintenance_active(stack, "git"):
        maintenance.start(stack.engine, "git", 600, "seeded", "test", config=stack.cfg)


CASES: dict[str, Case] = {
    "status": Case(
        params=lambda _s, _k: {},
        check=lambda _s, _k, out: {"breakers", "dead_letters", "budget_overrides"} <= set(out),
    ),
    "deliveries.list": Case(
        seed=_dead_letter,
        params=lambda _s, _k: {"target": "sandbox"},
        check=lambda _s, k, out: k in [e["id"] for e in out["entries"]],
    ),
    "audit.list": Case(
        params=lambda _s, _k: {"limit": "5"},
        check=lambda _s, _k, out: 0 < len(out["entries"]) <= 5,
    ),
    "tokens.list": Case(
        params=lambda _s, _k: {},
        check=lambda s, _k, out: [t["name"] for t in out["tokens"]] == [f"t-{r}" for r in ROLES],
    ),
    "deliveries.retry": Case(
        seed=_dead_letter,
        params=lambda _s, k: {"ids": [k], "deliver": False},
        check=lambda s, k, out: (
            out["requeued"] == [{"target": "sandbox", "id": k}] and _due_now(s, k)
        ),
    ),
    "deliveries.purge": Case(
        seed=_dead_letter,
        params=lambda _s, k: {"ids": [k]},
        check=lambda s, k, out: out["purged"] == 1 and _status_of(s, k) == "purged",
    ),
    "breakers.reset": Case(
        seed=_open_breaker,
        params=lambda _s, _k: {"service": "confluence"},
        check=lambda s, _k, _out: _breaker_state(s) == "closed",
    ),
    "maintenance.start": Case(
        params=lambda _s, _k: {"service": "confluence", "duration_s": 600, "reason": "upgrade"},
        check=lambda s, _k, _out: _maintenance_active(s, "confluence"),
    ),
    "maintenance.end": Case(
        seed=_maintenance_started,
        params=lambda _s, _k: {"service": "git"},
        check=lambda s, _k, _out: not _maintenance_active(s, "git"),
    ),
    "endpoints.disable": Case(
        params=lambda _s, _k: {"endpoint": "partner"},
        check=lambda s, _k, _out: _endpoint_flag(s) is False,
    ),
    "endpoints.enable": Case(
        params=lambda _s, _k: {"endpoint": "partner"},
        check=lambda s, _k, _out: _endpoint_flag(s) is True,
    ),
    "targets.disable": Case(
        params=lambda _s, _k: {"target": "sandbox", "reason": "partner asked"},
        check=lambda s, _k, _out: "sandbox" in dl.disabled_targets(s.engine),
    ),
    "targets.enable": Case(
        params=lambda _s, _k: {"target": "sandbox"},
        check=lambda s, _k, _out: "sandbox" not in dl.disabled_targets(s.engine),
    ),
    "budgets.set": Case(
        params=lambda _s, k: {"scope": k, "daily_usd": "2.50"},
        check=lambda s, k, _out: (
            admin_overrides.budget_overrides(s.engine)[k]["daily_usd"] == Decimal("2.50")
        ),
    ),
    "budgets.clear": Case(
        seed=lambda s, k: admin_overrides.set_budget(
            s.engine, k, daily_usd=Decimal(1), monthly_usd=None, actor="seed"
        ),
        params=lambda _s, k: {"scope": k},
        check=lambda s, k, out: (
            out["cleared"] and k not in admin_overrides.budget_overrides(s.engine)
        ),
    ),
    "secrets.rotate": Case(
        seed=_rotate_block,
        params=lambda _s, k: {
            "block": f"secret/nura-test-rotate-{k}",
            "field": "value",
            "value": f"after-{k}",
        },
        check=_rotated,
    ),
}


def test_every_action_has_a_case() -> None:
    assert set(CASES) == set(ACTIONS)


def _call(stack: AdminStack, name: str, role: str | None, params: dict[str, Any]) -> httpx.Response:
    act = ACTIONS[name]
    url = stack.url + stack.cfg.admin.path_prefix + act.path
    headers = stack.headers(role)
    if act.method == "GET":
        return httpx.get(url, params=params, headers=headers, timeout=30)
    return httpx.post(url, json=params, headers=headers, timeout=30)


def _last_audit(stack: AdminStack, name: str) -> dict[str, Any]:
    return audit.entries(stack.engine, action=name, limit=1)[0]


def _below(role: str) -> str | None:
    index = ROLES.index(role)
    return ROLES[index - 1] if index else None


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_no_token_is_401_and_audited(admin_stack: AdminStack, name: str) -> None:
    key = uuid.uuid4().hex[:12]
    case = CASES[name]
    resp = _call(admin_stack, name, None, case.params(admin_stack, key))
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    row = _last_audit(admin_stack, name)
    assert (row["actor"], row["outcome"], row["detail"]) == ("anonymous", "denied", {"status": 401})


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_wrong_role_is_403_and_audited(admin_stack: AdminStack, name: str) -> None:
    act, case = ACTIONS[name], CASES[name]
    low = _below(act.role)
    if low is None:  # a viewer action: every valid token may read; a bad one is 401
        resp = httpx.get(
            admin_stack.url + admin_stack.cfg.admin.path_prefix + act.path,
            headers={"Authorization": "Bearer not-a-token"},
        )
        assert resp.status_code == 401
        assert _last_audit(admin_stack, name)["actor"] == "invalid-token"
        return
    key = uuid.uuid4().hex[:12]
    case.seed(admin_stack, key)
    resp = _call(admin_stack, name, low, case.params(admin_stack, key))
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"] == "forbidden"
    row = _last_audit(admin_stack, name)
    assert (row["actor"], row["role"], row["outcome"]) == (f"t-{low}", low, "denied")


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_right_role_acts_and_is_audited(admin_stack: AdminStack, name: str) -> None:
    if name.startswith("maintenance.") and not HAS_MAINTENANCE:
        pytest.skip("nura.health.maintenance (maintenance windows) is not in this tree yet")
    act, case = ACTIONS[name], CASES[name]
    key = uuid.uuid4().hex[:12]
    case.seed(admin_stack, key)
    resp = _call(admin_stack, name, act.role, case.params(admin_stack, key))
    assert resp.status_code == 200, resp.text
    assert case.check(admin_stack, key, resp.json()) in (None, True)  # None: it asserted itself
    row = _last_audit(admin_stack, name)
    assert (row["actor"], row["role"], row["outcome"]) == (f"t-{act.role}", act.role, "ok")
    for value in admin_stack.tokens.values():  # no token anywhere in the log
        assert value not in str(audit.entries(admin_stack.engine, limit=1000))


def test_a_higher_role_may_do_what_a_lower_one_may(admin_stack: AdminStack) -> None:
    _open_breaker(admin_stack, "")
    resp = _call(admin_stack, "breakers.reset", "admin", {"service": "confluence"})
    assert resp.status_code == 200 and _breaker_state(admin_stack) == "closed"


def test_bad_parameters_are_400_and_audited_invalid(admin_stack: AdminStack) -> None:
    resp = _call(admin_stack, "budgets.set", "admin", {"scope": "x", "daily_usd": "-1"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_parameters"
    assert _last_audit(admin_stack, "budgets.set")["outcome"] == "invalid"
    resp = httpx.post(
        admin_stack.url + "/admin/v1/breakers/reset",
        content=b"[1, 2]",
        headers=admin_stack.headers("operator"),
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_json"
    unknown = _call(admin_stack, "breakers.reset", "operator", {"service": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_service"
    extra = _call(admin_stack, "endpoints.disable", "operator", {"endpoint": "partner", "x": 1})
    assert extra.status_code == 400


def test_secret_rotation_never_echoes_the_value(admin_stack: AdminStack) -> None:
    key = uuid.uuid4().hex[:12]
    _rotate_block(admin_stack, key)
    bad = _call(
        admin_stack,
        "secrets.rotate",
        "admin",
        {"block": f"secret/nura-test-rotate-{key}", "field": "nope", "value": "hush-123"},
    )
    assert bad.status_code == 400 and "hush-123" not in bad.text
    missing = _call(
        admin_stack,
        "secrets.rotate",
        "admin",
        {"block": "secret/nura-test-absent", "field": "value", "value": "hush-123"},
    )
    assert missing.status_code == 404 and "hush-123" not in missing.text
    assert "hush-123" not in str(audit.entries(admin_stack.engine, limit=1000))

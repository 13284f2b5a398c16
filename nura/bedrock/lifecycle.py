"""Is each model of the chain live? From Bedrock's own catalogue, not from a hand-kept list.

    findings = chain_status(models, bedrock_client, region="us-east-1", layer=layer)
    [f for f in findings if f.skip]   # LEGACY, missing, profile-less: medium alerts

`bedrock:ListFoundationModels` gives every model offered in the region with its
`modelLifecycle.status` (ACTIVE / LEGACY; end-of-life models are no longer listed) and
`inferenceTypesSupported`; `bedrock:ListInferenceProfiles` the system-defined
cross-region profiles (`us.`, `eu.`, `global.`, ...) callable from that region. A chain
model is skipped (never called and failed on every invocation) when it is:
- missing: not offered in the region (retired, or never there) - or its profile is not;
- legacy: still served, but on its way to end of life;
- on_demand_unsupported: offered only through inference profiles, configured by its bare id.
A catalogue that cannot be read (no permission, network) skips nothing: the chain's own
error handling still applies, and the finding says why (status `unknown`, severity low).

`nura bootstrap` prints the findings (`nura.bedrock.chain_check`); the health monitor
reads `chain_status` / `configured_chain_status` (the lead wires it in); the invoker
(`LifecycleGate`) checks at most every `lifecycle_ttl_seconds`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nura.config.sections.bedrock import base_model_id

logger = logging.getLogger("nura.bedrock.lifecycle")
ALERT_EVENT = "nura.bedrock.model_lifecycle"


@dataclass(frozen=True)
class Finding:
    """What Bedrock's catalogue says about one chain model."""

    model_id: str
    status: str  # ok | legacy | missing | on_demand_unsupported | unknown
    detail: str = ""

    @property
    def skip(self) -> bool:
        return self.status in ("legacy", "missing", "on_demand_unsupported")

    @property
    def severity(self) -> str:
        return "medium" if self.skip else ("low" if self.status == "unknown" else "info")


def _call(layer: Any, operation: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    if layer is None:
        return fn(**kwargs)
    # Control-plane reads go through the call layer as the `bedrock` service (limits,
    # records); never a fallback - an invented catalogue would hide a retired model.
    return layer.call("bedrock", operation, fn, retries=0, **kwargs).value


def read_catalog(client: Any, layer: Any = None) -> tuple[dict[str, Any], set[str]]:
    """({model id: summary}, {active system-defined profile ids}) of the client's region."""
    listed = _call(layer, "ListFoundationModels", client.list_foundation_models)
    models = {m["modelId"]: m for m in listed.get("modelSummaries", [])}
    profiles: set[str] = set()
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"typeEquals": "SYSTEM_DEFINED", "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = _call(layer, "ListInferenceProfiles", client.list_inference_profiles, **kwargs)
        for p in page.get("inferenceProfileSummaries", []):
            if p.get("status", "ACTIVE") == "ACTIVE":
                profiles.add(p["inferenceProfileId"])
        token = page.get("nextToken")
        if not token:
            return models, profiles


def assess(model_id: str, models: dict[str, Any], profiles: set[str], region: str) -> Finding:
    base = base_model_id(model_id)
    summary = models.get(base)
    if summary is None:
        return Finding(
            model_id, "missing", f"{base} is not offered in {region} (retired or unavailable)"
        )
    status = str((summary.get("modelLifecycle") or {}).get("status", "ACTIVE"))
    if status != "ACTIVE":
        return Finding(model_id, "legacy", f"{base} is {status} in {region}: migrate off it")
    if model_id != base:
        if model_id not in profiles:
            return Finding(
                model_id, "missing", f"inference profile {model_id} is not offered in {region}"
            )
    elif "ON_DEMAND" not in (summary.get("inferenceTypesSupported") or []):
        return Finding(
            model_id,
            "on_demand_unsupported",
            f"{base} takes no on-demand calls in {region}: use an inference profile "
            "(us./eu./global.) id",
        )
    return Finding(model_id, "ok")


def chain_status(
    models: Iterable[str], client: Any, *, region: str, layer: Any = None
) -> list[Finding]:
    """One finding per model (structured, for bootstrap and the health monitor)."""
    wanted = list(dict.fromkeys(models))
    try:
        catalog, profiles = read_catalog(client, layer)
    except Exception as exc:  # a finding, not a failure: the catalogue is advisory
        why = f"model catalogue unreadable: {type(exc).__name__}: {exc}"[:300]
        logger.warning("%s; not checking the chain's lifecycle", why)
        return [Finding(m, "unknown", why) for m in wanted]
    return [assess(m, catalog, profiles, region) for m in wanted]


def alert(finding: Finding, region: str) -> None:
    """A medium alert for a skipped model (once per scope of `dedupe_key`), and the log."""
    logger.warning(
        "bedrock model %s skipped: %s (%s)", finding.model_id, finding.status, finding.detail
    )
    from nura.notify.dispatch import notify

    try:
        notify(
            f"Bedrock model {finding.model_id} is {finding.status.replace('_', ' ')}",
            f"{finding.detail}. The chain skips it until the configuration changes.",
            "medium",
            event=ALERT_EVENT,
            details={"model_id": finding.model_id, "status": finding.status, "region": region},
            dedupe_key=f"bedrock-lifecycle:{region}:{finding.model_id}:{finding.status}",
        )
    except Exception:  # the skip itself stands; a failed alert is logged
        logger.exception("lifecycle alert for %s could not be delivered", finding.model_id)


class LifecycleGate:
    """The invoker's view: which models to skip, refreshed at most every `ttl` seconds."""

    def __init__(
        self,
        client: Any,
        *,
        region: str,
        ttl: float,
        layer: Any = None,
        clock: Callable[[], float] = time.monotonic,
        on_skip: Callable[[Finding, str], None] = alert,
    ) -> None:
        self.client, self.region, self.ttl, self.layer = client, region, ttl, layer
        self.clock, self.on_skip = clock, on_skip
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[float, Finding]] = {}

    def skips(self, models: Iterable[str]) -> dict[str, Finding]:
        """{model: finding} for the models to skip now."""
        wanted = list(dict.fromkeys(models))
        now = self.clock()
        with self._lock:
            stale = [m for m in wanted if now - self._checked.get(m, (-1e18, None))[0] >= self.ttl]
            if stale:
                for finding in chain_status(
                    stale, self.client, region=self.region, layer=self.layer
                ):
                    self._checked[finding.model_id] = (now, finding)
                    if finding.skip:
                        self.on_skip(finding, self.region)
            found = {m: self._checked[m][1] for m in wanted}
        return {m: f for m, f in found.items() if f.skip}

"""The configured chain's lifecycle findings, for `nura bootstrap` and the health monitor.

    from nura.bedrock.chain_check import configured_chain_status
    [f for f in configured_chain_status() if f.skip]   # each: model_id, status, detail

Kept apart from `nura.bedrock.lifecycle` (which the invoker imports) because it needs the
process's invoker: its region, credentials and call layer.
"""

from __future__ import annotations

from nura.bedrock.invoke import get_invoker
from nura.bedrock.lifecycle import Finding, alert, chain_status


def configured_chain_status() -> list[Finding]:
    """`chain_status` of this process's configured chain, region and credentials (for the
    health monitor); [] when `lifecycle_check` is off."""
    invoker = get_invoker()
    gate = invoker.lifecycle
    if gate is None:
        return []
    return chain_status(
        invoker.settings.models, gate.client, region=gate.region, layer=invoker.layer
    )


def bootstrap_lines() -> list[str]:
    """What `nura bootstrap` prints and the health monitor logs: each chain model that will
    be skipped, and why (each also raises its medium alert, deduplicated). Never fails."""
    try:
        findings = configured_chain_status()
    except Exception as exc:  # bootstrap goes on; the invoker checks again at call time
        return [f"bedrock model check: {type(exc).__name__}: {exc}"[:300]]
    lines = []
    region = ""
    for finding in findings:
        if finding.skip:
            region = region or get_invoker().region
            alert(finding, region)
            lines.append(f"bedrock model {finding.model_id}: {finding.status} ({finding.detail})")
    unknown = [f for f in findings if f.status == "unknown"]
    if unknown:
        lines.append(f"bedrock model check: {unknown[0].detail}")
    return lines

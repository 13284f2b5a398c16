"""Prefect flows, one module per flow; orchestration only. Run any with `python -m flows.<name>`.

Run that way from a terminal with no Prefect settings, a flow uses the stack `nura up` runs
(its Prefect server, config and store): attached here, before Prefect is imported.
"""

from nura.platform.attach import attach

attach()

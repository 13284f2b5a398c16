"""Prefect tasks, one module per external system: thin wrappers around `nura`'s functions.

Every call out of the process goes through the resilient call layer (`nura.core.layer`).
Importing this package (every flow does) sends the `nura.*` loggers' records of a run to
that run's logs in the Prefect UI.
"""

from nura.core.logs import install_run_log_handler

install_run_log_handler()

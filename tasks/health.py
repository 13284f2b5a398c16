"""Health monitoring: checks, SLA, alerts, artifacts and CloudWatch metrics.

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task

from nura.health import (
    alerts,
    checks,
    cloudwatch,
    config_watch,
    maintenance,
    report,
    security,
    sla,
)

run_health_checks = task(name="run-health-checks", retries=0)(checks.run_health_checks)
evaluate_sla = task(name="evaluate-sla", retries=0)(sla.evaluate_sla)
update_alerts = task(name="update-alerts", retries=0)(alerts.update_alerts)
update_security_alerts = task(name="update-security-alerts", retries=0)(
    security.update_security_alerts
)
deliver_alert = task(name="deliver-alert", retries=0)(alerts.deliver_alert)
maintenance_round = task(name="maintenance-round", retries=0)(maintenance.maintenance_round)
check_config_changes = task(name="check-config-changes", retries=0)(config_watch.check_config)
publish_artifacts = task(name="publish-health-artifacts", retries=0)(report.publish_artifacts)
put_health_metrics = task(name="put-health-metrics", retries=0)(cloudwatch.put_health_metrics)

__all__ = [
    "check_config_changes",
    "deliver_alert",
    "evaluate_sla",
    "maintenance_round",
    "publish_artifacts",
    "put_health_metrics",
    "run_health_checks",
    "update_alerts",
    "update_security_alerts",
]

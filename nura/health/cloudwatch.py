"""CloudWatch: health metrics (`put_metric_data`) and the alert audit trail (CloudWatch Logs).

    put_health_metrics.fn(report)   # namespace: external_services.aws.cloudwatch.namespace

Metrics, dimension `Service`: Status (0 healthy, 1 degraded, 2 unhealthy), LatencyP50/P95/
P99 (Milliseconds), ErrorRate, Availability, FallbackRate (Percent), plus `OverallStatus`
without dimension. Batches of at most 500 data points per call (the API's limit is 1000).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from nura import get_call_layer, get_config
from nura.core.aws_clients import aws_client
from nura.core.errors import ClientError

STATUS_VALUE = {"healthy": 0, "degraded": 1, "unhealthy": 2}
FIGURES = (
    ("p50_ms", "LatencyP50", "Milliseconds"),
    ("p95_ms", "LatencyP95", "Milliseconds"),
    ("p99_ms", "LatencyP99", "Milliseconds"),
    ("error_rate_pct", "ErrorRate", "Percent"),
    ("availability_pct", "Availability", "Percent"),
    ("fallback_rate_pct", "FallbackRate", "Percent"),
)
BATCH = 500


def metric_data(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """CloudWatch data points for one report (services whose status is known)."""
    ts = report["ts"]
    points: list[dict[str, Any]] = []
    for svc in report["services"]:
        if svc["status"] not in STATUS_VALUE:
            continue
        dims = [{"Name": "Service", "Value": svc["service"]}]
        points.append(
            {
                "MetricName": "Status",
                "Dimensions": dims,
                "Value": STATUS_VALUE[svc["status"]],
                "Unit": "None",
                "Timestamp": ts,
            }
        )
        for key, name, unit in FIGURES:
            if svc.get(key) is not None:
                points.append(
                    {
                        "MetricName": name,
                        "Dimensions": dims,
                        "Value": float(svc[key]),
                        "Unit": unit,
                        "Timestamp": ts,
                    }
                )
    if report["overall"] in STATUS_VALUE:
        points.append(
            {
                "MetricName": "OverallStatus",
                "Value": STATUS_VALUE[report["overall"]],
                "Unit": "None",
                "Timestamp": ts,
            }
        )
    return points


def publish_metrics(report: Mapping[str, Any]) -> int:
    """Send the report's data points through the call layer; returns how many were sent."""
    cfg = get_config()
    namespace = cfg.external_services.aws.cloudwatch.namespace
    client = aws_client("cloudwatch")
    layer = get_call_layer()
    points = metric_data(report)
    for start in range(0, len(points), BATCH):
        layer.call(
            "cloudwatch",
            "put_metric_data",
            client.put_metric_data,
            Namespace=namespace,
            MetricData=points[start : start + BATCH],
        )
    return len(points)


def put_health_metrics(report: dict[str, Any]) -> int:
    """The report's figures to CloudWatch (namespace from config)."""
    return publish_metrics(report)


def put_audit_log(group: str, record: Mapping[str, Any], stream: str = "health-alerts") -> None:
    """Append one JSON audit record to CloudWatch Logs (group and stream created if missing)."""
    client = aws_client("logs")
    layer = get_call_layer()
    steps: tuple[tuple[str, Any, dict[str, str]], ...] = (
        ("create_log_group", client.create_log_group, {"logGroupName": group}),
        (
            "create_log_stream",
            client.create_log_stream,
            {"logGroupName": group, "logStreamName": stream},
        ),
    )
    for op, fn, kwargs in steps:
        try:
            layer.call("cloudwatch", op, fn, retries=0, **kwargs)  # type: ignore[arg-type]
        except ClientError as exc:  # the call layer's, carrying AWS's error code
            if exc.code != "ResourceAlreadyExistsException":
                raise
    layer.call(
        "cloudwatch",
        "put_log_events",
        client.put_log_events,
        logGroupName=group,
        logStreamName=stream,
        logEvents=[
            {"timestamp": int(time.time() * 1000), "message": json.dumps(record, default=str)}
        ],
    )

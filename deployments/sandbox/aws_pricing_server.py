"""A local AWS Price List Service (`pricing`): GetProducts for the Bedrock service codes.

Speaks the service's JSON 1.1 protocol (`POST /`, `X-Amz-Target:
AWSPriceListService.GetProducts`), as documented in AWS's Price List API reference: the
answer is `{"FormatVersion": "aws_v1", "PriceList": [<one JSON *string* per product>],
"NextToken"}`, each product `{"product": {"sku", "productFamily", "attributes": {...}},
"serviceCode", "terms": {"OnDemand": {"<sku>.<offer>": {"effectiveDate", "priceDimensions":
{"<rate code>": {"unit", "description", "pricePerUnit": {"USD": "..."}}}}}},
"publicationDate"}`. Filters (`TERM_MATCH` on an attribute, e.g. `regionCode`) and
paging (`MaxResults`, `NextToken`) behave as documented; an unknown service code is a
`NotFoundException`.

Products are built from `ROWS` (model display name, region, usage type suffix, price per
1K tokens) in the shapes the Price List publishes for Bedrock: attribute `model` (service
code AmazonBedrock) or `servicename` "... (Amazon Bedrock Edition)" (third-party models,
AmazonBedrockFoundationModels), `usagetype` "<REGION>-<Model>-input-tokens[-global]",
`inferenceType`, `feature` "On-demand Inference" (and batch / cache rows a reader must skip).

    python -m deployments.sandbox.aws_pricing_server --port 8703
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from deployments.sandbox.base import JsonHandler, LocalServer, serve_main

REGION_CODES = {"us-east-1": "USE1", "us-west-2": "USW2", "eu-west-1": "EU"}
LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
}
EFFECTIVE = "2026-11-01T00:00:00Z"

# (service code, display name, region, usage suffix, USD per 1K tokens, feature)
ROWS: list[tuple[str, str, str, str, str, str]] = [
    ("AmazonBedrock", "Nova Pro", "us-east-1", "input-tokens", "0.0008", "On-demand Inference"),
    ("AmazonBedrock", "Nova Pro", "us-east-1", "output-tokens", "0.0032", "On-demand Inference"),
    ("AmazonBedrock", "Nova Pro", "us-east-1", "input-tokens", "0.0004", "Batch Inference"),
    ("AmazonBedrock", "Nova Lite", "us-east-1", "input-tokens", "0.00006", "On-demand Inference"),
    ("AmazonBedrock", "Nova Lite", "us-east-1", "output-tokens", "0.00024", "On-demand Inference"),
    (
        "AmazonBedrockFoundationModels",
        "Claude Haiku 4.5",
        "us-east-1",
        "input-tokens",
        "0.0011",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Haiku 4.5",
        "us-east-1",
        "output-tokens",
        "0.0055",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Haiku 4.5",
        "us-east-1",
        "input-tokens-global",
        "0.001",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Haiku 4.5",
        "us-east-1",
        "output-tokens-global",
        "0.005",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Haiku 4.5",
        "us-east-1",
        "cache-read-input-tokens",
        "0.00011",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Sonnet 4.6",
        "us-east-1",
        "input-tokens",
        "0.0033",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Sonnet 4.6",
        "us-east-1",
        "output-tokens",
        "0.0165",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Sonnet 4.6",
        "us-east-1",
        "input-tokens-global",
        "0.003",
        "On-demand Inference",
    ),
    (
        "AmazonBedrockFoundationModels",
        "Claude Sonnet 4.6",
        "us-east-1",
        "output-tokens-global",
        "0.015",
        "On-demand Inference",
    ),
    ("AmazonBedrock", "Nova Pro", "eu-west-1", "input-tokens", "0.00105", "On-demand Inference"),
    ("AmazonBedrock", "Nova Pro", "eu-west-1", "output-tokens", "0.0042", "On-demand Inference"),
]


def product(row: tuple[str, str, str, str, str, str], effective: str) -> dict[str, Any]:
    code, name, region, suffix, price, feature = row
    compact = name.replace(" ", "").replace(".", "")
    sku = uuid.uuid5(uuid.NAMESPACE_URL, "|".join(row)).hex[:16].upper()
    attributes = {
        "servicecode": code,
        "location": LOCATIONS[region],
        "locationType": "AWS Region",
        "regionCode": region,
        "usagetype": f"{REGION_CODES[region]}-{compact}-{suffix}"
        + ("-batch" if feature.startswith("Batch") else ""),
        "operation": "Usage",
        "feature": feature,
        "inferenceType": suffix.replace("-", " "),
    }
    if code == "AmazonBedrock":
        attributes["model"] = name
        attributes["provider"] = "Amazon"
    else:
        attributes["servicename"] = f"{name} (Amazon Bedrock Edition)"
    direction = "input" if "input" in suffix else "output"
    term = f"{sku}.JRTCKXETXF"
    return {
        "product": {"productFamily": "Amazon Bedrock", "attributes": attributes, "sku": sku},
        "serviceCode": code,
        "terms": {
            "OnDemand": {
                term: {
                    "priceDimensions": {
                        f"{term}.6YS6EN2CT7": {
                            "unit": "1K tokens",
                            "endRange": "Inf",
                            "description": f"${price} per 1K {direction} tokens for {name} "
                            f"in {LOCATIONS[region]}",
                            "appliesTo": [],
                            "rateCode": f"{term}.6YS6EN2CT7",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": price},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": effective,
                    "offerTermCode": "JRTCKXETXF",
                    "termAttributes": {},
                }
            }
        },
        "version": "20261101000000",
        "publicationDate": effective,
    }


class PricingStandIn(LocalServer):
    """`.start()`, `.url`, `.stop()`; `.rows` / `.effective` can be changed by a test."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.Lock()
        self.rows = list(ROWS)
        self.effective = EFFECTIVE
        self.requests = 0
        super().__init__((host, port), _Handler)

    def products(self, service_code: str, filters: list[dict[str, str]]) -> list[str]:
        with self.lock:
            rows, effective = list(self.rows), self.effective
        out = []
        for row in rows:
            if row[0] != service_code:
                continue
            item = product(row, effective)
            attributes = item["product"]["attributes"]
            if all(_matches(attributes, f) for f in filters):
                out.append(json.dumps(item))
        return out


def _matches(attributes: dict[str, str], flt: dict[str, str]) -> bool:
    value = attributes.get(flt.get("Field", ""))
    kind = flt.get("Type", "TERM_MATCH")
    if kind in ("TERM_MATCH", "EQUALS"):
        return value is not None and value.lower() == str(flt.get("Value", "")).lower()
    if kind == "CONTAINS":
        return value is not None and str(flt.get("Value", "")).lower() in value.lower()
    return True


class _Handler(JsonHandler):
    server: PricingStandIn
    content_type = "application/x-amz-json-1.1"

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"__type": code, "Message": message})

    def do_POST(self) -> None:
        raw = self._read_body()
        target = self.headers.get("X-Amz-Target", "")
        with self.server.lock:
            self.server.requests += 1
        if target != "AWSPriceListService.GetProducts":
            return self._error(400, "InvalidParameterException", f"unsupported target {target}")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._error(400, "InvalidParameterException", "body is not JSON")
        code = body.get("ServiceCode")
        if code not in {row[0] for row in ROWS}:
            return self._error(400, "NotFoundException", f"service code {code!r} not found")
        items = self.server.products(code, body.get("Filters") or [])
        start = int(body.get("NextToken") or 0)
        size = int(body.get("MaxResults") or 100)
        page: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": items[start : start + size]}
        if start + size < len(items):
            page["NextToken"] = str(start + size)
        return self._send(200, page)


def main() -> None:
    serve_main(
        __doc__ or "",
        8703,
        lambda args: PricingStandIn(args.host, args.port),
        lambda server: f"AWS Price List stand-in on {server.url}",
    )


if __name__ == "__main__":
    main()

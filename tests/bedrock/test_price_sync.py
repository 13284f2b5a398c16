"""Prices from AWS's Price List API (GetProducts) through a stand-in speaking its protocol."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from decimal import Decimal

import boto3
import pytest
from botocore.config import Config
from typer.testing import CliRunner

from deployments.sandbox.aws_pricing_server import PricingStandIn
from nura.bedrock.prices import PriceBook, sync_prices
from nura.config.sections.bedrock import BedrockSettings
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger

HAIKU = "anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-pro-v1:0"
NAMES = BedrockSettings().price_list_names


@pytest.fixture
def pricing() -> Iterator[PricingStandIn]:
    server = PricingStandIn().start()
    try:
        yield server
    finally:
        server.stop()


def client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "pricing",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="y",  # noqa: S106 - the stand-in checks no signature
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_standin_answers_like_the_price_list_api(pricing: PricingStandIn) -> None:
    page = client(pricing.url).get_products(
        ServiceCode="AmazonBedrock",
        Filters=[{"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"}],
        FormatVersion="aws_v1",
        MaxResults=2,
    )
    assert page["FormatVersion"] == "aws_v1" and page["NextToken"]
    item = json.loads(page["PriceList"][0])  # a JSON string per product, as documented
    assert item["product"]["attributes"]["regionCode"] == "us-east-1"
    (term,) = item["terms"]["OnDemand"].values()
    (dim,) = term["priceDimensions"].values()
    assert set(dim["pricePerUnit"]) == {"USD"} and term["effectiveDate"]
    with pytest.raises(client(pricing.url).exceptions.NotFoundException):
        client(pricing.url).get_products(ServiceCode="AmazonNothing")


def test_sync_keeps_on_demand_text_prices_with_dates(pricing: PricingStandIn, store_url) -> None:  # type: ignore[no-untyped-def]
    ledger = CostLedger(get_engine(store_url))
    rows = {r["key"]: r for r in sync_prices(client(pricing.url), ledger, "us-east-1", NAMES)}
    assert rows[f"global.{HAIKU}"]["input_per_1k"] == "0.001"  # the global rate
    assert rows[f"us-east-1/{HAIKU}"]["output_per_1k"] == "0.0055"  # in-region rate
    assert rows[f"us-east-1/{NOVA}"]["input_per_1k"] == "0.0008"  # not the batch 0.0004
    assert rows[f"us-east-1/{NOVA}"]["effective"] == "2026-11-01"
    assert f"eu-west-1/{NOVA}" not in rows  # another region's product was filtered out
    assert {r["key"] for r in ledger.stored_prices()} == set(rows)


def test_price_book_prefers_synced_prices_and_warns_when_old(
    pricing: PricingStandIn, store_url, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    ledger = CostLedger(get_engine(store_url))
    pricing.rows = [r if r[4] != "0.0011" else (*r[:4], "0.0012", r[5]) for r in pricing.rows]
    sync_prices(client(pricing.url), ledger, "us-east-1", NAMES)
    book = PriceBook(BedrockSettings(), ledger, today=lambda: dt.date(2026, 12, 7))
    us = book.price_for(f"us.{HAIKU}", "us-east-1")  # geo profile: the source region's rate
    assert (
        us is not None and us.input_per_1k == Decimal("0.0012") and "price list" in str(us.source)
    )
    glob = book.price_for(f"global.{HAIKU}", "us-east-1")
    assert glob is not None and glob.input_per_1k == Decimal("0.001")
    # Not synced: the shipped, dated fallback.
    micro = book.price_for("amazon.nova-micro-v1:0", "us-east-1")
    assert micro is not None and micro.source and "shipped" in micro.source
    caplog.set_level(logging.WARNING, logger="nura.bedrock.prices")
    late = PriceBook(BedrockSettings(), ledger, today=lambda: dt.date(2027, 6, 1))
    late.price_for("amazon.nova-micro-v1:0", "us-east-1")
    late.price_for("amazon.nova-micro-v1:0", "us-east-1")
    warnings = [r for r in caplog.records if "days old" in r.getMessage()]
    assert len(warnings) == 1 and "nura bedrock prices sync" in warnings[0].getMessage()


@pytest.mark.integration
def test_cli_prices_sync(prefect_server, nura_config, pricing: PricingStandIn) -> None:  # type: ignore[no-untyped-def]
    from nura.cli.main import app

    nura_config({"external_services": {"aws": {"bedrock": {"pricing_endpoint_url": pricing.url}}}})
    out = CliRunner().invoke(app, ["bedrock", "prices", "sync", "--json"])
    assert out.exit_code == 0, out.output
    keys = {r["key"] for r in json.loads(out.output)}
    assert f"global.{HAIKU}" in keys and pricing.requests >= 2  # both service codes

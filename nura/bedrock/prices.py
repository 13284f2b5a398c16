"""Model prices from AWS's Price List API, stored with their effective date.

    nura bedrock prices sync            # fetch, store, print what changed
    book = PriceBook(settings, ledger)  # synced prices first, the config's as fallback
    book.price_for("global.anthropic.claude-haiku-4-5-20251001-v1:0", "us-east-1")

`pricing:GetProducts` (service codes `AmazonBedrock` for Amazon's models and
`AmazonBedrockFoundationModels` for third-party ones, filtered on `regionCode`) returns
one JSON document per product: its attributes (`model` or `servicename`, `usagetype`,
`feature`) and its on-demand terms (`pricePerUnit.USD` per `unit`, `effectiveDate`). A
product is kept when it is on-demand text input or output for a model named in
`price_list_names`; batch, cache, provisioned and long-context rows are not per-call
prices and are skipped. A usage type marked `global` prices the model's `global.`
profile (`global.<id>`); the others price the region (`<region>/<id>`, which `us.`/`eu.`
profiles of that source region use too). Units of 1K or 1M tokens are read as such.

The shipped prices stay as the dated fallback; `price_for` warns (once per key) when
the price in use is older than `price_max_age_days`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from nura.config.sections.bedrock import PRICES_AS_OF, BedrockSettings, ModelPrice
from nura.core.stores.ledger import CostLedger

logger = logging.getLogger("nura.bedrock.prices")
SERVICE_CODES = ("AmazonBedrock", "AmazonBedrockFoundationModels")
_NOT_PER_CALL = ("batch", "cache", "provisioned", "long-context", "longcontext", "priority", "flex")
_EDITION = " (Amazon Bedrock Edition)"


def _per_1k(usd: Decimal, unit: str, description: str) -> Decimal | None:
    text = f"{unit} {description}".lower()
    if "1m" in text.replace(" ", "") or "million" in text:
        return usd / 1000
    if "1k" in text.replace(" ", "") or "thousand" in text:
        return usd
    return None  # a unit we do not understand is not guessed


def parse_products(
    items: Iterable[str | dict[str, Any]], region: str, names: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """{price key: {"input": Decimal, "output": Decimal, "effective": date, "source"}}."""
    found: dict[str, dict[str, Any]] = {}
    for raw in items:
        item = json.loads(raw) if isinstance(raw, str) else raw
        attrs = item.get("product", {}).get("attributes", {})
        name = attrs.get("model") or str(attrs.get("servicename", "")).removesuffix(_EDITION)
        model_id = names.get(name)
        if model_id is None:
            continue
        usage = str(attrs.get("usagetype", "")).lower()
        feature = str(attrs.get("feature", "")).lower()
        if any(w in usage for w in _NOT_PER_CALL) or (feature and "on-demand" not in feature):
            continue
        if "input-tokens" in usage:
            direction = "input"
        elif "output-tokens" in usage:
            direction = "output"
        else:
            continue
        key = f"global.{model_id}" if "global" in usage.split("-") else f"{region}/{model_id}"
        for term in item.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = Decimal(str(dim.get("pricePerUnit", {}).get("USD", "")) or "NaN")
                if usd.is_nan():
                    continue
                rate = _per_1k(usd, str(dim.get("unit", "")), str(dim.get("description", "")))
                if rate is None:
                    continue
                entry = found.setdefault(key, {"source": f"aws price list {item['serviceCode']}"})
                entry[direction] = rate.normalize()
                effective = str(term.get("effectiveDate", ""))[:10]
                if effective:
                    day = dt.date.fromisoformat(effective)
                    entry["effective"] = max(day, entry.get("effective", day))
    return {k: v for k, v in found.items() if "input" in v and "output" in v}


def fetch_prices(
    client: Any,
    region: str,
    names: dict[str, str],
    *,
    layer: Any = None,
    service_codes: Iterable[str] = SERVICE_CODES,
) -> dict[str, dict[str, Any]]:
    """Read every page of GetProducts for `region` and parse it (see `parse_products`)."""
    items: list[str] = []
    for code in service_codes:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "ServiceCode": code,
                "Filters": [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}],
                "FormatVersion": "aws_v1",
                "MaxResults": 100,
            }
            if token:
                kwargs["NextToken"] = token
            if layer is None:
                page = client.get_products(**kwargs)
            else:
                page = layer.call("pricing", "GetProducts", client.get_products, **kwargs).value
            items.extend(page.get("PriceList", []))
            token = page.get("NextToken")
            if not token:
                break
    return parse_products(items, region, names)


def sync_prices(
    client: Any, ledger: CostLedger, region: str, names: dict[str, str], *, layer: Any = None
) -> list[dict[str, Any]]:
    """Fetch and store; the rows stored (key, input/output per 1K, source, effective)."""
    parsed = fetch_prices(client, region, names, layer=layer)
    rows = [
        {
            "key": key,
            "input_per_1k": str(value["input"]),
            "output_per_1k": str(value["output"]),
            "source": f"{value['source']} {region}",
            "effective": value["effective"].isoformat() if value.get("effective") else None,
        }
        for key, value in sorted(parsed.items())
    ]
    ledger.save_prices(rows)
    return rows


class PriceBook:
    """Synced prices (the store) before the configured ones; re-read every `ttl` seconds."""

    def __init__(
        self,
        settings: BedrockSettings,
        ledger: CostLedger | None,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
    ) -> None:
        self.settings, self.ledger, self.ttl, self.clock, self.today = (
            settings,
            ledger,
            ttl,
            clock,
            today,
        )
        self._lock = threading.Lock()
        self._loaded = -1e18
        self._synced: dict[str, ModelPrice] = {}
        self._warned: set[str] = set()
        self._aged: dict[str, float] = {}  # model -> when its price's age was last checked

    def _stored(self) -> dict[str, ModelPrice]:
        now = self.clock()
        with self._lock:
            if self.ledger is not None and now - self._loaded >= self.ttl:
                try:
                    rows = self.ledger.stored_prices()
                except Exception:  # the configured prices still apply
                    logger.exception("could not read synced Bedrock prices")
                    rows = []
                self._synced = {
                    r["key"]: ModelPrice(
                        input_per_1k=Decimal(r["input_per_1k"]),
                        output_per_1k=Decimal(r["output_per_1k"]),
                        source=r["source"],
                        effective=dt.date.fromisoformat(r["effective"]) if r["effective"] else None,
                    )
                    for r in rows
                }
                self._loaded = now
            return self._synced

    def price_for(self, model_id: str, region: str | None) -> ModelPrice | None:
        synced = self._stored()
        price = None
        if synced:
            view = BedrockSettings.model_construct(prices=synced)
            price = BedrockSettings.price_for(view, model_id, region)
        price = price or self.settings.price_for(model_id, region)
        if price is not None:
            self._check_age(model_id, price)
        return price

    def _check_age(self, model_id: str, price: ModelPrice) -> None:
        now = self.clock()
        if model_id in self._warned or now - self._aged.get(model_id, -1e18) < 3600:
            return  # once an hour per model is plenty: this runs on every call
        self._aged[model_id] = now
        as_of = price.effective or PRICES_AS_OF
        age = (self.today() - as_of).days
        if age > self.settings.price_max_age_days:
            self._warned.add(model_id)
            logger.warning(
                "the price of %s is %d days old (from %s, %s); run `nura bedrock prices sync`",
                model_id,
                age,
                price.source or "the shipped table",
                as_of.isoformat(),
            )

"""`external_services.aws.bedrock` model chain, prices, budgets, limits, tracing.

Prices are keyed by the *full* model id (`anthropic.claude-haiku-4-5-20251001-v1:0`), a
cross-region inference profile id (`global.anthropic...`) or `region/model-id` for a
regional price. Resolution order for a call in region R to model M (see `price_for`):
`R/M`, `M`, then - when M is an inference profile `geo.base` - `R/base`, `base`. So a
`global.` profile takes its own (global) rate where one is listed, and `us.`/`eu.`/...
profiles the source region's rate of the base model, as AWS bills them.
A configured chain model without any price (regional ones included) is an error at load
(never a silent default); an ad-hoc model without a price is refused before the call
unless `allow_unpriced_models` is on, in which case it runs with a visible `cost_unknown`.

The shipped prices are a dated fallback (`PRICES_AS_OF`, from AWS's Bedrock pricing page);
`nura bedrock prices sync` replaces them with the Price List API's. Prices older than
`price_max_age_days` are warned about.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from nura.config.sections.common import Section, ServiceSettings

# Cross-region inference profile prefixes (Bedrock "system-defined inference profiles").
PROFILE_PREFIXES = ("us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")
GLOBAL_SCOPE = "global"  # the budget scope that counts every call
# When the shipped prices were read from https://aws.amazon.com/bedrock/pricing/.
PRICES_AS_OF = dt.date(2026, 12, 1)
PRICES_SOURCE = "aws.amazon.com/bedrock/pricing (shipped fallback)"


class ModelPrice(Section):
    """USD per 1,000 tokens. Decimals, so costs are exact (tokens x price / 1000)."""

    input_per_1k: Decimal = Field(ge=0, max_digits=18, decimal_places=9)
    output_per_1k: Decimal = Field(ge=0, max_digits=18, decimal_places=9)
    # Where the price comes from and since when it applies (None: the shipped fallback).
    source: str | None = None
    effective: dt.date | None = None


class ModelLimits(Section):
    """Per-model limits. Unset rates take the bedrock service's `rate_limit_per_minute`."""

    # Upper bounds keep the Prefect limit (burst x 100 slots) within its integer column.
    requests_per_minute: int | None = Field(default=None, gt=0, le=10_000_000)
    tokens_per_minute: int | None = Field(default=None, gt=0, le=100_000_000)
    max_input_tokens: int = Field(default=200_000, gt=0)
    max_output_tokens: int = Field(default=4096, gt=0)
    # Output tokens count this many times against the tokens-per-minute quota (AWS's
    # "burndown rate": 5 for Claude 3.7 and later, 1 for the others).
    output_burndown: int = Field(default=1, ge=1, le=20)
    # False: the model takes no `system` prompt (AWS's supported-features table); the
    # system text is folded into the first user turn instead.
    system_prompt: bool = True


class Budget(Section):
    """Spend ceilings of one scope in USD; None means no ceiling for that period."""

    daily_usd: Decimal | None = Field(default=None, gt=0)
    monthly_usd: Decimal | None = Field(default=None, gt=0)


class BudgetSettings(Section):
    alert_percent: float = Field(default=80.0, gt=0, lt=100)
    # False: crossing 100 % only alerts, it never blocks (e.g. a dev sandbox).
    enforce: bool = True
    # Scope name -> ceilings. `global` counts every call; other names count the calls
    # made with that `scope` parameter (a team, a product, a tenant).
    scopes: dict[str, Budget] = Field(default_factory=dict)


class LangSmithSettings(Section):
    """Tracing is on when `api_key` is set (empty, e.g. `${LANGSMITH_API_KEY:-}`, is off)."""

    api_key: SecretStr | None = None
    project: str = "nura-integrations"
    endpoint: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.api_key and self.api_key.get_secret_value())


def _seed_prices() -> dict[str, ModelPrice]:
    # USD per 1,000 tokens, on-demand, us-east-1 (PRICES_AS_OF). Claude 4.5+ costs 10 %
    # less through a `global.` profile than in-region or through a geo (`us.`) profile.
    table = {
        "anthropic.claude-sonnet-4-6": ("0.0033", "0.0165"),
        "global.anthropic.claude-sonnet-4-6": ("0.003", "0.015"),
        "anthropic.claude-sonnet-4-5-20250929-v1:0": ("0.0033", "0.0165"),
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0": ("0.003", "0.015"),
        "anthropic.claude-haiku-4-5-20251001-v1:0": ("0.0011", "0.0055"),
        "global.anthropic.claude-haiku-4-5-20251001-v1:0": ("0.001", "0.005"),
        "amazon.nova-pro-v1:0": ("0.0008", "0.0032"),
        "amazon.nova-lite-v1:0": ("0.00006", "0.00024"),
        "amazon.nova-micro-v1:0": ("0.000035", "0.00014"),
        # Embedding models (the knowledge base, nura.kb.embed): input tokens only.
        "amazon.titan-embed-text-v2:0": ("0.00002", "0"),
        "cohere.embed-english-v3": ("0.0001", "0"),
        "cohere.embed-multilingual-v3": ("0.0001", "0"),
    }
    return {
        k: ModelPrice(
            input_per_1k=Decimal(i),
            output_per_1k=Decimal(o),
            source=PRICES_SOURCE,
            effective=PRICES_AS_OF,
        )
        for k, (i, o) in table.items()
    }


def _seed_limits() -> dict[str, ModelLimits]:
    claude: dict[str, Any] = {"max_output_tokens": 64_000, "output_burndown": 5}
    return {
        "anthropic.claude-sonnet-4-6": ModelLimits(tokens_per_minute=200_000, **claude),
        "anthropic.claude-sonnet-4-5-20250929-v1:0": ModelLimits(
            tokens_per_minute=200_000, **claude
        ),
        "anthropic.claude-haiku-4-5-20251001-v1:0": ModelLimits(
            tokens_per_minute=400_000, **claude
        ),
        "amazon.nova-pro-v1:0": ModelLimits(
            tokens_per_minute=400_000, max_input_tokens=300_000, max_output_tokens=10_000
        ),
        "amazon.nova-lite-v1:0": ModelLimits(
            tokens_per_minute=400_000, max_input_tokens=300_000, max_output_tokens=10_000
        ),
        "amazon.nova-micro-v1:0": ModelLimits(
            tokens_per_minute=400_000, max_input_tokens=128_000, max_output_tokens=10_000
        ),
    }


def base_model_id(model_id: str) -> str:
    """`us.anthropic.x` -> `anthropic.x`; a plain id is returned unchanged."""
    for prefix in PROFILE_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix) :]
    return model_id


class BedrockSettings(ServiceSettings):
    models: list[str] = Field(
        default_factory=lambda: [
            "global.anthropic.claude-sonnet-4-6",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            "amazon.nova-pro-v1:0",
        ],
        min_length=1,
    )
    endpoint_url: str | None = None
    region: str | None = None  # None: external_services.aws.region
    # Name of a saved `nura-bedrock-settings` block (credentials); None = default chain.
    settings_block: str | None = None
    prices: dict[str, ModelPrice] = Field(default_factory=_seed_prices)
    allow_unpriced_models: bool = False
    model_limits: dict[str, ModelLimits] = Field(default_factory=_seed_limits)
    default_max_tokens: int = Field(default=512, gt=0)
    # How long a call may wait for its model's tokens-per-minute before the chain moves on.
    limit_wait_seconds: float = Field(default=2.0, ge=0)
    # Retries of the *last* model of a chain (the others fall through at once).
    last_model_retries: int | None = Field(default=None, ge=0, le=10)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    langsmith: LangSmithSettings = Field(default_factory=LangSmithSettings)
    # Read timeout of one model call: `timeout_seconds` + max_tokens / this rate (AWS
    # advises long timeouts for large outputs), rounded up to 10 s steps.
    output_tokens_per_second: float = Field(default=25.0, gt=0)
    # Check the chain against bedrock:ListFoundationModels / ListInferenceProfiles (cached
    # this long); LEGACY, missing or profile-less models are skipped with a medium alert.
    lifecycle_check: bool = True
    lifecycle_ttl_seconds: float = Field(default=3600.0, gt=0)
    # Warn when the prices in use are older than this.
    price_max_age_days: int = Field(default=120, gt=0)
    # `nura bedrock prices sync`: the Price List API's model names -> our model ids, and
    # its endpoint (empty: AWS's, api.pricing.us-east-1; the sandbox sets its stand-in).
    price_list_names: dict[str, str] = Field(
        default_factory=lambda: {
            "Claude Sonnet 4.6": "anthropic.claude-sonnet-4-6",
            "Claude Sonnet 4.5": "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "Claude Haiku 4.5": "anthropic.claude-haiku-4-5-20251001-v1:0",
            "Nova Pro": "amazon.nova-pro-v1:0",
            "Nova Lite": "amazon.nova-lite-v1:0",
            "Nova Micro": "amazon.nova-micro-v1:0",
        }
    )
    pricing_endpoint_url: str | None = None

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[str]) -> list[str]:
        if len(set(models)) != len(models):
            raise ValueError("models must not repeat")
        return models

    @model_validator(mode="after")
    def _chain_is_priced(self) -> Self:
        if not self.allow_unpriced_models:
            missing = [m for m in self.models if not self.has_price(m)]
            if missing:
                raise ValueError(
                    f"no price for {', '.join(missing)} in external_services.aws.bedrock.prices "
                    "(set allow_unpriced_models: true to run them with cost_unknown)"
                )
        return self

    def price_for(self, model_id: str, region: str | None) -> ModelPrice | None:
        """The price of `model_id` in `region`, or None when the table has none."""
        candidates = []
        base = base_model_id(model_id)
        for mid in dict.fromkeys((model_id, base)):
            if region:
                candidates.append(f"{region}/{mid}")
            candidates.append(mid)
        for key in candidates:
            price = self.prices.get(key)
            if price is not None:
                return price
        return None

    def has_price(self, model_id: str) -> bool:
        """Priced in some region (the region of a call is known only at call time)."""
        base = base_model_id(model_id)
        return self.price_for(model_id, None) is not None or any(
            k.endswith("/" + model_id) or k.endswith("/" + base) for k in self.prices
        )

    def read_timeout(self, max_tokens: int, base_seconds: float) -> float:
        """Read timeout for a call that may produce `max_tokens` tokens: the base plus the
        time to generate them, in steps of 10 s (few distinct clients, one per step)."""
        extra = round(max_tokens / self.output_tokens_per_second, 3)
        return base_seconds + 10.0 * math.ceil(extra / 10.0)

    def limits_for(self, model_id: str) -> ModelLimits:
        return (
            self.model_limits.get(model_id)
            or self.model_limits.get(base_model_id(model_id))
            or ModelLimits()
        )

    def is_known(self, model_id: str) -> bool:
        """Known = priced, or listed in limits / the chain (then possibly cost_unknown)."""
        base = base_model_id(model_id)
        return any(
            m in self.prices or m in self.model_limits or m in self.models for m in (model_id, base)
        ) or any(k.endswith("/" + model_id) or k.endswith("/" + base) for k in self.prices)

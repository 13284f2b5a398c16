"""`external_services.aws.bedrock` model chain, prices, budgets, limits, tracing.

Prices are keyed by the *full* model id (`anthropic.claude-3-haiku-20240307-v1:0`), a
cross-region inference profile id (`us.anthropic...`) or `region/model-id` for a regional
price. Resolution order for a call in region R to model M (see `price_for`):
`R/M`, `M`, then - when M is an inference profile `geo.base` - `R/base`, `base`.
A configured chain model without a price is an error at load (never a silent default);
an ad-hoc model without a price is refused before the call unless
`allow_unpriced_models` is on, in which case it runs with a visible `cost_unknown` flag.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from nura.config.sections.common import Section, ServiceSettings

# Cross-region inference profile prefixes (Bedrock "system-defined inference profiles").
PROFILE_PREFIXES = ("us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")
GLOBAL_SCOPE = "global"  # the budget scope that counts every call


class ModelPrice(Section):
    """USD per 1,000 tokens. Decimals, so costs are exact (tokens x price / 1000)."""

    input_per_1k: Decimal = Field(ge=0, max_digits=18, decimal_places=9)
    output_per_1k: Decimal = Field(ge=0, max_digits=18, decimal_places=9)


class ModelLimits(Section):
    """Per-model limits. Unset rates take the bedrock service's `rate_limit_per_minute`."""

    # Upper bounds keep the Prefect limit (burst x 100 slots) within its integer column.
    requests_per_minute: int | None = Field(default=None, gt=0, le=10_000_000)
    tokens_per_minute: int | None = Field(default=None, gt=0, le=100_000_000)
    max_input_tokens: int = Field(default=200_000, gt=0)
    max_output_tokens: int = Field(default=4096, gt=0)


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
    # The seed's figures (section 2), now under the ids Bedrock actually uses.
    table = {
        "anthropic.claude-3-sonnet-20240229-v1:0": ("0.003", "0.015"),
        "anthropic.claude-3-haiku-20240307-v1:0": ("0.00025", "0.00125"),
        "amazon.titan-text-lite-v1": ("0.0003", "0.0004"),
        "amazon.titan-text-express-v1": ("0.0008", "0.0016"),
    }
    return {
        k: ModelPrice(input_per_1k=Decimal(i), output_per_1k=Decimal(o))
        for k, (i, o) in table.items()
    }


def _seed_limits() -> dict[str, ModelLimits]:
    return {
        "anthropic.claude-3-sonnet-20240229-v1:0": ModelLimits(tokens_per_minute=200_000),
        "anthropic.claude-3-haiku-20240307-v1:0": ModelLimits(tokens_per_minute=400_000),
        "amazon.titan-text-lite-v1": ModelLimits(
            tokens_per_minute=300_000, max_input_tokens=4096, max_output_tokens=4096
        ),
        "amazon.titan-text-express-v1": ModelLimits(
            tokens_per_minute=300_000, max_input_tokens=8192, max_output_tokens=8192
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
            "anthropic.claude-3-sonnet-20240229-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "amazon.titan-text-express-v1",
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

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[str]) -> list[str]:
        if len(set(models)) != len(models):
            raise ValueError("models must not repeat")
        return models

    @model_validator(mode="after")
    def _chain_is_priced(self) -> Self:
        if not self.allow_unpriced_models:
            missing = [m for m in self.models if self.price_for(m, None) is None]
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

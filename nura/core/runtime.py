"""The process-wide call layer, built from the configuration on first use."""

from __future__ import annotations

import threading

from nura.config import IntegrationsConfig, load_config
from nura.core.adaptive import AdaptiveRates
from nura.core.breaker import CircuitBreakers
from nura.core.call_records import CallRecorder
from nura.core.http import set_tls_minimum
from nura.core.layer import CallLayer
from nura.core.ratelimit import PrefectSlotLeaser
from nura.core.stores.db import default_store_url, get_engine

_layer: CallLayer | None = None
_config: IntegrationsConfig | None = None
_lock = threading.Lock()


def get_config() -> IntegrationsConfig:
    """The configuration of this process (`NURA_CONFIG` or the packaged default)."""
    global _config
    with _lock:
        if _config is None:
            _config = load_config()
            set_tls_minimum(_config.platform.tls_min_version)  # every client built from now
        return _config


def store_url(cfg: IntegrationsConfig | None = None) -> str:
    cfg = cfg or get_config()
    return default_store_url(cfg.platform.state_dir, cfg.platform.store_url)


def get_call_layer() -> CallLayer:
    """The shared call layer: breakers and call records in the store, limits in Prefect."""
    global _layer
    cfg = get_config()
    with _lock:
        if _layer is None:
            engine = get_engine(store_url(cfg))
            _layer = CallLayer(
                cfg.policies(),
                breakers=CircuitBreakers(engine),
                limiter=PrefectSlotLeaser(),
                recorder=CallRecorder(engine),
                rates=AdaptiveRates(engine),
            )
        return _layer


def reset_runtime() -> None:
    """Forget the cached config and layer (tests; a config reload)."""
    global _layer, _config
    with _lock:
        if _layer is not None:
            _layer.close()  # its records are written and its thread stopped
        _layer = None
        _config = None

"""Durable stores shared across processes: one SQLAlchemy Core abstraction, two backends.

`sqlite:///path/to/file.db` is the embedded default; `postgresql+psycopg://...` is the
scale path. Every store module declares its tables on `metadata` and uses `get_engine`.
"""

from nura.core.stores.db import default_store_url, get_engine, metadata, reset_engines, utcnow_ts

__all__ = ["default_store_url", "get_engine", "metadata", "reset_engines", "utcnow_ts"]

"""Secret rotation: a new value into one `SecretStr` field of a saved Prefect block.

    rotate("secret/nura-admin-ops-1", "value", SecretStr(new_token))
    rotate("nura-confluence-credentials/prod", "api_token", SecretStr(new_token))

The block is loaded through Prefect, rebuilt with the new value (so its validators run)
and saved over the old document. The value never leaves the `SecretStr`: not in errors,
results or the audit row. Processes that cache the block pick it up at their TTL
(`BlockAuth`, the receiver's secret cache, the admin token cache).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr, ValidationError

from nura.admin.errors import AdminError


def _load(ref: str) -> Any:
    from prefect.blocks.core import Block
    from prefect.exceptions import ObjectNotFound

    import nura.platform.blocks  # noqa: F401 - registers Nura's block classes for Block.load

    try:
        return Block.load(ref)
    except ValueError as exc:  # Prefect wraps ObjectNotFound in a ValueError
        if isinstance(exc.__cause__, ObjectNotFound):
            raise AdminError(404, "unknown_block", f"no block {ref!r}") from None
        raise AdminError(400, "invalid_block", f"block {ref!r} could not be loaded") from None
    except KeyError:  # a block type this process has no class for
        raise AdminError(400, "invalid_block", f"block type of {ref!r} is not known") from None


def _is_secret_field(block: Any, name: str) -> bool:
    info = type(block).model_fields.get(name)
    return info is not None and "SecretStr" in str(info.annotation)


def rotate(ref: str, field: str, value: SecretStr) -> None:
    """Write `value` into `field` of block `ref` (`type-slug/name`)."""
    if not value.get_secret_value():
        raise AdminError(400, "invalid_parameters", "the new value is empty")
    block = _load(ref)
    if not _is_secret_field(block, field):
        raise AdminError(400, "not_a_secret_field", f"{ref} has no secret field {field!r}")
    data = {name: getattr(block, name) for name in type(block).model_fields}
    data[field] = value
    try:
        rebuilt = type(block).model_validate(data)
    except ValidationError as exc:  # only the failing field names: never the input values
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise AdminError(400, "invalid_value", f"{ref}: new value refused ({fields})") from None
    rebuilt.save(ref.split("/", 1)[1], overwrite=True)

"""LangSmith tracing of Bedrock invocations (only imported when settings enable it).

Absent settings cost nothing: `nura.bedrock.invoke` imports this module, and with it the
`langsmith` client, only when `langsmith.api_key` is set. A tracing failure is logged and
never fails the invocation it describes.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from nura.bedrock.models import InvocationRequest, InvocationResult
from nura.config.sections.bedrock import LangSmithSettings

logger = logging.getLogger("nura.bedrock.tracing")
_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def _client(settings: LangSmithSettings) -> Any:
    from langsmith import Client

    assert settings.api_key is not None
    key = (settings.api_key.get_secret_value(), settings.endpoint)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = Client(api_key=key[0], api_url=settings.endpoint)
            _clients[key] = client
        return client


def run_payload(request: InvocationRequest, result: InvocationResult) -> dict[str, Any]:
    """The LLM run LangSmith records: model, tokens, cost, outcome of each model tried."""
    end = datetime.now(UTC)
    return {
        "name": "bedrock-invoke",
        "run_type": "llm",
        "inputs": {
            "messages": [m.model_dump() for m in request.conversation()],
            "system": request.system,
            "model": result.model_id,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "conversation_id": result.conversation_id,
        },
        "outputs": {
            "text": result.text,
            "stop_reason": result.stop_reason,
            "usage_metadata": {
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "total_tokens": result.input_tokens + result.output_tokens,
            },
        },
        "start_time": end - timedelta(milliseconds=result.latency_ms),
        "end_time": end,
        "extra": {
            "metadata": {
                "ls_provider": "amazon_bedrock",
                "ls_model_name": result.model_id,
                "cost_usd": str(result.cost_usd),
                "cost_unknown": result.cost_unknown,
                "scope": result.scope,
                "invocation_id": result.invocation_id,
                "attempts": [a.model_dump() for a in result.attempts],
            }
        },
    }


def trace_invocation(
    settings: LangSmithSettings, request: InvocationRequest, result: InvocationResult
) -> None:
    try:
        _client(settings).create_run(project_name=settings.project, **run_payload(request, result))
    except Exception:
        logger.exception("LangSmith trace of invocation %s failed", result.invocation_id)

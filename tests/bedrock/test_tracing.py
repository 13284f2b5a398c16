"""LangSmith tracing: a real HTTP capture of what the langsmith client sends."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from nura.bedrock.models import InvocationRequest, InvocationResult, ModelAttempt
from nura.config.sections.bedrock import LangSmithSettings
from tests.bedrock.conftest import HAIKU


class _Capture(BaseHTTPRequestHandler):
    posts: list[tuple[str, bytes]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.command == "POST":
            _Capture.posts.append((self.path, body))
        data = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _answer


@pytest.fixture
def langsmith_endpoint() -> Iterator[str]:
    _Capture.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_invocation_is_traced_with_tokens_and_cost(langsmith_endpoint: str) -> None:
    from nura.bedrock.tracing import _client, trace_invocation

    settings = LangSmithSettings(api_key=SecretStr("ls-key"), endpoint=langsmith_endpoint)
    assert settings.enabled
    result = InvocationResult(
        text="an answer",
        stop_reason="end_turn",
        model_id=HAIKU,
        api="converse",
        input_tokens=12,
        output_tokens=34,
        latency_ms=5.0,
        cost_usd=Decimal("0.0000455"),
        attempts=[ModelAttempt(model_id=HAIKU, outcome="ok")],
        invocation_id="abc",
    )
    trace_invocation(settings, InvocationRequest(prompt="the question"), result)
    _client(settings).flush()
    runs = [json.loads(body) for path, body in _Capture.posts if path == "/runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["run_type"] == "llm" and run["inputs"]["messages"][0]["text"] == "the question"
    assert run["outputs"]["usage_metadata"] == {
        "input_tokens": 12,
        "output_tokens": 34,
        "total_tokens": 46,
    }
    assert run["extra"]["metadata"]["cost_usd"] == "0.0000455"
    assert "ls-key" not in json.dumps(run)


def test_absent_settings_cost_nothing() -> None:
    assert not LangSmithSettings().enabled
    assert not LangSmithSettings(api_key=SecretStr("")).enabled
    # Importing the invocation path does not import the langsmith client.
    code = (
        "import sys, nura.bedrock.invoke, flows.bedrock_invoke; print('langsmith' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""A local partner endpoint and Slack stand-in that records what it receives.

Webhook deliveries are verified with the `standardwebhooks` PyPI library (not our own
signing code), and deduplicated by `webhook-id` like a careful partner would: a repeated
id answers 200 and is counted as a duplicate, never accepted twice.

Routes:
  POST /hooks/{name}     a partner endpoint; verifies Standard Webhooks signatures with the
                         secret registered for {name} (and `X-Signature` when sent)
  POST /slack/{path...}  a Slack incoming webhook: records the JSON, answers `ok`
  POST /control          JSON script: {"fail_next": N, "fail_status": 503,
                         "retry_after": "1", "latency_ms": 0, "down": false,
                         "fail_first_percent": 20, "gone": false}
  GET  /received         accepted deliveries, duplicates, rejections, Slack messages
  POST /reset            clears script and records

    python -m deployments.sandbox.webhook_sink --port 8790
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlparse

from standardwebhooks import Webhook, WebhookVerificationError

from deployments.sandbox.base import Faults, JsonHandler, LocalServer, serve_main
from nura.platform.sandbox import SANDBOX_SECRET

# The sandbox target's key (see config/integrations.yaml); not a secret.


class _State(Faults):
    def reset(self) -> None:
        super().reset()
        self.gone = False
        self.fail_first_percent = 0.0
        self.accepted: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.attempts = 0
        self.seen_ids: set[str] = set()
        self.rejected: list[dict[str, Any]] = []
        self.slack: list[dict[str, Any]] = []


class WebhookSink(LocalServer):
    request_queue_size = 256

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, secrets: dict[str, str] | None = None
    ) -> None:
        self.state = _State()
        self.secrets = {"sandbox": SANDBOX_SECRET, **(secrets or {})}
        super().__init__((host, port), _Handler)

    # -- helpers for in-process tests -------------------------------------------------
    def control(self, **script: Any) -> None:
        self.state.control(**script)

    def received(self) -> dict[str, Any]:
        with self.state.lock:
            return {
                "accepted": list(self.state.accepted.values()),
                "duplicates": self.state.duplicates,
                "attempts": self.state.attempts,
                "rejected": list(self.state.rejected),
                "slack": list(self.state.slack),
            }


def _fails_first(msg_id: str, percent: float) -> bool:
    """Deterministic: the same id always falls in or out of the failing share."""
    bucket = int.from_bytes(hashlib.sha256(msg_id.encode()).digest()[:4], "big") % 10_000
    return bucket < percent * 100


class _Handler(JsonHandler):
    server: WebhookSink

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if urlparse(self.path).path == "/received":
            return self._send(200, self.server.received())
        if urlparse(self.path).path == "/health":
            return self._send(200, {"status": "ok"})
        return self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = urlparse(self.path).path
        body = self._read_body()
        if len(body) < int(self.headers.get("Content-Length") or 0):
            # The sender died mid-request (the chaos test kills it): an incomplete body is
            # not a delivery, and not a signature failure either.
            self.close_connection = True
            return None
        st = self.server.state
        if self._script(path, body, st):
            return None
        if path.startswith("/slack/"):
            with st.lock:
                st.slack.append({"path": path, "json": json.loads(body or b"{}")})
            return self._send(200, b"ok")
        if path.startswith("/hooks/"):
            return self._hook(path.removeprefix("/hooks/"), body)
        return self._send(404, {"error": "not found"})

    def _hook(self, name: str, body: bytes) -> None:
        st = self.server.state
        headers = {k.lower(): v for k, v in self.headers.items()}
        msg_id = headers.get("webhook-id", "")
        with st.lock:
            st.attempts += 1
            first_time = msg_id not in st.seen_ids
            st.seen_ids.add(msg_id)
            fault = st.take(fail=first_time and _fails_first(msg_id, st.fail_first_percent))
            gone = st.gone
        if self._stall(fault):
            return None
        if gone:
            return self._send(410, {"error": "gone"})
        if self._fail(fault):
            return None
        secret = self.server.secrets.get(name)
        if secret is None:
            return self._send(404, {"error": f"no endpoint {name}"})
        try:
            payload = Webhook(secret).verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with st.lock:
                st.rejected.append({"id": msg_id, "reason": str(exc)})
            return self._send(401, {"error": "bad signature"})
        x_sig = headers.get("x-signature")
        if x_sig is not None:
            key = Webhook(secret)._whsecret  # the same key bytes sign X-Signature
            expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, x_sig):
                with st.lock:
                    st.rejected.append({"id": msg_id, "reason": "bad X-Signature"})
                return self._send(401, {"error": "bad X-Signature"})
        with st.lock:
            if msg_id in st.accepted:
                st.duplicates += 1
                return self._send(200, {"ok": True, "duplicate": True})
            st.accepted[msg_id] = {
                "id": msg_id,
                "endpoint": name,
                "type": payload.get("type") if isinstance(payload, dict) else None,
                "payload": payload,
                "x_signature": x_sig is not None,
                "x_event_type": headers.get("x-event-type"),
                "received_at": time.time(),
            }
        return self._send(200, {"ok": True})


def main() -> None:
    serve_main(
        (__doc__ or "").splitlines()[0],
        8790,
        lambda args: WebhookSink(args.host, args.port),
        lambda sink: f"webhook sink on {sink.url} (hooks: /hooks/<name>, slack: /slack/...)",
    )


if __name__ == "__main__":
    main()

"""A local partner endpoint and Slack stand-in that records what it receives.

Webhook deliveries are verified with the `standardwebhooks` PyPI library (not our own
signing code), and deduplicated by `webhook-id` per endpoint like a careful partner would:
a repeated id answers 200 and is counted as a duplicate, never accepted twice (the same id
at two endpoints is two deliveries).

Routes:
  POST /hooks/{name}     a partner endpoint; verifies Standard Webhooks signatures with the
                         secret registered for {name} (and `X-Signature` when sent)
  POST /slack/{path...}  a Slack incoming webhook, answering as Slack documents it (see
                         `_slack`): records the JSON and answers 200 `ok`, or a refusal
                         with its error string as the body
  POST /control          JSON script: {"fail_next": N, "fail_status": 503,
                         "retry_after": "1", "latency_ms": 0, "down": false,
                         "fail_first_percent": 20, "gone": false,
                         "slack_down": false, "slack_status": null,
                         "slack_hooks": {"/slack/T/B/X": "channel_is_archived"}}
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
        self.slack_refused: list[dict[str, Any]] = []
        # Slack's own outage: drop connections, or answer this status (500 rollup_error).
        self.slack_down = False
        self.slack_status: int | None = None
        # Webhook path -> the error Slack answers for it (revoked, channel archived...).
        self.slack_hooks: dict[str, str] = {}


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
                "slack_refused": list(self.state.slack_refused),
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
            return self._slack(path, body)
        if path.startswith("/hooks/"):
            return self._hook(path.removeprefix("/hooks/"), body)
        return self._send(404, {"error": "not found"})

    def _slack(self, path: str, body: bytes) -> None:
        """Slack's incoming webhook as documented: 200 `ok`, else an HTTP status with the
        error string as a text body (api.slack.com changelog 2016-05-17, "Improving error
        conditions for Incoming Webhooks"): 400 invalid_payload / user_not_found, 403
        action_prohibited (invalid_token), 404 channel_not_found (no_service, no_team),
        410 channel_is_archived, 500 rollup_error. A message needs `text` (or blocks /
        attachments: else 400 no_text); Block Kit limits (header text 150 characters,
        section text 3000, at most 10 fields of 2000, 50 blocks) answer invalid_blocks."""
        st = self.server.state
        with st.lock:
            down, status, hook_error = st.slack_down, st.slack_status, st.slack_hooks.get(path)
        if down:
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if status is not None:
            return self._slack_answer(status, "rollup_error" if status == 500 else "unavailable")
        if hook_error is not None:
            return self._slack_refuse(path, SLACK_ERRORS.get(hook_error, 404), hook_error, body)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            message = json.loads(body) if ctype == "application/json" else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return self._slack_refuse(path, 400, "invalid_payload", body)
        if not (message.get("text") or message.get("blocks") or message.get("attachments")):
            return self._slack_refuse(path, 400, "no_text", body)
        if not _valid_blocks(message.get("blocks")):
            return self._slack_refuse(path, 400, "invalid_blocks", body)
        with st.lock:
            st.slack.append({"path": path, "json": message})
        return self._slack_answer(200, "ok")

    def _slack_refuse(self, path: str, status: int, error: str, body: bytes) -> None:
        with self.server.state.lock:
            self.server.state.slack_refused.append(
                {"path": path, "status": status, "error": error, "bytes": len(body)}
            )
        return self._slack_answer(status, error)

    def _slack_answer(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _hook(self, name: str, body: bytes) -> None:
        st = self.server.state
        headers = {k.lower(): v for k, v in self.headers.items()}
        msg_id = headers.get("webhook-id", "")
        seen_key = f"{name}/{msg_id}"
        with st.lock:
            st.attempts += 1
            first_time = seen_key not in st.seen_ids
            st.seen_ids.add(seen_key)
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
            if seen_key in st.accepted:
                st.duplicates += 1
                return self._send(200, {"ok": True, "duplicate": True})
            st.accepted[seen_key] = {
                "id": msg_id,
                "endpoint": name,
                "type": payload.get("type") if isinstance(payload, dict) else None,
                "payload": payload,
                "x_signature": x_sig is not None,
                "x_event_type": headers.get("x-event-type"),
                "received_at": time.time(),
            }
        return self._send(200, {"ok": True})


# Slack's documented incoming-webhook errors and their HTTP statuses.
SLACK_ERRORS = {
    "invalid_payload": 400,
    "user_not_found": 400,
    "no_text": 400,
    "invalid_blocks": 400,
    "action_prohibited": 403,
    "invalid_token": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "no_team": 404,
    "channel_is_archived": 410,
    "rollup_error": 500,
}


def _valid_blocks(blocks: Any) -> bool:
    """Block Kit's documented limits for the block types a webhook message uses."""
    if blocks is None:
        return True
    if not isinstance(blocks, list) or len(blocks) > 50:
        return False
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return False
        text = block.get("text")
        if block["type"] == "header":
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                return False
            if not 0 < len(str(text.get("text", ""))) <= 150:
                return False
        elif block["type"] == "section":
            fields = block.get("fields") or []
            if text is None and not fields:
                return False
            if text is not None and not 0 < len(str(text.get("text", ""))) <= 3000:
                return False
            if len(fields) > 10 or any(len(str(f.get("text", ""))) > 2000 for f in fields):
                return False
    return True


def main() -> None:
    serve_main(
        (__doc__ or "").splitlines()[0],
        8790,
        lambda args: WebhookSink(args.host, args.port),
        lambda sink: f"webhook sink on {sink.url} (hooks: /hooks/<name>, slack: /slack/...)",
    )


if __name__ == "__main__":
    main()

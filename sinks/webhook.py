"""A generic JSON webhook, signed per Standard Webhooks (https://www.standardwebhooks.com, spec 1.0.0).

One POST per alert, body (compact UTF-8 JSON)::

    {"type": "pimwatch.alert",            # "pimwatch.alert.resolved" when the alert was resolved
     "timestamp": "2026-03-10T02:40:00.000000Z",   # when the event occurred: last_seen / resolved_at
     "data": {...}}                       # Alert.to_dict(): id, detector, severity, title, principal,
                                          # first_seen, last_seen, count, event_ids, context, status ...

Every string in ``data`` (dictionary keys included) is cut to ``max_field_chars`` characters (default
8192), every list and mapping to :data:`MAX_ITEMS` entries and the whole of ``data`` to about
:data:`MAX_DATA_CHARS` characters, with the visible marker " …[truncated]": audit text is
attacker-controlled and unbounded.

Headers:

* ``webhook-id`` — the alert id for ``pimwatch.alert`` and ``<alert id>_resolved`` for
  ``pimwatch.alert.resolved``: the same on every retry and re-send, so a receiver that dedupes on it
  (as the spec asks) processes each alert once, and its resolution once (a resolution sent under the
  alert's own id would be dropped as a duplicate). Never contains a ``.`` (the spec forbids it).
* ``webhook-timestamp`` — the attempt's Unix time in whole seconds (fresh on each retry, so a
  receiver can reject replays).
* ``webhook-signature`` — ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")) over the
  exact bytes sent; ``key`` is the base64-decoded secret without its ``whsec_`` prefix. With
  ``previous_secret`` set (a rotation in progress) a second signature follows, space-separated.
  Without ``secret`` the three headers are still sent, unsigned.

The clock: the signature needs the attempt time, so it is computed in :func:`send` (``render`` stays
pure and golden-tested) from the module-level :data:`now` (``time.time``), which tests monkeypatch.

Answers: any 2xx is delivered ("204 No Content"); 429/5xx/timeouts/connection errors are retried by
the deliverer (Retry-After honoured); other statuses are dead letters — 3xx included (redirects are
not followed: update the URL), and 410 Gone (the receiver asks to stop: remove the sink).

Config::

    sinks:
      soar:
        type: webhook
        url: ${PIM_WEBHOOK_URL}          # https (http only to localhost)
        secret: ${PIM_WEBHOOK_SECRET}    # whsec_<base64 of ≥ 24 random bytes>; optional
        previous_secret: ${OLD_SECRET}   # optional, during a rotation
        max_field_chars: 8192
        timeout_seconds: 15              # the spec suggests 15-30 s
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ConfigDict, Field, SecretStr, field_validator

from pimwatch.delivery import Alert, Http, SinkConfig, answer_text, bounded, check_url, json_bytes

BATCH = False  # one signed message per alert: one webhook-id, one idempotency key
RESOLVES = True
EVENT = "pimwatch.alert"
RESOLVED = "pimwatch.alert.resolved"
SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the spec: "Random. At least 24 bytes"
MAX_ITEMS = 1000  # per list / mapping in ``data`` (cuts are marked)
MAX_DEPTH = 16
MAX_DATA_CHARS = 65_536  # characters of ``data`` in all (at least max_field_chars): a bounded body

now: Callable[[], float] = time.time  # the attempt clock; tests replace it


class Config(SinkConfig):
    """``url`` and the secrets are :class:`SecretStr`; validation errors never echo them."""

    model_config = ConfigDict(hide_input_in_errors=True)
    url: SecretStr
    secret: SecretStr | None = None
    previous_secret: SecretStr | None = None
    max_field_chars: int = Field(default=8192, ge=64)
    timeout_seconds: float = 15.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        check_url(value.get_secret_value())
        return value

    @field_validator("secret", "previous_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            signing_key(value)  # raises ValueError naming the problem, never the value
        return value


def signing_key(secret: SecretStr) -> bytes:
    """The HMAC key: the base64 after ``whsec_`` (the prefix is optional, as in the reference libraries)."""
    text = secret.get_secret_value().strip()
    text = text.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected whsec_ followed by base64 (a Standard Webhooks secret)") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the secret is {len(key)} bytes; Standard Webhooks asks for at least {MIN_KEY_BYTES}"
        )
    return key


def render(alerts: Sequence[Alert], config: Config) -> dict[str, Any]:
    """``{"webhook_id": ..., "payload": {...}}`` for the one alert (``BATCH`` is off)."""
    if len(alerts) != 1:
        raise ValueError(f"webhook: render takes exactly one alert, got {len(alerts)}")
    alert = alerts[0]
    resolved = alert.status == "resolved"
    limit = config.max_field_chars
    budget = max(MAX_DATA_CHARS, 2 * limit)
    data = bounded(alert.to_dict(), limit, MAX_ITEMS, max_depth=MAX_DEPTH, key_limit=limit, budget=budget)
    when = (alert.resolved_at or alert.last_seen) if resolved else alert.last_seen
    return {
        "webhook_id": f"{alert.id}_resolved" if resolved else alert.id,
        "payload": {"type": RESOLVED if resolved else EVENT, "timestamp": when, "data": data},
    }


def send(rendered: Mapping[str, Any], config: Config, http: Http) -> str:
    msg_id = str(rendered["webhook_id"])
    body = encode(rendered["payload"])
    timestamp = str(int(now()))
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
    }
    keys = [signing_key(s) for s in (config.secret, config.previous_secret) if s is not None]
    if keys:
        headers["webhook-signature"] = " ".join(sign(k, msg_id, timestamp, body) for k in keys)
    response = http.post(
        config.type,
        config.url.get_secret_value(),
        content=body,
        headers=headers,
        timeout=config.timeout_seconds,
    )
    return answer_text(response.status_code, response.reason_phrase)


def sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    if "." in msg_id:
        raise ValueError("webhook: a webhook-id must not contain '.'")
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def encode(payload: Any) -> bytes:
    """The exact bytes sent and signed: :func:`pimwatch.delivery.sink.json_bytes`."""
    return json_bytes(payload)

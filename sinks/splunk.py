"""Splunk HTTP Event Collector (HEC): every due alert of a run in one batch, as JSON events.

``POST <url>/services/collector/event`` with ``Authorization: Splunk <token>`` (sinks.md A3). The body
is HEC's batch format: JSON objects back to back, **not** a JSON array, one per alert::

    {"time":1773109020.0,"host":"…","source":"pimwatch","sourcetype":"pimwatch:alert","index":"pim",
     "event":{"id":"…","detector":"…",…}}{"time":…}

``event`` is :meth:`Alert.to_dict` with every string cut to ``max_field_chars`` and every list or
mapping to ``MAX_ITEMS`` (cuts carry the visible truncation marker); ``time`` is the alert's
``last_seen`` in epoch seconds. The token never appears in what :func:`render` makes (golden files,
previews): :func:`send` adds the header.

Size: HEC refuses a body over its ``max_content_length`` (``limits.conf [http_input]``, 1 MB by default
on many installs) with 413. :func:`render` therefore returns a **list of bodies**, each at most
``max_body_bytes`` (default 1,000,000), split on event boundaries; one event that is too large on its
own is re-bounded with smaller string limits and, as a last resort, reduced to its identity fields.

Failures: :func:`send` posts the bodies in order and raises on the first failure (through
:class:`Http`: 429/5xx, 503 "server is busy" (HEC code 9), timeouts and connection errors are
transient; 400 "invalid data format" (code 6), "incorrect index" (code 7), "data channel missing"
(code 10), 401/403 token errors (codes 1-4) and 413 are permanent). The deliverer then retries the
**whole** batch, so bodies that were already accepted are sent again: that is safe because every
event carries the alert id (``event.id``) and the SIEM side dedupes on it (``| dedup event.id``).

Indexer acknowledgement: with ``channel`` set (a GUID; required by tokens that have ack enabled, which
otherwise answer 400 code 10) every request carries ``X-Splunk-Request-Channel``. The ``ackId`` that
HEC returns is reported in the answer, but ``/services/collector/ack`` is **not** polled: a 200 means
"accepted by HEC", not "indexed" (the ack only turns true after indexing, seconds to minutes later,
which a delivery run should not wait for). Splunk Cloud does not offer ack on HEC at all.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import Field, SecretStr, field_validator

from pimwatch.delivery import (
    TRUNCATED,
    Alert,
    Http,
    PermanentError,
    SinkConfig,
    TransientError,
    answer_text,
    bounded,
    check_url,
    epoch_seconds,
    json_bytes,
    local_hostname,
)

BATCH = True

ENDPOINT = "/services/collector/event"
DEFAULT_MAX_BODY = 1_000_000  # HEC max_content_length default on many installs (bytes)
MIN_MAX_BODY = 16 * 1024
MAX_ITEMS = 100  # per list / mapping in the event (event_ids of a busy folded alert, context lists)
MAX_DEPTH = 8
FALLBACK_LIMITS = (1024, 256, 64)  # string limits tried in turn when one event exceeds the body bound

_NAME = re.compile(r"^[^\x00-\x20\x7f]{1,255}$")  # index / sourcetype / source / host: no spaces
_TOKEN = re.compile(r"^[!-~]+$")  # printable ASCII, no whitespace (it goes into a header)


class Config(SinkConfig):
    url: str  # the HEC base, e.g. https://splunk.example.com:8088 (or the full .../services/collector/event)
    token: SecretStr
    index: str | None = None  # omitted: the token's default index
    sourcetype: str = "pimwatch:alert"
    source: str = "pimwatch"
    host: str = Field(default_factory=local_hostname)  # the event's host field
    channel: str | None = None  # a GUID; set when the token has indexer acknowledgement enabled
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, ge=MIN_MAX_BODY, le=800 * 1024 * 1024)
    max_field_chars: int = Field(default=4096, ge=64, le=65536)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value, no_query=True)
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not _TOKEN.match(value.get_secret_value()):
            raise ValueError("the HEC token is empty or holds whitespace or control characters")
        return value

    @field_validator("index", "sourcetype", "source", "host")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("expected 1-255 characters without spaces or control characters")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("expected a GUID (the HEC data channel id)") from None


def endpoint(config: Config) -> str:
    base = config.url.rstrip("/")
    if base.endswith(ENDPOINT):
        return base
    if base.endswith("/services/collector"):
        return base + "/event"
    return base + ENDPOINT


def envelope(alert: Alert, config: Config, event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    when = epoch_seconds(alert.last_seen)
    if when is not None:
        out["time"] = when
    out["host"] = config.host
    out["source"] = config.source
    out["sourcetype"] = config.sourcetype
    if config.index is not None:
        out["index"] = config.index
    out["event"] = event
    return out


def render_event(alert: Alert, config: Config) -> bytes:
    """One HEC event object, at most ``max_body_bytes`` long."""
    doc = alert.to_dict()
    for limit in (config.max_field_chars, *(n for n in FALLBACK_LIMITS if n < config.max_field_chars)):
        items = MAX_ITEMS if limit == config.max_field_chars else 10
        event = {k: bounded(v, limit, items, max_depth=MAX_DEPTH, depth=1) for k, v in doc.items()}
        data = json_bytes(envelope(alert, config, event))
        if len(data) <= config.max_body_bytes:
            return data
    minimal = {
        "id": alert.id,
        "detector": alert.detector,
        "severity": alert.severity.value,
        "title": bounded(alert.title, 256),
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "count": alert.count,
        "status": alert.status,
        "truncated": "event too large, details omitted" + TRUNCATED,
    }
    return json_bytes(envelope(alert, config, minimal))


def render(alerts: Sequence[Alert], config: Config) -> list[bytes]:
    """HEC batch bodies: events concatenated, each body at most ``max_body_bytes``, alert order kept."""
    bodies: list[bytes] = []
    current = bytearray()
    for alert in alerts:
        event = render_event(alert, config)
        if current and len(current) + len(event) > config.max_body_bytes:
            bodies.append(bytes(current))
            current = bytearray()
        current += event
    if current:
        bodies.append(bytes(current))
    return bodies


def send(rendered: list[bytes], config: Config, http: Http) -> str:
    headers = {
        "Authorization": f"Splunk {config.token.get_secret_value()}",
        "Content-Type": "application/json",
    }
    if config.channel:
        headers["X-Splunk-Request-Channel"] = config.channel
    url = endpoint(config)
    answer = "nothing to send"
    acks: list[str] = []
    for n, body in enumerate(rendered, 1):
        try:
            response = http.post("splunk", url, content=body, headers=headers, timeout=config.timeout_seconds)
        except TransientError as exc:
            if len(rendered) == 1:
                raise
            raise TransientError(f"{exc} (request {n} of {len(rendered)})", exc.retry_after) from None
        except PermanentError as exc:
            if len(rendered) == 1:
                raise
            raise PermanentError(f"{exc} (request {n} of {len(rendered)})") from None
        answer = answer_text(response.status_code, response.reason_phrase)
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("ackId"), int):
            acks.append(str(data["ackId"]))
    if len(rendered) > 1:
        answer += f" ({len(rendered)} requests)"
    if acks:
        answer += f", ackId {','.join(acks[:10])}" + ("…" if len(acks) > 10 else "") + " (not polled)"
    return answer

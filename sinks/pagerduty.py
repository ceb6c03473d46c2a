"""PagerDuty Events API v2: one ``trigger`` per alert, ``resolve`` when the alert is resolved.

``POST https://events.pagerduty.com/v2/enqueue`` (EU accounts: ``events.eu.pagerduty.com``; any URL
for tests). The ``routing_key`` (a service's or ruleset's integration key) travels in the body, so it
is added by :func:`send` only: what :func:`render` makes (golden files, previews) holds no secret.

``dedup_key`` is the alert id: a repeat, a retry or a replay of the same alert applies to the one
open PagerDuty alert and never opens a second incident; ``resolve`` uses the same key.

Limits enforced here (sinks.md A4): ``summary`` ≤ 1024 characters (marked when cut), ``dedup_key``
≤ 255 (alert ids are 32), and the whole event kept under 16 KB — far below PagerDuty's 512 KB — by
bounding every string, list and mapping in ``custom_details`` and, if it is still too large, replacing
the alert context with a marker. Answers: 202 accepted; 400 invalid event → permanent; 429 throttled
and 5xx → transient (Retry-After honoured by the deliverer); all classified by :class:`Http`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr, field_validator

from pimwatch.delivery import (
    TRUNCATED,
    Alert,
    Http,
    Severity,
    SinkConfig,
    answer_text,
    bounded,
    check_url,
    json_bytes,
    one_line,
    truncate,
)

RESOLVES = True
GROUPS = True  # one incident per group: dedup_key = the group id (docs/sinks.md, grouping)

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
EU_URL = "https://events.eu.pagerduty.com/v2/enqueue"

SUMMARY_LIMIT = 1024  # PagerDuty: payload.summary, max 1024 characters
MAX_EVENT_BYTES = 16 * 1024  # our own bound; PagerDuty accepts up to 512 KB
TEXT_LIMIT = 2048  # detector summary and runbook (not attacker text, but bounded all the same)
# (characters per string, items per list or mapping) for the alert context, tried in turn until the
# event fits; then the context is replaced by a marker.
CONTEXT_LIMITS = ((2048, 50), (1024, 50), (512, 50), (256, 30), (128, 20), (64, 10), (32, 10))
MAX_DEPTH = 6
MAX_EVENT_IDS = 20

SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
    Severity.INFO: "info",
}


class Config(SinkConfig):
    routing_key: SecretStr
    url: str = DEFAULT_URL
    source: str = "pimwatch"  # payload.source: the system the alert is about, e.g. the tenant name
    group: str = "entra-id"  # payload.group
    link_url: str | None = None  # a portal link on every incident, e.g. the PIM audit blade
    link_text: str = "Microsoft Entra PIM"

    @field_validator("routing_key")
    @classmethod
    def _key_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the routing (integration) key is empty")
        return value

    @field_validator("url", "link_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value

    @field_validator("source", "group", "link_text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > 255:
            raise ValueError("at most 255 characters")
        return value


def render(alerts: Sequence[Alert], config: Config) -> dict[str, Any]:
    """The event for one alert, without ``routing_key`` (``send`` adds it)."""
    if len(alerts) != 1:
        raise ValueError(f"pagerduty renders one alert at a time, got {len(alerts)}")
    alert = alerts[0]
    if alert.status == "resolved":
        return {"event_action": "resolve", "dedup_key": alert.id}
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": alert.id,
        "payload": {
            "summary": truncate(one_line(alert.title) or alert.detector, SUMMARY_LIMIT),
            "source": config.source,
            "severity": SEVERITY[alert.severity],
            "timestamp": alert.first_seen,
            "component": alert.detector.split(".", 1)[0],
            "group": config.group,
            "class": alert.detector,
            "custom_details": {},
        },
        "client": "pimwatch",
    }
    if config.link_url:
        event["links"] = [{"href": config.link_url, "text": config.link_text}]
    details = custom_details(alert)
    event["payload"]["custom_details"] = details
    for limit, items in CONTEXT_LIMITS:
        details["context"] = bounded(alert.context, limit, items, max_depth=MAX_DEPTH)
        if size(event) <= MAX_EVENT_BYTES:
            return event
    details["context"] = "context omitted" + TRUNCATED
    return event


def custom_details(alert: Alert) -> dict[str, Any]:
    """Everything but the context, each part bounded on its own (at most ~4 KB together)."""
    details: dict[str, Any] = {
        "alert_id": alert.id,
        "detector": alert.detector,
        "severity": alert.severity.value,
        "summary": truncate(alert.summary, TEXT_LIMIT),
        "runbook": truncate(alert.runbook, TEXT_LIMIT),
        "mitre": bounded(alert.mitre, 32, 10, max_depth=MAX_DEPTH),
        "principal": bounded(alert.principal, 256, 10, max_depth=MAX_DEPTH),
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "count": alert.count,
        "event_ids": bounded(
            [eid for _, eid in alert.events[:MAX_EVENT_IDS]], 128, MAX_EVENT_IDS, max_depth=MAX_DEPTH
        ),
        "context": {},
    }
    if alert.count > MAX_EVENT_IDS:
        details["event_ids"].append(f"{alert.count - MAX_EVENT_IDS} more" + TRUNCATED)
    return details


def size(event: Any) -> int:
    """Bytes on the wire (as sent), plus room for the routing key."""
    return len(json_bytes(event)) + 64


def send(rendered: dict[str, Any], config: Config, http: Http) -> str:
    body = {"routing_key": config.routing_key.get_secret_value(), **rendered}
    headers = {"Content-Type": "application/json"}
    response = http.post(
        "pagerduty", config.url, content=json_bytes(body), headers=headers, timeout=config.timeout_seconds
    )
    answer = answer_text(response.status_code, response.reason_phrase)
    try:
        data = response.json()
    except ValueError:
        return answer
    if isinstance(data, dict) and isinstance(data.get("dedup_key"), str):
        return f"{answer}, dedup_key {truncate(one_line(data['dedup_key']), 64)}"
    return answer

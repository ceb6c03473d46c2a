"""Opsgenie Alert API and its successor, Jira Service Management (JSM) Operations integration events.

Both take the same alert contract with ``Authorization: GenieKey <key>`` (sinks.md A4):

* ``flavor: opsgenie`` — ``https://api.opsgenie.com`` (EU: ``https://api.eu.opsgenie.com``). Atlassian
  ends Opsgenie on :data:`OPSGENIE_SHUTDOWN` (its REST API stops; a migrated site is turned off 120
  days after migrating, possibly sooner): :func:`startup_warning` says so at every start.
* ``flavor: jsm`` — ``https://api.atlassian.com/jsm/ops/integration`` (the key of a JSM Operations
  "API" integration).

``api_url`` is the base (the flavor's default when omitted; a full ``.../v2/alerts`` URL is accepted
too). Create: ``POST {base}/v2/alerts``; resolve (``RESOLVES``): ``POST
{base}/v2/alerts/{alias}/close?identifierType=alias``. ``alias`` is the alert id: one open alert per
alias, so repeats, retries and replays never open a second one. Both answer 202 (accepted, processed
asynchronously; the ``requestId`` is returned in the answer text); 429 and 5xx are transient, other
4xx permanent (classified by :class:`Http`, which never puts the URL or the key in an error).

Limits enforced: ``message`` ≤ 130 characters (one line), ``description`` ≤ 15000, ``alias`` ≤ 512,
``entity`` ≤ 512, ``source`` ≤ 100, ``tags`` ≤ 20 of ≤ 50 characters, ``details`` a string map of ≤
8000 characters in all (keys and values), ``note`` far under 25000. Opsgenie renders HTML in
``message`` (and the description is shown in the same UI), so attacker text there is HTML-escaped
— inert, still readable — and cut with a visible marker, never inside an entity.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import SecretStr, ValidationInfo, field_validator

from pimwatch.delivery import (
    TRUNCATED,
    Alert,
    Http,
    Severity,
    SinkConfig,
    answer_text,
    check_url,
    json_bytes,
    one_line,
    truncate,
)

RESOLVES = True
GROUPS = True  # one alert per group: alias = the group id (docs/sinks.md, grouping)

OPSGENIE_SHUTDOWN = date(2027, 4, 5)  # end of support, REST API shutdown (sinks.md §0, [OG-EOL], [OG-OFF])

OPSGENIE_US = "https://api.opsgenie.com"
OPSGENIE_EU = "https://api.eu.opsgenie.com"
JSM_URL = "https://api.atlassian.com/jsm/ops/integration"
DEFAULT_URL = {"opsgenie": OPSGENIE_US, "jsm": JSM_URL}

MESSAGE_LIMIT = 130
DESCRIPTION_LIMIT = 15000
ALIAS_LIMIT = 512
ENTITY_LIMIT = 512
SOURCE_LIMIT = 100
TAG_LIMIT = 50
MAX_TAGS = 20
DETAILS_LIMIT = 8000  # characters, keys and values together
DETAIL_VALUE_LIMIT = 1000
CONTEXT_LINE_LIMIT = 1000
MAX_EVENT_IDS = 10

PRIORITY = {
    Severity.CRITICAL: "P1",
    Severity.HIGH: "P2",
    Severity.MEDIUM: "P3",
    Severity.LOW: "P4",
    Severity.INFO: "P5",
}

_TAG = re.compile(r"^[^\s,]{1,50}$")


class Config(SinkConfig):
    api_key: SecretStr
    flavor: Literal["opsgenie", "jsm"] = "opsgenie"
    api_url: str | None = None  # the base URL; default by flavor (Opsgenie US, or JSM)
    source: str = "pimwatch"
    tags: tuple[str, ...] = ()  # added to pimwatch's own (pimwatch, severity, detector, MITRE ids)

    @property
    def base_url(self) -> str:
        return self.api_url or DEFAULT_URL[self.flavor]

    @field_validator("api_key")
    @classmethod
    def _key_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the API integration key is empty")
        return value

    @field_validator("api_url")
    @classmethod
    def _base(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = check_url(value)
        if base.endswith("/v2/alerts"):
            base = base[: -len("/v2/alerts")]
        if urlsplit(base).query or urlsplit(base).fragment:
            raise ValueError("expected a base URL without query or fragment")
        host = urlsplit(base).hostname or ""
        flavor = info.data.get("flavor")
        if flavor == "jsm" and _within(host, "opsgenie.com"):
            raise ValueError(f"flavor jsm with an Opsgenie URL: for JSM use {JSM_URL}")
        if flavor == "opsgenie" and _within(host, "atlassian.com"):
            raise ValueError("an Atlassian (JSM) URL with flavor opsgenie: set flavor: jsm")
        return base

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not value.strip() or len(value) > SOURCE_LIMIT:
            raise ValueError(f"expected 1 to {SOURCE_LIMIT} characters")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for tag in value:
            if not _TAG.match(tag):
                raise ValueError(f"a tag is 1 to {TAG_LIMIT} characters without spaces or commas")
        if len(value) > MAX_TAGS - 8:
            raise ValueError(
                f"at most {MAX_TAGS - 8} tags (Opsgenie keeps {MAX_TAGS}; pimwatch adds its own)"
            )
        return value


def startup_warning(config: Config, today: date | None = None) -> str | None:
    """What to print at start for this sink, or None: the Opsgenie shutdown for ``flavor: opsgenie``."""
    if config.flavor != "opsgenie":
        return None
    today = today or date.today()
    days = (OPSGENIE_SHUTDOWN - today).days
    if days > 0:
        when = f"shuts down on {OPSGENIE_SHUTDOWN.isoformat()} ({days} days left)"
    else:
        when = f"was shut down on {OPSGENIE_SHUTDOWN.isoformat()}: alerts sent there are lost"
    return (
        f"Opsgenie's REST API {when}; a site migrated to Jira Service Management is turned off "
        "120 days after migrating, which can be sooner. Move this sink to JSM Operations: create an "
        f"'API' integration in JSM, then set flavor: jsm (api_url defaults to {JSM_URL}) and its key "
        "as api_key."
    )


def _within(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def escaped(text: str | None, limit: int) -> str:
    """``text`` HTML-escaped and cut to ``limit`` characters with the marker, never inside an entity."""
    raw = text or ""
    out = html.escape(raw[:limit], quote=False)
    if len(raw) <= limit and len(out) <= limit:
        return out
    cut = out[: max(0, limit - len(TRUNCATED))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + TRUNCATED


def render(alerts: Sequence[Alert], config: Config) -> dict[str, Any]:
    """``{"path": ..., "body": ...}`` for one alert: a create, or a close when it is resolved."""
    if len(alerts) != 1:
        raise ValueError(f"opsgenie renders one alert at a time, got {len(alerts)}")
    alert = alerts[0]
    alias = truncate(alert.id, ALIAS_LIMIT)
    if alert.status == "resolved":
        note = "Resolved by pimwatch"
        if alert.resolved_at:
            note += f" (event time {truncate(one_line(alert.resolved_at), 64)})"
        return {
            "path": f"/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias",
            "body": {"source": config.source, "user": "pimwatch", "note": note},
        }
    principal = alert.principal
    entity = one_line(principal.get("upn") or principal.get("id") or principal.get("name"))
    body: dict[str, Any] = {
        "message": escaped(one_line(alert.title) or alert.detector, MESSAGE_LIMIT),
        "alias": alias,
        "description": escaped(description(alert), DESCRIPTION_LIMIT),
        "tags": tags(alert, config),
        "details": details(alert),
        "source": config.source,
        "priority": PRIORITY[alert.severity],
    }
    if entity:
        body["entity"] = escaped(entity, ENTITY_LIMIT)
    return {"path": "/v2/alerts", "body": body}


def description(alert: Alert) -> str:
    """Plain text, one fact a line; escaped and bounded by the caller."""
    p = alert.principal
    lines = [
        truncate(one_line(alert.title), 1024),
        "",
        alert.summary,
        "",
        f"Severity: {alert.severity.value}",
        f"Detector: {alert.detector}",
        "Principal: "
        + ", ".join(f"{k} {truncate(one_line(p.get(k)), 256)}" for k in ("name", "upn", "id") if p.get(k)),
        f"First seen: {alert.first_seen}",
        f"Last seen: {alert.last_seen}",
        f"Events: {alert.count}",
    ]
    if alert.mitre:
        lines.append(f"MITRE techniques: {', '.join(alert.mitre)}")
    lines += [f"Runbook: {alert.runbook}", f"Alert id: {alert.id}", "", "Context:"]
    for key, value in alert.context.items():
        lines.append(f"  {key}: {truncate(one_line(_text(value)), CONTEXT_LINE_LIMIT)}")
    return "\n".join(lines)


def tags(alert: Alert, config: Config) -> list[str]:
    own = ["pimwatch", alert.detector, alert.severity.value, *alert.mitre[:4]]
    out: list[str] = []
    for tag in (*own, *config.tags):
        tag = tag[:TAG_LIMIT]
        if tag and tag not in out:
            out.append(tag)
    return out[:MAX_TAGS]


def details(alert: Alert) -> dict[str, str]:
    """A string map of ≤ ``DETAILS_LIMIT`` characters: the alert's facts, then its context, marked
    when a value is cut and with a count of context keys that did not fit."""
    p = alert.principal
    out: dict[str, str] = {
        "alert_id": alert.id,
        "detector": alert.detector,
        "severity": alert.severity.value,
        "principal_id": truncate(one_line(p.get("id")), 64),
        "principal_upn": truncate(one_line(p.get("upn")), 256),
        "principal_name": truncate(one_line(p.get("name")), 256),
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "count": str(alert.count),
        "mitre": truncate(", ".join(alert.mitre), 256),
        "event_ids": truncate(", ".join(eid for _, eid in alert.events[:MAX_EVENT_IDS]), 512),
    }
    reserve = 64  # room for the "context_omitted" note
    used = sum(len(k) + len(v) for k, v in out.items())
    omitted = 0
    for key, value in alert.context.items():
        name = "context." + truncate(str(key), 100)
        room = DETAILS_LIMIT - reserve - used - len(name)
        if room < 32 or name in out:
            omitted += 1
            continue
        text = truncate(_text(value), min(DETAIL_VALUE_LIMIT, room))
        out[name] = text
        used += len(name) + len(text)
    if omitted:
        out["context_omitted"] = f"{omitted} more context keys" + TRUNCATED
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def send(rendered: dict[str, Any], config: Config, http: Http) -> str:
    url = config.base_url + rendered["path"]
    headers = {"Authorization": f"GenieKey {config.api_key.get_secret_value()}"}
    headers["Content-Type"] = "application/json"
    body = json_bytes(rendered["body"])
    response = http.post(config.flavor, url, content=body, headers=headers, timeout=config.timeout_seconds)
    answer = answer_text(response.status_code, response.reason_phrase)
    try:
        data = response.json()
    except ValueError:
        return answer
    request_id = data.get("requestId") if isinstance(data, dict) else None
    if isinstance(request_id, str):
        return f"{answer}, requestId {truncate(one_line(request_id), 64)}"
    return answer

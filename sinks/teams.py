"""Microsoft Teams through a Workflows webhook: one Adaptive Card per alert, or per group of alerts.

With grouping (``routing`` in the config, ``GROUPS``), one card per group: the most severe alert's
card with "Alerts in this group" (every detector tripped); an alert that joins the group after its
card was posted goes out as a follow-up card ("· update") under the same group id — a Workflows
webhook cannot edit a card it has posted.

The target is a Power Automate / Teams **Workflows** flow with the trigger "When a Teams webhook request
is received" (the template "Send webhook alerts to a channel"), not the retired Office 365 connector
(``*.webhook.office.com``, MessageCard): those URLs stopped working in May 2026. The flow expects the
Bot-Framework style envelope and posts each attachment as a card::

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                      "contentUrl": null,
                      "content": {"type": "AdaptiveCard", "version": "1.4", ...}}]}

The card (Adaptive Card 1.4, within the 1.5 Teams supports; elements TextBlock, FactSet, Container,
``Action.OpenUrl`` and one ``Action.ShowCard``, "Show evidence": the evidence records and the request
and correlation ids): a header coloured by severity, the title (``teams.title.txt.j2``), the
detector's summary, who / which role / when / how many events, the justification, the alert's
context as a bounded FactSet, the runbook, and links to the Entra admin center (the principal's
profile and assigned roles — eligible and active PIM assignments — when the principal is a user with
an object id, the tenant audit log, PIM).

Limits: Teams refuses messages over 28 KB and practitioners see failures from ~21 KB, so the whole
JSON body is kept under :data:`MAX_BYTES` (20,000 bytes, UTF-8, as sent). Every alert field is
cleaned of control and bidi characters, cut with :func:`pimwatch.delivery.sink.truncate` (visible marker),
then Markdown-escaped with :func:`pimwatch.delivery.sink.md_escape` so links, emphasis, code and list markers
in audit text stay inert. Only what Markdown acts on is escaped (``adm-eve@contoso.com`` stays as it
is: escaping every ``.`` and ``-`` showed literal backslashes in some Teams clients); an ``<at>``
mention needs a ``msteams.entities`` entry, which the card never has, so it shows as text.
When the card is still too big the per-field budgets shrink step by step and the card says it was
shortened.

Answers: the Workflows trigger answers **202 Accepted** with an empty body once it has *queued* the
run — the flow can still fail afterwards (bad envelope, owner left the company, DLP policy, Workflows
app blocked) and nothing here can see that; watch the flow's run history. 429 and 5xx are retried by
the deliverer (Retry-After honoured); 400/401/403/404 are dead letters (401: the trigger is not
"Anyone" or the ``sig`` is wrong; 404: the flow was deleted or its URL regenerated).

Config::

    sinks:
      soc-teams:
        type: teams
        webhook_url: ${TEAMS_WEBHOOK_URL}      # the whole Workflows URL; its sig= is the credential
        portal_base: https://entra.microsoft.com   # optional; e.g. .../contoso.onmicrosoft.com
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, SecretStr, field_validator

from pimwatch.delivery import (
    Alert,
    Http,
    PermanentError,
    Severity,
    SinkConfig,
    TransientError,
    answer_text,
    check_url,
    clean,
    display_time,
    json_bytes,
    md_escape,
    render_template,
    truncate,
)

NAME = "teams"
BATCH = False  # one card per alert
RESOLVES = False  # only new alerts are posted
GROUPS = True  # one card per group of alerts (docs/sinks.md, grouping)
CARD_VERSION = "1.4"
MAX_BYTES = 20_000  # the whole request body; Teams' hard limit is 28 KB per message
HARD_LIMIT = 28 * 1024
DEFAULT_PORTAL = "https://entra.microsoft.com"

# Container style, TextBlock colour, label, marker per severity (Adaptive Card 1.4 enumerations).
STYLES: dict[Severity, tuple[str, str, str]] = {
    Severity.CRITICAL: ("attention", "attention", "🔴 CRITICAL"),
    Severity.HIGH: ("warning", "warning", "🟠 HIGH"),
    Severity.MEDIUM: ("accent", "accent", "🟡 MEDIUM"),
    Severity.LOW: ("emphasis", "default", "🔵 LOW"),
    Severity.INFO: ("default", "default", "⚪ INFO"),
}

# Context keys shown in their own place on the card, not again among the details.
_SHOWN = frozenset({"role", "roles", "justification", "justifications", "group"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Config(SinkConfig):
    """``webhook_url`` is a secret (its ``sig`` query parameter is the credential)."""

    model_config = ConfigDict(hide_input_in_errors=True)
    webhook_url: SecretStr
    portal_base: str = DEFAULT_PORTAL

    @field_validator("webhook_url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        check_url(url)
        host = (urlsplit(url).hostname or "").lower()
        if host.endswith(".webhook.office.com") or host == "outlook.office.com":
            raise ValueError(
                "an Office 365 connector URL: connectors are retired; create a Workflows webhook "
                "('When a Teams webhook request is received') and use its URL"
            )
        return value

    @field_validator("portal_base")
    @classmethod
    def _check_portal(cls, value: str) -> str:
        check_url(value)
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError("expected the portal's base URL, without a query or a #fragment")
        return value.rstrip("/")


@dataclass(frozen=True)
class _Budget:
    """Characters per field before escaping; the last budget always fits (see ``_fit``)."""

    title: int
    text: int  # summary, justification, runbook
    name: int  # who, role, detector, MITRE, alert id
    value: int  # a context fact's value
    key: int  # a context fact's title
    facts: int  # context facts shown


BUDGETS = (
    _Budget(title=300, text=1500, name=200, value=300, key=60, facts=24),
    _Budget(title=200, text=800, name=150, value=160, key=48, facts=16),
    _Budget(title=150, text=400, name=100, value=80, key=40, facts=10),
    _Budget(title=100, text=150, name=80, value=40, key=32, facts=5),
    _Budget(title=80, text=60, name=60, value=0, key=0, facts=0),
)


def render(alerts: Sequence[Alert], config: Config) -> dict[str, Any]:
    """The Workflows envelope with one card for the one alert (``BATCH`` is off)."""
    if len(alerts) != 1:
        raise ValueError(f"{NAME}: render takes exactly one alert, got {len(alerts)}")
    return _fit(alerts[0], config)


def send(rendered: Mapping[str, Any], config: Config, http: Http) -> str:
    body = encode(rendered)
    if len(body) > HARD_LIMIT:
        raise PermanentError(f"{NAME}: message is {len(body)} bytes, over the 28 KB Teams limit")
    response = http.post(
        config.type,
        config.webhook_url.get_secret_value(),
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=config.timeout_seconds,
    )
    # A legacy connector answered 200 with the throttling status in the body; harmless to check.
    if "HTTP error 429" in response.text[:512]:
        raise TransientError(f"{NAME}: throttled (HTTP 429 in a {response.status_code} body)")
    return answer_text(response.status_code, response.reason_phrase)


def encode(rendered: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and measured): :func:`pimwatch.delivery.sink.json_bytes`."""
    return json_bytes(rendered)


def envelope(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def _fit(alert: Alert, config: Config) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for i, budget in enumerate(BUDGETS):
        payload = envelope(_card(alert, config, budget, shortened=i > 0))
        if len(encode(payload)) <= MAX_BYTES:
            return payload
    raise AssertionError(f"{NAME}: the smallest card is {len(encode(payload))} bytes")  # pragma: no cover


# --- the card ---------------------------------------------------------------------------------------


def _card(alert: Alert, config: Config, b: _Budget, *, shortened: bool) -> dict[str, Any]:
    style, color, label = STYLES[alert.severity]
    ctx = alert.context
    title = render_template(
        "teams.title.txt.j2",
        title=_cut(alert.title, b.title),
        severity=alert.severity.value,
        detector=alert.detector,
        count=alert.count,
        status=alert.status,
    ).strip()
    group = _group(ctx)
    header = f"{label} · PIM alert · {_md(alert.detector, b.name)}"
    if group is not None and group.get("update"):
        header += " · update"
    if alert.status == "resolved":
        header += " · resolved"
    body: list[dict[str, Any]] = [
        {
            "type": "Container",
            "style": style,
            "bleed": True,
            "items": [
                _text(header, color=color, weight="Bolder", size="Small"),
                _text(truncate(title, 2 * b.title + 200), weight="Bolder", size="Medium"),
            ],
        }
    ]
    if alert.summary:
        body.append(_text(_md(alert.summary, b.text), isSubtle=True))
    body.append({"type": "FactSet", "facts": _main_facts(alert, b)})

    if group is not None and b.facts:
        body.append(_text("Alerts in this group", weight="Bolder", spacing="Medium"))
        body.append({"type": "FactSet", "facts": _group_facts(group, b)})

    justification = _justification(ctx)
    if justification:
        body.append(_text("Justification", weight="Bolder", spacing="Medium"))
        body.append(_text(_md(justification, b.text, multiline=True)))

    details = list(_details(ctx))
    if details and b.facts:
        shown = details[: b.facts]
        facts = [{"title": _md(_label(k), b.key), "value": _md(v, b.value)} for k, v in shown]
        body.append(_text("Details", weight="Bolder", spacing="Medium"))
        body.append({"type": "FactSet", "facts": facts})
        if len(details) > len(shown):
            body.append(_text(f"…[truncated: {len(details) - len(shown)} more fields]", isSubtle=True))
    elif details:
        body.append(_text(f"…[truncated: {len(details)} detail fields not shown]", isSubtle=True))

    if alert.runbook:
        body.append(_text("What to do", weight="Bolder", spacing="Medium"))
        body.append(_text(_md(alert.runbook, b.text, multiline=True)))
    if shortened:
        body.append(
            _text(
                "…[truncated: card shortened to fit the Teams size limit; the full alert is in "
                f"pimwatch as {_md(alert.id, 64)}]",
                color="attention",
                isSubtle=True,
                spacing="Medium",
            )
        )
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
        "actions": [*_links(alert, config), *_evidence(alert, b)],
    }


def _group(ctx: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The group of a group notification (pimwatch/delivery/grouping.py), when it has more than one
    alert or updates one sent before; None otherwise."""
    group = ctx.get("group")
    if not isinstance(group, Mapping) or not isinstance(group.get("alerts"), list):
        return None
    return group if len(group["alerts"]) > 1 or group.get("update") else None


def _group_facts(group: Mapping[str, Any], b: _Budget) -> list[dict[str, str]]:
    """One fact per alert of the group: "high · assignment.permanent" → its title (new ones marked)."""
    facts = []
    for m in group["alerts"][: b.facts]:
        if not isinstance(m, Mapping):
            continue
        mark = " (new)" if group.get("update") and m.get("new") else ""
        key = f"{_value(m.get('severity'))} · {_value(m.get('detector'))}{mark}"
        facts.append({"title": _md(key, b.name), "value": _md(_value(m.get("title")), b.value or 40)})
    more = len(group["alerts"]) - len(facts) + int(group.get("alerts_omitted") or 0)
    if more > 0:
        facts.append({"title": "…", "value": f"{more} more alerts"})
    return facts


EVIDENCE_SHOWN = 10


def _evidence(alert: Alert, b: _Budget) -> list[dict[str, Any]]:
    """ "Show evidence": the alert's evidence records (time and record id, first and latest) and its
    request and correlation ids, in a card shown on demand; the raw records are in pimwatch
    (``pimwatch show ALERT_ID``)."""
    facts = []
    for name in ("request_id", "correlation_id"):
        value = alert.context.get(name)
        if isinstance(value, str) and value:
            facts.append({"title": _label(name), "value": _md(value, 128)})
    shown = alert.events[:EVIDENCE_SHOWN] if b.facts else alert.events[:1]
    for when, record in shown:
        facts.append({"title": _md(display_time(when), 64), "value": _md(record, 256)})
    if alert.count > len(shown):
        facts.append({"title": "…", "value": f"{alert.count - len(shown)} more records"})
    card = {
        "type": "AdaptiveCard",
        "body": [
            {"type": "FactSet", "facts": facts},
            _text(f"Raw records: pimwatch show {_md(alert.id, 64)}", isSubtle=True),
        ],
    }
    return [{"type": "Action.ShowCard", "title": "Show evidence", "card": card}]


def _main_facts(alert: Alert, b: _Budget) -> list[dict[str, str]]:
    p = alert.principal
    name, upn, oid = p.get("name"), p.get("upn"), p.get("id")
    who = f"{name} ({upn})" if name and upn and name != upn else (name or upn or oid or "(unknown)")
    facts = [{"title": "Who", "value": _md(who, b.name)}]
    if oid and oid != who:
        facts.append({"title": "Object id", "value": _md(oid, 64)})
    role = _role(alert.context)
    if role:
        facts.append({"title": "Role", "value": _md(role, b.name)})
    first, last = display_time(alert.first_seen), display_time(alert.last_seen)
    if alert.count == 1 or first == last:
        facts.append({"title": "When", "value": _md(first, 64)})
    else:
        facts.append({"title": "First seen", "value": _md(first, 64)})
        facts.append({"title": "Last seen", "value": _md(last, 64)})
    facts.append({"title": "Events", "value": str(alert.count)})
    if alert.status == "resolved":
        facts.append({"title": "Resolved", "value": _md(display_time(alert.resolved_at or ""), 64)})
    if alert.mitre:
        facts.append({"title": "MITRE ATT&CK", "value": _md(", ".join(alert.mitre), b.name)})
    facts.append({"title": "Alert id", "value": _md(alert.id, 64)})
    return facts


def _links(alert: Alert, config: Config) -> list[dict[str, str]]:
    """Entra admin center deep links; the principal's only for a user with a well-formed object id."""
    base = config.portal_base
    links: list[tuple[str, str]] = []
    oid = alert.principal.get("id") or ""
    if alert.principal.get("upn") and _GUID.match(oid):
        user = f"{base}/#view/Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~"
        links.append(("Principal in Entra", f"{user}/overview/userId/{oid.lower()}"))
        links.append(("Principal's roles", f"{user}/AdministrativeRole/userId/{oid.lower()}"))
    links.append(("Entra audit log", f"{base}/#view/Microsoft_AAD_IAM/AuditLogList.ReactView"))
    links.append(("PIM", f"{base}/#view/Microsoft_Azure_PIMCommon/CommonMenuBlade/~/quickStart"))
    return [{"type": "Action.OpenUrl", "title": title, "url": url} for title, url in links]


def _text(text: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


# --- alert fields -----------------------------------------------------------------------------------


def _role(ctx: Mapping[str, Any]) -> str:
    role = ctx.get("role")
    if isinstance(role, str) and role:
        return role
    roles = ctx.get("roles")
    if isinstance(roles, list) and roles:
        return _value(roles)
    return ""


def _justification(ctx: Mapping[str, Any]) -> str:
    value = ctx.get("justification")
    if isinstance(value, str) and value.strip():
        return value
    many = ctx.get("justifications")
    if isinstance(many, list) and many:
        return "\n".join(_value(v) for v in many)
    return ""


def _details(ctx: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The context as (key, text) pairs, one level of nesting flattened, empty values skipped."""
    for key, value in ctx.items():
        if key in _SHOWN:
            continue
        if isinstance(value, dict):
            for sub, inner in value.items():
                text = _value(inner)
                if text:
                    yield f"{key}.{sub}", text
        else:
            text = _value(value)
            if text:
                yield str(key), text


def _label(key: str) -> str:
    """``location.city`` → ``Location city``: a context key as a fact title (fewer escapes to show)."""
    text = key.replace("_", " ").replace(".", " ").strip()
    return text[:1].upper() + text[1:]


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return ", ".join(t for t in (_value(v) for v in value) if t)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _clean(text: str, *, multiline: bool = False) -> str:
    """Unsafe characters as spaces; line breaks (as LF) kept only when ``multiline``."""
    if multiline:
        return clean(text.replace("\r\n", "\n").replace("\r", "\n"), breaks=True)
    return clean(text)


def _cut(text: object, limit: int, *, multiline: bool = False) -> str:
    return truncate(_clean("" if text is None else str(text), multiline=multiline), limit)


def _md(text: object, limit: int, *, multiline: bool = False) -> str:
    """Untrusted text for a TextBlock or a Fact: cleaned, cut with a marker, Markdown-escaped."""
    return md_escape(_cut(text, limit, multiline=multiline))

"""E-mail: one digest message per delivery run, by SMTP or by Microsoft Graph ``sendMail``.

``BATCH = True``: :func:`render` gets every due alert of a run and makes ONE message listing them,
most severe first; the subject says how many and the highest severity. The message has a plain-text
part (``email.body.txt.j2``) and an HTML alternative (``email.body.html.j2``, autoescaped), a
``Message-ID`` derived from the alert ids (a retried send of the same alerts carries the same id, so a
duplicate is recognisable and mail clients thread it) and ``X-Pimwatch-Alert-Ids``.

Transports (``transport:``):

* ``smtp`` — stdlib :mod:`smtplib`. ``tls: starttls`` (default, port 587), ``implicit`` (port 465)
  or ``none`` (port 25; a local relay only: no authentication is allowed without TLS). Certificates
  are verified against the system store or the sink's private CA (``tls_ca_file`` / ``tls_ca_pem``,
  also for Graph; ``ca_file`` is the old name of ``tls_ca_file``). ``auth: password`` (``username`` +
  ``password``) or ``auth: xoauth2`` (SASL XOAUTH2 with an Entra access token for
  ``https://outlook.office365.com/.default``; the app needs the ``SMTP.SendAsApp`` permission and an
  Exchange service principal with rights on the mailbox). Exchange Online is turning Basic auth for
  SMTP AUTH off (MC786329): prefer ``xoauth2`` or Graph there.
* ``graph`` — ``POST {graph_url}/users/{sender}/sendMail`` with a bearer token for
  ``https://graph.microsoft.com/.default``; the app needs the **application** permission
  ``Mail.Send``, which by default allows sending as ANY mailbox: scope it to the sender with Exchange
  RBAC for Applications. Success is 202 Accepted (accepted, not yet delivered).

Tokens come from a token provider, ``(scope) -> access token``: :func:`send` takes one as
``token_provider=`` (tests pass a static token); otherwise :func:`default_token_provider` uses
``azure-identity`` when it is installed (client secret when ``client_secret`` is set, else a managed
identity — user-assigned when ``client_id`` is set — else ``DefaultAzureCredential``).

Errors: SMTP 5xx replies, authentication failures and refused recipients are permanent; 4xx replies,
timeouts, dropped connections and TLS/network failures are transient; a certificate that fails
verification is permanent (a retry will not fix the configuration). Graph answers are classified by
:class:`Http` (429/5xx transient with Retry-After, other 4xx permanent). No message ever holds the
password, the token or a URL; server replies are cut, kept on one line and scrubbed of the secrets.

Limits enforced here: subject one line, ≤ 200 characters; per alert a title ≤ 300, names/UPNs ≤ 256,
context keys ≤ 100 and values ≤ 500 characters, ≤ 30 context entries; ≤ 25 alerts in full, the next
≤ 500 as one line each, the rest counted; each body ≤ 1 MB (fewer alerts in full until it fits); ≤ 100
ids in ``X-Pimwatch-Alert-Ids``; 1-100 recipients. Audit text is attacker-controlled: control
characters and bidi overrides become spaces, ``://`` becomes ``[:]//`` so no mail client turns a
planted URL into a link, HTML is escaped by the template engine, every field is cut with a visible
marker.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import re
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from pimwatch.delivery import (
    Alert,
    Http,
    PermanentError,
    Severity,
    SinkConfig,
    SinkError,
    TransientError,
    answer_text,
    check_url,
    one_line,
    templating,
    tls_context,
    transport_error,
    truncate,
)

BATCH = True
GROUPS = True  # one section per group in the message (docs/sinks.md, grouping)
SINK = "email"

TokenProvider = Callable[[str], str]
"""``provider(scope) -> access token``; may raise :class:`SinkError` to classify its own failures."""

GRAPH_URL = "https://graph.microsoft.com/v1.0"
SMTP_SCOPE = "https://outlook.office365.com/.default"
DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}

SUBJECT_LIMIT = 200
SUBJECT_TITLE_LIMIT = 120
TITLE_LIMIT = 300
NAME_LIMIT = 256
SUMMARY_LIMIT = 1000
RUNBOOK_LIMIT = 2000
CONTEXT_KEY_LIMIT = 100
CONTEXT_VALUE_LIMIT = 500
MAX_CONTEXT_ITEMS = 30
MAX_MITRE = 20
MAX_EVENT_IDS = 10
LISTED_TITLE_LIMIT = 150
DETAIL_STEPS = (25, 10, 3, 0)  # alerts shown in full, tried in turn until both bodies fit
MAX_LISTED = 500  # further alerts shown as one line each; the rest are only counted
MAX_BODY_BYTES = 1_000_000
MAX_HEADER_IDS = 100
MAX_RECIPIENTS = 100
REPLY_LIMIT = 200

COLORS = {
    Severity.CRITICAL: "#b00020",
    Severity.HIGH: "#c2410c",
    Severity.MEDIUM: "#8a6d00",
    Severity.LOW: "#1c64b4",
    Severity.INFO: "#4b5563",
}

_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]+")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


def check_address(value: str) -> str:
    """A bare ASCII ``local@domain.tld`` (no display name, no CR/LF: nothing to inject)."""
    value = value.strip()
    if len(value) > 254 or not _ADDRESS.fullmatch(value):
        raise ValueError(f"expected an e-mail address like soc@contoso.com, got {value[:100]!r}")
    return value


class Config(SinkConfig):
    LEGACY_CA_FILE = True  # ``ca_file`` is read as ``tls_ca_file``
    transport: Literal["smtp", "graph"] = "smtp"
    sender: str  # the From address; for Graph also the mailbox that sends
    to: list[str]
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    auth: Literal["none", "password", "xoauth2"] = "none"
    smtp_host: str | None = Field(default=None, validate_default=True)
    smtp_port: int | None = Field(default=None, ge=1, le=65535)  # default by ``tls``: 587 / 465 / 25
    username: str | None = Field(default=None, validate_default=True)  # XOAUTH2: defaults to sender
    password: SecretStr | None = Field(default=None, validate_default=True)
    graph_url: str = GRAPH_URL
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    subject_prefix: str = "[pimwatch]"

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return check_address(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one recipient is needed")
        if len(value) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients (use a distribution list)")
        out: list[str] = []
        for i, address in enumerate(value):
            try:
                checked = check_address(address)
            except ValueError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
            if checked.lower() not in (a.lower() for a in out):
                out.append(checked)
        return out

    @field_validator("auth")
    @classmethod
    def _auth_needs_tls(cls, value: str, info: ValidationInfo) -> str:
        if value != "none" and info.data.get("tls") == "none" and info.data.get("transport") == "smtp":
            raise ValueError(f"auth: {value} sends credentials, so it needs tls: starttls or implicit")
        return value

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("transport") == "smtp":
                raise ValueError("required when transport is smtp")
            return None
        if not _HOST.fullmatch(value):
            raise ValueError("expected a host name or an IP address")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (not value.strip() or one_line(value) != value.strip()):
            raise ValueError("must be a non-empty single line")
        if value is None and info.data.get("auth") == "password" and info.data.get("transport") == "smtp":
            raise ValueError("required when auth is password")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        needed = info.data.get("auth") == "password" and info.data.get("transport") == "smtp"
        if needed and (value is None or not value.get_secret_value()):
            raise ValueError("required (and not empty) when auth is password")
        return value

    @field_validator("graph_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        return check_url(value, no_query=True)

    @field_validator("client_secret")
    @classmethod
    def _client_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not (info.data.get("tenant_id") and info.data.get("client_id")):
            raise ValueError("needs tenant_id and client_id")
        return value

    @field_validator("subject_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if one_line(value) != value.strip() or len(value) > 50:
            raise ValueError("a single line of at most 50 characters")
        return value

    @property
    def port(self) -> int:
        return self.smtp_port or DEFAULT_PORTS[self.tls]


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message (``pimwatch report --mail``: the report and its CSVs)."""

    name: str
    content_type: str  # "text/csv", "text/html"
    data: bytes


@dataclass(frozen=True)
class Email:
    """What :func:`render` makes: everything but the envelope, the Date and the credentials."""

    subject: str
    text: str
    html: str
    message_id: str
    alert_ids: tuple[str, ...]
    attachments: tuple[Attachment, ...] = ()


# --- render (pure) -------------------------------------------------------------------------------


def clean(text: object, limit: int, *, defang: bool = True) -> str:
    """One line, no controls, planted URLs defanged, cut to ``limit`` with a visible marker: no forged
    "Severity: info" line in the text part, nothing that reads backwards, no link a client makes."""
    s = one_line(text)
    if defang:
        s = s.replace("://", "[:]//")
    return truncate(s, limit)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
    ):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _order(alert: Alert) -> tuple[int, str, str]:
    return (-alert.severity.rank, alert.first_seen, alert.id)


def _view(alert: Alert) -> dict[str, Any]:
    items = [(k, v) for k, v in alert.context.items() if v not in (None, "", [], {}) and k != "group"]
    group = alert.context.get("group")
    members = group.get("alerts") if isinstance(group, dict) else None
    p = alert.principal
    mitre = [clean(m, 32) for m in alert.mitre[:MAX_MITRE]]
    event_ids = [clean(eid, 128) for _, eid in alert.events[:MAX_EVENT_IDS]]
    return {
        "id": alert.id,
        "detector": clean(alert.detector, 100),
        "severity": alert.severity.value,
        "color": COLORS[alert.severity],
        "status": alert.status,
        "resolved_at": clean(alert.resolved_at, 64),
        "title": clean(alert.title, TITLE_LIMIT) or clean(alert.detector, 100),
        "summary": clean(alert.summary, SUMMARY_LIMIT, defang=False),
        "runbook": clean(alert.runbook, RUNBOOK_LIMIT, defang=False),
        "mitre": mitre,
        "principal": {
            "name": clean(p.get("name"), NAME_LIMIT),
            "upn": clean(p.get("upn"), NAME_LIMIT),
            "id": clean(p.get("id"), NAME_LIMIT),
        },
        "first_seen": clean(alert.first_seen, 64),
        "last_seen": clean(alert.last_seen, 64),
        "count": alert.count,
        "event_ids": event_ids,
        # The evidence as a table: (time, record id) of the first and latest records.
        "evidence": [(clean(t, 64), clean(eid, 128)) for t, eid in alert.events[:MAX_EVENT_IDS]],
        # A group notification (docs/sinks.md, grouping): every alert of the group, one row each.
        "group": [
            {
                "severity": clean(m.get("severity"), 16),
                "detector": clean(m.get("detector"), 100),
                "title": clean(m.get("title"), TITLE_LIMIT),
                "id": clean(m.get("id"), 64),
            }
            for m in (members if isinstance(members, list) and len(members) > 1 else [])
            if isinstance(m, dict)
        ],
        "more_events": max(0, alert.count - MAX_EVENT_IDS),
        "context": [
            (clean(k, CONTEXT_KEY_LIMIT), clean(_value(v), CONTEXT_VALUE_LIMIT))
            for k, v in items[:MAX_CONTEXT_ITEMS]
        ],
        "more_context": max(0, len(items) - MAX_CONTEXT_ITEMS),
    }


def _line(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "severity": alert.severity.value,
        "color": COLORS[alert.severity],
        "detector": clean(alert.detector, 100),
        "title": clean(alert.title, LISTED_TITLE_LIMIT) or clean(alert.detector, 100),
        "first_seen": clean(alert.first_seen, 64),
        "count": alert.count,
    }


def message_id(alert_ids: Sequence[str], sender: str) -> str:
    """The same alerts give the same Message-ID, whatever their order: a resend is recognisable."""
    digest = hashlib.sha256("\n".join(sorted(set(alert_ids))).encode()).hexdigest()[:40]
    return f"<pimwatch.{digest}@{sender.rsplit('@', 1)[1].lower()}>"


def header_ids(alert_ids: Sequence[str], separator: str = ", ") -> str:
    """``X-Pimwatch-Alert-Ids``: at most 100 ids (then a count), each reduced to ``[A-Za-z0-9._-]``."""
    items = [_UNSAFE_ID.sub("_", i)[:64] for i in alert_ids[:MAX_HEADER_IDS]]
    if len(alert_ids) > MAX_HEADER_IDS:
        items.append(f"(+{len(alert_ids) - MAX_HEADER_IDS} more)")
    return separator.join(items)


def subject(alerts: Sequence[Alert], config: Config) -> str:
    top = sorted(alerts, key=_order)[0]
    text = templating.render(
        "email.subject.txt.j2",
        prefix=config.subject_prefix,
        count=len(alerts),
        highest=top.severity.value,
        title=clean(top.title, SUBJECT_TITLE_LIMIT) or clean(top.detector, 100),
    )
    return truncate(" ".join(clean(text, 10 * SUBJECT_LIMIT).split()), SUBJECT_LIMIT)


def render(alerts: Sequence[Alert], config: Config) -> Email:
    """One digest message for ``alerts`` (most severe first), both bodies bounded; no alerts, no
    message (an empty :class:`Email` that :func:`send` does not send)."""
    if not alerts:
        return Email("", "", "", "", ())
    ordered = sorted(alerts, key=_order)
    ids = tuple(a.id for a in ordered)
    subj = subject(ordered, config)
    text = html = ""
    for detailed in DETAIL_STEPS:
        listed = ordered[detailed : detailed + MAX_LISTED]
        context: dict[str, Any] = {
            "subject": subj,
            "count": len(ordered),
            "highest": ordered[0].severity.value,
            "alerts": [_view(a) for a in ordered[:detailed]],
            "listed": [_line(a) for a in listed],
            "omitted": max(0, len(ordered) - detailed - len(listed)),
        }
        text = templating.render("email.body.txt.j2", **context)
        html = templating.render("email.body.html.j2", **context)
        if len(text.encode()) <= MAX_BODY_BYTES and len(html.encode()) <= MAX_BODY_BYTES:
            break
    return Email(subj, text, html, message_id(ids, config.sender), ids)


MAX_GRAPH_ATTACHMENTS = 3 * 1024 * 1024  # sendMail takes 4 MB per request; base64 adds a third


def report_email(
    subject_text: str, text: str, html: str, attachments: Sequence[Attachment], config: Config, key: str
) -> Email:
    """A report message (``pimwatch report --mail``): the summary as both bodies, the files attached.
    ``key`` names the report (its period): the same report gives the same Message-ID."""
    total = sum(len(a.data) for a in attachments)
    if config.transport == "graph" and total > MAX_GRAPH_ATTACHMENTS:
        raise PermanentError(
            f"{SINK}: the report's files are {total / 1e6:.1f} MB, more than Graph sendMail takes in one "
            f"request ({MAX_GRAPH_ATTACHMENTS / 1e6:.1f} MB): send it by SMTP or shorten the period"
        )
    subj = truncate(
        " ".join(clean(f"{config.subject_prefix} {subject_text}", 10 * SUBJECT_LIMIT).split()), SUBJECT_LIMIT
    )
    return Email(subj, text, html, message_id([f"report:{key}"], config.sender), (), tuple(attachments))


def mime(email: Email, config: Config, date: str | None = None) -> EmailMessage:
    """The RFC 5322 message (7-bit clean: quoted-printable bodies, RFC 2047 subject)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.to)
    msg["Subject"] = email.subject
    msg["Message-ID"] = email.message_id
    if date is not None:
        msg["Date"] = date
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to the sender
    # Folded here, one id per line: the stdlib folder may start a long value on a continuation line,
    # which parsers then read back with a leading space.
    msg.set_raw("X-Pimwatch-Alert-Ids", header_ids(email.alert_ids, ",\r\n "))
    msg.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for a in email.attachments:
        maintype, subtype = a.content_type.split("/", 1)
        msg.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.name)
    return msg


def graph_payload(email: Email, config: Config) -> dict[str, Any]:
    """The ``sendMail`` request body (Graph sets From to the sending mailbox)."""
    message: dict[str, Any] = {
        "subject": email.subject,
        "body": {"contentType": "HTML", "content": email.html},
        "toRecipients": [{"emailAddress": {"address": a}} for a in config.to],
        "internetMessageHeaders": [{"name": "X-Pimwatch-Alert-Ids", "value": header_ids(email.alert_ids)}],
    }
    if email.attachments:
        message["attachments"] = [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": a.name,
                "contentType": a.content_type,
                "contentBytes": base64.b64encode(a.data).decode("ascii"),
            }
            for a in email.attachments
        ]
    return {"message": message, "saveToSentItems": False}


# --- tokens --------------------------------------------------------------------------------------


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response, before base64 (smtplib encodes it)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def graph_scope(graph_url: str) -> str:
    parts = urlsplit(graph_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def default_token_provider(config: Config) -> TokenProvider:
    """Tokens from ``azure-identity`` (imported only when a token is needed; an optional dependency)."""
    secret = config.client_secret.get_secret_value() if config.client_secret else None

    def provide(scope: str) -> str:
        credential = _credential(config.tenant_id, config.client_id, secret)
        return str(credential.get_token(scope).token)

    return provide


@lru_cache(maxsize=8)
def _credential(tenant_id: str | None, client_id: str | None, client_secret: str | None) -> Any:
    """One credential per identity for the process: azure-identity caches and refreshes its tokens."""
    try:
        identity = importlib.import_module("azure.identity")
    except ImportError:
        raise PermanentError(
            f"{SINK}: OAuth2 (auth: xoauth2, transport: graph) needs the azure-identity package: "
            "pip install azure-identity"
        ) from None
    if client_secret:
        return identity.ClientSecretCredential(tenant_id, client_id, client_secret)
    if client_id:
        return identity.ManagedIdentityCredential(client_id=client_id)
    return identity.DefaultAzureCredential()


def _token(provider: TokenProvider, scope: str) -> str:
    try:
        token = provider(scope)
    except SinkError:
        raise
    except Exception as exc:  # the credential's message may name the tenant or the app; keep the type
        raise TransientError(f"{SINK}: could not get an access token ({type(exc).__name__})") from None
    if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable():
        raise PermanentError(f"{SINK}: the token provider returned no usable token")
    return token


# --- send ----------------------------------------------------------------------------------------


def send(rendered: Email, config: Config, http: Http, *, token_provider: TokenProvider | None = None) -> str:
    if not rendered.alert_ids and not rendered.attachments:  # an empty batch (a report carries files)
        return "nothing to send"
    provider = token_provider or default_token_provider(config)
    if config.transport == "graph":
        return _send_graph(rendered, config, http, provider)
    return _send_smtp(rendered, config, provider)


def _send_graph(email: Email, config: Config, http: Http, provider: TokenProvider) -> str:
    token = _token(provider, graph_scope(config.graph_url))
    url = f"{config.graph_url}/users/{quote(config.sender, safe='@')}/sendMail"
    response = http.post(
        SINK,
        url,
        json=graph_payload(email, config),
        headers={"Authorization": f"Bearer {token}"},
        timeout=config.timeout_seconds,
    )
    return answer_text(response.status_code, response.reason_phrase)


class _XOAuth2:
    """smtplib's ``authobject``: the initial response, then an empty reply to an error challenge
    (the server then answers 535, which :func:`_smtp_error` classifies)."""

    def __init__(self, user: str, token: str):
        self._initial = xoauth2_string(user, token)

    def __call__(self, challenge: bytes | None = None) -> str:
        return self._initial if challenge is None else ""


def _send_smtp(email: Email, config: Config, provider: TokenProvider) -> str:
    payload = mime(email, config, formatdate(usegmt=True)).as_bytes()
    secrets: list[str] = []
    if config.password is not None:
        password = config.password.get_secret_value()
        secrets += [password, _b64(password), _b64(f"\0{config.username}\0{password}")]
    context = tls_context(config.trust)
    try:
        return _smtp_session(payload, config, context, provider, secrets)
    except SinkError:
        raise
    except Exception as exc:
        raise _smtp_error(exc, config, secrets) from None


def _smtp_session(
    payload: bytes, config: Config, context: ssl.SSLContext, provider: TokenProvider, secrets: list[str]
) -> str:
    assert config.smtp_host is not None  # the config validator requires it for smtp
    timeout = config.timeout_seconds
    # The constructors connect and read the greeting: a non-220 greeting raises SMTPConnectError and a
    # failed read closes the socket (SMTPServerDisconnected), so nothing is left open on failure.
    client: smtplib.SMTP
    if config.tls == "implicit":
        client = smtplib.SMTP_SSL(config.smtp_host, config.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(config.smtp_host, config.port, timeout=timeout)
    try:
        client.ehlo_or_helo_if_needed()
        if config.tls == "starttls":
            client.starttls(context=context)
            client.ehlo_or_helo_if_needed()
        if config.auth == "password":
            assert config.username is not None and config.password is not None
            client.login(config.username, config.password.get_secret_value())
        elif config.auth == "xoauth2":
            mechanisms = (client.esmtp_features.get("auth") or "").upper().split()
            if "XOAUTH2" not in mechanisms:
                raise PermanentError(f"{SINK}: the SMTP server does not offer AUTH XOAUTH2")
            token = _token(provider, SMTP_SCOPE)
            user = config.username or config.sender
            secrets += [token, _b64(xoauth2_string(user, token))]
            if not user.isascii():
                raise PermanentError(f"{SINK}: the XOAUTH2 user name must be ASCII")
            client.auth("XOAUTH2", _XOAuth2(user, token), initial_response_ok=True)
        answer = _transaction(client, config, payload, secrets)
    except BaseException:
        client.close()  # no QUIT on a failed session (after a TLS failure it would go out in clear)
        raise
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):  # the message is accepted: a failed QUIT changes nothing
        client.close()
    return answer


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "replace")).decode()


def _transaction(client: smtplib.SMTP, config: Config, payload: bytes, secrets: list[str]) -> str:
    code, reply = client.mail(config.sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, config.sender)
    refused: dict[str, tuple[int, bytes]] = {}
    for rcpt in config.to:
        code, reply = client.rcpt(rcpt)
        if code not in (250, 251):
            refused[rcpt] = (code, reply)
    if len(refused) == len(config.to):
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = client.data(payload)
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    answer = f"{code} {_reply(reply, secrets, 80)}".strip()
    if refused:
        answer += f"; {len(refused)} of {len(config.to)} recipients refused"
    return answer


def _reply(reply: bytes | str, secrets: Sequence[str], limit: int = REPLY_LIMIT) -> str:
    """A server reply for a message: one line, cut, with any secret it might echo removed."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return clean(text, limit, defang=False)


def _by_code(code: int, message: str) -> SinkError:
    return TransientError(message) if 400 <= code < 500 or code < 200 else PermanentError(message)


def _smtp_error(exc: Exception, config: Config, secrets: Sequence[str]) -> SinkError:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # 454 "temporary authentication failure" is worth a retry; 535 bad credentials is not.
        what = f"{SINK}: SMTP authentication failed ({exc.smtp_code} {_reply(exc.smtp_error, secrets)})"
        return TransientError(what) if 400 <= exc.smtp_code < 500 else PermanentError(what)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers = list(exc.recipients.values())
        code, reply = answers[0] if answers else (550, b"")
        what = f"{SINK}: all {len(answers)} recipient(s) refused ({code} {_reply(reply, secrets)})"
        if answers and all(400 <= c < 500 for c, _ in answers):
            return TransientError(what)
        return PermanentError(what)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"{SINK}: the SMTP server does not support it: {_reply(str(exc), secrets)}")
    if isinstance(exc, smtplib.SMTPResponseException):
        step = {
            smtplib.SMTPSenderRefused: "sender refused",
            smtplib.SMTPDataError: "message refused",
            smtplib.SMTPConnectError: "connection refused",
            smtplib.SMTPHeloError: "HELO refused",
        }.get(type(exc), "error")
        return _by_code(
            exc.smtp_code, f"{SINK}: SMTP {step} ({exc.smtp_code} {_reply(exc.smtp_error, secrets)})"
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if "timed out" in str(exc):  # smtplib turns a read timeout into "Connection unexpectedly closed"
            return TransientError(f"{SINK}: timed out after {config.timeout_seconds:g} s")
        return TransientError(f"{SINK}: the SMTP server closed the connection")
    if isinstance(exc, (OSError, smtplib.SMTPException)):  # TLS, certificate, timeout, network
        return transport_error(SINK, exc, config.timeout_seconds)
    if isinstance(exc, UnicodeError):
        return PermanentError(f"{SINK}: a value could not be encoded for SMTP ({type(exc).__name__})")
    return TransientError(f"{SINK}: {type(exc).__name__}")

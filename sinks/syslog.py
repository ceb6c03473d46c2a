"""CEF over syslog (RFC 5424) via UDP, TCP or TLS: the "CEF via AMA" path into Sentinel, or any SIEM.

One message per alert, all alerts of a delivery run over one connection (sinks.md A3)::

    <162>1 2026-03-10T02:17:00.000Z collector01 pimwatch - - - CEF:0|pimwatch|pimwatch|0.1.0|
    breakglass.signin|Break-glass account … signed in|10|rt=1773109020000 start=… cnt=1 msg=…

(one line; wrapped here). Syslog header: ``PRI`` = ``facility`` × 8 + syslog severity (critical → 2
crit, high → 3 err, medium → 4 warning, low → 5 notice, info → 6 info), ``TIMESTAMP`` = the alert's
``last_seen`` (so the message is a pure function of the alert), ``HOSTNAME`` from the config,
``APP-NAME`` pimwatch, no PROCID / MSGID / STRUCTURED-DATA. The MSG is UTF-8 without a BOM (a BOM
before ``CEF:`` would hide the CEF prefix from AMA / rsyslog parsers).

CEF: ``CEF:0|pimwatch|pimwatch|<version>|<detector id>|<title>|<severity>|<extension>`` with CEF
severity critical 10, high 8, medium 5, low 3, info 1. Header fields escape ``\\`` and ``|``; they
cannot hold line breaks, which become spaces. Extension values escape ``\\``, ``=``, LF (``\\n``) and
CR (``\\r``); other control characters (and U+0085/U+2028/U+2029) become spaces, so a message is
always one line and LF framing is as safe as octet counting. Extension keys (ArcSight names, mapped by
Sentinel into ``CommonSecurityLog``): ``rt`` / ``start`` / ``end`` (ms epoch of last / first / last
seen), ``cnt`` (count), ``msg`` (title), ``reason`` (summary), ``duser`` / ``duid`` (the principal the
alert is about: UPN or name / object id), ``suser`` / ``suid`` (who acted: the context's actor, else
the first other account of the alert's entities), ``src`` (the first IP address of its entities, only
when it parses as one), ``cs1`` alertId, ``cs2`` detector, ``cs3`` context (compact JSON, bounded),
``cs4`` mitre (techniques), ``cs5`` runbook, ``cs6`` status (with their ``csNLabel``),
``flexString1`` the MITRE tactics, ``flexString2`` the group id (when the alert is grouped:
the alerts of one action share it).

Size: every message is at most ``max_bytes`` (default 2048 for UDP — the size RFC 5424 / 5426 say
receivers SHOULD accept — and 8192 for TCP/TLS; configurable). Fields start at their CEF lengths
(name 512; msg, reason, users, mitre 1023; context ``context_chars``; runbook 4000) and, while the
message is still too long, the longest fields are cut further — down to a common level, so short
fields (ids, UPNs) stay whole — always with the visible truncation marker.

Transports: UDP — one datagram per message, fire and forget (a refused port may surface as an error on
a later datagram, nothing more); TCP and TLS (RFC 5425) — octet-counting framing (RFC 6587,
``<len> <msg>``) or, with ``framing: lf``, one message per line. TLS verifies the server against
``tls_ca_file`` / ``tls_ca_pem`` (a private CA; ``ca_file`` is the old name of ``tls_ca_file``) or the
system store, and the host name (``server_name`` overrides it); ``verify: false`` turns verification
off (lab use only). Errors: connection refused / reset, DNS,
timeouts and TLS handshake failures are transient; a certificate that fails verification, or a
CA bundle that cannot be loaded, is permanent. This sink does not use :class:`Http`. Syslog has no
acknowledgement: a retry resends the whole batch, so a message may arrive twice — dedupe on ``cs1``
(the alert id, ``DeviceCustomString1`` in ``CommonSecurityLog``).

Sentinel: point the AMA data collection rule at the facility used here (default ``local4``) and keep
that facility for CEF only, so the messages are not ingested twice (as ``Syslog`` and as CEF).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from pimwatch.delivery import (
    TRUNCATED,
    Alert,
    Http,
    Severity,
    SinkConfig,
    __version__,
    clean,
    epoch_ms,
    json_text,
    local_hostname,
    rfc3339_ms,
    tls_context,
    transport_error,
    truncate,
)

BATCH = True

APP_NAME = "pimwatch"
VENDOR = "pimwatch"
PRODUCT = "pimwatch"
UDP_MAX_BYTES = 2048  # RFC 5424 §6.1 / RFC 5426 §3.2: receivers SHOULD accept 2048 octets
STREAM_MAX_BYTES = 8192
UDP_CEILING = 65507  # the largest UDP payload over IPv4
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}

CEF_SEVERITY = {
    Severity.CRITICAL: 10,
    Severity.HIGH: 8,
    Severity.MEDIUM: 5,
    Severity.LOW: 3,
    Severity.INFO: 1,
}
SYSLOG_SEVERITY = {  # RFC 5424 §6.2.1
    Severity.CRITICAL: 2,
    Severity.HIGH: 3,
    Severity.MEDIUM: 4,
    Severity.LOW: 5,
    Severity.INFO: 6,
}
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "solaris-cron": 15, **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip

_HOSTNAME = re.compile(r"^[!-~]{1,255}$")  # RFC 5424 HOSTNAME: PRINTUSASCII, no spaces
_BREAKS = re.compile(r"[\r\n]")
_EXT_SPECIAL = re.compile(r"[\\=\n\r]")
_EXT_ESCAPES = {"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"}


class Config(SinkConfig):
    LEGACY_CA_FILE = True  # ``ca_file`` is read as ``tls_ca_file``
    host: str
    # validated even when left out: it checks that tls_ca_file / tls_ca_pem come with transport: tls
    transport: Literal["udp", "tcp", "tls"] = Field(default="tcp", validate_default=True)
    port: int | None = Field(default=None, ge=1, le=65535)  # default 514 (udp, tcp) or 6514 (tls)
    framing: Literal["octet-counting", "lf"] = "octet-counting"  # tcp / tls
    verify: bool = True  # tls: verify the certificate and the host name
    server_name: str | None = None  # tls: the name to verify (and send as SNI) when not ``host``
    facility: int | str = "local4"
    hostname: str = Field(default_factory=local_hostname)  # the RFC 5424 HOSTNAME field
    max_bytes: int | None = Field(default=None, ge=1024)  # per message; default 2048 (udp) / 8192 (tcp, tls)
    context_chars: int = Field(default=4000, ge=64, le=65536)  # cs3 (context JSON) before size fitting

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("expected a host name or address")
        return value

    @field_validator("transport")
    @classmethod
    def _private_ca_needs_tls(cls, value: str, info: ValidationInfo) -> str:
        # tls_ca_file / tls_ca_pem (common fields) are validated before this one, so they are known here
        if value != "tls" and (info.data.get("tls_ca_file") or info.data.get("tls_ca_pem")):
            raise ValueError("tls_ca_file / tls_ca_pem are set, but only transport: tls uses them")
        return value

    @field_validator("facility")
    @classmethod
    def _facility(cls, value: int | str) -> int:
        if isinstance(value, int) and 0 <= value <= 23:
            return value
        if isinstance(value, str) and value.lower() in FACILITIES:
            return FACILITIES[value.lower()]
        raise ValueError("expected a facility 0-23 or a name (local0-local7, auth, authpriv, user, ...)")

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not _HOSTNAME.match(value):
            raise ValueError("expected 1-255 printable ASCII characters without spaces")
        return value

    @field_validator("server_name")
    @classmethod
    def _tls_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("transport") != "tls":
            raise ValueError("only applies to transport: tls")
        return value

    @field_validator("max_bytes")
    @classmethod
    def _udp_ceiling(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("transport") == "udp" and value > UDP_CEILING:
            raise ValueError(f"a UDP datagram holds at most {UDP_CEILING} bytes")
        return value

    @property
    def port_number(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.transport]

    @property
    def message_limit(self) -> int:
        if self.max_bytes is not None:
            return self.max_bytes
        return UDP_MAX_BYTES if self.transport == "udp" else STREAM_MAX_BYTES

    @property
    def facility_code(self) -> int:
        return self.facility if isinstance(self.facility, int) else FACILITIES[self.facility]


# --- rendering --------------------------------------------------------------------------------------


def escape_header(text: str) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, line breaks (not allowed there) as spaces."""
    return _BREAKS.sub(" ", clean(text, breaks=True)).replace("\\", "\\\\").replace("|", "\\|")


def escape_value(text: str) -> str:
    """A CEF extension value: ``\\``, ``=``, LF and CR escaped (``|`` needs none)."""
    return _EXT_SPECIAL.sub(lambda m: _EXT_ESCAPES[m.group()], clean(text, breaks=True))


class _Field:
    """A variable text field: the original, the character limit it is cut to, its escaping."""

    def __init__(self, text: str, limit: int, header: bool = False):
        self.text = clean(text, breaks=True)
        self.limit = limit
        self.header = header

    @property
    def value(self) -> str:
        return truncate(self.text, self.limit)

    @property
    def cost(self) -> int:
        """Bytes on the wire, escaped."""
        value = self.value
        return len((escape_header(value) if self.header else escape_value(value)).encode("utf-8"))


def water_level(costs: Sequence[int], budget: int) -> int:
    """The largest per-field size ``C`` with ``sum(min(cost, C)) <= budget``: short fields stay whole,
    the long ones share what is left equally."""
    remaining, ordered = budget, sorted(costs)
    for i, cost in enumerate(ordered):
        share = max(0, remaining) // (len(ordered) - i)
        if cost > share:
            return share
        remaining -= cost
    return ordered[-1] if ordered else 0


def fit(build: Callable[[], bytes], fields: Sequence[_Field], limit: int) -> bytes:
    """Cut the longest fields (to a common level, with the marker) until the message fits ``limit``."""
    data = build()
    while len(data) > limit:
        costs = [f.cost for f in fields]
        level = water_level(costs, limit - (len(data) - sum(costs)))
        changed = False
        for f, cost in zip(fields, costs, strict=True):
            chars = len(f.value)
            if cost > level and chars > len(TRUNCATED):
                f.limit = max(len(TRUNCATED), min(chars - 1, chars * level // cost))
                changed = True
        if not changed:
            break  # nothing left to cut (a tiny limit, a huge host name): sent as it is
        data = build()
    return data


def _actor(alert: Alert) -> tuple[str, str]:
    """(UPN or name, object id) of who acted: the context's ``actor``, else the first account among
    the alert's entities that is not its principal (who acted, approved, was assigned)."""
    actor = alert.context.get("actor")
    if isinstance(actor, dict):
        return str(actor.get("upn") or actor.get("name") or ""), str(actor.get("id") or "")
    principal = {str(v).lower() for v in (alert.principal or {}).values() if v}
    for e in alert.entities:
        ids = (e.get("aadUserId"), e.get("upn"))
        if e.get("type") == "account" and not any(str(i).lower() in principal for i in ids if i):
            return str(e.get("upn") or e.get("displayName") or ""), str(e.get("aadUserId") or "")
    return "", ""


def _source_ip(alert: Alert) -> str:
    """The first IP address among the alert's entities that parses as one (CEF ``src`` is an address:
    anything else is left out, not passed on)."""
    for e in alert.entities:
        if e.get("type") == "ip":
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(str(e.get("address", "")).strip()))
    return ""


def message(alert: Alert, config: Config) -> bytes:
    """The RFC 5424 message (without transport framing) for one alert, at most ``message_limit`` bytes."""
    pri = config.facility_code * 8 + SYSLOG_SEVERITY[alert.severity]
    prefix = f"<{pri}>1 {rfc3339_ms(alert.last_seen)} {config.hostname} {APP_NAME} - - - "
    principal = alert.principal or {}
    name = _Field(alert.title or alert.detector, 512, header=True)
    actor, actor_id = _actor(alert)
    # (key, fixed value or a shrinkable field); empty values are left out
    ext: list[tuple[str, str | _Field]] = [
        ("rt", epoch_ms(alert.last_seen)),
        ("start", epoch_ms(alert.first_seen)),
        ("end", epoch_ms(alert.last_seen)),
        ("cnt", str(alert.count)),
        ("msg", _Field(alert.title, 1023)),
        ("reason", _Field(alert.summary, 1023)),
        ("duser", _Field(principal.get("upn") or principal.get("name") or "", 1023)),
        ("duid", _Field(principal.get("id") or "", 1023)),
        ("suser", _Field(actor, 1023)),
        ("suid", _Field(actor_id, 1023)),
        ("src", _source_ip(alert)),
        ("cs1Label", "alertId"),
        ("cs1", alert.id),
        ("cs2Label", "detector"),
        ("cs2", alert.detector),
        ("cs3Label", "context"),
        ("cs3", _Field(json_text(alert.context, sort_keys=True), config.context_chars)),
        ("cs4Label", "mitre"),
        ("cs4", _Field(",".join(alert.mitre), 1023)),
        ("flexString1Label", "tactics" if alert.tactics else ""),
        ("flexString1", _Field(",".join(alert.tactics), 1023)),
        ("cs5Label", "runbook"),
        ("cs5", _Field(alert.runbook, 4000)),
        ("cs6Label", "status"),
        ("cs6", truncate(alert.status + (f" at {alert.resolved_at}" if alert.resolved_at else ""), 128)),
        *((("flexString2Label", "group"), ("flexString2", alert.group)) if alert.group else ()),
    ]
    shrinkable = [name, *(v for _, v in ext if isinstance(v, _Field))]

    def build() -> bytes:
        header = "|".join(
            [
                "CEF:0",
                escape_header(VENDOR),
                escape_header(PRODUCT),
                escape_header(__version__),
                escape_header(truncate(alert.detector, 1023)),
                escape_header(name.value),
                str(CEF_SEVERITY[alert.severity]),
            ]
        )
        parts = []
        for key, v in ext:
            text = v.value if isinstance(v, _Field) else v
            if text:
                parts.append(f"{key}={escape_value(text)}")
        return (prefix + header + "|" + " ".join(parts)).encode("utf-8")

    return fit(build, shrinkable, config.message_limit)


def render(alerts: Sequence[Alert], config: Config) -> list[bytes]:
    """One RFC 5424 / CEF message per alert, unframed (``send`` adds the transport framing)."""
    return [message(alert, config) for alert in alerts]


# --- sending ----------------------------------------------------------------------------------------


def frame(msg: bytes, config: Config) -> bytes:
    if config.framing == "lf":
        return msg + b"\n"
    return str(len(msg)).encode("ascii") + b" " + msg  # RFC 6587 §3.4.1 octet counting


def client_context(config: Config) -> ssl.SSLContext:
    if config.verify:
        return tls_context(config.trust)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _send_udp(rendered: list[bytes], config: Config) -> None:
    infos = socket.getaddrinfo(config.host, config.port_number, type=socket.SOCK_DGRAM)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(config.timeout_seconds)
        sock.connect(address)
        for msg in rendered:
            sock.send(msg)


def _send_stream(rendered: list[bytes], config: Config) -> None:
    ctx = client_context(config) if config.transport == "tls" else None
    raw = socket.create_connection((config.host, config.port_number), timeout=config.timeout_seconds)
    try:
        sock: socket.socket = raw
        if ctx is not None:
            sock = ctx.wrap_socket(raw, server_hostname=config.server_name or config.host)
        sock.sendall(b"".join(frame(m, config) for m in rendered))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        sock.close()
    finally:
        raw.close()


def send(rendered: list[bytes], config: Config, http: Http) -> str:
    """Deliver the messages over one connection (``http`` is not used)."""
    if not rendered:
        return "nothing to send"
    try:
        if config.transport == "udp":
            _send_udp(rendered, config)
        else:
            _send_stream(rendered, config)
    except OSError as exc:  # ssl.SSLError, TimeoutError, refused, reset, DNS...
        raise transport_error("syslog", exc, config.timeout_seconds) from None
    count = len(rendered)
    return f"{count} message{'s' if count != 1 else ''} sent ({config.transport})"

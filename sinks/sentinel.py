"""Alerts as rows of a Log Analytics custom table (Microsoft Sentinel) through the Logs Ingestion API.

The Azure Monitor **Logs Ingestion API** (a data collection rule, DCR, reached through its data
collection endpoint, DCE, with a Microsoft Entra token) — not the HTTP Data Collector API, which stops
working on 2026-09-14. Each alert is one row of the ``PimwatchAlerts_CL`` table; the columns are
:data:`COLUMNS`, documented with a sample DCR in ``docs/sentinel.md`` and ``docs/sentinel-dcr.json``.

Limits enforced by :func:`render`: every string is bounded (with the visible truncation marker), every
row stays under :data:`MAX_ROW_BYTES` (the service truncates fields over 64 KB) and the rows are split
into batches of at most :data:`MAX_CALL_BYTES` of JSON each (the service takes 1 MB per call); each
batch is one ``upload`` call, one HTTP request. Values are stored verbatim (JSON-escaped, lone
surrogates replaced): whoever renders them later (workbooks, playbooks) must escape them.

The Azure SDK (``azure-monitor-ingestion``, ``azure-identity``) is imported only by :func:`send`.
There is no idempotency: a batch sent again after a partial failure repeats rows; ``AlertId`` is the
key to deduplicate on in KQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from pimwatch.delivery import (
    MARK,
    SCHEMA_VERSION,
    Alert,
    Http,
    PermanentError,
    SinkConfig,
    SinkError,
    TransientError,
    bounded,
    certificate_error,
    certificate_problem,
    classify,
    encodable,
    json_text,
    transport_error,
    truncate,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

BATCH = True

# The table's columns, in row order: (name, Log Analytics type). docs/sentinel-dcr.json declares the same.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimeGenerated", "datetime"),
    ("AlertId", "string"),
    ("Detector", "string"),
    ("Severity", "string"),
    ("Title", "string"),
    ("Summary", "string"),
    ("PrincipalId", "string"),
    ("PrincipalUpn", "string"),
    ("PrincipalName", "string"),
    ("FirstSeen", "datetime"),
    ("LastSeen", "datetime"),
    ("Count", "int"),
    ("EventIds", "dynamic"),
    ("Context", "dynamic"),
    ("Entities", "dynamic"),
    ("Tactics", "dynamic"),
    ("Techniques", "dynamic"),
    ("Status", "string"),
    ("SchemaVersion", "int"),
    ("GroupId", "string"),
)
DEFAULT_STREAM = "Custom-PimwatchAlerts"
API_VERSION = "2023-01-01"
MAX_CALL_BYTES = 1_000_000  # the service: 1 MB per call; measured as the SDK does (json.dumps, ASCII)
MAX_ROW_BYTES = 64_000  # the service truncates a field over 64 KB; a whole row stays under that

Row = dict[str, Any]
Batches = list[list[Row]]

_DCR_ID = re.compile(r"dcr-[0-9a-fA-F]{32}")
_STREAM = re.compile(r"Custom-[A-Za-z0-9_.-]{1,200}")
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PACKAGES = {"azure.monitor.ingestion": "azure-monitor-ingestion", "azure.identity": "azure-identity"}


class Config(SinkConfig):
    type: Literal["sentinel"] = Field("sentinel", validate_default=True)
    endpoint: (
        str  # the DCE (or DCR) logs ingestion endpoint, https://<name>.<region>-1.ingest.monitor.azure.com
    )
    rule_id: str  # the DCR immutable id, dcr-<32 hex>
    stream_name: str = DEFAULT_STREAM  # the DCR input stream (streamDeclarations), Custom-...
    tenant_id: str | None = None
    client_id: str | None = None  # with client_secret: the app registration; without: a user-assigned MI
    client_secret: SecretStr | None = None  # None: DefaultAzureCredential (managed identity, workload id...)
    audience: str = "https://monitor.azure.com"  # sovereign clouds: https://monitor.azure.us, ...azure.cn
    authority_host: str | None = None  # sovereign clouds: login.microsoftonline.us, ...

    @field_validator("type")
    @classmethod
    def _sdk_installed(cls, value: str) -> str:
        """At config time, not at the first alert: the SDK is found (not imported: that waits for send)."""
        missing = [dist for module, dist in _PACKAGES.items() if not _installed(module)]
        if missing:
            raise ValueError(
                f"the sentinel sink needs {' and '.join(missing)} (pip install {' '.join(missing)})"
            )
        return value

    @field_validator("tls_ca_pem")
    @classmethod
    def _sdk_reads_a_file(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("the Azure SDK (requests) trusts a CA file only: use tls_ca_file")
        return value

    @field_validator("endpoint", "audience")
    @classmethod
    def _https_origin(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if (
            parts.scheme != "https"
            or not parts.hostname
            or parts.username
            or parts.password
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                "expected an https:// origin (scheme and host only, no path, query or credentials)"
            )
        return value.rstrip("/")

    @field_validator("rule_id")
    @classmethod
    def _dcr_id(cls, value: str) -> str:
        value = value.strip()
        if not _DCR_ID.fullmatch(value):
            raise ValueError(
                "expected the DCR immutable id (dcr- and 32 hex digits, in the DCR's JSON view), "
                "not its name or resource id"
            )
        return value

    @field_validator("stream_name")
    @classmethod
    def _custom_stream(cls, value: str) -> str:
        if not _STREAM.fullmatch(value):
            raise ValueError(
                f"expected the DCR input stream name starting with Custom- (e.g. {DEFAULT_STREAM}), "
                "letters, digits, '_', '.', '-'"
            )
        return value

    @field_validator("client_secret")
    @classmethod
    def _secret_needs_app(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not (info.data.get("tenant_id") and info.data.get("client_id")):
            raise ValueError("client_secret needs tenant_id and client_id (the app registration)")
        return value


def _installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


# ---------------------------------------------------------------------------------------------- render


@dataclass(frozen=True)
class _Limits:
    title: int
    summary: int
    name: int  # detector and principal fields
    value: int  # one string inside Context
    items: int  # event ids; list items and mapping keys inside Context
    depth: int  # Context nesting kept as structure; deeper levels become JSON text
    budget: int  # characters for all of Context (keys and values): also bounds the work done


# Tried in order until the row fits MAX_ROW_BYTES. The last level is about 1,500 characters, at most
# 12 bytes each once JSON-escaped (astral characters), so it always fits; the fallback is a safety net.
_LEVELS = (
    _Limits(title=1024, summary=4096, name=512, value=4096, items=100, depth=6, budget=24_000),
    _Limits(title=512, summary=1024, name=256, value=1024, items=25, depth=4, budget=6_000),
    _Limits(title=256, summary=512, name=128, value=256, items=10, depth=3, budget=1_500),
    _Limits(title=128, summary=256, name=64, value=64, items=5, depth=2, budget=400),
)
_EVENT_ID_CHARS = 128
_TAG_CHARS = 64  # one MITRE tactic or technique
_ENTITY_CHARS = 256  # one entity identifier (pimwatch.detection.entities.VALUE_CHARS)
_KEY_CHARS = 128
_CONTEXT_FALLBACK_CHARS = 1024


def render(alerts: Sequence[Alert], config: Config) -> Batches:
    """Rows for ``alerts`` (in order), bounded, in batches of at most MAX_CALL_BYTES of JSON."""
    batches: Batches = []
    batch: list[Row] = []
    size = 2  # "[" and "]"
    for alert in alerts:
        row = bounded_row(alert)
        n = _size(row) + 2  # ", " between rows (an overestimate by 2 for the first)
        if batch and size + n > MAX_CALL_BYTES:
            batches.append(batch)
            batch, size = [], 2
        batch.append(row)
        size += n
    if batch:
        batches.append(batch)
    return batches


def bounded_row(alert: Alert) -> Row:
    """The row for ``alert`` at the most generous limits under which it fits MAX_ROW_BYTES."""
    row: Row = {}
    for limits in _LEVELS:
        row = _row(alert, limits)
        if _size(row) <= MAX_ROW_BYTES:
            return row
    row["Context"] = {"_truncated": _text(json_text(row["Context"]), _CONTEXT_FALLBACK_CHARS)}
    return row


def _row(alert: Alert, lim: _Limits) -> Row:
    principal = alert.principal
    count = alert.count  # the events are a sample of them (pimwatch.detection.alerts.SAMPLE)
    event_ids: list[str] = [_text(eid, _EVENT_ID_CHARS) for _, eid in alert.events[: lim.items]]
    if count > len(event_ids):
        event_ids.append(f"{MARK} {count - len(event_ids)} more")
    return {
        "TimeGenerated": _text(alert.last_seen, 64),
        "AlertId": _text(alert.id, 64),
        "Detector": _text(alert.detector, lim.name),
        "Severity": alert.severity.value,
        "Title": _text(alert.title, lim.title),
        "Summary": _text(alert.summary, lim.summary),
        "PrincipalId": _text(principal.get("id"), lim.name),
        "PrincipalUpn": _text(principal.get("upn"), lim.name),
        "PrincipalName": _text(principal.get("name"), lim.name),
        "FirstSeen": _text(alert.first_seen, 64),
        "LastSeen": _text(alert.last_seen, 64),
        "Count": count,
        "EventIds": event_ids,
        "Context": bounded(
            alert.context,
            lim.value,
            lim.items,
            max_depth=lim.depth,
            key_limit=_KEY_CHARS,
            budget=lim.budget,
        ),
        "Entities": _entities(alert, lim),
        "Tactics": [_text(t, _TAG_CHARS) for t in alert.tactics[: lim.items]],
        "Techniques": [_text(t, _TAG_CHARS) for t in alert.mitre[: lim.items]],
        "Status": _text(alert.status, 32),
        "SchemaVersion": SCHEMA_VERSION,
        "GroupId": _text(alert.group or alert.id, 64),  # the alerts of one action share it
    }


def _entities(alert: Alert, lim: _Limits) -> list[Any]:
    """The alert's entities as objects (type and identifiers, for the analytic rule's entity mapping),
    bounded; those left out (by the alert's bound or this level's) counted in a last item, as in
    EventIds."""
    kept = alert.entities[: lim.items]
    rows: list[Any] = [bounded(e, min(lim.value, _ENTITY_CHARS), 6, max_depth=1, key_limit=32) for e in kept]
    more = len(alert.entities) - len(kept) + alert.entities_omitted
    if more > 0:
        rows.append(f"{MARK} {more} more")
    return rows


def _text(value: str | None, limit: int) -> str:
    """``value`` cut to ``limit`` characters with the marker, lone surrogates replaced (the service
    would reject the whole batch); otherwise verbatim: a SIEM keeps the evidence."""
    return truncate(encodable(value), limit)


def _size(value: Any) -> int:
    """Bytes of ``value`` as the SDK serialises it (``json.dumps``, ASCII-escaped)."""
    return len(json.dumps(value))


# ------------------------------------------------------------------------------------------------ send


def send(
    rendered: Batches,
    config: Config,
    http: Http,
    *,
    credential: TokenCredential | None = None,
    connection_verify: bool | str | None = None,
) -> str:
    """Upload each batch with one call. ``http`` is unused: the Azure SDK has its own pipeline (retries
    off: delivery retries). A private CA is ``tls_ca_file``; ``credential``/``connection_verify``
    (which wins over it) exist for tests."""
    if not rendered:
        return "nothing to send"
    from azure.monitor.ingestion import LogsIngestionClient

    cred = credential if credential is not None else _credential(config)
    scope = f"{config.audience}/.default"
    try:
        cred.get_token(scope)  # first, so a token problem is told apart from an ingestion one (cached)
    except Exception as exc:
        raise _token_error(exc) from None
    client = LogsIngestionClient(
        config.endpoint,
        cred,
        api_version=API_VERSION,
        credential_scopes=[scope],
        retry_total=0,
        connection_timeout=config.timeout_seconds,
        read_timeout=config.timeout_seconds,
        connection_verify=connection_verify if connection_verify is not None else config.tls_ca_file or True,
    )
    rows = calls = 0
    failed: list[Exception] = []  # with on_error the SDK neither logs nor raises: we classify
    with client:
        for batch in rendered:
            logs: list[MutableMapping[str, Any]] = list(batch)
            client.upload(
                rule_id=config.rule_id,
                stream_name=config.stream_name,
                logs=logs,
                on_error=lambda e: failed.append(e.error),
            )
            error = _upload_error(failed[0], calls, len(rendered), config.timeout_seconds) if failed else None
            failed.clear()
            if error is not None:
                raise error from None
            calls += 1
            rows += len(batch)
    return f"204 No Content: {rows} row(s) in {calls} call(s)"


_CREDENTIALS: dict[tuple[str | None, ...], TokenCredential] = {}


def _credential(config: Config) -> TokenCredential:
    """A client-secret credential, or DefaultAzureCredential (managed identity...); one per identity per
    process so its token cache is reused across delivery runs."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    secret = config.client_secret.get_secret_value() if config.client_secret is not None else None
    key = (config.tenant_id, config.client_id, secret, config.authority_host)
    cached = _CREDENTIALS.get(key)
    if cached is not None:
        return cached
    kwargs: dict[str, Any] = {}
    if config.authority_host:
        kwargs["authority"] = config.authority_host
    cred: TokenCredential
    if secret is not None and config.tenant_id and config.client_id:
        cred = ClientSecretCredential(config.tenant_id, config.client_id, secret, **kwargs)
    else:
        if config.client_id:
            kwargs["managed_identity_client_id"] = config.client_id
        if config.tenant_id:
            kwargs["workload_identity_tenant_id"] = config.tenant_id
        cred = DefaultAzureCredential(**kwargs)
    _CREDENTIALS[key] = cred
    return cred


def _token_error(exc: Exception) -> SinkError:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if (
        isinstance(exc, ClientAuthenticationError)
        and status is not None
        and 400 <= status < 500
        and status != 429
    ):
        return PermanentError(
            f"sentinel: token request rejected (HTTP {status}); check tenant_id, client_id, client_secret"
        )
    untrusted = certificate_error(exc)
    if untrusted is not None:  # the identity endpoint's certificate: permanent, as for every sink
        return PermanentError(f"sentinel: could not get a token: {certificate_problem(untrusted)}")
    what = f"HTTP {status}" if status is not None else type(exc).__name__
    return TransientError(f"sentinel: could not get a token ({what}); check the identity configuration")


def _upload_error(exc: Exception, done: int, total: int, timeout: float) -> SinkError | None:
    """The error for a failed upload call, or None when the service answered 2xx (the SDK expects
    exactly 204; every sink counts any 2xx as delivered)."""
    from azure.core.exceptions import (
        HttpResponseError,
        ServiceRequestTimeoutError,
        ServiceResponseTimeoutError,
    )

    progress = f" after {done} of {total} batch(es) were accepted (their rows may repeat)" if done else ""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        code = getattr(exc.error, "code", None) if exc.error is not None else None
        detail = f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
        response = getattr(exc, "response", None)
        headers: Mapping[str, str] = getattr(response, "headers", None) or {}
        return classify("sentinel", exc.status_code, exc.reason or "", headers, detail=detail + progress)
    timed_out = isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError)
    error = transport_error("sentinel", exc, timeout, timed_out=timed_out)
    return type(error)(f"{error}{progress}")

"""What a sink module declares and what it may use: config base, errors, the one HTTP helper.

A sink module under ``sinks/`` (its file name is the ``type`` in the config) exports:

* ``Config`` — a subclass of :class:`SinkConfig` with the sink's own fields; secrets are
  :class:`pydantic.SecretStr` and come from the environment (``${ENV}`` in the YAML);
* ``render(alerts, config) -> Any`` — PURE: the payload(s) for these alerts, golden-tested;
* ``send(rendered, config, http) -> str`` — delivers what ``render`` made, returns a short
  description of the answer (e.g. "202 Accepted"), raises :class:`TransientError` (retry later)
  or :class:`PermanentError` (dead letter);
* optionally ``BATCH = True`` — ``render`` receives every due alert of a delivery run at once (a SIEM
  batch, an e-mail digest); otherwise it receives one alert at a time;
* optionally ``RESOLVES = True`` — the sink is also given alerts that became resolved (PagerDuty's
  ``resolve``); ``alert.status`` tells which.

The toolkit every sink uses instead of its own copy (:mod:`pimwatch.delivery.text`: ``clean``,
``one_line``, ``truncate``, ``bounded``, ``json_bytes``, ``md_escape``, the time formatters;
:mod:`pimwatch.delivery.http`: ``check_url``, ``classify``, ``transport_error``) is re-exported here, and
``tests/sinks/test_conformance.py`` checks every sink module the same way (docs/writing-a-sink.md).

Retry, backoff, routing, delivery state, logging and metrics are not the sink's business: they live
in :mod:`pimwatch.delivery`, written once.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

if TYPE_CHECKING:
    import ssl

    import httpx

# The toolkit (written once in delivery.http and delivery.text; re-exported here and by the facade).
from pimwatch.delivery.http import (
    PermanentError,
    SinkError,
    TransientError,
    answer_text,
    certificate_error,
    certificate_problem,
    check_url,
    classify,
    is_loopback,
    retry_after,
    retry_after_headers,
    transport_error,
)
from pimwatch.delivery.text import (
    MARK,
    TRUNCATED,
    bounded,
    clean,
    display_time,
    encodable,
    epoch_ms,
    epoch_seconds,
    json_bytes,
    json_text,
    local_hostname,
    md_escape,
    one_line,
    preview,
    rfc3339_ms,
    truncate,
)
from pimwatch.detection.alerts import Alert, Severity

__all__ = [
    "MARK",
    "TRUNCATED",
    "Alert",
    "Http",
    "PermanentError",
    "Severity",
    "SinkConfig",
    "SinkError",
    "TransientError",
    "Trust",
    "answer_text",
    "bounded",
    "certificate_error",
    "certificate_problem",
    "check_pem_certificates",
    "check_url",
    "classify",
    "clean",
    "display_time",
    "encodable",
    "epoch_ms",
    "epoch_seconds",
    "is_loopback",
    "json_bytes",
    "json_text",
    "local_hostname",
    "md_escape",
    "one_line",
    "preview",
    "retry_after",
    "retry_after_headers",
    "rfc3339_ms",
    "tls_context",
    "transport_error",
    "truncate",
]

PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


class SinkConfig(BaseModel):
    """Routing fields every sink has; each sink's ``Config`` adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str
    min_severity: Severity = Severity.INFO
    detectors: list[str] = ["*"]  # fnmatch globs on detector ids
    exclude: list[str] = []
    timeout_seconds: float = 10.0
    # A digest: alerts of ``digest_severity`` or lower wait for the end of the current interval of
    # ``digest_minutes`` and go out together (one message with a BATCH sink such as email). 0 = off.
    digest_minutes: int = 0
    digest_severity: Severity = Severity.LOW
    # Private CAs: the PEM certificates to trust, instead of the system store, for every TLS connection
    # to this sink's endpoint. A file, or the PEM text itself (e.g. ``${SIEM_CA_PEM}`` from Key Vault).
    tls_ca_file: str | None = None
    tls_ca_pem: str | None = None
    # ``ca_file``: the older spelling of ``tls_ca_file``, still read by the sinks that had it.
    LEGACY_CA_FILE: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _legacy_ca_file(cls, data: Any) -> Any:
        if cls.LEGACY_CA_FILE and isinstance(data, dict) and "ca_file" in data:
            data = dict(data)
            if data.get("tls_ca_file") is not None:
                raise ValueError("ca_file and tls_ca_file: set only tls_ca_file (ca_file is its old name)")
            data["tls_ca_file"] = data.pop("ca_file")
        return data

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                with open(value, encoding="ascii") as f:
                    pem = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read the CA file ({type(exc).__name__})") from None
            check_pem_certificates(pem)
        return value

    @field_validator("tls_ca_pem")
    @classmethod
    def _ca_pem(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            if info.data.get("tls_ca_file") is not None:
                raise ValueError("set tls_ca_file or tls_ca_pem, not both")
            check_pem_certificates(value)
        return value

    @property
    def trust(self) -> Trust | None:
        """The private CA bundle this sink trusts, or None for the system store."""
        if self.tls_ca_file is not None:
            return Trust(file=self.tls_ca_file)
        if self.tls_ca_pem is not None:
            return Trust(pem=self.tls_ca_pem)
        return None

    def routes(self, alert: Alert) -> bool:
        if alert.severity.rank < self.min_severity.rank:
            return False
        if not any(fnmatch.fnmatchcase(alert.detector, g) for g in self.detectors):
            return False
        return not any(fnmatch.fnmatchcase(alert.detector, g) for g in self.exclude)


def check_pem_certificates(pem: str) -> None:
    """``pem`` holds PEM certificates that OpenSSL loads (a ValueError otherwise; the text is not echoed)."""
    if PEM_CERTIFICATE not in pem:
        raise ValueError("expected PEM certificates (-----BEGIN CERTIFICATE-----)")
    import ssl  # here and below: imported when used (~10 ms of every start-up otherwise)

    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"the PEM certificates do not load ({type(exc).__name__})") from None


@dataclass(frozen=True)
class Trust:
    """A private CA bundle: one file, or PEM text. ``key`` tells bundles apart (one HTTP client each)."""

    file: str | None = None
    pem: str | None = None

    @property
    def key(self) -> str:
        if self.file is not None:
            return f"file:{self.file}"
        return "pem:" + hashlib.sha256((self.pem or "").encode()).hexdigest()


def tls_context(trust: Trust | None) -> ssl.SSLContext:
    """A verifying client context (TLS 1.2+, host names checked) trusting ``trust`` alone, or the
    system store. A bundle that no longer loads (the file was removed since start) is permanent."""
    import ssl

    try:
        if trust is None:
            ctx = ssl.create_default_context()
        elif trust.file is not None:
            ctx = ssl.create_default_context(cafile=trust.file)
        else:
            ctx = ssl.create_default_context(cadata=trust.pem)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise PermanentError(f"cannot load tls_ca_file / tls_ca_pem ({type(exc).__name__})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Http:
    """The one HTTP client of all sinks: explicit timeouts, status classification, redaction.

    Answers and failures are classified by :func:`pimwatch.delivery.http.classify` and
    :func:`~pimwatch.delivery.http.transport_error` (2xx success; 429, 5xx and transport errors
    :class:`TransientError` with Retry-After; an untrusted certificate and other statuses
    :class:`PermanentError`). Error messages name the sink and the status, never
    the URL (it often holds a key: Teams Workflows signatures, Splunk tokens in headers).
    """

    def __init__(self, client: httpx.Client | None = None):
        # httpx logs every request's URL at INFO, and a sink URL can be the credential (a Teams
        # Workflows sig, a webhook token): the Functions host and ``consume`` log at INFO.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._client = client
        self._trust: Trust | None = None
        self._clients: dict[str, httpx.Client] = {}  # one per private CA bundle, shared by the views

    def for_sink(self, config: SinkConfig) -> Http:
        """This client, or a view of it that trusts the sink's private CA (same pool, same close)."""
        trust = config.trust
        if trust is None:
            return self
        view = copy.copy(self)
        view._trust = trust
        return view

    @property
    def client(self) -> httpx.Client:
        # httpx is imported on first use: a replay without HTTP sinks does not pay for it.
        import httpx

        if self._trust is not None:
            client = self._clients.get(self._trust.key)
            if client is None:
                verify = tls_context(self._trust)
                client = self._clients[self._trust.key] = httpx.Client(follow_redirects=False, verify=verify)
            return client
        if self._client is None:
            self._client = httpx.Client(follow_redirects=False)
        return self._client

    def post(
        self,
        sink: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        import httpx

        try:
            response = self.client.post(url, json=json, content=content, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            timed_out = isinstance(exc, httpx.TimeoutException)
            raise transport_error(sink, exc, timeout, timed_out=timed_out) from None
        error = classify(sink, response.status_code, response.reason_phrase, response.headers)
        if error is not None:
            raise error
        return response

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        for client in self._clients.values():
            client.close()
        self._clients.clear()

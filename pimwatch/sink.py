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

Retry, backoff, routing, delivery state, logging and metrics are not the sink's business: they live
in :mod:`pimwatch.delivery`, written once.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

if TYPE_CHECKING:
    import ssl

    import httpx

from pimwatch.alerts import Alert, Severity

TRUNCATED = " …[truncated]"
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


class SinkError(Exception):
    """A delivery failed. The message never holds a URL, a token or a payload."""


class TransientError(SinkError):
    """Worth retrying: 429, 5xx, timeouts, connection errors. ``retry_after`` in seconds if told."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(SinkError):
    """Not worth retrying (other 4xx, a payload the target rejects): the alert becomes a dead letter."""


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


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (httpx wraps it twice), if that is what it is."""
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def certificate_problem(exc: ssl.SSLCertVerificationError) -> str:
    """A permanent error's text: the server's certificate is not trusted (a configuration problem)."""
    reason = truncate(one_line(str(exc.verify_message or exc.reason or "")), 120)
    return f"TLS certificate verification failed ({reason}); set tls_ca_file for a private CA"


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]+")


def check_url(value: str, *, no_query: bool = False) -> None:
    """https, or http to a loopback address (tests), so a key never travels in clear; the URL itself
    is never echoed in the error. ``no_query``: also refuse a query string or fragment."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError("not a valid URL") from None
    if not host:
        raise ValueError("expected an absolute https:// URL")
    if no_query and (parts.query or parts.fragment):
        raise ValueError("expected no query string or fragment (the token goes in a header)")
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK):
        return
    raise ValueError("expected an https:// URL (http only to a loopback address)")


def one_line(text: str | None) -> str:
    """Control, line-separator and bidi characters as spaces: attacker text cannot forge lines."""
    return _CONTROLS.sub(" ", text or "").strip()


def truncate(text: str | None, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a visible marker (never silently)."""
    if text is None:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime  # imported when used (~10 ms of start-up)

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


class Http:
    """The one HTTP client of all sinks: explicit timeouts, status classification, redaction.

    2xx is success; 429, 5xx and transport errors are :class:`TransientError` (with Retry-After);
    other statuses are :class:`PermanentError`. Error messages name the sink and the status, never
    the URL (it often holds a key: Teams Workflows signatures, Splunk tokens in headers).
    """

    def __init__(self, client: httpx.Client | None = None):
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
        except httpx.TimeoutException:
            raise TransientError(f"{sink}: timed out after {timeout:g} s") from None
        except httpx.TransportError as exc:
            untrusted = certificate_error(exc)
            if untrusted is not None:
                raise PermanentError(f"{sink}: {certificate_problem(untrusted)}") from None
            raise TransientError(f"{sink}: connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        reason = f"{sink}: HTTP {status} {response.reason_phrase}".rstrip()
        if status == 429 or status >= 500:
            raise TransientError(reason, retry_after(response.headers.get("Retry-After")))
        raise PermanentError(reason)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        for client in self._clients.values():
            client.close()
        self._clients.clear()

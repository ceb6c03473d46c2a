"""The sink toolkit, delivery half: the errors, the URL check and the one classifier of answers.

Every sink decides "retry or dead letter" here, whatever client it uses (:class:`pimwatch.delivery.sink.Http`,
the Azure SDK, smtplib, a socket), so the same failure is classified the same way everywhere:

=========================================  ===========================================================
2xx                                        delivered
429, 5xx                                   :class:`TransientError` (``Retry-After`` honoured)
other statuses (1xx, 3xx, 4xx)             :class:`PermanentError` (redirects are not followed)
timeout, refused / reset connection, DNS   :class:`TransientError`
TLS handshake failure                      :class:`TransientError` (a network or server hiccup)
certificate verification failure           :class:`PermanentError`
=========================================  ===========================================================

An untrusted certificate is permanent for every sink (Sentinel's SDK path used to retry it): the
certificate does not become trusted by waiting; the configuration (``tls_ca_file``) or the server must
change, so retrying for hours only delays the dead-letter alert that tells a person to act.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pimwatch.delivery.text import one_line, truncate

if TYPE_CHECKING:  # ssl and email.utils are imported where used: ~10-30 ms of every start-up
    import ssl


class SinkError(Exception):
    """A delivery failed. The message never holds a URL, a token or a payload."""


class TransientError(SinkError):
    """Worth retrying: 429, 5xx, timeouts, connection errors. ``retry_after`` in seconds if told."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(SinkError):
    """Not worth retrying (other 4xx, a payload the target rejects): the alert becomes a dead letter."""


def is_loopback(host: str | None) -> bool:
    """``localhost`` or any loopback address (127.0.0.0/8, ::1): the one rule of every sink."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, *, no_query: bool = False) -> str:
    """``value`` (without a trailing ``/``) if it is https, or http to a loopback address (tests), so a
    key never travels in clear; a ValueError that never echoes the URL otherwise. ``no_query``: also
    refuse a query string or fragment."""
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
    except ValueError:
        raise ValueError("not a valid URL") from None
    if not host:
        raise ValueError("expected an absolute https:// URL")
    if no_query and (parts.query or parts.fragment):
        raise ValueError("expected no query string or fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)):
        return value.strip().rstrip("/")
    raise ValueError("expected an https:// URL (http only to a loopback address)")


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_headers(headers: Mapping[str, str]) -> float | None:
    """The wait an answer asks for: Azure's ``retry-after-ms`` / ``x-ms-retry-after-ms``, else
    ``Retry-After``. ``headers`` must look names up case-insensitively (httpx, requests, azure-core)."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        ms = headers.get(name)
        if ms and ms.strip().isdigit():
            return int(ms.strip()) / 1000
    return retry_after(headers.get("Retry-After"))


def classify(
    sink: str, status: int, reason: str = "", headers: Mapping[str, str] | None = None, *, detail: str = ""
) -> SinkError | None:
    """None for 2xx; else the error to raise: 429 and 5xx transient (with the wait the answer asks for),
    anything else permanent. ``detail`` is appended to the message (e.g. what was already accepted)."""
    if 200 <= status < 300:
        return None
    message = f"{sink}: {f'HTTP {status} {one_line(reason)}'.rstrip()}{detail}"
    if status == 429 or status >= 500:
        return TransientError(message, retry_after_headers(headers or {}))
    return PermanentError(message)


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc``, if that is what it is: the chain of causes
    and contexts, and the ``inner_exception`` / ``reason`` that azure-core and urllib3 wrap it in."""
    import ssl

    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        todo += [current.__cause__, current.__context__, *current.args]
        todo += [getattr(current, "inner_exception", None), getattr(current, "reason", None)]
    return None


def certificate_problem(exc: ssl.SSLCertVerificationError) -> str:
    """A permanent error's text: the server's certificate is not trusted (a configuration problem)."""
    why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or type(exc).__name__
    reason = truncate(one_line(str(why)), 120)
    return f"TLS certificate verification failed ({reason}); set tls_ca_file for a private CA"


def transport_error(sink: str, exc: BaseException, timeout: float, *, timed_out: bool = False) -> SinkError:
    """The error for a request that got no answer: an untrusted certificate is permanent; a timeout
    (``timed_out``, or a :class:`TimeoutError`), a TLS handshake failure or a connection failure is
    transient. The message names the exception's type, never its text (it may hold the URL)."""
    import ssl

    untrusted = certificate_error(exc)
    if untrusted is not None:
        return PermanentError(f"{sink}: {certificate_problem(untrusted)}")
    if timed_out or isinstance(exc, TimeoutError):
        return TransientError(f"{sink}: timed out after {timeout:g} s")
    if isinstance(exc, ssl.SSLError):
        reason = truncate(one_line(str(getattr(exc, "reason", None) or type(exc).__name__)), 120)
        return TransientError(f"{sink}: TLS handshake failed ({reason})")
    return TransientError(f"{sink}: connection failed ({type(exc).__name__})")


def answer_text(status: int, reason: str) -> str:
    """``202 Accepted``: what ``send`` returns for an answer."""
    return f"{status} {one_line(reason)}".strip()

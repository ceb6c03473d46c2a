"""Everything a sink author needs, in one import: ``from pimwatch.delivery import ...``.

A sink module (``sinks/<type>.py``) declares ``Config`` (a :class:`SinkConfig`) and
``send(alert, config, http)``; it raises :class:`TransientError` (retried) or :class:`PermanentError`
(dead letter) when a send fails (docs/sinks.md). The nouns:

* :class:`Alert` and its :class:`Severity`;
* :class:`SinkConfig`, :class:`Http` (the one HTTP client: TLS, timeouts, ``Retry-After``),
  :class:`SinkError`, :class:`TransientError`, :class:`PermanentError`;
* text for attacker-controlled audit fields: :func:`truncate` (with the :data:`TRUNCATED` marker),
  :func:`one_line`, :func:`check_url`, and the sandboxed templates :func:`render_template` /
  :func:`md_escape`;
* TLS helpers :func:`tls_context`, :func:`certificate_problem`, and :func:`retry_after`;
* the rest of the one toolkit (:mod:`pimwatch.delivery.text`, :mod:`pimwatch.delivery.http`): the
  cleaner :func:`clean`, bounded JSON (:func:`bounded`, :func:`json_bytes`), the status classifier
  :func:`classify`, time formatters; ``docs/writing-a-sink.md`` walks through one sink;
* ``SCHEMA_VERSION`` (of the alert payload) and ``__version__``.

The deliverer itself (outbox runs, retries, dead letters) is :mod:`pimwatch.delivery.deliverer`.
"""

from __future__ import annotations

from pimwatch import SCHEMA_VERSION, __version__
from pimwatch.delivery.sink import (
    MARK,
    TRUNCATED,
    Http,
    PermanentError,
    SinkConfig,
    SinkError,
    TransientError,
    Trust,
    answer_text,
    bounded,
    certificate_error,
    certificate_problem,
    check_pem_certificates,
    check_url,
    classify,
    clean,
    display_time,
    encodable,
    epoch_ms,
    epoch_seconds,
    is_loopback,
    json_bytes,
    json_text,
    local_hostname,
    one_line,
    preview,
    retry_after,
    retry_after_headers,
    rfc3339_ms,
    tls_context,
    transport_error,
    truncate,
)
from pimwatch.delivery.templating import render as render_template
from pimwatch.delivery.text import md_escape
from pimwatch.detection.alerts import Alert, Severity

__all__ = [
    "MARK",
    "SCHEMA_VERSION",
    "TRUNCATED",
    "Alert",
    "Http",
    "PermanentError",
    "Severity",
    "SinkConfig",
    "SinkError",
    "TransientError",
    "Trust",
    "__version__",
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
    "render_template",
    "retry_after",
    "retry_after_headers",
    "rfc3339_ms",
    "tls_context",
    "transport_error",
    "truncate",
]

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
* ``SCHEMA_VERSION`` (of the alert payload) and ``__version__``.

The deliverer itself (outbox runs, retries, dead letters) is :mod:`pimwatch.delivery.deliverer`.
"""

from __future__ import annotations

from pimwatch import SCHEMA_VERSION, __version__
from pimwatch.delivery.sink import (
    TRUNCATED,
    Http,
    PermanentError,
    SinkConfig,
    SinkError,
    TransientError,
    certificate_problem,
    check_url,
    one_line,
    retry_after,
    tls_context,
    truncate,
)
from pimwatch.delivery.templating import md_escape
from pimwatch.delivery.templating import render as render_template
from pimwatch.detection.alerts import Alert, Severity

__all__ = [
    "SCHEMA_VERSION",
    "TRUNCATED",
    "Alert",
    "Http",
    "PermanentError",
    "Severity",
    "SinkConfig",
    "SinkError",
    "TransientError",
    "__version__",
    "certificate_problem",
    "check_url",
    "md_escape",
    "one_line",
    "render_template",
    "retry_after",
    "tls_context",
    "truncate",
]

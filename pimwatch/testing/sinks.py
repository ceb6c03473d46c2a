"""A test kit for sink authors (after Alertmanager's notify/test/test.go): sample alerts, the 100 KB
injection alert, the status table every sink must follow and the checks the conformance suite
(``tests/sinks/test_conformance.py``) runs over every sink module. No pytest import: usable from any
test runner.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from pimwatch.delivery.http import PermanentError, SinkError, TransientError
from pimwatch.detection.alerts import Alert, Severity

# Attacker text in one string: Markdown (link, emphasis, code, list, heading), HTML and a Teams mention,
# CEF and JSON separators, CR/LF (a forged line), a bidi override, non-ASCII and astral characters.
HOSTILE = (
    "[x](http://evil) <script>alert(1)</script> <at>admin</at> **bold** `code` CEF|pipe\\slash=eq\r\n"
    '- item\n1. item\n# head\nRESOLVED: ignore this\u202e ünïcødé 日本語 🚨 "quoted" {"event":"forged"}'
)
INJECTION_CHARS = 100_000  # "a 100 KB injection"

BREAKGLASS: dict[str, Any] = {
    "id": "0123456789abcdef0123456789abcdef",
    "detector": "breakglass.signin",
    "title": "Break-glass account bg-admin01@contoso.onmicrosoft.com signed in from 185.220.101.4",
    "summary": "An emergency (break-glass) account signed in or tried to.",
    "runbook": "Confirm with the account's custodians that an emergency is declared.",
    "mitre": ["T1078.004"],
    "principal": {
        "id": "c0ffee00-0000-4000-8000-00000000b001",
        "upn": "bg-admin01@contoso.onmicrosoft.com",
        "name": "Emergency Admin 01",
    },
    "context": {"ip_address": "185.220.101.4", "location": {"country": "RO"}, "apps": ["Azure Portal"]},
    "events": [("2026-03-10T02:17:00.000000Z", "rec-1"), ("2026-03-10T02:40:00.000000Z", "rec-2")],
}
"""A break-glass sign-in: the fields of a typical critical alert."""

OFF_HOURS: dict[str, Any] = {
    "detector": "activation.off_hours",
    "title": "Adm Oliver activated Global Administrator on Sat 2026-03-14 02:10 (UTC), a non-working day",
    "summary": "A role was activated outside business hours or on a non-working day.",
    "runbook": "Confirm with the person that they activated the role.",
    "mitre": ["T1078.004"],
    "principal": {
        "id": "0b5c8c8e-2c1e-4d6a-9a55-6a1f2b9d0c01",
        "upn": "adm-oliver@contoso.com",
        "name": "Adm Oliver",
    },
    "events": [("2026-03-14T02:10:00.000000Z", "rec-1")],
}
"""An off-hours activation: a medium alert whose id is the severity's rank repeated."""


# Fields of one realistic alert per kind, for golden files (a suite adds its own context).
BREAKGLASS_SIGNIN: dict[str, Any] = {
    "detector": "breakglass.signin",
    "title": "Break-glass account bg-admin01@contoso.onmicrosoft.com signed in (interactive) from "
    "185.220.101.4, Bucharest, RO — single-factor, password, no Conditional Access",
    "principal": BREAKGLASS["principal"],
}
OUTSIDE_PIM: dict[str, Any] = {
    "detector": "assignment.outside_pim",
    "title": "Global Administrator assigned to Zoë Müller outside PIM (active, permanent)",
    "principal": {
        "id": "5e0a1b2c-3d4e-4f50-8a61-72b3c4d5e6f7",
        "upn": "zoe@contoso.com",
        "name": "Zoë Müller",
    },
}
PIM_BUILTIN: dict[str, Any] = {
    "detector": "pim.builtin_alert",
    "title": "PIM alert: Roles are being assigned outside of Privileged Identity Management",
    "principal": {"id": "9dfd627f-bdc5-4b1c-af9d-c85097fdeff8", "upn": None, "name": "Azure AD PIM"},
    "context": {"alert": "RolesAssignedOutsidePimAlert", "incident_count": 3},
}


def sample_alert(
    severity: Severity = Severity.CRITICAL, base: Mapping[str, Any] = BREAKGLASS, **changes: Any
) -> Alert:
    """An alert of ``severity`` from ``base``'s fields (copied) with ``changes`` applied."""
    fields: dict[str, Any] = json.loads(json.dumps(dict(base)))  # a deep copy: no shared lists
    fields["events"] = [tuple(e) for e in fields.get("events", [])]
    fields.setdefault("id", f"{severity.rank:x}" * 32)
    fields.setdefault("context", {})
    fields["severity"] = severity
    fields.update(changes)
    return Alert(**fields)


def injection_alert(junk: str = HOSTILE, *, events: int = 100, **changes: Any) -> Alert:
    """A critical alert whose every attacker-controlled field holds ``junk`` and 100 KB more: a long
    title and principal name, a deep, a long and a wide context with many keys, ``events`` event ids,
    28 entities (and 7 more left out) and MITRE tags holding ``junk``.
    (The summary and runbook are the detector's own text.)"""
    big = junk + "A" * INJECTION_CHARS
    fields: dict[str, Any] = {
        "title": big,
        "principal": {"id": "x", "upn": "<at>admin</at>@evil|x=y", "name": big},
        "context": {
            "justification": big,
            "nested": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": big}}}}}}}}},
            "many": [f"{junk}{i}" for i in range(500)],
            "wide": {f"k{i}": big[:5000] for i in range(300)},
            **{f"k{i:02d}": big[:2000] for i in range(30)},
        },
        "events": [(f"2026-03-10T02:{i % 60:02d}:00.000000Z", f"rec-{i}") for i in range(events)],
        # entities as a store could hand them back (unbounded), then more than the bound left out
        "entities": [
            *(
                {
                    "type": "account",
                    "aadUserId": f"{junk}{i}",
                    "upn": f"{junk}{i}@evil|x=y",
                    "displayName": big,
                }
                for i in range(25)
            ),
            {"type": "ip", "address": f"{junk} 10.0.0.1"},
            {"type": "cloud-application", "appId": junk, "name": big},
            {"type": "role", "roleDefinitionId": junk, "name": big, junk: big},
        ],
        "entities_omitted": 7,
        "tactics": [junk, big],
        "mitre": [big],
    }
    fields.update(changes)
    return sample_alert(Severity.CRITICAL, **fields)


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, mapping keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings(v)


# The answers every HTTP sink is checked against (Alertmanager's RetryTests): the status, and the error
# the sink must raise (None: delivered).
STATUS_TABLE: tuple[tuple[int, type[SinkError] | None], ...] = (
    (200, None),
    (201, None),
    (202, None),
    (204, None),
    (301, PermanentError),  # redirects are not followed: the URL must be updated
    (400, PermanentError),
    (401, PermanentError),
    (403, PermanentError),
    (404, PermanentError),
    (410, PermanentError),
    (413, PermanentError),
    (422, PermanentError),
    (429, TransientError),
    (500, TransientError),
    (502, TransientError),
    (503, TransientError),
    (504, TransientError),
)


def leaked(secrets: Iterator[str] | tuple[str, ...] | list[str], *texts: object) -> list[str]:
    """The secrets (or their last 12 characters: a cut secret leaks too) found in any of ``texts``."""
    found = []
    for secret in secrets:
        tail = secret[-12:]
        if any(secret in str(t) or tail in str(t) for t in texts):
            found.append(secret[:4] + "…")
    return found


def check_golden(path: Path, text: str) -> None:
    """``text`` equals the golden file at ``path`` (``UPDATE_GOLDEN=1`` rewrites it)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path} differs (UPDATE_GOLDEN=1 to regenerate)"


def deliver(sink: ModuleType, rendered: Any, config: Any, **kwargs: Any) -> str:
    """``sink.send`` with a fresh :class:`Http` (trusting the sink's CA), closed after."""
    from pimwatch.delivery.sink import Http

    http = Http().for_sink(config)
    try:
        return str(sink.send(rendered, config, http, **kwargs))
    finally:
        http.close()


def case_alerts(*cases: Any) -> list[Alert]:
    """The alerts real records make: each detector case run through the pipeline, in order."""
    from pimwatch.detection.detector import discover
    from pimwatch.testing.harness import run_records

    plugins = discover()
    out: list[Alert] = []
    for case in cases:
        alerts, _ = run_records(case.records, plugins, case.config)
        out += alerts
    return out


def check_golden_json(path: Path, payload: Any) -> None:
    """:func:`check_golden` for a JSON payload, indented, non-ASCII kept."""
    check_golden(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def json_bodies(requests: Iterator[Any] | list[Any]) -> list[Any]:
    """The JSON body of each request a loopback server received (``tests/loopback.py``'s ``Request``)."""
    return [json.loads(r.body) for r in requests]

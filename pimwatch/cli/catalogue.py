"""The detector catalogue as Markdown (``docs/detectors.md``), generated from the detectors' metadata.

``pimwatch detectors --format markdown > docs/detectors.md`` regenerates it; a test fails when the
committed file is stale.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from pimwatch.detection.detector import Plugin


def _logic(p: Plugin) -> str:
    text = p.meta.logic or inspect.getdoc(p.module) or p.meta.summary
    return " ".join(text.split())


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


# The one rule every detector's severity follows: what the on-call person must do now.
SEVERITY_RULE = [
    "## Severity: what the on-call person must do now",
    "",
    "Every detector's severity, and every severity a detector gives one alert, follows one rule:",
    "",
    "| severity | means | e.g. |",
    "|---|---|---|",
    "| critical | **page now**: privileged access is being used or protection removed, and minutes count |"
    " break-glass use, a self-approved activation, a root elevation, a weakened policy of a privileged"
    " role |",
    "| high | **act today**: a control was bypassed or an attack pattern seen; contact the person, revert |"
    " a grant outside PIM, a permanent or self-made assignment, repeated failures, a weakened policy of"
    " another role |",
    "| medium | **review** in working hours against the change record or the person's routine |"
    " a watched role activated, a new privileged assignment, an off-hours activation |",
    "| low | **record**: context for an investigation, nobody acts on it alone |"
    " a single denial, a first activation, a settings change that only strengthens |",
    "",
    "A detector declares its usual severity below; when one record says more (a settings change that"
    " weakens a privileged role, PIM's own severity of a built-in alert) the alert carries that. The"
    " config's `severity` overrides the declared one.",
    "",
    "Alerts also carry `tactics` (MITRE ATT&CK, as Sentinel names them) next to the technique ids"
    " (`mitre`), and `entities` — the accounts, IPs, apps, roles, groups and Azure resources the"
    " records name, in Sentinel's entity vocabulary (`pimwatch/detection/entities.py`).",
]


def render_markdown(plugins: Sequence[Plugin]) -> str:
    out = [
        "# Detector catalogue",
        "",
        "Generated from the detectors' metadata by `pimwatch detectors --format markdown`; do not edit by",
        "hand (a test fails when this file is stale). Every detector also accepts `enabled` and `severity`",
        "in the config (`detectors.<id>.<parameter>`).",
        "",
        *SEVERITY_RULE,
        "",
        "## Detectors",
        "",
        "| id | severity | summary |",
        "|---|---|---|",
    ]
    out += [
        f"| [`{p.meta.id}`](#{p.meta.id.replace('.', '')}) | {p.meta.severity.value} | {p.meta.summary} |"
        for p in plugins
    ]
    for p in plugins:
        m = p.meta
        out += [
            "",
            f"## {m.id}",
            "",
            f"**Severity:** {m.severity.value} · **MITRE ATT&CK:** {', '.join(m.mitre)}"
            f" · **Tactics:** {', '.join(m.tactics) if m.tactics else 'none declared'}",
        ]
        out += [f"**Anchors that have it:** {', '.join(m.anchors) if m.anchors else 'none'}", ""]
        out += [_logic(p), ""]
        inputs = ", ".join(m.kinds)
        if m.activities is not None:
            inputs += " — activities: " + ", ".join(f"`{a}`" for a in sorted(m.activities))
        if m.break_glass_only:
            inputs += " — only records that involve a break-glass account"
        if m.signin_values:
            inputs += " — sign-ins of break-glass accounts and sign-ins with " + "; ".join(
                f"`{k}` {', '.join(sorted(v))}" for k, v in sorted(m.signin_values.items())
            )
        out += [f"**Reads:** {inputs}", ""]
        w = m.window
        if w.threshold > 1:
            counted = w.distinct or "records"
            out += [
                f"**Window:** {w.threshold} or more distinct {counted} per key within {w.within_minutes}"
                " minutes (`threshold`, `within_minutes`)",
                "",
            ]
        out += ["| parameter | default |", "|---|---|"]
        out += [f"| `{k}` | `{_value(v)}` |" for k, v in m.defaults().items()]
        out += [""]
        out += [f"**Runbook:** {m.runbook}"]
    return "\n".join(out) + "\n"

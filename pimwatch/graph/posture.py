"""Posture checks: the plug-in contract, discovery, one run, and its findings into the outbox.

A check is one module in ``posture/`` (like ``detectors/``) defining ``CHECK`` (a :class:`Check`) and
``run(snapshot, params, context) -> list[Finding]``. A run (:func:`collect`, async, the only part
that talks to Graph) reads the sources the enabled checks declare, once each, then runs every check
on that snapshot. :func:`apply` (sync, inside the store's unit of work) turns each finding into an
alert in the same outbox as the detectors' (so the same routing and sinks), with a stable id:

* a finding is an *episode*: its alert id is ``alert_id(check, finding key, episode start)``; the
  start is kept in the store (``posture:open:<check>``), so every later run that still sees it folds
  into the same alert (it fires once);
* a check that ran and no longer reports a key resolves that alert; a later violation of the same
  key is a new episode, a new alert;
* a check that could not run (a missing permission, Graph down, no P2) changes nothing: its open
  findings stay open, and the run reports why it could not run.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from pimwatch.config import Config, ConfigError, _loc
from pimwatch.detection.alerts import Alert, Severity, alert_id
from pimwatch.detection.contract import KV, Outbox
from pimwatch.detection.detector import Params, Settings
from pimwatch.detection.engine import ChangeResult
from pimwatch.detection.timeutil import iso
from pimwatch.graph.baseline import Baseline
from pimwatch.graph.client import GraphClient, NotLicensed, PermissionDenied
from pimwatch.graph.snapshot import Snapshot
from pimwatch.graph.sources import SOURCES, Failure, fetch_sources, has_p2

log = logging.getLogger("pimwatch.posture")
OPEN = "posture:open:"  # + check id: {finding key: episode start (ISO)}


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    severity: Severity
    sources: tuple[str, ...]
    anchors: tuple[str, ...]  # "P1 ..." rows of graph-and-report.md §1.3 and who implements them
    runbook: str
    params: type[Params] = Params
    needs_p2: bool = True  # reads PIM data: cannot run without Entra ID P2 / ID Governance


@dataclass(frozen=True)
class Finding:
    key: str  # stable within the check: what is wrong where (no "|")
    title: str
    evidence: dict[str, Any]
    principal: dict[str, str | None] | None = None
    severity: Severity | None = None  # None: the check's


@dataclass(frozen=True)
class Context:
    settings: Settings  # break-glass accounts, privileged roles (the config's)
    baseline: Baseline
    now: datetime


RunFn = Callable[[Snapshot, Any, Context], list[Finding]]


@dataclass(frozen=True)
class CheckPlugin:
    meta: Check
    run: RunFn


def discover(package: str = "posture") -> list[CheckPlugin]:
    """Every module of ``package`` defining ``CHECK``, sorted by id."""
    pkg = importlib.import_module(package)
    found: list[CheckPlugin] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        meta = getattr(mod, "CHECK", None)
        if isinstance(meta, Check):
            found.append(CheckPlugin(meta, mod.run))
    ids = [p.meta.id for p in found]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RuntimeError(f"duplicate posture check ids: {dupes}")
    unknown = sorted({s for p in found for s in p.meta.sources} - set(SOURCES))
    if unknown:
        raise RuntimeError(f"posture checks read unknown sources: {unknown}")
    return sorted(found, key=lambda p: p.meta.id)


@dataclass(frozen=True)
class Enabled:
    plugin: CheckPlugin
    severity: Severity
    params: Any


def configure(config: Config, plugins: Sequence[CheckPlugin], source: str = "config") -> list[Enabled]:
    """The enabled checks with their validated parameters (``posture.checks.<id>.<key>`` errors)."""
    known = {p.meta.id: p for p in plugins}
    problems: list[str] = []
    for cid in config.posture.checks:
        if cid not in known:
            problems.append(f"posture.checks.{cid}: unknown check id (known: {', '.join(sorted(known))})")
    out: list[Enabled] = []
    for cid, plugin in known.items():
        values = dict(config.posture.checks.get(cid) or {})
        path = f"posture.checks.{cid}"
        enabled = values.pop("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(f"{path}.enabled: expected true or false, got {enabled!r}")
        severity = plugin.meta.severity
        if "severity" in values:
            raw = values.pop("severity")
            try:
                severity = Severity(str(raw).lower())
            except ValueError:
                problems.append(
                    f"{path}.severity: expected one of critical, high, medium, low, info, got {raw!r}"
                )
        try:
            params = plugin.meta.params.model_validate(values)
        except ValidationError as exc:
            for d in exc.errors():
                msg = "unknown key" if d["type"] == "extra_forbidden" else d["msg"]
                problems.append(f"{path}.{_loc(d['loc'])}: {msg}")
            continue
        if enabled is True:
            out.append(Enabled(plugin, severity, params))
    if problems:
        raise ConfigError(source, problems)
    return out


@dataclass
class CheckResult:
    id: str
    status: str  # "ran", "error" (could not run: why), "skipped" (no P2)
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""
    severity: Severity = Severity.MEDIUM
    plugin: CheckPlugin | None = None


@dataclass
class Outcome:
    checks: list[CheckResult]
    requests: int
    licensed: bool | None  # None: unknown (subscribedSkus not read)

    @property
    def complete(self) -> bool:
        return all(c.status != "error" for c in self.checks)


async def collect(client: GraphClient, enabled: Sequence[Enabled], context: Context) -> Outcome:
    """Read what the enabled checks need (once each) and run them. Always the whole tenant: a check
    that ran resolves what it no longer sees, so it must have seen everything."""
    before = len(client.calls)
    wanted = {s for e in enabled for s in e.plugin.meta.sources}
    snap = Snapshot(context.settings, context.baseline, context.now)
    failed: dict[str, Failure] = {}
    licensed: bool | None = None
    if "subscribed_skus" in wanted or any(e.plugin.meta.needs_p2 for e in enabled):
        failed.update(await fetch_sources(client, snap, ["subscribed_skus"]))
        if "subscribed_skus" not in failed:
            licensed = has_p2(snap.subscribed_skus)
    skip = licensed is False
    need = sorted(
        {s for e in enabled if not (skip and e.plugin.meta.needs_p2) for s in e.plugin.meta.sources}
        - {"subscribed_skus"}
    )
    failed.update(await fetch_sources(client, snap, need))
    results: list[CheckResult] = []
    for e in enabled:
        meta = e.plugin.meta
        r = CheckResult(meta.id, "ran", severity=e.severity, plugin=e.plugin)
        missing = [s for s in meta.sources if s in failed]
        if skip and meta.needs_p2:
            r.status, r.reason = (
                "skipped",
                "the tenant has no Entra ID P2 / ID Governance: PIM data cannot be read",
            )
        elif missing:
            r.status, r.reason = "error", _why(meta.id, missing, failed)
        else:
            try:
                r.findings = sorted(e.plugin.run(snap, e.params, context), key=lambda f: f.key)
            except Exception as exc:  # a check's bug must not stop the others
                log.exception("posture check %s failed", meta.id)
                r.status, r.reason = "error", f"{meta.id}: internal error {type(exc).__name__}"
        results.append(r)
    return Outcome(results, len(client.calls) - before, licensed)


def _why(check: str, missing: Sequence[str], failed: Mapping[str, Failure]) -> str:
    parts = []
    for s in missing:
        origin, err = failed[s]
        if isinstance(err, NotLicensed):
            parts.append(f"{check} cannot run: the tenant's license does not include it ({err})")
        elif isinstance(err, PermissionDenied):
            parts.append(f"{check} needs {SOURCES[origin].permission} ({err})")
        else:
            parts.append(f"{check} could not read {SOURCES[origin].what}: {err}")
    return "; ".join(dict.fromkeys(parts))


class PostureStore(KV, Outbox, Protocol):
    """What :func:`apply` needs of the store."""


def apply(store: PostureStore, outcome: Outcome, now: datetime) -> list[tuple[str, ChangeResult]]:
    """Findings into the outbox (inside the caller's unit of work): (alert id, change) pairs."""
    at = iso(now)
    changes: list[tuple[str, ChangeResult]] = []
    for r in outcome.checks:
        if r.status != "ran" or r.plugin is None:
            continue  # could not look: what was open stays open
        episodes = store.get(OPEN + r.id)
        episodes = dict(episodes) if isinstance(episodes, dict) else {}
        current: dict[str, str] = {}
        for f in r.findings:
            start = episodes.get(f.key) or at
            current[f.key] = start
            alert = to_alert(r.plugin.meta, r.severity, f, start)
            if store.merge_alert(alert) == "new":
                changes.append((alert.id, "new"))
        for key in sorted(set(episodes) - set(current)):
            changes += [(aid, "resolved") for aid in store.resolve_alerts(r.id, key, at)]
        if current != episodes:
            store.put(OPEN + r.id, current)
    return changes


def to_alert(meta: Check, severity: Severity, f: Finding, start: str) -> Alert:
    return Alert(
        id=alert_id(meta.id, f.key, start),
        detector=meta.id,
        severity=f.severity or severity,
        title=f.title,
        summary=meta.title,
        runbook=meta.runbook,
        mitre=[],
        principal=f.principal or {"id": None, "upn": None, "name": None},
        context={"finding": f.key, **f.evidence},
        events=[(start, f"posture:{meta.id}:{f.key}:{start}")],
        key=f.key,
        bucket=start,
    )

"""The targeted re-check: a role or group is checked against the baseline within seconds of the record
that changed it, with a few targeted Graph reads, never a full scan.

The Event Hub batch only notes what changed (:mod:`pimwatch.detection.directory`: ``recheck:queue``,
insert-if-absent members, in the batch's unit of work; Graph is never called there). The Functions
``recheck`` timer (every 10 seconds, function_app.py) calls :func:`timer`:

1. one unit of work takes the queue (reads and removes its members) and reads the enrichment; when
   the queue is empty and the enrichment is fresh, that is all (no Graph client, no ``msgraph``
   import);
2. the enrichment is read again when its TTL is over or a watched group's membership changed
   (:mod:`pimwatch.graph.enrich`);
3. per target, only the reads its checks need, and only the finding keys they cover:

   * ``role/<id>/settings``: the role's policy (``…roleManagementPolicyAssignments?$filter=… and
     roleDefinitionId eq '<id>'``) → ``posture.policy_drift`` (keys ``role/<id>/``) and
     ``posture.notifications`` (``<id>/``);
   * ``role/<id>/assignments``: the role's assignment schedules and instances (``$filter=
     roleDefinitionId eq '<id>'``) → ``posture.permanent_assignment`` and ``posture.outside_pim``
     (``<id>/``);
   * ``group/<id>/settings``: the group's policies and those of the roles it holds (known from the
     enrichment) → ``posture.policy_drift`` (``group/<id>/`` and the roles');
   * ``group/<id>/members`` of a watched group: the enrichment is read again (break-glass group
     members, privileged principals).

   Role names come from the enrichment (one ``roleDefinitions`` read when it has none);
4. the findings go into the outbox through :meth:`pimwatch.hosting.runtime.Runtime.apply` with their
   scope (:func:`pimwatch.graph.posture.apply`): only the re-checked keys are raised or resolved, every
   other open finding stays as the last full run left it.

Debounce: the queue is a set, so any number of changes to one role before the next drain make one
re-check. A read that fails for a transient reason (Graph unreachable, 5xx after the retries) puts
the targets back for the next run; a missing permission or licence does not (the 6-hourly full run
reports it). Tenant-wide checks (counts, ratios, break-glass, stale eligibility) wait for that run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pimwatch.detection.directory import QUEUE, Directory, enrich
from pimwatch.detection.engine import ChangeResult
from pimwatch.graph import baseline as baselines
from pimwatch.graph import enrich as enrichment
from pimwatch.graph.client import GraphClient, GraphError, NotLicensed, PermissionDenied
from pimwatch.graph.posture import (
    CheckResult,
    Context,
    Enabled,
    Outcome,
    apply,
    configure,
    discover,
    run_check,
)
from pimwatch.graph.snapshot import Snapshot
from pimwatch.graph.sources import POLICY_EXPAND

log = logging.getLogger("pimwatch.recheck")
DRIFT, NOTIFY = "posture.policy_drift", "posture.notifications"
PERMANENT, OUTSIDE = "posture.permanent_assignment", "posture.outside_pim"
_FIRST = datetime(1970, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 1, 1, tzinfo=UTC)


def take(store: Any) -> list[str]:
    """The queued re-checks, removed from the queue (inside the caller's unit of work)."""
    members = sorted({m.member for m in store.members(QUEUE, _FIRST, _LAST)})
    for m in members:
        store.remove(QUEUE, m)
    return members


@dataclass
class Plan:
    """What the queued items ask for."""

    settings: set[str] = field(default_factory=set)  # role ids
    assignments: set[str] = field(default_factory=set)  # role ids
    group_settings: set[str] = field(default_factory=set)  # group ids
    members: set[str] = field(default_factory=set)  # group ids

    @classmethod
    def of(cls, items: Sequence[str]) -> Plan:
        p = cls()
        for item in items:
            scope, _, rest = item.partition("/")
            oid, _, kind = rest.partition("/")
            if not oid:
                continue
            if scope == "role":
                (p.settings if kind == "settings" else p.assignments).add(oid)
            elif scope == "group":
                (p.group_settings if kind == "settings" else p.members).add(oid)
        return p


async def recheck(
    client: GraphClient, enabled: Sequence[Enabled], context: Context, directory: Directory, plan: Plan
) -> tuple[Outcome, dict[str, tuple[str, ...]]]:
    """The targeted reads and the checks they feed; the outcome and its scope (finding key prefixes
    per check). Raises :class:`GraphError` when a read fails (nothing is then applied)."""
    before = len(client.calls)
    snap = Snapshot(context.settings, context.baseline, context.now)
    ids = {e.plugin.meta.id for e in enabled}
    scope: dict[str, list[str]] = {}
    roles = set(plan.settings)
    for gid in sorted(plan.group_settings):
        held = directory.groups.get(gid, ())
        roles |= set(held)
        # the roles the group holds (from the enrichment) give it its tier, as in a full run
        snap.eligibility_instances += [
            {"roleDefinitionId": r, "principal": {"@odata.type": "#microsoft.graph.group", "id": gid}}
            for r in held
        ]
        if DRIFT in ids:
            snap.group_policies[gid] = await client.get_all(
                "policies/roleManagementPolicyAssignments",
                {"$filter": f"scopeId eq '{gid}' and scopeType eq 'Group'", "$expand": POLICY_EXPAND},
            )
            scope.setdefault(DRIFT, []).append(f"group/{gid}/")
    if roles and ids & {DRIFT, NOTIFY}:
        for rid in sorted(roles):
            flt = f"scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '{rid}'"
            snap.role_policies += await client.get_all(
                "policies/roleManagementPolicyAssignments", {"$filter": flt, "$expand": POLICY_EXPAND}
            )
            scope.setdefault(DRIFT, []).append(f"role/{rid}/")
            scope.setdefault(NOTIFY, []).append(f"{rid}/")
    if plan.assignments and ids & {PERMANENT, OUTSIDE}:
        for rid in sorted(plan.assignments):
            q = {"$filter": f"roleDefinitionId eq '{rid}'", "$expand": "principal"}
            snap.assignment_schedules += await client.get_all(
                "roleManagement/directory/roleAssignmentSchedules", q
            )
            if OUTSIDE in ids:
                snap.assignment_instances += await client.get_all(
                    "roleManagement/directory/roleAssignmentScheduleInstances", q
                )
            scope.setdefault(PERMANENT, []).append(f"{rid}/")
            scope.setdefault(OUTSIDE, []).append(f"{rid}/")
    if scope:
        if directory.role_names:
            snap.role_definitions = [
                {"id": r, "templateId": r, "displayName": n} for r, n in sorted(directory.role_names.items())
            ]
        else:
            snap.role_definitions = await client.get_all(
                "roleManagement/directory/roleDefinitions", {"$select": "id,displayName,templateId"}
            )
    results = []
    for e in enabled:
        meta = e.plugin.meta
        if meta.id not in scope:
            continue
        r = CheckResult(meta.id, "ran", severity=e.severity, plugin=e.plugin)
        run_check(r, e, snap, context)
        results.append(r)
    return Outcome(results, len(client.calls) - before, None), {k: tuple(v) for k, v in scope.items()}


def timer(runtime: Any, now: datetime, *, client: GraphClient | None = None) -> dict[str, Any]:
    """The Functions ``recheck`` timer (and the tests): drain the queue, refresh the enrichment when
    due, re-check the targets, apply the findings through the runtime."""
    config = runtime.config
    posture = config.posture
    ttl = timedelta(minutes=posture.enrichment_ttl_minutes)

    def start(store: Any) -> tuple[list[str], Directory, bool]:
        items = take(store) if posture.recheck else []
        return items, Directory.read(store), enrichment.due(store, now, ttl)

    items, directory, stale = runtime.work(start)
    plan = Plan.of(items)
    watched = set(directory.groups) | set(config.settings.break_glass_groups)
    refresh = ttl > timedelta(0) and (stale or bool(plan.members & watched))
    out: dict[str, Any] = {"rechecked": items, "enrichment": "fresh", "requests": 0, "findings": 0}
    if not items and not refresh:
        return out
    enabled = configure(config, discover())
    baseline = baselines.load(posture.baseline)
    if client is None:
        client = GraphClient(config.graph)
    got: enrichment.Read | None = None
    enrich_error: GraphError | None = None
    outcome: Outcome | None = None
    scope: dict[str, tuple[str, ...]] = {}
    requeue = False

    async def go() -> None:
        nonlocal got, enrich_error, outcome, scope, requeue, directory
        try:
            if refresh:
                try:
                    got = await enrichment.read(client, config.settings, now)
                    directory = Directory.from_doc(got.doc)
                except GraphError as exc:
                    enrich_error = exc
            context = Context(enrich(config.settings, directory), baseline, now)
            try:
                outcome, scope = await recheck(client, enabled, context, directory, plan)
            except GraphError as exc:
                log.warning("re-check of %s failed: %s", ", ".join(items), exc)
                requeue = not isinstance(exc, (PermissionDenied, NotLicensed))
        finally:
            await client.close()

    asyncio.run(go())

    def changes(store: Any) -> list[tuple[str, ChangeResult]]:
        if got is not None:
            enrichment.write(store, got, now, ttl)
        elif enrich_error is not None:
            enrichment.failed(store, now, enrich_error)
        if requeue:
            for item in items:
                store.add(QUEUE, item, now)
        return apply(store, outcome, now, scope) if outcome is not None else []

    report = runtime.apply(now, changes)
    out.update(
        enrichment="read" if got else "failed" if enrich_error else "fresh",
        requests=len(client.calls),
        findings=sum(len(c.findings) for c in outcome.checks) if outcome else 0,
        requeued=requeue,
        queued=report.queued,
    )
    return out

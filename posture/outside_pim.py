"""P5: a privileged role assigned outside PIM (directly, through the role-assignments API). The anchors
define it differently; the finding says which definitions fired:

* ``maester`` (CISA MS.AAD.7.5 in Maester): the assignment *schedule* has ``createdUsing`` null or
  ``scheduleInfo.startDateTime`` null;
* ``scubagear`` (ScubaGear 7.5): the schedule *instance* has ``startDateTime`` null.

(ZTA 21816 compares ``directoryRoles/{id}/members`` with the instances; not read here.) Break-glass
accounts are left out unless ``include_break_glass``."""

from __future__ import annotations

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Json, Snapshot, kind, label, who


class Params(Base):
    include_break_glass: bool = False


CHECK = Check(
    id="posture.outside_pim",
    title="Privileged role assigned outside PIM",
    severity=Severity.HIGH,
    sources=("role_definitions", "assignment_schedules", "assignment_instances"),
    anchors=(
        "P5",
        "CISA MS.AAD.7.5",
        "Maester CISA.MS.AAD.7.5",
        "ScubaGear 7.5",
        "ZTA 21816",
        "PIM RolesAssignedOutsidePimAlert",
    ),
    runbook=(
        "Remove the direct role assignment and make it through PIM (eligible, with the role's activation "
        "settings); find who made it in the audit log ('Add member to role' outside PIM)."
    ),
    params=Params,
)


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    fired: dict[str, tuple[str, Json, set[str], set[str]]] = {}  # key -> role, principal, definitions, ids

    def note(row: Json, definition: str) -> None:
        rid = str(row.get("roleDefinitionId") or "")
        if str(row.get("assignmentType") or "Assigned") != "Assigned" or not snap.is_privileged(rid):
            return
        p = row.get("principal") or {"id": row.get("principalId")}
        if not params.include_break_glass and snap.is_break_glass(p):
            return
        key = f"{rid.lower()}/{str(p.get('id') or row.get('principalId') or '').lower()}"
        entry = fired.setdefault(key, (rid, p, set(), set()))
        entry[2].add(definition)
        entry[3].add(str(row.get("id")))

    for row in snap.assignment_schedules:
        if row.get("createdUsing") is None or (row.get("scheduleInfo") or {}).get("startDateTime") is None:
            note(row, "maester")
    for row in snap.assignment_instances:
        if row.get("startDateTime") is None:
            note(row, "scubagear")
    out = []
    for key, (rid, p, definitions, ids) in sorted(fired.items()):
        role = snap.role_name(rid)
        out.append(
            Finding(
                key=key,
                title=f"{label(p)} holds {role} through an assignment made outside PIM",
                evidence={
                    "role": role,
                    "role_id": rid,
                    "principal_type": kind(p),
                    "definitions": sorted(definitions),
                    "ids": sorted(ids),
                },
                principal=who(p),
            )
        )
    return out

"""What the directory says (read through Microsoft Graph by :mod:`pimwatch.graph.enrich`), and the
queue of targeted posture re-checks (drained by :mod:`pimwatch.graph.recheck`).

Detection never talks to Graph: the Graph side writes, the detection side reads, through the store.

* **Enrichment** (``directory:enrichment``, one small document): the members of the configured
  ``break_glass.groups`` (treated as break-glass accounts exactly like ``break_glass.accounts``: the
  sign-in screen, ``breakglass.*``, the audit screen), the role names by id, and the groups that hold
  a role. The privileged principals found in eligibility and active instances are written by the
  Graph side into the same windows as the ones learned from the stream
  (:mod:`pimwatch.detection.principals`), so ``credentials.privileged_changed`` knows them without
  having seen their assignment. A pipeline reads the document when it is built
  (:func:`enriched`); when the document changes the runtime builds its pipeline again
  (:attr:`pimwatch.detection.pipeline.Pipeline.stale`).
* **Re-check queue** (``recheck:queue``, window members): a successful ``Update role setting in PIM``,
  role-assignment or (for a watched group) group-membership record notes what it changed, as
  ``role/<id>/settings``, ``role/<id>/assignments``, ``group/<id>/settings`` or
  ``group/<id>/members``, in the batch's own unit of work. A member is insert-if-absent: any number of
  changes to one role before the next drain make one re-check (the debounce). Nothing here reads
  Graph, and a record whose activity is not one of these costs one set lookup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pimwatch.detection.activities import ROLE_SETTING_UPDATED
from pimwatch.detection.contract import Store
from pimwatch.detection.detector import DetectorConfig, Settings
from pimwatch.detection.event import Event

DIRECTORY = "directory:enrichment"
QUEUE = "recheck:queue"

# Completed changes of who holds a role (not activations: they change no posture finding).
ROLE_ASSIGNMENTS: frozenset[str] = frozenset(
    {
        "Add member to role in PIM completed (permanent)",
        "Add member to role in PIM completed (timebound)",
        "Add eligible member to role in PIM completed (permanent)",
        "Add eligible member to role in PIM completed (timebound)",
        "Remove member from role in PIM completed (permanent)",
        "Remove member from role in PIM completed (timebound)",
        "Remove eligible member from role in PIM completed (permanent)",
        "Remove eligible member from role in PIM completed (timebound)",
        "Remove permanent direct role assignment",
        "Remove permanent eligible role assignment",
        "Restore member from role in PIM completed",
        "Restore eligible member from role in PIM completed",
        "Add member to role",
        "Add eligible member to role",
        "Add scoped member to role",
        "Remove member from role",
        "Remove eligible member from role",
        "Add member to role outside of PIM (permanent)",
    }
)
# Core Directory group membership (entra-events.md §3.1, GroupManagement): noted for watched groups only.
GROUP_MEMBERSHIP: frozenset[str] = frozenset({"Add member to group", "Remove member from group"})
ROLE_CHANGES: frozenset[str] = ROLE_ASSIGNMENTS | {ROLE_SETTING_UPDATED}


@dataclass(frozen=True)
class Directory:
    """The enrichment document, read tolerantly (a missing or damaged one is empty)."""

    read_at: str | None = None
    break_glass_ids: frozenset[str] = frozenset()
    break_glass_upns: frozenset[str] = frozenset()
    role_names: Mapping[str, str] = field(default_factory=dict)  # role id (lower-case) -> name
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group id -> role ids it holds

    @classmethod
    def from_doc(cls, doc: Any) -> Directory:
        if not isinstance(doc, dict):
            return cls()
        bg, roles, groups = (_dict(doc, k) for k in ("break_glass", "roles", "groups"))
        return cls(
            str(doc["read_at"]) if doc.get("read_at") else None,
            _lower(bg.get("ids")),
            _lower(bg.get("upns")),
            {str(k).lower(): str(v) for k, v in roles.items()},
            {str(g).lower(): tuple(str(r) for r in rs) for g, rs in groups.items() if isinstance(rs, list)},
        )

    @classmethod
    def read(cls, store: Store) -> Directory:
        return cls.from_doc(store.get(DIRECTORY))


def _dict(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _lower(values: Any) -> frozenset[str]:
    return frozenset(str(v).lower() for v in values) if isinstance(values, list) else frozenset()


@dataclass(frozen=True)
class Enriched:
    """A :class:`~pimwatch.detection.detector.DetectionConfig` whose settings include the directory's."""

    settings: Settings
    detectors: Mapping[str, DetectorConfig]


def enrich(settings: Settings, directory: Directory) -> Settings:
    """``settings`` with the break-glass group members added to the configured accounts."""
    if not directory.break_glass_ids and not directory.break_glass_upns:
        return settings
    return dataclasses.replace(
        settings,
        break_glass_ids=settings.break_glass_ids | directory.break_glass_ids,
        break_glass_upns=settings.break_glass_upns | directory.break_glass_upns,
    )


class Rechecks:
    """Notes the posture re-checks a record asks for (one per target and kind until drained)."""

    def __init__(self, store: Store, settings: Settings, directory: Directory) -> None:
        self._store = store
        self.groups = frozenset(directory.groups) | settings.break_glass_groups  # watched groups
        self.activities = ROLE_CHANGES | (GROUP_MEMBERSHIP if self.groups else frozenset())

    def note(self, event: Event) -> str | None:
        """The queue member this record adds (None: not a change to re-check)."""
        if event.activity not in self.activities or event.failed:
            return None
        group = (event.scope_id or "").lower() if event.scope_type == "group" else ""
        if event.activity in GROUP_MEMBERSHIP:
            what = f"group/{group}/members" if group in self.groups else None
        elif event.activity == ROLE_SETTING_UPDATED:
            what = f"group/{group}/settings" if group else _role(event, "settings")
        else:
            what = f"group/{group}/members" if group else _role(event, "assignments")
        if what is not None:
            self._store.add(QUEUE, what, event.time)
        return what


def _role(event: Event, kind: str) -> str | None:
    rid = (event.role_id or "").lower()
    return f"role/{rid}/{kind}" if rid else None

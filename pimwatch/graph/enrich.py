"""Directory enrichment read from Microsoft Graph and cached in the store with a TTL
(``posture.enrichment_ttl_minutes``, default 60; 0: never read).

What is read (the posture sources, :mod:`pimwatch.graph.sources`, written once): role definitions
(names by id), eligibility and active assignment instances with their principals, the members of the
groups that hold a role, and the transitive members of ``break_glass.groups``. What is written, in
the caller's unit of work (the re-check timer, :mod:`pimwatch.graph.recheck`):

* ``directory:enrichment`` (:mod:`pimwatch.detection.directory`): the break-glass group members, role
  names, the groups that hold a role, and when it was read (a new ``read_at`` makes every instance
  build its pipeline again, so the sign-in screen and ``breakglass.*`` see the members);
* the privileged principals (users and service principals holding a privileged role, directly or
  through a group) into the windows of :mod:`pimwatch.detection.principals`, where the detectors
  that learn them from the stream (``credentials.privileged_changed``) already look;
* ``directory:due``: when to read again (``read_at`` + TTL; after a failed read, 5 minutes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pimwatch.detection.detector import Settings
from pimwatch.detection.directory import DIRECTORY
from pimwatch.detection.principals import IDS, UPNS
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.graph.baseline import Baseline
from pimwatch.graph.client import GraphClient, GraphError
from pimwatch.graph.snapshot import Json, Snapshot, kind
from pimwatch.graph.sources import fetch_sources

log = logging.getLogger("pimwatch.enrich")
DUE = "directory:due"  # ISO time the enrichment is read again
RETRY = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # principals' members are stamped at the epoch
SOURCES = (
    "role_definitions",
    "assignment_instances",
    "eligibility_instances",
    "group_members",
    "group_eligibility",
)


def due(store: Any, now: datetime, ttl: timedelta) -> bool:
    """Whether the enrichment must be read (never read, or its TTL is over)."""
    if ttl <= timedelta(0):
        return False
    at = parse_time(store.get(DUE))
    return at is None or now >= at


@dataclass(frozen=True)
class Read:
    doc: Json
    privileged_ids: frozenset[str]
    privileged_upns: frozenset[str]


async def read(client: GraphClient, settings: Settings, now: datetime) -> Read:
    """Everything the enrichment holds, from Graph (raises :class:`GraphError`)."""
    snap = Snapshot(settings, Baseline(()), now)
    failed = await fetch_sources(client, snap, SOURCES)
    if failed:
        raise next(iter(failed.values()))[1]
    ids: set[str] = set()
    upns: set[str] = set()
    groups: dict[str, set[str]] = {}
    for h in snap.holders():
        if h.via_group is None and kind(h.principal) == "group" and h.id:
            groups.setdefault(h.id.lower(), set()).add(h.role_id.lower())
        if not h.id or not snap.is_privileged(h.role_id) or kind(h.principal) == "group":
            continue
        ids.add(h.id.lower())
        if h.principal.get("userPrincipalName"):
            upns.add(str(h.principal["userPrincipalName"]).lower())
    bg_ids: set[str] = set()
    bg_upns: set[str] = set()
    for gid in sorted(settings.break_glass_groups):
        for m in await client.get_all(
            f"groups/{gid}/transitiveMembers", {"$select": "id,userPrincipalName,displayName"}
        ):
            if m.get("id"):
                bg_ids.add(str(m["id"]).lower())
            if m.get("userPrincipalName"):
                bg_upns.add(str(m["userPrincipalName"]).lower())
    roles: dict[str, str] = {}
    for d in snap.role_definitions:
        for key in (d.get("id"), d.get("templateId")):
            if key and d.get("displayName"):
                roles[str(key).lower()] = str(d["displayName"])
    doc: Json = {
        "read_at": iso(now),
        "break_glass": {"ids": sorted(bg_ids), "upns": sorted(bg_upns)},
        "roles": dict(sorted(roles.items())),
        "groups": {g: sorted(rs) for g, rs in sorted(groups.items())},
    }
    return Read(doc, frozenset(ids), frozenset(upns))


def write(store: Any, got: Read, now: datetime, ttl: timedelta) -> int:
    """Store what :func:`read` returned (in the caller's unit of work); the principals newly known."""
    store.put(DIRECTORY, got.doc)
    store.put(DUE, iso(now + ttl))
    new = 0
    for key, values in ((IDS, got.privileged_ids), (UPNS, got.privileged_upns)):
        known = {m.member for m in store.members(key, _EPOCH, _EPOCH)}
        for v in sorted(values - known):
            store.add(key, v, _EPOCH)
            new += 1
    return new


def failed(store: Any, now: datetime, err: GraphError) -> None:
    """A read that failed: keep the old document, try again in :data:`RETRY`."""
    log.warning("directory enrichment not read (kept the previous one): %s", err)
    store.put(DUE, iso(now + RETRY))

"""The entities an alert is about (accounts, IPs, apps, roles), in Microsoft Sentinel's vocabulary.

One entity is a flat dict of strings: ``type`` and its identifiers, named after the Sentinel entity
kind and identifiers they map to (entities reference of Microsoft Sentinel):

=====================  ==========================================  ==================================
``type``               identifiers                                 Sentinel kind (identifiers)
=====================  ==========================================  ==================================
``account``            ``aadUserId``, ``upn``, ``displayName``     Account (AadUserId; Name+UPNSuffix)
``ip``                 ``address``                                 IP (Address)
``cloud-application``  ``appId`` or ``id``, ``name``               CloudApplication (AppId, Name)
``security-group``     ``objectGuid``, ``name``                    SecurityGroup (ObjectGuid)
``azure-resource``     ``resourceId``, ``name``                    AzureResource (ResourceId)
``role``               ``roleDefinitionId``, ``name``              none: Sentinel has no role entity
=====================  ==========================================  ==================================

Sentinel has no entity for a directory role; ``role`` is pimwatch's own (a Sentinel sink carries it
as a custom detail). The scope of a PIM for Groups role is its ``security-group``, of an Azure RBAC
role its ``azure-resource``. An app acting in an audit record names its service principal id (else
its app id): ``id``; a sign-in names the ``appId``.

They are filled once, from the normalized :class:`~pimwatch.detection.event.Event`, by
:meth:`pimwatch.detection.detector.Detector.alert` (:func:`of_event`); the engine adds the alert's principal.
The list of an alert is a function of the *set* of its records, whatever the order: deduplicated by
identity (lower-cased ids and UPNs; of two sightings of one identity, the one that says more),
sorted by (type, identity) and bounded to :data:`LIMIT` (the alert's ``entities_omitted`` counts the
distinct others: :mod:`pimwatch.detection.alerts`); every value is cut to :data:`VALUE_CHARS`
with a marker (display names are attacker-controlled text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pimwatch.detection.event import Event, Principal

Entity = Mapping[str, str]

LIMIT = 20  # entities kept per alert: the first LIMIT by (type, identity)
VALUE_CHARS = 256  # longest value kept; longer ones end in MARKER
MARKER = "…[truncated]"
ORDER = ("account", "cloud-application", "ip", "role", "security-group", "azure-resource")
_RANK = {t: i for i, t in enumerate(ORDER)}
_IDENTITY = {  # per type, the identifiers that say which entity it is (first present wins)
    "account": ("aadUserId", "upn", "displayName"),
    "cloud-application": ("appId", "id", "name"),
    "ip": ("address",),
    "role": ("roleDefinitionId", "name"),
    "security-group": ("objectGuid", "name"),
    "azure-resource": ("resourceId",),
}
_LOWER = frozenset({"aadUserId", "upn", "appId", "id", "roleDefinitionId", "objectGuid", "resourceId"})


def _clean(value: str) -> str:
    text = value if value.isprintable() else "".join(c if c.isprintable() else " " for c in value)
    text = text.strip()
    if len(text) > VALUE_CHARS:
        text = text[: VALUE_CHARS - len(MARKER)] + MARKER
    return text


def entity(kind: str, **values: str | None) -> dict[str, str] | None:
    """One entity of ``kind`` with the given identifiers (None and empty dropped); None when it
    has none of the identifiers that say which entity it is."""
    if kind not in _RANK:
        raise ValueError(f"unknown entity type {kind!r}; one of {', '.join(ORDER)}")
    out = {"type": kind}
    for name, value in values.items():
        if isinstance(value, str) and value.strip():
            cleaned = _clean(value)
            out[name] = cleaned.lower() if name in _LOWER else cleaned
    if not any(k in out for k in _IDENTITY[kind]):
        return None
    return out


def of_principal(p: Principal, *, with_ip: bool = True) -> list[dict[str, str]]:
    """The account (or app, or group) ``p`` is, and its IP address."""
    found: list[dict[str, str] | None] = []
    if p.type in ("App", "ServicePrincipal"):
        found.append(entity("cloud-application", id=p.id, name=p.name))
    elif p.type == "Group":
        found.append(entity("security-group", objectGuid=p.id, name=p.name))
    elif p.id or p.upn:  # a user (or an identity the record does not type): an account
        found.append(entity("account", aadUserId=p.id, upn=p.upn, displayName=p.name))
    if with_ip and p.ip:
        found.append(entity("ip", address=p.ip))
    return [e for e in found if e is not None]


def of_event(event: Event) -> list[dict[str, str]]:
    """Every entity ``event`` names: who acted (and from where), who was acted on, the role and its
    group or Azure resource scope, and for a sign-in its IP address and app."""
    found: list[dict[str, str] | None] = [*of_principal(event.actor)]
    target = event.target
    if target.id or target.upn:
        found += of_principal(target)
    if event.role_name or event.role_id:
        found.append(entity("role", roleDefinitionId=event.role_id, name=event.role_name))
    if event.scope_type == "group":
        found.append(entity("security-group", objectGuid=event.scope_id, name=event.scope_name))
    elif event.scope_type == "resource":
        found.append(entity("azure-resource", resourceId=event.scope_id, name=event.scope_name))
    s = event.signin
    if s is not None:
        found.append(entity("ip", address=s.ip))
        found.append(entity("cloud-application", appId=s.app_id, name=s.app))
    return [e for e in found if e is not None]


def identity(e: Entity) -> tuple[int, str, str]:
    """Which entity ``e`` is: (type rank, identifier name, value); an empty name when none is given."""
    kind = e.get("type", "")
    names = _IDENTITY.get(kind, ())
    first = next((n for n in names if e.get(n)), "")
    return (_RANK.get(kind, len(_RANK)), first, str(e.get(first, "")))


def _says_more(a: Entity, b: Entity) -> bool:
    """Of two sightings of one entity, whether ``a`` is the one to keep (more fields, then smaller)."""
    if len(a) != len(b):
        return len(a) > len(b)
    return sorted(a.items()) < sorted(b.items())


def merge(*lists: Iterable[Entity], limit: int | None = LIMIT) -> list[dict[str, str]]:
    """The bounded, sorted, deduplicated union of entity lists (see the module docstring): the same
    whatever the order of the lists and of their items, and associative, so folding alerts in any
    order gives the same list. ``limit=None``: unbounded (the store counts what the bound leaves out)."""
    best: dict[tuple[int, str, str], Entity] = {}
    for items in lists:
        for e in items:
            if not isinstance(e, Mapping) or "type" not in e:
                continue
            key = identity(e)
            if not key[1]:
                continue
            old = best.get(key)
            if old is None or _says_more(e, old):
                best[key] = e
    return [dict(best[k]) for k in sorted(best)[:limit]]


def changes(kept: Sequence[Entity], more: Iterable[Entity]) -> bool:
    """Whether :func:`merge` of ``kept`` (a merge result) and ``more`` could differ from ``kept``;
    False without a sort in the usual case of a busy alert (a spray: its 21st address sorts after
    the kept ones)."""
    last = identity(kept[-1]) if len(kept) >= LIMIT else None
    return any(e not in kept and (last is None or identity(e) <= last) for e in more)

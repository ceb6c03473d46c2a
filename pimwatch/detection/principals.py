"""Who is known to hold, or be eligible for, a privileged role — learned from the records seen.

``credentials.privileged_changed`` needs to know whether a principal is privileged. Until a
directory lookup exists (the Graph issue), pimwatch learns it from the assignment and activation
records it processes: a principal that received a role on the privileged-role list (through PIM, or
outside it) is remembered in the store.

What is learned so far depends on the order the records came in, so no result may hang on "known
yet": a detector that needs it joins both ways in its own state (``credentials.privileged_changed``
remembers the changes of principals not known yet and raises them when a record that makes the
principal privileged arrives; :func:`privileged_subject` is the one test both sides use). The
sign-in screen reads properties of the record itself, not this set.

Each id and UPN is its own insert-if-absent window member (stamped at the epoch: never pruned, see
:mod:`pimwatch.state.retention`), not one document rewritten whole: several instances learning different
principals at once must not overwrite each other's. An instance reads what the others learned at
start and on :meth:`Principals.refresh` (the runtime calls it once a minute).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pimwatch.detection.activities import ACTIVATION_COMPLETED, ACTIVATION_REQUESTED
from pimwatch.detection.contract import Store
from pimwatch.detection.detector import Settings
from pimwatch.detection.event import Event, Principal

# Records that show a principal holding or getting a role (success only).
LEARN_FROM: frozenset[str] = frozenset(
    {
        ACTIVATION_REQUESTED,
        ACTIVATION_COMPLETED,
        "Add member to role in PIM completed (permanent)",
        "Add member to role in PIM completed (timebound)",
        "Add eligible member to role in PIM completed (permanent)",
        "Add eligible member to role in PIM completed (timebound)",
        "Add member to role",
        "Add eligible member to role",
        "Add scoped member to role",
        "Add member to role outside of PIM (permanent)",
    }
)
_KEY = "principals:privileged"  # the document of earlier versions: still read, no longer written
IDS = "principals:ids"
UPNS = "principals:upns"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Principals:
    """The learned set, kept in the store and mirrored in memory (a few thousand admins at most)."""

    def __init__(self, store: Store, settings: Settings):
        self._store = store
        self._settings = settings
        doc = store.get(_KEY) or {}
        self.ids: set[str] = set(doc.get("ids", ()))
        self.upns: set[str] = set(doc.get("upns", ()))
        self.refresh()

    def refresh(self) -> None:
        """Add what every instance has learned (in place: the sign-in screen holds these sets)."""
        self.ids.update(m.member for m in self._store.members(IDS, _EPOCH, _EPOCH))
        self.upns.update(m.member for m in self._store.members(UPNS, _EPOCH, _EPOCH))

    def learn(self, event: Event) -> bool:
        """Remember the target of a successful privileged assignment or activation; True if new."""
        p = privileged_subject(event, self._settings)
        if p is None:
            return False
        new = False
        if p.id and p.id.lower() not in self.ids:
            self.ids.add(p.id.lower())
            self._store.add(IDS, p.id.lower(), _EPOCH)
            new = True
        if p.upn and p.upn.lower() not in self.upns:
            self.upns.add(p.upn.lower())
            self._store.add(UPNS, p.upn.lower(), _EPOCH)
            new = True
        return new

    def knows(self, p: Principal) -> bool:
        return bool((p.id and p.id.lower() in self.ids) or (p.upn and p.upn.lower() in self.upns))


def privileged_subject(event: Event, settings: Settings) -> Principal | None:
    """Whom a successful assignment or activation of a privileged role shows to be privileged."""
    if event.activity not in LEARN_FROM or event.failed:
        return None
    if not settings.is_privileged(event.role_name, event.role_id):
        return None
    p = event.subject
    return p if (p.id or p.upn) else None

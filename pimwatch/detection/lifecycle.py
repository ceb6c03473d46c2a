"""The end of an activation closes the alerts raised by its start.

An alert about an activation (off hours, first time) stops being actionable when the role is no
longer active: ``Remove member from role (PIM activation expired)`` or ``... completed (PIM
deactivate)``. A detector that wants this keys its alerts with :func:`activation_key`, declares
:data:`pimwatch.detection.activities.ACTIVATION_END` among its activities, and lets :func:`ended` and
:func:`with_end` produce the resolutions — in either arrival order: an end that arrives first is
remembered, and the alert is then created already resolved.

Detectors whose alert is about several activations (``activation.simultaneous``) or about a
request rather than the activation itself (``activation.risky_session``) use the building blocks:
:func:`remember_end` records an end and names its activation, :func:`end_of` says when an
activation that started at a given time ended, if its end has been seen.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pimwatch.detection.activities import ACTIVATION_END
from pimwatch.detection.detector import Detector, Hit, Resolve, State
from pimwatch.detection.event import Event

LONGEST_ACTIVATION = timedelta(hours=24)  # PIM's maximum activation duration

ActivationKey = tuple[str | None, ...]


def activation_key(event: Event) -> ActivationKey:
    """(principal, role template id or name, scope): the same for an activation and its end."""
    who = event.subject
    return (who.id or who.upn, event.role_id or event.role_name, event.scope_id)


def _memo(key: ActivationKey) -> str:
    return "ended:" + "|".join((k or "").lower() for k in key)


def remember_end(event: Event, state: State) -> ActivationKey | None:
    """For a successful end-of-activation record: remember it; its activation key (else None)."""
    if event.activity not in ACTIVATION_END or event.failed:
        return None
    key = activation_key(event)
    state.add(_memo(key), event.id, event.time)
    return key


def end_of(
    state: State, key: ActivationKey, started: datetime, within: timedelta = LONGEST_ACTIVATION
) -> datetime | None:
    """The first end seen for the activation ``key`` in [``started``, ``started + within``], or None."""
    ends = state.members(_memo(key), started, started + within)
    return datetime.fromtimestamp(min(e.at for e in ends), UTC) if ends else None


def ended(event: Event, state: State, detector: Detector) -> Resolve | None:
    """For an end-of-activation record: remember it and resolve the open alerts of its activation."""
    key = remember_end(event, state)
    return None if key is None else detector.resolve(key=key, at=event.time)


def with_end(hit: Hit, event: Event, state: State, detector: Detector) -> Hit | list[Hit | Resolve]:
    """The hit for an activation, plus its resolution when its end has already been seen."""
    key = activation_key(event)
    at = end_of(state, key, event.time)
    return hit if at is None else [hit, detector.resolve(key=key, at=at)]

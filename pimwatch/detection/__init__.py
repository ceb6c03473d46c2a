"""Everything a detector author needs, in one import: ``from pimwatch.detection import ...``.

A detector module declares ``DETECTOR = Detector(...)`` (its :class:`Window` and its
:class:`Params`), ``detect(event, state)`` returning a :class:`Hit`, a :class:`Resolve`, both or
None (or raising :class:`Skip`), optionally ``tick(now, state)``, and ``CASES`` built with
:mod:`pimwatch.detection.records`. The nouns:

* :class:`Event` (``subject``: the principal acted on, else the actor) and :class:`Principal`;
* :class:`Detector`, :class:`Window`, :class:`Params` (with :data:`Count`, :class:`History`),
  :class:`Severity`;
* :class:`State` (``params``, ``window``, ``settings``, ``principals``, scoped ``add/members/...``)
  and its :class:`Member`;
* :class:`Hit`, :class:`Resolve`, :class:`Skip`, :class:`Case`;
* :func:`entities_of` (what an event names, in Sentinel's entity vocabulary: a hit raised on behalf
  of another record carries that record's, remembered with it) and :func:`entity`;
* helpers: the audit activity names and :func:`canonical`, the activation lifecycle
  (:func:`activation_key`, :func:`ended`, :func:`with_end`, ...), time (:func:`iso`,
  :func:`parse_time`, :func:`minutes`), and ``model_validator`` for checks a type cannot make.

The modules of this package hold them; this file is the one import a detector needs.
"""

from __future__ import annotations

from pydantic import model_validator

from pimwatch.detection import records
from pimwatch.detection.activities import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_CANCELED,
    ACTIVATION_COMPLETED,
    ACTIVATION_DENIED,
    ACTIVATION_END,
    ACTIVATION_ENDED,
    ACTIVATION_EXPIRED_REQUEST,
    ACTIVATION_REQUEST_ACTIVITIES,
    ACTIVATION_REQUESTED,
    PIM_ACTIVITIES,
    PIM_SERVICE,
    PIM_SERVICE_NAME,
    ROLE_SETTING_UPDATED,
    canonical,
    is_pim_activation_failure,
)
from pimwatch.detection.alerts import Severity
from pimwatch.detection.contract import Member
from pimwatch.detection.detector import (
    DEFAULT_PRIVILEGED_ROLES,
    Case,
    Count,
    Detector,
    History,
    Hit,
    Params,
    Resolve,
    Settings,
    Skip,
    State,
    Window,
    minutes,
)
from pimwatch.detection.entities import entity
from pimwatch.detection.entities import of_event as entities_of
from pimwatch.detection.event import Event, Modified, Principal, Target
from pimwatch.detection.lifecycle import (
    LONGEST_ACTIVATION,
    ActivationKey,
    activation_key,
    end_of,
    ended,
    remember_end,
    with_end,
)
from pimwatch.detection.principals import LEARN_FROM, privileged_subject
from pimwatch.detection.timeutil import iso, parse_time

__all__ = [
    "ACTIVATION_APPROVAL_REQUESTED",
    "ACTIVATION_APPROVED",
    "ACTIVATION_CANCELED",
    "ACTIVATION_COMPLETED",
    "ACTIVATION_DENIED",
    "ACTIVATION_END",
    "ACTIVATION_ENDED",
    "ACTIVATION_EXPIRED_REQUEST",
    "ACTIVATION_REQUESTED",
    "ACTIVATION_REQUEST_ACTIVITIES",
    "DEFAULT_PRIVILEGED_ROLES",
    "LEARN_FROM",
    "LONGEST_ACTIVATION",
    "PIM_ACTIVITIES",
    "PIM_SERVICE",
    "PIM_SERVICE_NAME",
    "ROLE_SETTING_UPDATED",
    "ActivationKey",
    "Case",
    "Count",
    "Detector",
    "Event",
    "History",
    "Hit",
    "Member",
    "Modified",
    "Params",
    "Principal",
    "Resolve",
    "Settings",
    "Severity",
    "Skip",
    "State",
    "Target",
    "Window",
    "activation_key",
    "canonical",
    "end_of",
    "ended",
    "entities_of",
    "entity",
    "is_pim_activation_failure",
    "iso",
    "minutes",
    "model_validator",
    "parse_time",
    "privileged_subject",
    "records",
    "remember_end",
    "with_end",
]

"""Record builders for a detector's ``CASES`` (real record shapes): :mod:`pimwatch.testing` under
the detector facade. Only ``CASES`` and tests use them; production code never does."""

from __future__ import annotations

from pimwatch.testing import (
    PIM_SYSTEM,
    RESOURCE_ID,
    TENANT,
    User,
    directory,
    guid,
    in_every_shape,
    pim,
    pim_alert,
    signin,
    user,
)

__all__ = [
    "PIM_SYSTEM",
    "RESOURCE_ID",
    "TENANT",
    "User",
    "directory",
    "guid",
    "in_every_shape",
    "pim",
    "pim_alert",
    "signin",
    "user",
]

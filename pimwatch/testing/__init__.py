"""The shipped test kit: the record builders (:mod:`pimwatch.detection.records`, where detector
``CASES`` import them from) and :mod:`pimwatch.testing.harness`."""

from __future__ import annotations

from pimwatch.detection.records import (
    LA_TABLE,
    PIM_SYSTEM,
    RESOURCE_ID,
    TENANT,
    WORKSPACE,
    User,
    as_csv_rows,
    as_graph,
    as_log_analytics,
    csv_bytes,
    directory,
    guid,
    in_every_shape,
    pim,
    pim_alert,
    signin,
    user,
)

__all__ = [
    "LA_TABLE",
    "PIM_SYSTEM",
    "RESOURCE_ID",
    "TENANT",
    "WORKSPACE",
    "User",
    "as_csv_rows",
    "as_graph",
    "as_log_analytics",
    "csv_bytes",
    "directory",
    "guid",
    "in_every_shape",
    "pim",
    "pim_alert",
    "signin",
    "user",
]

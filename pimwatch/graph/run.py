"""One posture run, for every host: read Graph and run the checks (off any store transaction), then
apply the findings to the outbox in one unit of work.

* ``pimwatch posture`` (:mod:`pimwatch.cli.posture`): :func:`check_tenant`, then :func:`record`.
* The Functions ``posture`` timer (function_app.py): :func:`timer` — the Graph reads, then
  :meth:`pimwatch.hosting.runtime.Runtime.apply`, which applies the findings through the runtime's driver
  (the heartbeat's path: queued for the sinks, committed, delivered).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from pimwatch.config import Config
from pimwatch.delivery.deliverer import Deliverer
from pimwatch.detection.engine import ChangeResult
from pimwatch.graph import baseline as baselines
from pimwatch.graph.client import GraphClient, Sleep
from pimwatch.graph.posture import Context, Outcome, PostureStore, apply, collect, configure, discover

log = logging.getLogger("pimwatch.posture")


def check_tenant(
    config: Config,
    now: datetime,
    *,
    sleep: Sleep | None = None,
    client: GraphClient | None = None,
) -> tuple[Outcome, GraphClient]:
    """Validate the posture config and baseline (:class:`~pimwatch.config.ConfigError`), read Graph,
    run the enabled checks. Returns the outcome and the client (its ``calls``)."""
    enabled = configure(config, discover())
    baseline = baselines.load(config.posture.baseline)
    if client is None:
        client = GraphClient(config.graph, sleep=sleep or asyncio.sleep)
    context = Context(config.settings, baseline, now)

    async def go() -> Outcome:
        try:
            return await collect(client, enabled, context)
        finally:
            await client.close()

    return asyncio.run(go()), client


def record(
    store: Any, outcome: Outcome, now: datetime, deliverer: Deliverer | None = None
) -> list[tuple[str, ChangeResult]]:
    """Apply ``outcome`` to ``store`` in one unit of work and queue the new and resolved alerts for
    ``deliverer``'s sinks (as :meth:`pimwatch.hosting.driver.Driver._queue` does for the detectors')."""
    with store.transaction():
        changes = apply(store, outcome, now)
        for aid, change in changes:
            alert = store.get_alert(aid)
            if deliverer is not None and deliverer.sinks and alert is not None:
                deliverer.enqueue(alert, change)
            store.mark_queued(aid, "resolve" if change == "resolved" else "trigger")
    return changes


def timer(runtime: Any, now: datetime) -> dict[str, Any]:
    """The Functions timer: Graph first (no transaction open), then the findings through the runtime."""
    outcome, _ = check_tenant(runtime.config, now)

    def changes(store: PostureStore) -> list[tuple[str, ChangeResult]]:
        return apply(store, outcome, now)

    report = runtime.apply(now, changes)
    for c in outcome.checks:
        if c.status != "ran":
            log.warning("posture %s %s: %s", c.id, c.status, c.reason)
    return {
        "checks": {c.id: c.status for c in outcome.checks},
        "findings": sum(len(c.findings) for c in outcome.checks),
        "requests": outcome.requests,
        "queued": report.queued,
    }

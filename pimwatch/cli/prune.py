"""``pimwatch prune``: the TTL clean-up of a SQLite state file, now (:mod:`pimwatch.state.retention`).

The deployed app prunes on its own from the timer; this is for state files kept between ``replay``
runs. Exit codes: 0 done (or nothing to do), 1 the state file could not be used (2, a config error,
is :mod:`pimwatch.cli`'s).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from pimwatch.config import Config
from pimwatch.detection.contract import StoreError
from pimwatch.detection.detector import Plugin
from pimwatch.detection.pipeline import WATERMARK
from pimwatch.detection.timeutil import parse_time
from pimwatch.state import retention
from pimwatch.state.sqlite import SqliteStore

_ISO = "%Y-%m-%dT%H:%M:%SZ"


def add_parser(sub: Any) -> None:
    pp = sub.add_parser("prune", help="forget state older than the detectors need (TTL clean-up)")
    pp.add_argument("--state", required=True, help="SQLite state file")
    pp.add_argument("--config", help="YAML config file (its detectors decide how long state is kept)")
    pp.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")


def open_existing(path: str) -> SqliteStore | None:
    """An existing state file (SQLite would create an empty one), or None with the error on stderr."""
    try:
        if not os.path.isfile(path):
            raise StoreError(f"no state file at {path}")
        return SqliteStore(path)
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return None


def run(args: argparse.Namespace, config: Config, plugins: list[Plugin]) -> int:
    store = open_existing(args.state)
    if store is None:
        return 1
    try:
        with store.transaction(rollback=args.dry_run):  # a dry run counts, then takes it all back
            watermark = parse_time(store.get(WATERMARK))
            if watermark is None:
                sys.stdout.write(
                    f"{args.state}: no watermark (nothing replayed into it yet): nothing to prune\n"
                )
                return 0
            span = retention.horizon(config, plugins)
            done = retention.prune(store, watermark, span, datetime.now(UTC))
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: state store failed: {exc}\n")
        return 1
    finally:
        store.close()
    verb, days = ("would forget" if args.dry_run else "forgot"), span / timedelta(days=1)
    sys.stdout.write(
        f"{args.state}: {verb} {done.members} window members older than {done.before:{_ISO}}"
        f" (watermark {watermark:{_ISO}} less {days:g} days) and the expired keys;"
        f" {done.deliveries} sent deliveries older than {retention.SENT_KEPT.days} days"
        f" {'would go' if args.dry_run else 'purged'}\n"
    )
    return 0

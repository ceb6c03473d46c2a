"""``pimwatch consume``: the command line of the long-running Event Hub consumer (``docs/consume.md``).

Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT), 1 when the checkpoint container cannot be used
or receiving ended by itself, 2 for a missing or invalid setting (named, before anything connects).
Nothing of the Azure SDKs is imported until this command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from pimwatch.config import ConfigError
from pimwatch.detection.detector import Plugin
from pimwatch.hosting.azure_settings import SettingsError
from pimwatch.hosting.gcfreeze import settle
from pimwatch.hosting.runtime import ENV_CONFIG, Runtime, SetupError

log = logging.getLogger("pimwatch.consume")


def add_parsers(sub: Any) -> None:
    cp = sub.add_parser(
        "consume",
        help="run the pipeline as a long-running Event Hub consumer (settings from the environment)",
        description="Consume the Event Hub in PIMWATCH_EVENTHUB_NAME with consumer group "
        "PIMWATCH_CONSUMER_GROUP, keeping checkpoints in PIMWATCH_CHECKPOINT_CONTAINER on the "
        "PIMWATCH_STORAGE account; several processes with the same settings share the partitions. "
        "Stops cleanly on SIGTERM or SIGINT. See docs/consume.md.",
    )
    cp.add_argument("--config", help=f"YAML config file (sets {ENV_CONFIG})")
    cp.add_argument(
        "--start",
        help="where a partition without a checkpoint starts: latest, earliest, an ISO-8601 UTC time or a "
        "look-back like 1h or 30m (default: PIMWATCH_START, else 1h)",
    )
    cp.add_argument(
        "--tick-seconds",
        type=_positive,
        default=60.0,
        help="clock-driven detectors and sink retries every this many seconds (default 60)",
    )
    cp.add_argument("--max-batch-size", type=int, default=100, help="events per batch (default 100)")
    cp.add_argument("--prefetch", type=int, default=300, help="events prefetched per partition (default 300)")
    cp.add_argument(
        "--retry-seconds",
        type=_positive,
        default=10.0,
        help="first wait before retrying a batch the state store failed on; it doubles (default 10)",
    )
    cp.add_argument(
        "--retry-max-seconds", type=_positive, default=300.0, help="longest such wait (default 300)"
    )


def run(args: argparse.Namespace, plugins: list[Plugin]) -> int:
    """``plugins`` is unused: the runtime discovers its own, as in the Functions app."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.config:
        os.environ[ENV_CONFIG] = args.config
    try:
        from pimwatch.hosting import consume
        from pimwatch.hosting import consume_settings as cs
    except ImportError as exc:
        return _fail(f"pimwatch consume needs the [consume] extra (pip install 'pimwatch[consume]'): {exc}")
    try:
        env = os.environ
        hub = cs.hub_settings(env)
        checkpoints = cs.checkpoint_settings(env)
        start_text, setting = (args.start, "--start") if args.start else (env.get(cs.ENV_START), cs.ENV_START)
        start = cs.starting_position(start_text or cs.DEFAULT_START, datetime.now(UTC), setting)
        if args.max_batch_size < 1 or args.prefetch < 1:
            raise SettingsError("--max-batch-size and --prefetch must be at least 1")
        store = cs.open_checkpoint_store(checkpoints)
        runtime = Runtime.from_env()
    except (SettingsError, SetupError) as exc:
        return _fail(str(exc))
    except ConfigError as exc:
        return _fail(f"config error in {exc}")
    try:
        cs.ensure_container(checkpoints)
        client = cs.open_client(hub, store)
        settle()  # start-up done: what it made is never scanned again
    except cs.CheckpointStoreError as exc:
        runtime.close()
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    log.info(
        "pimwatch consume: hub %s/%s, consumer group %s, checkpoints in %s",
        hub.namespace,
        hub.eventhub_name,
        hub.consumer_group,
        checkpoints.describe(),
    )
    options = consume.Options(
        start=start,
        max_batch_size=args.max_batch_size,
        prefetch=args.prefetch,
        tick_seconds=args.tick_seconds,
        backoff=consume.Backoff(args.retry_seconds, max(args.retry_seconds, args.retry_max_seconds)),
    )
    return consume.serve(runtime, client, options)


def _fail(message: str) -> int:
    sys.stderr.write(f"pimwatch: {message}\n")
    return 2


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value

"""A SIMULATED Event Hub for the tests of ``pimwatch consume`` — not an Event Hub, not an emulator.

There is no Event Hub (nor an emulator for one) on this machine. What is real here: the events are
``azure.eventhub.EventData`` objects built the way the SDK builds received events — a pyamqp
``Message`` with the ``x-opt-sequence-number``, ``x-opt-offset`` and ``x-opt-enqueued-time`` message
annotations and a data section, encoded to AMQP bytes and decoded by pyamqp's ``decode_payload``, then
``EventData._from_message`` (``azure/eventhub/_consumer.py``); the checkpoints are written and read by
the real ``BlobCheckpointStore`` (on Azurite) through real ``PartitionContext`` objects.

What is simulated: the hub and the SDK's ``EventProcessor``. :class:`SimulatedHub` has the two methods
:func:`pimwatch.hosting.consume.serve` uses of ``EventHubConsumerClient`` — ``receive_batch`` and ``close``.
For
each partition it starts after the partition's checkpoint in the checkpoint store (as the processor
does when it claims a partition: the checkpoint's offset, exclusive) or at ``starting_position`` when
there is none, then hands out batches of at most ``max_batch_size`` events, round-robin over the
partitions on one thread (as the sync processor serves its partitions), advancing in memory whether or
not the callback checkpointed. An exception from the callback makes it re-read that partition from
its checkpoint (as the SDK's re-claim does). Not simulated: load balancing and ownership between
workers, AMQP links, prefetch, retention.

Run as a module it is a worker process — ``Runtime.from_env()`` (``PIMWATCH_STATE`` etc. from the
environment) and :func:`pimwatch.hosting.consume.serve` over a simulated hub holding the messages of a file::

    PIMWATCH_SIM_STORAGE=<Azurite connection string> python -m tests.eventhub_sim --messages FILE ...
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.eventhub import EventData, PartitionContext
from azure.eventhub._pyamqp._decode import decode_payload
from azure.eventhub._pyamqp._encode import encode_payload
from azure.eventhub._pyamqp.message import Message
from azure.eventhub._pyamqp.types import TYPE, VALUE, AMQPTypes
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

NAMESPACE = "pimwatch-sim.servicebus.windows.net"
HUB = "entra-logs"
GROUP = "pimwatch"
ENV_SIM_STORAGE = "PIMWATCH_SIM_STORAGE"  # the checkpoint store's account (the runtime keeps SQLite)


def received_event(body: bytes, sequence_number: int, offset: int, enqueued: datetime) -> EventData:
    """An ``EventData`` as the consumer receives it: AMQP bytes decoded by pyamqp, then wrapped."""
    message = Message(
        message_annotations={
            b"x-opt-sequence-number": {TYPE: AMQPTypes.long, VALUE: sequence_number},
            b"x-opt-offset": str(offset),
            b"x-opt-enqueued-time": {TYPE: AMQPTypes.timestamp, VALUE: int(enqueued.timestamp() * 1000)},
        },
        data=[body],
    )
    wire = bytearray()
    encode_payload(wire, message)
    return EventData._from_message(decode_payload(memoryview(bytes(wire))))


def partition_events(
    bodies: Sequence[bytes], partitions: int, first_enqueued: datetime, step: timedelta = timedelta(seconds=1)
) -> dict[str, list[EventData]]:
    """Message ``i`` goes to partition ``i % partitions`` (Entra does not partition by user either),
    enqueued at ``first_enqueued + i * step``; sequence numbers from 0 and byte offsets per partition."""
    out: dict[str, list[EventData]] = {str(p): [] for p in range(partitions)}
    offsets = dict.fromkeys(out, 0)
    for i, body in enumerate(bodies):
        pid = str(i % partitions)
        out[pid].append(received_event(body, len(out[pid]), offsets[pid], first_enqueued + i * step))
        offsets[pid] += len(body)
    return out


def checkpoints(store: BlobCheckpointStore) -> dict[str, dict[str, Any]]:
    """Partition id → the checkpoint the store holds for the simulated hub."""
    return {c["partition_id"]: c for c in store.list_checkpoints(NAMESPACE, HUB, GROUP)}


class SimulatedHub:
    """``receive_batch`` / ``close`` of ``EventHubConsumerClient``, over fixed partitions (see the module)."""

    def __init__(
        self, partitions: dict[str, list[EventData]], store: BlobCheckpointStore, idle: float = 0.02
    ) -> None:
        self.partitions = partitions
        self.store = store
        self.idle = idle
        self._closed = threading.Event()

    def receive_batch(
        self,
        on_event_batch: Callable[[PartitionContext, list[EventData]], None],
        *,
        max_batch_size: int = 300,
        starting_position: str | int | datetime | None = None,
        on_error: Callable[[PartitionContext, Exception], None] | None = None,
        on_partition_initialize: Callable[[PartitionContext], None] | None = None,
        **_: Any,
    ) -> None:
        contexts = {p: PartitionContext(NAMESPACE, HUB, GROUP, p, self.store) for p in self.partitions}
        position = {p: self._start(p, starting_position) for p in self.partitions}
        for context in contexts.values():
            if on_partition_initialize:
                on_partition_initialize(context)
        while not self._closed.is_set():
            busy = False
            for pid, events in self.partitions.items():
                batch = events[position[pid] : position[pid] + max_batch_size]
                if not batch or self._closed.is_set():
                    continue
                busy = True
                contexts[pid]._last_received_event = batch[-1]
                try:
                    on_event_batch(contexts[pid], batch)
                except Exception as exc:  # the SDK closes the consumer and re-claims from the checkpoint
                    if on_error:
                        on_error(contexts[pid], exc)
                    position[pid] = self._start(pid, starting_position)
                    continue
                position[pid] += len(batch)
            if not busy:
                self._closed.wait(self.idle)

    def close(self) -> None:
        self._closed.set()

    def get_partition_ids(self) -> list[str]:
        return list(self.partitions)

    def _start(self, pid: str, starting_position: str | int | datetime | None) -> int:
        """Index of the first event to hand out: after the checkpoint, else per ``starting_position``
        (the SDK's ``event_position_selector``, exclusive: ``>``)."""
        events = self.partitions[pid]
        checkpoint = checkpoints(self.store).get(pid)
        if checkpoint and checkpoint.get("offset") is not None:
            return _first(events, lambda e: int(e.offset or 0) > int(checkpoint["offset"]))
        if starting_position in (None, "@latest"):
            return len(events)
        if starting_position == "-1":
            return 0
        if isinstance(starting_position, datetime):
            start = starting_position
            return _first(events, lambda e: e.enqueued_time is not None and e.enqueued_time > start)
        if isinstance(starting_position, int):
            seq = starting_position
            return _first(events, lambda e: (e.sequence_number or 0) > seq)
        offset = int(starting_position)
        return _first(events, lambda e: int(e.offset or 0) > offset)


def _first(events: list[EventData], after: Callable[[EventData], bool]) -> int:
    return next((i for i, e in enumerate(events) if after(e)), len(events))


def read_messages(path: Path) -> list[bytes]:
    """One Event Hub message body per line (``{"records": [...]}``), plain or gzipped."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [line for line in raw.splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """A worker process: the real runtime and ``serve`` (signals, ticker, shutdown) over a simulated hub."""
    import os

    from pimwatch.hosting import consume
    from pimwatch.hosting.consume_settings import (
        checkpoint_settings,
        ensure_container,
        open_checkpoint_store,
        starting_position,
    )
    from pimwatch.hosting.runtime import Runtime

    ap = argparse.ArgumentParser(prog="python -m tests.eventhub_sim")
    ap.add_argument("--messages", type=Path, required=True)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--container", required=True)
    ap.add_argument("--start", default="earliest")
    ap.add_argument("--tick-seconds", type=float, default=3600.0)
    ap.add_argument("--first-enqueued", help="ISO time of the first message (default: 1 h ago)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)

    now = datetime.now(UTC)
    # Checkpoints through pimwatch's own settings code, on the account the test gives (not the state's).
    settings = checkpoint_settings(
        {"PIMWATCH_STORAGE": os.environ[ENV_SIM_STORAGE], "PIMWATCH_CHECKPOINT_CONTAINER": args.container}
    )
    ensure_container(settings)
    store = open_checkpoint_store(settings)
    first = datetime.fromisoformat(args.first_enqueued) if args.first_enqueued else now - timedelta(hours=1)
    hub = SimulatedHub(partition_events(read_messages(args.messages), args.partitions, first), store)
    options = consume.Options(
        start=starting_position(args.start, now, "--start"),
        max_batch_size=args.batch,
        tick_seconds=args.tick_seconds,
        backoff=consume.Backoff(0.2, 1.0),
    )
    return consume.serve(Runtime.from_env(), hub, options)


if __name__ == "__main__":
    sys.exit(main())

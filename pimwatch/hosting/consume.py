"""``pimwatch consume``: the pipeline as a long-running Event Hub consumer (``docs/consume.md``).

:class:`BatchHandler` is the ``on_event_batch`` callback of ``EventHubConsumerClient.receive_batch``:
the events' bodies go through :meth:`Runtime.handle <pimwatch.hosting.runtime.Runtime.handle>` (one commit per
batch), and the partition is checkpointed at the batch's last event **only after** ``handle`` has
returned. When the state store fails, the same batch is retried in-process with exponential backoff
until the store is back or shutdown is requested — never checkpointed, never skipped (stall, never
lose). Why in-process rather than raising to the SDK: see :class:`BatchHandler`.

:func:`serve` runs it: the SDK's receive loop on a thread, a ticker thread (:meth:`Runtime.tick`),
and a main thread that waits for SIGTERM/SIGINT, then shuts down in order — no new batch, the batch
in progress finishes and is checkpointed, the client is closed (its partitions released for the other
workers), the ticker stopped, the runtime closed.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from azure.core.exceptions import AzureError
from azure.eventhub.amqp import AmqpMessageBodyType

from pimwatch.detection.contract import STORE_ERRORS
from pimwatch.hosting.consume_settings import first_line
from pimwatch.hosting.runtime import Report, Runtime

if TYPE_CHECKING:
    from azure.eventhub import CloseReason, EventData, PartitionContext

log = logging.getLogger("pimwatch.consume")
T = TypeVar("T")
CHECKPOINT_ERRORS: tuple[type[BaseException], ...] = (AzureError, OSError)


@dataclass(frozen=True)
class Backoff:
    """Waits between retries of a batch: ``first`` seconds, doubling, at most ``most``."""

    first: float = 10.0
    most: float = 300.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.most)


def event_body(event: EventData) -> bytes:
    """The body as the Functions trigger hands it over with ``dataType: binary``: the bytes of the AMQP
    data section(s) — one section for every message Entra's diagnostic settings send. A body of another
    AMQP type (value, sequence: not sent by Event Hubs producers) is passed as its text, so the reader
    quarantines it whole if it is not a records document."""
    if event.body_type == AmqpMessageBodyType.DATA:
        body = event.body
        return body if isinstance(body, bytes) else b"".join(cast(Iterator[bytes], body))
    try:
        return event.body_as_str().encode("utf-8")
    except TypeError:
        return repr(event.body).encode("utf-8")


def source(partition_id: str, event: EventData) -> str:
    """Where a body came from, for the quarantine: ``eventhub:<partition>/<sequence number>``."""
    return f"eventhub:{partition_id}/{event.sequence_number}"


class BatchHandler:
    """``on_event_batch(partition_context, events)``: handle, then checkpoint the batch's last event.

    Why a store failure is retried here instead of raising to the SDK (azure-eventhub 5.15.1,
    ``_eventprocessor/event_processor.py`` and ``_consumer.py``): an exception from the callback leaves
    ``EventHubConsumer.receive`` (it is outside the receive retry loop), and ``EventProcessor._do_receive``
    logs it, calls ``on_error``, **closes the partition's consumer and releases its ownership** in the
    checkpoint store. Nothing is lost — the next load-balancing pass (30 s + jitter, fixed) claims the
    partition again, maybe in another worker, and reads from the last checkpoint — but every failure
    costs the prefetched events, a new AMQP link and an ownership hand-over; there is no backoff of
    ours, and with no consumer left the processor idles until the re-claim (``eventhub_processor``). In
    the callback the retry keeps the link and the ownership (the load balancer renews it on its own
    thread meanwhile), backs off 10 s doubling to 5 min, and leaves the batch un-checkpointed for the
    next owner if shutdown is requested. The sync processor serves all of a worker's partitions on one
    thread, so they all wait: they share the store that is down.

    A checkpoint that cannot be written (the storage account unreachable) is retried the same way;
    if shutdown comes first, the next owner re-reads a batch that is already in the state, which is
    harmless (records are deduplicated by id; alerts keep their ids and counts).
    """

    def __init__(
        self,
        runtime: Runtime,
        stop: threading.Event,
        *,
        backoff: Backoff | None = None,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.runtime = runtime
        self.stop = stop
        self.backoff = backoff or Backoff()
        self.wait = wait or stop.wait  # True when shutdown was requested during the wait
        self._busy = threading.Lock()

    def __call__(self, context: PartitionContext, events: Sequence[EventData]) -> None:
        if not events:
            return
        with self._busy:
            if self.stop.is_set():  # shutting down: not started, not checkpointed, the next owner reads it
                return
            partition = str(context.partition_id)
            bodies = [event_body(e) for e in events]
            sources = [source(partition, e) for e in events]
            batch = f"eventhub:{partition}/{events[0].sequence_number}-{events[-1].sequence_number}"
            enqueued = [e.enqueued_time for e in events]  # how far the partition has got (progress.py)

            def handle() -> Report:
                return self.runtime.handle(bodies, sources, partition=partition, enqueued=enqueued)

            report = self._retry(batch, "state store", handle, STORE_ERRORS)
            if report is None:
                log.warning("shutdown while the state store is down: batch %s left un-checkpointed", batch)
                return
            last = events[-1]
            if (
                self._retry(batch, "checkpoint", lambda: _checkpoint(context, last), CHECKPOINT_ERRORS)
                is None
            ):
                log.warning("shutdown before batch %s was checkpointed: the next owner re-reads it", batch)
                return
            log.info("pimwatch batch: %s", json.dumps(_line(partition, events, report)))

    def idle(self) -> None:
        """Return once no batch is in progress (with ``stop`` set: and none will start)."""
        with self._busy:
            return

    def _retry(
        self, batch: str, what: str, work: Callable[[], T], errors: tuple[type[BaseException], ...]
    ) -> T | None:
        for attempt, delay in enumerate(self.backoff.delays(), 1):
            try:
                return work()
            except errors as exc:
                log.warning(
                    "%s failed on batch %s (attempt %d, %s: %s); not checkpointed, the same batch is "
                    "retried in %g s",
                    what,
                    batch,
                    attempt,
                    type(exc).__name__,
                    first_line(exc),
                    delay,
                )
            if self.wait(delay):
                return None
        raise AssertionError("unreachable: the delays never end")


def _checkpoint(context: PartitionContext, event: EventData) -> bool:
    context.update_checkpoint(event)
    return True


def _line(partition: str, events: Sequence[EventData], report: Report) -> dict[str, Any]:
    return {
        "partition": partition,
        "first": events[0].sequence_number,
        "last": events[-1].sequence_number,
        "checkpoint": {"offset": events[-1].offset, "sequence_number": events[-1].sequence_number},
        **report.to_dict(),
    }


class Receiver(Protocol):
    """What :func:`serve` needs of ``EventHubConsumerClient`` (a simulator in the tests)."""

    def receive_batch(
        self,
        on_event_batch: Callable[[PartitionContext, list[EventData]], None],
        *,
        max_batch_size: int = ...,
        max_wait_time: float | None = ...,
        prefetch: int = ...,
        starting_position: str | datetime | None = ...,
        on_error: Callable[[PartitionContext, Exception], None] | None = ...,
        on_partition_initialize: Callable[[PartitionContext], None] | None = ...,
        on_partition_close: Callable[[PartitionContext, CloseReason], None] | None = ...,
    ) -> None: ...

    def get_partition_ids(self) -> list[str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Options:
    start: str | datetime = (
        "@latest"  # for partitions without a checkpoint (consume_settings.starting_position)
    )
    max_batch_size: int = 100  # as host.json's maxEventBatchSize
    prefetch: int = 300
    max_wait_time: float | None = None  # None: a batch as soon as events are there
    tick_seconds: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)
    close_timeout: float = 60.0  # waiting for the receive thread once the client is closed


def serve(runtime: Runtime, client: Receiver, options: Options, stop: threading.Event | None = None) -> int:
    """Consume until SIGTERM/SIGINT (or ``stop``); 0 after a clean shutdown, 1 if receiving ended by itself.

    Signal handlers are installed when called on the main thread; a second signal during the shutdown
    ends the process at once (safe: the batch in progress is re-read from its checkpoint)."""
    stop = stop or threading.Event()
    _expect_partitions(runtime, client)
    handler = BatchHandler(runtime, stop, backoff=options.backoff)
    restore = _on_signals(stop)
    ticker = threading.Thread(
        target=_tick, args=(runtime, options.tick_seconds, stop), name="pimwatch-tick", daemon=True
    )
    receiver = threading.Thread(
        target=_receive, args=(client, handler, options), name="pimwatch-receive", daemon=True
    )
    log.info(
        "pimwatch consume: started (start position for partitions without a checkpoint: %s)",
        options.start.isoformat() if isinstance(options.start, datetime) else options.start,
    )
    receiver.start()
    ticker.start()
    try:
        while not stop.wait(0.5):
            if not receiver.is_alive():
                break
    finally:
        ended_by_itself = not stop.is_set()
        stop.set()
        handler.idle()  # the batch in progress has finished and is checkpointed; no other starts
        _close(client)
        receiver.join(options.close_timeout)
        if receiver.is_alive():
            log.warning("the receive loop did not end within %g s after close", options.close_timeout)
        ticker.join()
        closed = _close(runtime)
        restore()
    if ended_by_itself:
        log.error("pimwatch consume: the receive loop ended without a shutdown request")
        return 1
    if not closed:
        return 1
    log.info("pimwatch consume: stopped")
    return 0


def _expect_partitions(runtime: Runtime, client: Receiver) -> None:
    """Tell the runtime the hub's partitions, so the tick clock waits for those not read yet
    (pimwatch/state/progress.py). If the hub or the store cannot be asked now, ticking goes on as without
    a list (only partitions read so far hold the clock back), and the failure is logged."""
    try:
        runtime.expect_partitions(client.get_partition_ids())
    except (*STORE_ERRORS, *CHECKPOINT_ERRORS) as exc:
        log.warning(
            "could not record the hub's partitions (%s: %s): the tick clock waits only for partitions "
            "already read",
            type(exc).__name__,
            first_line(exc),
        )


def _receive(client: Receiver, handler: BatchHandler, options: Options) -> None:
    try:
        client.receive_batch(
            handler,
            max_batch_size=options.max_batch_size,
            max_wait_time=options.max_wait_time,
            prefetch=options.prefetch,
            starting_position=options.start,
            on_error=_on_error,
            on_partition_initialize=_on_claimed,
            on_partition_close=_on_released,
        )
    except Exception:
        log.exception("the receive loop failed")


def _close(closable: Receiver | Runtime) -> bool:
    """Close the client or the runtime; a failure is logged (every batch was committed before)."""
    try:
        closable.close()
    except Exception:
        log.exception("closing %s failed", type(closable).__name__)
        return False
    return True


def _tick(runtime: Runtime, seconds: float, stop: threading.Event) -> None:
    """Clock-driven detectors and the outbox drain (sink retries), every ``seconds``."""
    while not stop.wait(seconds):
        try:
            report = runtime.tick(datetime.now(UTC))
        except STORE_ERRORS as exc:
            log.warning("tick: the state store failed (%s); next tick in %g s", type(exc).__name__, seconds)
            continue
        except Exception:
            log.exception("tick failed; next tick in %g s", seconds)
            continue
        log.info("pimwatch tick: %s", json.dumps(report.to_dict()))


def _on_error(context: PartitionContext | None, error: Exception) -> None:
    where = f"partition {context.partition_id}" if context is not None else "load balancing"
    log.warning("Event Hub client error (%s): %s: %s", where, type(error).__name__, first_line(error))


def _on_claimed(context: PartitionContext) -> None:
    log.info("partition %s claimed", context.partition_id)


def _on_released(context: PartitionContext, reason: CloseReason) -> None:
    log.info("partition %s released (%s)", context.partition_id, getattr(reason, "name", reason))


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.getsignal(s) for s in signals}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info(
            "pimwatch consume: %s, finishing the batch in progress (again: stop at once)",
            signal.Signals(signum).name,
        )
        stop.set()
        for s in signals:
            signal.signal(s, signal.SIG_DFL)

    for s in signals:
        signal.signal(s, on_signal)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore

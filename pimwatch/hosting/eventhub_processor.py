"""The SDK's event processor for ``pimwatch consume``, waiting instead of spinning when it owns no partition.

Why (azure-eventhub 5.15.1, ``azure/eventhub/_eventprocessor/event_processor.py``): the sync
``EventProcessor.start()`` is ``while self._running: for partition_id, consumer in
list(self._consumers.items()): ...`` — no sleep anywhere in that loop; the wait for events happens
inside ``consumer.receive()`` (pyamqp reads its socket with a timeout). When ``self._consumers`` is
empty the loop is a busy spin on one core. It is empty whenever the process owns no partition:

- the hub cannot be reached — ``_load_balancing`` (its own thread, every ``load_balancing_interval``
  = 30 s + jitter) fails in ``OwnershipManager.claim_ownership`` → ``get_partition_ids``, logs, calls
  ``on_error`` and sleeps, while the main loop spins;
- the other processes own every partition (more processes than partitions): ``claim_ownership``
  returns ``[]`` and ``_cancel_tasks_for_partitions`` stops any consumer left;
- a consumer failed after its retries: ``_do_receive`` closes it and releases the partition until the
  next load-balancing pass re-claims it; and the moments before the first claim.

No ``receive_batch`` argument changes this: ``load_balancing_interval`` and
``partition_ownership_expiration_interval`` pace only the load-balancing thread; ``max_wait_time``,
``prefetch``, ``owner_level`` and ``track_last_enqueued_event_properties`` are passed to the consumers,
of which there are none. ``on_error`` runs on the load-balancing thread, so waiting there does not
slow the spinning one. The SDK files are not patched: :class:`WaitingEventProcessor` is a subclass
whose consumer dict, iterated empty while the processor runs, waits until a partition is claimed (its
consumer is added), the processor stops, or ``IDLE_WAIT`` seconds pass. The loop itself is the SDK's.
:class:`ProcessorClient` runs it the way ``EventHubConsumerClient.receive_batch`` runs the stock one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.eventhub import EventHubConsumerClient
from azure.eventhub._eventprocessor.event_processor import EventProcessor

if TYPE_CHECKING:
    from _collections_abc import dict_items

    from azure.eventhub import CloseReason, EventData, PartitionContext
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

IDLE_WAIT = 1.0  # longest pause of a loop that owns no partition; a claim ends it at once


class IdleWaitingConsumers(dict[str, Any]):
    """The processor's ``partition id → EventHubConsumer``; ``items()`` on an empty one waits (see module)."""

    def __init__(self, running: Callable[[], bool], idle_wait: float = IDLE_WAIT) -> None:
        super().__init__()
        self._running = running
        self._idle_wait = idle_wait
        self._changed = threading.Condition()

    def __setitem__(self, partition_id: str, consumer: Any) -> None:
        super().__setitem__(partition_id, consumer)
        self.wake()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def items(self) -> dict_items[str, Any]:
        if not self and self._running():
            with self._changed:
                self._changed.wait_for(lambda: bool(self) or not self._running(), self._idle_wait)
        return super().items()


class WaitingEventProcessor(EventProcessor):
    """``EventProcessor`` whose receive loop waits while it owns no partition (see the module)."""

    def __init__(self, *args: Any, idle_wait: float = IDLE_WAIT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_consumers = IdleWaitingConsumers(lambda: self._running, idle_wait)
        self._consumers = self._idle_consumers

    def stop(self) -> None:
        super().stop()
        self._idle_consumers.wake()


class ProcessorClient:
    """``receive_batch`` and ``close`` of ``EventHubConsumerClient`` (what
    :func:`pimwatch.hosting.consume.serve`
    uses), running :class:`WaitingEventProcessor` with the arguments the client's own ``receive_batch``
    gives the stock processor (load balancing and ownership expiry as the client was built with)."""

    def __init__(
        self,
        client: EventHubConsumerClient,
        consumer_group: str,
        checkpoint_store: BlobCheckpointStore,
        *,
        load_balancing_interval: float = 30.0,
        idle_wait: float = IDLE_WAIT,
    ) -> None:
        self.client = client
        self.consumer_group = consumer_group
        self.checkpoint_store = checkpoint_store
        self.load_balancing_interval = load_balancing_interval
        self.idle_wait = idle_wait
        self.processor: WaitingEventProcessor | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def eventhub_name(self) -> str:
        return str(self.client.eventhub_name)

    def get_partition_ids(self) -> list[str]:
        """The hub's partition ids (the tick clock waits for the ones not read yet: progress.py)."""
        return [str(p) for p in self.client.get_partition_ids()]

    def receive_batch(
        self,
        on_event_batch: Callable[[PartitionContext, list[EventData]], None],
        *,
        max_batch_size: int = 300,
        max_wait_time: float | None = None,
        prefetch: int = 300,
        starting_position: str | datetime | None = None,
        on_error: Callable[[PartitionContext, Exception], None] | None = None,
        on_partition_initialize: Callable[[PartitionContext], None] | None = None,
        on_partition_close: Callable[[PartitionContext, CloseReason], None] | None = None,
    ) -> None:
        """Receive until :meth:`close` (blocks, as the client's ``receive_batch``)."""
        with self._lock:
            if self._closed:  # closed (shutdown) before receiving started
                return
            if self.processor is not None:
                raise ValueError("this client is already receiving")
            self.processor = processor = WaitingEventProcessor(
                self.client,
                self.consumer_group,
                on_event_batch,
                batch=True,
                max_batch_size=max_batch_size,
                max_wait_time=max_wait_time,
                checkpoint_store=self.checkpoint_store,
                load_balancing_interval=self.load_balancing_interval,
                initial_event_position=starting_position if starting_position is not None else "@latest",
                prefetch=prefetch,
                on_error=on_error,
                on_partition_initialize=on_partition_initialize,
                on_partition_close=on_partition_close,
                idle_wait=self.idle_wait,
            )
        try:
            processor.start()
        finally:
            processor.stop()

    def close(self) -> None:
        """Stop the processor (its loop releases the partitions), then close the connection."""
        with self._lock:
            self._closed = True
            processor = self.processor
        if processor is not None:
            processor.stop()
        self.client.close()

"""The app settings of ``pimwatch consume`` and the Azure SDK objects built from them.

Event Hub: ``PIMWATCH_EVENTHUB`` (a connection string with *Listen*) or, identity-based,
``PIMWATCH_EVENTHUB__fullyQualifiedNamespace`` (+ ``PIMWATCH_EVENTHUB__clientId`` for a user-assigned
identity); ``PIMWATCH_EVENTHUB_NAME``; ``PIMWATCH_CONSUMER_GROUP`` (pimwatch's own, never ``$Default``).
Checkpoints and partition ownership: a blob container (``PIMWATCH_CHECKPOINT_CONTAINER``, default
``pimwatch-checkpoints``) on the ``PIMWATCH_STORAGE`` account (:mod:`pimwatch.hosting.azure_settings`). Where
a
partition without a checkpoint starts: ``PIMWATCH_START``.

Every error is a :class:`~pimwatch.hosting.azure_settings.SettingsError` that names the setting, never its
value
when the value may hold a secret. The Azure SDKs are imported only when a client is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pimwatch.hosting.azure_settings import AzureStorage, SettingsError, azure_storage

if TYPE_CHECKING:
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

    from pimwatch.hosting.eventhub_processor import ProcessorClient

ENV_EVENTHUB = "PIMWATCH_EVENTHUB"
ENV_NAMESPACE = "PIMWATCH_EVENTHUB__fullyQualifiedNamespace"
ENV_CLIENT_ID = "PIMWATCH_EVENTHUB__clientId"
ENV_EVENTHUB_NAME = "PIMWATCH_EVENTHUB_NAME"
ENV_CONSUMER_GROUP = "PIMWATCH_CONSUMER_GROUP"
ENV_CHECKPOINT_CONTAINER = "PIMWATCH_CHECKPOINT_CONTAINER"
ENV_START = "PIMWATCH_START"
DEFAULT_CHECKPOINT_CONTAINER = "pimwatch-checkpoints"
DEFAULT_START = "1h"

_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_ENTITY = re.compile(r"[A-Za-z0-9$](?:[A-Za-z0-9._-]{0,254}[A-Za-z0-9])?")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_LOOKBACK = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class HubSettings:
    namespace: str  # <namespace>.servicebus.windows.net
    eventhub_name: str
    consumer_group: str
    connection_string: str | None = field(default=None, repr=False)
    client_id: str | None = None


@dataclass(frozen=True)
class CheckpointSettings:
    storage: AzureStorage = field(repr=False)
    container: str

    def describe(self) -> str:
        """Where, without secrets."""
        return f"container {self.container} on {self.storage.blob_uri or 'the PIMWATCH_STORAGE account'}"


def hub_settings(env: Mapping[str, str]) -> HubSettings:
    conn = env.get(ENV_EVENTHUB) or None
    namespace = (env.get(ENV_NAMESPACE) or "").strip() or None
    if conn and namespace:
        raise SettingsError(
            f"set either app setting {ENV_EVENTHUB} (a connection string) or {ENV_NAMESPACE} "
            "(a managed identity), not both"
        )
    entity: str | None = None
    if conn:
        from azure.eventhub import parse_connection_string

        try:
            props = parse_connection_string(conn)
        except ValueError as exc:  # the SDK's message describes the format, never the value
            raise SettingsError(
                f"app setting {ENV_EVENTHUB} is not an Event Hubs connection string ({exc})"
            ) from None
        namespace, entity = props.fully_qualified_namespace, props.eventhub_name
    elif namespace is None:
        raise SettingsError(
            f"app setting {ENV_EVENTHUB} (an Event Hubs connection string with Listen) or {ENV_NAMESPACE} "
            "(<namespace>.servicebus.windows.net, with a managed identity) is not set"
        )
    elif not _HOST.fullmatch(namespace):
        raise SettingsError(
            f"app setting {ENV_NAMESPACE} must be a host name like <namespace>.servicebus.windows.net "
            f"(no sb:// and no path), not {namespace!r}"
        )
    name = env.get(ENV_EVENTHUB_NAME) or entity
    if not name:
        raise SettingsError(f"app setting {ENV_EVENTHUB_NAME} (the Event Hub the logs arrive on) is not set")
    if not _ENTITY.fullmatch(name):
        raise SettingsError(f"app setting {ENV_EVENTHUB_NAME} is not an Event Hub name: {name!r}")
    if entity and entity != name:
        raise SettingsError(
            f"app setting {ENV_EVENTHUB_NAME} ({name!r}) differs from the EntityPath of {ENV_EVENTHUB} "
            f"({entity!r})"
        )
    group = env.get(ENV_CONSUMER_GROUP) or ""
    if not group:
        raise SettingsError(
            f"app setting {ENV_CONSUMER_GROUP} (pimwatch's own consumer group on the hub) is not set"
        )
    if group.lower() == "$default":
        raise SettingsError(
            f"app setting {ENV_CONSUMER_GROUP} must be a consumer group of pimwatch's own, not $Default: "
            "with a checkpoint store the consumer opens exclusive (epoch) receivers, which disconnect "
            "every other reader of the group"
        )
    if not _ENTITY.fullmatch(group):
        raise SettingsError(f"app setting {ENV_CONSUMER_GROUP} is not a consumer group name: {group!r}")
    assert namespace is not None
    return HubSettings(namespace, name, group, conn, env.get(ENV_CLIENT_ID) or None)


def checkpoint_settings(env: Mapping[str, str]) -> CheckpointSettings:
    storage = azure_storage(env)
    container = env.get(ENV_CHECKPOINT_CONTAINER) or DEFAULT_CHECKPOINT_CONTAINER
    if storage is None:
        raise SettingsError(
            "app setting PIMWATCH_STORAGE (a storage connection string) or PIMWATCH_STORAGE__accountName "
            f"(a managed identity) is not set: the checkpoints are kept in blob container {container} there"
        )
    if not _CONTAINER.fullmatch(container):
        raise SettingsError(
            f"app setting {ENV_CHECKPOINT_CONTAINER} is not a blob container name (3-63 lower-case letters, "
            f"digits and single hyphens): {container!r}"
        )
    return CheckpointSettings(storage, container)


def starting_position(text: str, now: datetime, setting: str = ENV_START) -> str | datetime:
    """Where a partition without a checkpoint starts, in the SDK's terms: ``"@latest"``, ``"-1"`` (the
    oldest event retained) or an enqueued time (a look-back is taken from ``now``, once)."""
    value = text.strip()
    word = value.lower()
    if word == "latest":
        return "@latest"
    if word == "earliest":
        return "-1"
    lookback = _LOOKBACK.fullmatch(word)
    if lookback and int(lookback.group(1)) > 0:
        return now - timedelta(**{_UNITS[lookback.group(2)]: int(lookback.group(1))})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or lookback:
        raise SettingsError(
            f"{setting} must be latest, earliest, an ISO-8601 UTC time (2026-03-10T12:00:00Z) or a "
            f"look-back like 1h, 30m or 2d, not {value!r}"
        )
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def open_checkpoint_store(settings: CheckpointSettings) -> BlobCheckpointStore:
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

    storage = settings.storage
    if storage.connection_string is not None:
        try:
            return BlobCheckpointStore.from_connection_string(storage.connection_string, settings.container)
        except ValueError:
            raise SettingsError(
                "app setting PIMWATCH_STORAGE is not a storage connection string with a blob endpoint"
            ) from None
    assert storage.blob_uri is not None
    return BlobCheckpointStore(storage.blob_uri, settings.container, credential=storage.credential())


def ensure_container(settings: CheckpointSettings) -> None:
    """The checkpoint container exists (created when missing and allowed); raises with what to do."""
    from azure.core.exceptions import AzureError, ResourceExistsError
    from azure.storage.blob import ContainerClient

    storage = settings.storage
    client: Any
    if storage.connection_string is not None:
        client = ContainerClient.from_connection_string(storage.connection_string, settings.container)
    else:
        assert storage.blob_uri is not None
        client = ContainerClient(storage.blob_uri, settings.container, credential=storage.credential())
    with client:
        try:
            if client.exists():
                return
            client.create_container()
        except ResourceExistsError:
            return  # another worker created it just now
        except AzureError as exc:
            raise CheckpointStoreError(
                f"cannot use the checkpoint {settings.describe()} ({type(exc).__name__}: "
                f"{first_line(exc)}); create it, and give the identity Storage Blob Data Contributor on it"
            ) from None


class CheckpointStoreError(RuntimeError):
    """The checkpoint container cannot be reached or created at start-up."""


def open_client(hub: HubSettings, store: BlobCheckpointStore) -> ProcessorClient:
    """The consumer (no connection is made until it receives), running the SDK's event processor as
    :class:`~pimwatch.hosting.eventhub_processor.WaitingEventProcessor`: without it, a process that owns no
    partition spins a core (``pimwatch/hosting/eventhub_processor.py`` says why)."""
    from azure.eventhub import EventHubConsumerClient

    from pimwatch.hosting.eventhub_processor import ProcessorClient

    if hub.connection_string is not None:
        client = EventHubConsumerClient.from_connection_string(
            hub.connection_string,
            hub.consumer_group,
            eventhub_name=hub.eventhub_name,
            checkpoint_store=store,
        )
    else:
        from azure.identity import DefaultAzureCredential

        client = EventHubConsumerClient(
            hub.namespace,
            hub.eventhub_name,
            hub.consumer_group,
            DefaultAzureCredential(managed_identity_client_id=hub.client_id),
            checkpoint_store=store,
        )
    return ProcessorClient(client, hub.consumer_group, store)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's first line, cut short: for logs (a whole message may carry a response body)."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else ""

"""Where the runtime keeps its state, from the app settings: Azure Storage, or a local SQLite file.

Azure (several instances share one state, ``docs/functions.md``):

* ``PIMWATCH_STORAGE`` — a storage connection string (Azurite, or an account key); or, identity-based
  (the Function App's managed identity through azure-identity's ``DefaultAzureCredential``),
  ``PIMWATCH_STORAGE__accountName`` — or ``PIMWATCH_STORAGE__tableServiceUri`` and
  ``PIMWATCH_STORAGE__blobServiceUri`` — with ``PIMWATCH_STORAGE__clientId`` for a user-assigned
  identity (the ``<CONNECTION>__<property>`` convention of the Functions host's own connections);
* ``PIMWATCH_TABLE_PREFIX`` (default ``pimwatch``): the state tables' name prefix;
* ``PIMWATCH_QUARANTINE_CONTAINER``, ``PIMWATCH_DEADLETTER_CONTAINER``: the blob containers.

Local (``func start``, a single instance): ``PIMWATCH_STATE`` (a SQLite file) and
``PIMWATCH_QUARANTINE_DIR``. When both kinds are set, Azure Storage wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pimwatch.state.archive import BlobArchive

ENV_STORAGE = "PIMWATCH_STORAGE"
ENV_TABLE_PREFIX = "PIMWATCH_TABLE_PREFIX"
ENV_QUARANTINE_CONTAINER = "PIMWATCH_QUARANTINE_CONTAINER"
ENV_DEADLETTER_CONTAINER = "PIMWATCH_DEADLETTER_CONTAINER"
DEFAULT_PREFIX = "pimwatch"
DEFAULT_QUARANTINE_CONTAINER = "pimwatch-quarantine"
DEFAULT_DEADLETTER_CONTAINER = "pimwatch-deadletters"


class SettingsError(ValueError):
    """An app setting is missing or malformed; the message names it (never its value)."""


@dataclass(frozen=True)
class AzureStorage:
    """One storage account: a connection string, or service URIs with a managed identity."""

    connection_string: str | None
    table_uri: str | None
    blob_uri: str | None
    client_id: str | None
    prefix: str
    quarantine_container: str
    deadletter_container: str

    def credential(self) -> Any:
        """The identity for the URIs (None with a connection string); azure-identity imported here."""
        if self.connection_string is not None:
            return None
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self.client_id)

    def describe(self) -> str:
        """Where, without secrets: the account URI or "connection string" (never its key)."""
        return self.table_uri or self.blob_uri or f"{ENV_STORAGE} (connection string)"


def azure_storage(env: Mapping[str, str] | None = None) -> AzureStorage | None:
    """The Azure Storage settings, or None when none of ``PIMWATCH_STORAGE*`` is set."""
    env = os.environ if env is None else env
    conn = env.get(ENV_STORAGE) or None
    account = env.get(f"{ENV_STORAGE}__accountName") or None
    table_uri = env.get(f"{ENV_STORAGE}__tableServiceUri") or None
    blob_uri = env.get(f"{ENV_STORAGE}__blobServiceUri") or None
    if conn is None and account is None and table_uri is None and blob_uri is None:
        return None
    if conn is None:
        if account is not None:
            if not account.isalnum() or not account.islower() or not 3 <= len(account) <= 24:
                raise SettingsError(
                    f"app setting {ENV_STORAGE}__accountName must be a storage account name "
                    "(3-24 lower-case letters and digits)"
                )
            table_uri = table_uri or f"https://{account}.table.core.windows.net"
            blob_uri = blob_uri or f"https://{account}.blob.core.windows.net"
        for name, uri in (("tableServiceUri", table_uri), ("blobServiceUri", blob_uri)):
            if uri is None:
                raise SettingsError(
                    f"app setting {ENV_STORAGE}__{name} is not set (or set {ENV_STORAGE}__accountName)"
                )
            if not uri.startswith("https://"):
                raise SettingsError(f"app setting {ENV_STORAGE}__{name} must be an https:// URI")
    return AzureStorage(
        connection_string=conn,
        table_uri=None if conn else table_uri,
        blob_uri=None if conn else blob_uri,
        client_id=env.get(f"{ENV_STORAGE}__clientId") or None,
        prefix=env.get(ENV_TABLE_PREFIX) or DEFAULT_PREFIX,
        quarantine_container=env.get(ENV_QUARANTINE_CONTAINER) or DEFAULT_QUARANTINE_CONTAINER,
        deadletter_container=env.get(ENV_DEADLETTER_CONTAINER) or DEFAULT_DEADLETTER_CONTAINER,
    )


def open_tables(storage: AzureStorage, **client_options: Any) -> Any:
    """The Table store on this account (:class:`pimwatch.state.tables.TableStore`, imported here so
    the SQLite path never loads the Azure SDK)."""
    from pimwatch.state.tables import TableStore

    if storage.connection_string is not None:
        return TableStore(storage.connection_string, storage.prefix, client_options=client_options)
    return TableStore(
        None,
        storage.prefix,
        endpoint=storage.table_uri,
        credential=storage.credential(),
        client_options=client_options,
    )


def blob_archive(storage: AzureStorage, container: str, **kwargs: Any) -> BlobArchive:
    """A :class:`~pimwatch.state.archive.BlobArchive` on the ``PIMWATCH_STORAGE`` account: with its
    connection string, or its blob service URI and managed identity."""
    check_container(container)
    if storage.connection_string is not None:
        try:
            return BlobArchive.from_connection_string(storage.connection_string, container, **kwargs)
        except ValueError:
            raise SettingsError("app setting PIMWATCH_STORAGE is not a valid connection string") from None
    if storage.blob_uri is None:
        raise SettingsError("app setting PIMWATCH_STORAGE__blobServiceUri is not set")
    return BlobArchive.from_account_url(storage.blob_uri, storage.credential(), container, **kwargs)


_CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*")


def check_container(name: str) -> str:
    """``name`` if it is a valid blob container name, else :class:`SettingsError` naming the settings."""
    if not _CONTAINER.fullmatch(name):
        raise SettingsError(
            f"container name {name!r} (app setting {ENV_QUARANTINE_CONTAINER} or {ENV_DEADLETTER_CONTAINER})"
            " is not valid: 3-63 lower-case letters, digits and single hyphens"
        )
    return name

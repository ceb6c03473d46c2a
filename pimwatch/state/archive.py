"""Append-only JSON Lines archives: the quarantine (bad input kept whole) and the dead letters.

Two backends behind one small :class:`Archive` protocol, both one file per writer process, written
by :meth:`~Archive.flush`:

* :class:`FileArchive` — ``<folder>/<name>`` (local runs, the CLI), created on the first flush;
  a flush is written and ``fsync``-ed before it returns.
* :class:`BlobArchive` — Azure **append blobs** ``[<prefix>/]<yyyy>/<mm>/<dd>/<host>-<pid>-<start>.jsonl``
  in one container (created when missing). A flush is one Append Block of at most 4 MiB (more is
  split at line boundaries; only a single line longer than that is split inside), conditional on
  the append position, so an append the SDK retried after a lost answer is never written twice. The
  writer rolls to a new blob before the blob would pass Azure's 50,000-block limit, when the UTC
  day changes (so a blob's path dates its records), and after a failed append (a blob never holds
  half a line followed by more records).

Records are buffered by :meth:`~Archive.append` and written when :meth:`~Archive.flush` is called
(or when the buffer reaches ``flush_bytes``, so memory stays bounded). A flush is durable when it
returns; when it cannot write it raises :class:`ArchiveError` (a StoreError of the contract:
the batch must not be checkpointed) naming the folder or container, and the unwritten records stay
buffered — :meth:`~Archive.flush` again retries them, :meth:`~Archive.discard` drops them (when the
batch they came from will be read again and re-archive them).

**Counting** (the health endpoint): :meth:`~Archive.count` is exact, and cheap after the first call.
Each file or blob's count is a known prefix plus the newlines after it: a blob writer stores
``records`` and ``bytes`` in the blob's metadata after every flush, and each archive object caches
what it counted, so only bytes appended since (by a writer that died before updating its metadata,
say) are downloaded and counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from pimwatch.detection.contract import StoreError

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, ContainerClient

log = logging.getLogger("pimwatch.archive")

MAX_BLOCKS = 50_000  # Azure's limit of committed blocks per append blob
MAX_APPEND = 4 * 1024 * 1024  # bytes per Append Block call
_READ_CHUNK = 1 << 20


class ArchiveError(StoreError):
    """The archive cannot be written or read; the message names the folder or container."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or blob of an archive: ``name`` relative to the folder / container."""

    name: str
    size: int
    modified: datetime
    records: int


class Archive(Protocol):
    @property
    def location(self) -> str:
        """Where the archive is, for messages: the folder, or the container and account."""
        ...

    @property
    def pending(self) -> int:
        """Records appended and not yet written."""
        ...

    def append(self, record: Mapping[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def discard(self) -> None: ...
    def close(self) -> None: ...
    def entries(self, since: datetime | None = None) -> list[Entry]: ...
    def chunks(self, name: str) -> Iterator[bytes]: ...
    def count(self) -> int: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "host"


def writer_id() -> str:
    """``<host>-<pid>``: the part of a file name that tells writer processes apart."""
    return f"{_safe(socket.gethostname())}-{os.getpid()}"


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines (without their newline) of a stream of byte chunks; a last unterminated line too."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


class _Buffered:
    """The buffer and the count cache, shared by both backends."""

    def __init__(self, flush_bytes: int) -> None:
        self.flush_bytes = flush_bytes
        self._buf: list[bytes] = []
        self._buffered = 0
        self._counted: dict[str, tuple[int, int]] = {}  # name -> (bytes, records) counted so far

    @property
    def pending(self) -> int:
        return len(self._buf)

    def append(self, record: Mapping[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        self._buf.append(line)
        self._buffered += len(line)
        if self._buffered >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        self._buf.clear()
        self._buffered = 0

    def close(self) -> None:
        self.flush()

    def count(self) -> int:
        return sum(e.records for e in self.entries())

    def entries(self, since: datetime | None = None) -> list[Entry]:
        raise NotImplementedError

    def _written(self, n: int) -> None:
        """The first ``n`` buffered lines are durable: drop them from the buffer."""
        self._buffered -= sum(len(b) for b in self._buf[:n])
        del self._buf[:n]

    def _records(self, name: str, size: int, known: tuple[int, int] = (0, 0)) -> int:
        """Records of a file or blob of ``size`` bytes: the best known prefix plus the newlines after it."""
        cached = self._counted.get(name)
        if cached is not None and known[0] <= cached[0] <= size:
            known = cached
        if known[0] > size:  # replaced or truncated by someone else: count it all
            known = (0, 0)
        start, records = known
        if start < size:
            records += sum(chunk.count(b"\n") for chunk in self._range(name, start, size))
        self._counted[name] = (size, records)
        return records

    def _range(self, name: str, start: int, end: int) -> Iterator[bytes]:
        raise NotImplementedError


# --- files ---------------------------------------------------------------------------------------


class FileArchive(_Buffered):
    """JSON Lines in ``<folder>/<name>`` (default name ``<host>-<pid>-<start>.jsonl``)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        name: str | None = None,
        *,
        flush_bytes: int = MAX_APPEND,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        super().__init__(flush_bytes)
        self.folder = Path(folder)
        self.name = name or f"{writer_id()}-{_stamp(clock())}.jsonl"

    @property
    def path(self) -> Path:
        return self.folder / self.name

    @property
    def location(self) -> str:
        return str(self.folder)

    def flush(self) -> None:
        if not self._buf:
            return
        n = len(self._buf)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(b"".join(self._buf))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise ArchiveError(f"cannot write to {self.path}: {exc.strerror or exc}") from exc
        self._written(n)

    def entries(self, since: datetime | None = None) -> list[Entry]:
        if not self.folder.is_dir():
            return []
        out = []
        for f in sorted(self.folder.rglob("*.jsonl")):
            if f.name.startswith(".") or not f.is_file():
                continue
            st = f.stat()
            modified = datetime.fromtimestamp(st.st_mtime, UTC)
            if since is not None and modified < since:
                continue
            name = f.relative_to(self.folder).as_posix()
            out.append(Entry(name, st.st_size, modified, self._records(name, st.st_size)))
        return out

    def _file(self, name: str) -> Path:
        path = (self.folder / name).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise ArchiveError(f"{name}: not a file of {self.folder}")
        return path

    def chunks(self, name: str) -> Iterator[bytes]:
        return self._range(name, 0, None)

    def _range(self, name: str, start: int, end: int | None) -> Iterator[bytes]:
        path = self._file(name)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                left = None if end is None else end - start
                while left is None or left > 0:
                    chunk = f.read(_READ_CHUNK if left is None else min(_READ_CHUNK, left))
                    if not chunk:
                        return
                    if left is not None:
                        left -= len(chunk)
                    yield chunk
        except OSError as exc:
            raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}") from exc


# --- Azure append blobs --------------------------------------------------------------------------


_SIG = re.compile(r"(?i)\bsig=[^&\s'\"]+")


def _brief(exc: BaseException) -> str:
    """An SDK error in one line, without the SAS signature a URL in it might carry."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _SIG.sub("sig=REDACTED", text)[:300]


def _code(exc: BaseException) -> str | None:
    """The storage error code the SDK attaches to its errors (``ContainerNotFound``...)."""
    code = getattr(exc, "error_code", None)  # a StorageErrorCode (a str enum) or a plain str
    return str(getattr(code, "value", code)) if code is not None else None


def _pieces(buf: list[bytes], max_append: int) -> Iterator[tuple[int, list[bytes]]]:
    """(lines, chunks) to append: whole lines grouped up to ``max_append`` bytes; a longer line is
    its own piece, cut into several chunks (which must go to the same blob)."""
    group: list[bytes] = []
    size = 0
    for line in buf:
        if group and size + len(line) > max_append:
            yield len(group), [b"".join(group)]
            group, size = [], 0
        if len(line) > max_append:
            yield 1, [line[i : i + max_append] for i in range(0, len(line), max_append)]
            continue
        group.append(line)
        size += len(line)
    if group:
        yield len(group), [b"".join(group)]


class BlobArchive(_Buffered):
    """JSON Lines in Azure append blobs, one per writer process (and per day, and per 50,000 blocks)."""

    def __init__(
        self,
        container: ContainerClient,
        *,
        prefix: str = "",
        max_blocks: int = MAX_BLOCKS,
        max_append: int = MAX_APPEND,
        flush_bytes: int | None = None,
        clock: Callable[[], datetime] = _now,
        writer: str | None = None,
    ) -> None:
        if max_blocks < 1 or not 0 < max_append <= MAX_APPEND:
            raise ValueError(f"max_blocks must be >= 1 and max_append in 1..{MAX_APPEND}")
        super().__init__(flush_bytes or max_append)
        self.container = container
        self.prefix = prefix.strip("/")
        self.max_blocks = max_blocks
        self.max_append = max_append
        self.clock = clock
        self.writer = writer or writer_id()
        self._blob: BlobClient | None = None
        self._day: tuple[int, int, int] | None = None
        self._size = 0  # bytes in the current blob
        self._blocks = 0  # committed blocks in the current blob
        self._in_blob = 0  # records in the current blob
        self._broken = False  # an append failed: the current blob's end is unknown, start another

    @classmethod
    def from_connection_string(cls, connection_string: str, container: str, **kwargs: Any) -> BlobArchive:
        """``kwargs``: ``client_options`` (e.g. ``retry_total``, ``connection_timeout``) for the SDK
        client, the rest for the constructor."""
        from azure.storage.blob import ContainerClient

        options = kwargs.pop("client_options", None) or {}
        return cls(ContainerClient.from_connection_string(connection_string, container, **options), **kwargs)

    @classmethod
    def from_account_url(
        cls, account_url: str, credential: Any, container: str, **kwargs: Any
    ) -> BlobArchive:
        """``account_url``: ``https://<account>.blob.core.windows.net``; ``credential``: azure-identity."""
        from azure.storage.blob import ContainerClient

        options = kwargs.pop("client_options", None) or {}
        return cls(ContainerClient(account_url, container, credential=credential, **options), **kwargs)

    @property
    def location(self) -> str:
        return f"blob container {self.container.container_name} (account {self.container.account_name})"

    @property
    def current(self) -> str | None:
        """The blob this process writes to now (None before the first flush)."""
        return self._blob.blob_name if self._blob is not None else None

    # --- writing ---------------------------------------------------------------------------------
    def flush(self) -> None:
        from azure.core.exceptions import AzureError

        if not self._buf:
            return
        try:
            for n, chunks in list(_pieces(self._buf, self.max_append)):
                self._ensure_blob(len(chunks))
                for chunk in chunks:
                    self._append(chunk)
                self._in_blob += n
                self._written(n)
        except (AzureError, ArchiveError) as exc:
            self._broken = True
            detail = str(exc) if isinstance(exc, ArchiveError) else _brief(exc)
            raise ArchiveError(
                f"cannot write to {self.location}: {detail}; {len(self._buf)} records kept for a retry"
            ) from exc
        self._note_count()

    def _ensure_blob(self, blocks: int) -> None:
        now = self.clock().astimezone(UTC)
        day = (now.year, now.month, now.day)
        full = self._blocks > 0 and self._blocks + blocks > self.max_blocks
        if self._blob is None or self._broken or full or day != self._day:
            self._create(now)
            self._day = day

    def _create(self, now: datetime) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError

        folder = f"{self.prefix}/" if self.prefix else ""
        base = f"{folder}{now:%Y/%m/%d}/{self.writer}-{_stamp(now)}"
        for attempt in range(1, 100):
            blob = self.container.get_blob_client(base + (f"-{attempt}" if attempt > 1 else "") + ".jsonl")
            try:
                self._create_blob(blob, MatchConditions.IfMissing)
            except ResourceExistsError:
                continue  # the same name in the same microsecond (a clock that stands still)
            self._blob, self._size, self._blocks, self._in_blob, self._broken = blob, 0, 0, 0, False
            return
        raise ArchiveError(f"cannot find a free blob name for {base} in {self.location}")

    def _create_blob(self, blob: BlobClient, condition: Any) -> None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        args: dict[str, Any] = {
            "metadata": {"records": "0", "bytes": "0"},
            "match_condition": condition,
        }
        try:
            blob.create_append_blob(**args)
        except ResourceNotFoundError as exc:
            if _code(exc) != "ContainerNotFound":
                raise
            with contextlib.suppress(ResourceExistsError):  # another writer created it meanwhile
                self.container.create_container()
            blob.create_append_blob(**args)

    def _append(self, chunk: bytes) -> None:
        from azure.core.exceptions import HttpResponseError

        assert self._blob is not None
        try:
            answer = self._blob.append_block(chunk, length=len(chunk), appendpos_condition=self._size)
            blocks = int(str(answer["blob_committed_block_count"]))
        except HttpResponseError as exc:
            if _code(exc) != "AppendPositionConditionNotMet":
                raise
            # The SDK retried an append whose answer was lost: it is there if the blob ends where
            # this chunk would end (this process is the blob's only writer).
            props = self._blob.get_blob_properties()
            if props.size != self._size + len(chunk):
                raise ArchiveError(
                    f"blob {self._blob.blob_name} is {props.size} bytes, expected {self._size} or "
                    f"{self._size + len(chunk)}: another writer appended to it"
                ) from exc
            blocks = int(props.append_blob_committed_block_count or self._blocks + 1)
        self._size += len(chunk)
        self._blocks = blocks

    def _note_count(self) -> None:
        """Records and bytes in the blob's metadata, for :meth:`count`; an error here loses nothing
        (the count then reads the bytes past the last note), so it is logged, not raised."""
        from azure.core.exceptions import AzureError

        if self._blob is None:
            return
        try:
            self._blob.set_blob_metadata({"records": str(self._in_blob), "bytes": str(self._size)})
        except AzureError as exc:
            log.warning("could not update the record count of %s: %s", self._blob.blob_name, _brief(exc))

    # --- reading ---------------------------------------------------------------------------------
    def entries(self, since: datetime | None = None) -> list[Entry]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        out = []
        try:
            listing = self.container.list_blobs(
                name_starts_with=f"{self.prefix}/" if self.prefix else None, include=["metadata"]
            )
            for b in listing:
                if since is not None and b.last_modified < since:
                    continue
                out.append(Entry(b.name, b.size, b.last_modified, self._records(b.name, b.size, _noted(b))))
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                return []  # nothing archived yet
            raise ArchiveError(f"cannot list {self.location}: {_brief(exc)}") from exc
        except AzureError as exc:
            raise ArchiveError(f"cannot list {self.location}: {_brief(exc)}") from exc
        return out

    def chunks(self, name: str) -> Iterator[bytes]:
        return self._download(name, 0, None)

    def _range(self, name: str, start: int, end: int) -> Iterator[bytes]:
        return self._download(name, start, end - start)

    def _download(self, name: str, offset: int, length: int | None) -> Iterator[bytes]:
        from azure.core.exceptions import AzureError

        try:
            stream = self.container.get_blob_client(name).download_blob(offset=offset, length=length)
            yield from stream.chunks()
        except AzureError as exc:
            raise ArchiveError(f"cannot read {name} from {self.location}: {_brief(exc)}") from exc


def _noted(blob: Any) -> tuple[int, int]:
    """(bytes, records) a writer noted in a blob's metadata, or (0, 0)."""
    meta = blob.metadata or {}
    try:
        return int(meta["bytes"]), int(meta["records"])
    except (KeyError, ValueError):
        return 0, 0

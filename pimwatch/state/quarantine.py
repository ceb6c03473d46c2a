"""Bad input is kept whole, with where it came from and why, as JSON Lines in an archive.

A record is ``{"source", "line", "reason", "raw"}`` (``raw``: the text as read), with ``"offset"``
(bytes from the start of the file's text) when it is known. Bytes that are not UTF-8 are kept
exactly, base64-encoded, under ``"raw_base64"`` instead of ``"raw"``. ``pimwatch replay`` reads
quarantine files back: each record's raw input is re-read as the original input, under its original
source, line and offset (pimwatch/detection/reader.py): what a fixed parser now understands is replayed, and
an entry of which nothing is readable comes back unchanged (replaying the quarantine gives the same
quarantine).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from pimwatch.detection.reader import Bad
from pimwatch.state.archive import Archive, FileArchive


class Quarantine:
    """``Quarantine(path)``: a local JSON Lines file, created on the first bad record's flush only, so
    a clean run leaves nothing behind. ``Quarantine.on(archive)``: any archive (Blob Storage).

    Records are buffered by the archive: :meth:`flush` (or :meth:`close`) writes them and raises
    :class:`pimwatch.state.archive.ArchiveError` when it cannot; :meth:`discard` drops what is unwritten.
    """

    def __init__(self, path: str | None = None, *, archive: Archive | None = None):
        if archive is None:
            if path is None:
                raise TypeError("Quarantine needs a path or an archive")
            full = os.path.abspath(path)
            archive = FileArchive(os.path.dirname(full), os.path.basename(full))
        self.archive = archive
        self.path = path if path is not None else archive.location  # where, for messages
        self.count = 0

    @classmethod
    def on(cls, archive: Archive) -> Quarantine:
        return cls(archive=archive)

    def put(self, bad: Bad) -> None:
        self.archive.append(entry(bad))
        self.count += 1

    def flush(self) -> None:
        self.archive.flush()

    def discard(self) -> None:
        self.archive.discard()

    def close(self) -> None:
        self.archive.flush()


def entry(bad: Bad) -> dict[str, Any]:
    """The quarantine record of ``bad``."""
    rec: dict[str, Any] = {"source": bad.source, "line": bad.line, "reason": bad.reason}
    if bad.data is not None:
        rec["raw_base64"] = base64.b64encode(bad.data).decode()
    else:
        rec["raw"] = bad.raw
    if bad.offset is not None:
        rec["offset"] = bad.offset
    return rec

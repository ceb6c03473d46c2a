"""Bad input is kept whole, with where it came from and why, as JSON Lines in an archive.

A record is ``{"source", "line", "reason", "raw"}`` (``raw``: the text as read). ``pimwatch replay``
reads quarantine files back: each record's ``raw`` is re-read as the original input, under its
original source and line (pimwatch/reader.py), so what a fixed parser now understands is replayed.
"""

from __future__ import annotations

import os

from pimwatch.archive import Archive, FileArchive
from pimwatch.reader import Bad


class Quarantine:
    """``Quarantine(path)``: a local JSON Lines file, created on the first bad record's flush only, so
    a clean run leaves nothing behind. ``Quarantine.on(archive)``: any archive (Blob Storage).

    Records are buffered by the archive: :meth:`flush` (or :meth:`close`) writes them and raises
    :class:`pimwatch.archive.ArchiveError` when it cannot; :meth:`discard` drops what is unwritten.
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
        self.archive.append({"source": bad.source, "line": bad.line, "reason": bad.reason, "raw": bad.raw})
        self.count += 1

    def flush(self) -> None:
        self.archive.flush()

    def discard(self) -> None:
        self.archive.discard()

    def close(self) -> None:
        self.archive.flush()

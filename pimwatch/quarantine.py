"""Bad input is kept whole, with where it came from and why, in a JSON Lines file."""

from __future__ import annotations

import os
from typing import IO

import orjson

from pimwatch.reader import Bad


class Quarantine:
    """Appends one JSON object per bad record: ``source``, ``line``, ``reason``, ``raw`` (the text as read).

    The file is created on the first bad record only, so a clean run leaves nothing behind.
    """

    def __init__(self, path: str):
        self.path = path
        self.count = 0
        self._f: IO[bytes] | None = None

    def put(self, bad: Bad) -> None:
        if self._f is None:
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        doc = {"source": bad.source, "line": bad.line, "reason": bad.reason, "raw": bad.raw}
        self._f.write(orjson.dumps(doc) + b"\n")
        self.count += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

"""Alerts appended to a JSON Lines file, one alert JSON per line (the same form as ``--format jsonl``).

The local default next to ``console``: a durable record a SIEM forwarder can tail. A resolved alert
is written again with ``"status": "resolved"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import orjson

from pimwatch.delivery import Alert, Http, PermanentError, SinkConfig, TransientError

BATCH = True
RESOLVES = True


class Config(SinkConfig):
    type: Literal["file"] = "file"
    path: str = "pimwatch-alerts.jsonl"


def render(alerts: Sequence[Alert], config: Config) -> bytes:
    return b"".join(orjson.dumps(a.to_dict()) + b"\n" for a in alerts)


def send(rendered: bytes, config: Config, http: Http) -> str:
    if not rendered:
        return "nothing to append"
    try:
        folder = os.path.dirname(os.path.abspath(config.path))
        os.makedirs(folder, exist_ok=True)
        with open(config.path, "ab") as f:
            f.write(rendered)
            f.flush()
            os.fsync(f.fileno())
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:  # fixed only by a person
        raise PermanentError(f"file: cannot write {config.path}: {exc.strerror}") from None
    except OSError as exc:
        raise TransientError(f"file: cannot write {config.path}: {exc.strerror}") from None
    lines = rendered.count(b"\n")
    return f"appended {lines} alert(s) to {config.path}"

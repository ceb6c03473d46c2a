"""The sink toolkit, text half: written once, used by every sink (after Alertmanager's notify/util.go).

Audit fields are attacker-controlled text. A sink builds its payload as objects and passes every
untrusted string through these helpers:

* :func:`clean` / :func:`one_line` — control, line-separator and bidi characters out (one set, below),
  lone surrogates as U+FFFD (they cannot be encoded); :func:`encodable` — only the surrogates;
* :func:`truncate` — cut with the visible :data:`TRUNCATED` marker, never silently;
* :func:`bounded` — a JSON-like value with every string, list, mapping and nesting level bounded, each
  cut marked;
* :func:`json_text` / :func:`json_bytes` — the one compact JSON encoder (what is sent and measured);
* :func:`md_escape` — Markdown-inert text for Teams, escaping only what Markdown would act on;
* :func:`display_time`, :func:`epoch_seconds`, :func:`epoch_ms`, :func:`rfc3339_ms` — the time
  formatters (parsing is :func:`pimwatch.detection.timeutil.parse_time`);
* :func:`preview` — what a target receives, as text (``pimwatch render``).
"""

from __future__ import annotations

import json
import math
import re
import socket
from typing import Any

import orjson

from pimwatch.detection.timeutil import parse_time

TRUNCATED = " …[truncated]"
MARK = TRUNCATED.strip()  # "…[truncated]": the marker on its own (a list's last item, a mapping key)

# C0 and C1 controls and DEL (category Cc), the line and paragraph separators, and the bidi marks,
# embeddings, overrides and isolates: one-line fields stay one line and cannot be made to read backwards.
_INVISIBLE = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_INVISIBLE}]")
_UNSAFE_RUNS = re.compile(f"[\x00-\x1f{_INVISIBLE}]+")
_UNSAFE_BUT_BREAKS = re.compile(f"[\x00-\x09\x0b\x0c\x0e-\x1f{_INVISIBLE}]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_ESCAPED = re.compile(f"[{_INVISIBLE}]")  # C0 controls are escaped by json itself


def _text(text: object) -> str:
    return "" if text is None else _SURROGATE.sub("\ufffd", str(text))


def clean(text: object, *, breaks: bool = False, replacement: str = " ") -> str:
    """``text`` with each unsafe character as ``replacement``; ``breaks``: keep CR and LF (the target
    escapes them, or a multi-line field shows them). None is the empty string."""
    pattern = _UNSAFE_BUT_BREAKS if breaks else _UNSAFE
    return pattern.sub(replacement, _text(text))


def one_line(text: object) -> str:
    """One line: each run of unsafe characters as one space, stripped."""
    return _UNSAFE_RUNS.sub(" ", _text(text)).strip()


def truncate(text: str | None, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a visible marker (never silently)."""
    if text is None:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def encodable(text: object) -> str:
    """``text`` as a string that always encodes: lone surrogates (possible in JSON-escaped audit text)
    as U+FFFD, nothing else changed. None is the empty string."""
    return _text(text)


def bounded(
    value: Any,
    limit: int,
    items: int = 100,
    *,
    max_depth: int = 8,
    key_limit: int = 128,
    budget: int | None = None,
    depth: int = 0,
) -> Any:
    """``value`` as JSON-safe data: every string (lone surrogates replaced) cut to ``limit`` characters,
    every key to ``key_limit``, every list and mapping to ``items`` entries, at most ``max_depth``
    levels, and with ``budget`` at most about that many characters in all (every value costs a few, so
    the walk stops early however large the input is). Each cut is marked. What JSON cannot hold (a
    set, an integer beyond 64 bits, NaN, any other object) becomes a list or its bounded text."""
    left = [math.inf if budget is None else budget]

    def walk(value: Any, depth: int) -> Any:
        left[0] -= 4
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and -(2**63) <= value < 2**63:
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            if depth >= max_depth:
                return "nested too deep" + TRUNCATED
            if isinstance(value, dict):
                out: dict[str, Any] = {}
                for i, (k, v) in enumerate(value.items()):
                    if i >= items or left[0] <= 0:
                        out["…"] = f"{len(value) - i} more keys" + TRUNCATED
                        break
                    key = truncate(_text(k), key_limit)
                    left[0] -= len(key)
                    out[key] = walk(v, depth + 1)
                return out
            seq = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            kept: list[Any] = []
            for i, v in enumerate(seq):
                if i >= items or left[0] <= 0:
                    kept.append(f"{len(seq) - i} more items" + TRUNCATED)
                    break
                kept.append(walk(v, depth + 1))
            return kept
        cut = truncate(_text(value), int(min(limit, max(left[0], 32))))
        left[0] -= len(cut)
        return cut

    return walk(value, depth)


def json_text(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON (UTF-8 text; no NaN; what JSON cannot hold as its ``str``), with C1 controls, line
    separators and bidi marks as ``\\uXXXX`` escapes: the raw text a SIEM or a log viewer shows cannot
    be made to read backwards, and the parsed values are unchanged."""
    text = json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, allow_nan=False, default=str
    )
    return _JSON_ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """:func:`json_text` encoded: the exact bytes sent (and measured, and signed)."""
    return json_text(value, sort_keys=sort_keys).encode("utf-8")


# Markdown (the Adaptive Card subset: bold, italic, links, lists) acts on these and nothing else. Escaping
# more (every "." and "-") shows literal backslashes in some Teams clients: adm\-eve@contoso\.com.
# escapes, code, emphasis, links and images, strike-through, autolinks and tags (<https://…>, <at>)
_MD_ALWAYS = re.compile(r"([\\`*\[\]~<])")
_MD_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # emphasis only next to a non-word character
_MD_LINE_START = re.compile(r"^([ \t]*)(?:([-+>]|#{1,6})|(\d{1,9})([.)]))(?=[ \t]|$)", re.MULTILINE)


def md_escape(text: object) -> str:
    """Markdown-inert text: no links, emphasis, code or lists from audit text, nothing else escaped."""
    s = _MD_ALWAYS.sub(r"\\\1", "" if text is None else str(text))
    s = _MD_UNDERSCORE.sub(r"\\_", s)
    return _MD_LINE_START.sub(_line_start, s)


def _line_start(m: re.Match[str]) -> str:
    indent, marker, number, delimiter = m.groups()
    if number is not None:  # "1. item" / "1) item": the delimiter after the number is escaped
        return f"{indent}{number}\\{delimiter}"
    return f"{indent}\\{marker}"


def display_time(iso: str | None) -> str:
    """``2026-03-10T02:17:00.000000Z`` → ``2026-03-10 02:17:00 UTC`` (as given when it does not parse)."""
    when = parse_time(iso)
    return iso or "" if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def epoch_seconds(iso: str | None) -> float | None:
    """Epoch seconds, millisecond precision (a time without a zone is UTC); None if unreadable."""
    when = parse_time(iso)
    return None if when is None else round(when.timestamp(), 3)


def epoch_ms(iso: str | None) -> str:
    """Epoch milliseconds as text ("" if unreadable): CEF ``rt`` / ``start`` / ``end``."""
    when = parse_time(iso)
    return "" if when is None else str(round(when.timestamp() * 1000))


def rfc3339_ms(iso: str | None) -> str:
    """``2026-03-10T02:17:00.250Z`` (RFC 5424 TIMESTAMP, UTC, milliseconds); ``-`` if unreadable."""
    when = parse_time(iso)
    if when is None:
        return "-"
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond // 1000:03d}Z"


def local_hostname() -> str:
    """This machine's name as printable ASCII without spaces (others as ``-``), at most 255 characters:
    valid as an RFC 5424 HOSTNAME and as a Splunk ``host``."""
    return re.sub(r"[^!-~]", "-", socket.gethostname())[:255] or "-"


def preview(rendered: Any) -> str:
    """What the target receives, as text: bytes decoded, a list of messages one per line, anything
    else (a JSON payload, an e-mail) as indented JSON."""
    if isinstance(rendered, bytes):
        return rendered.decode("utf-8", "replace")
    if isinstance(rendered, str):
        return rendered
    if isinstance(rendered, list) and all(isinstance(r, bytes | str) for r in rendered):
        return "".join(preview(r).rstrip("\n") + "\n" for r in rendered)
    return orjson.dumps(rendered, option=orjson.OPT_INDENT_2, default=str).decode() + "\n"

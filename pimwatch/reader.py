"""Bytes → routed records, whatever the input shape (entra-events.md §1, §2, §2.4).

Files: JSON Lines, one JSON document (object or array, pretty-printed or not), CSV (Log
Analytics exports), each optionally gzip-compressed; ``-`` is stdin; folders are read
recursively. Objects: Event Hub messages ``{"records": [...]}``, Event Hub records, Graph
``directoryAudit``/``signIn`` objects and ``{"value": [...]}`` pages, Log Analytics rows. The shape
is decided per record, by its keys.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from pimwatch.normalize import la_to_camel

Route = Literal["audit", "signin"]
_SIGNIN_CATEGORIES = {"signinlogs": "SignInLogs", "noninteractiveusersigninlogs": "NonInteractiveUserSignInLogs"}
_LA_TABLES = {
    "AuditLogs": ("audit", "AuditLogs"),
    "SigninLogs": ("signin", "SignInLogs"),
    "AADNonInteractiveUserSignInLogs": ("signin", "NonInteractiveUserSignInLogs"),
}
_LA_MARKERS = ("TimeGenerated", "OperationName", "AADTenantId", "ActivityDisplayName", "CreatedDateTime")


@dataclass(frozen=True, slots=True)
class Routed:
    """A record to normalize: ``props`` holds the payload in Graph/Event Hub key names."""

    route: Route
    shape: str
    category: str
    props: Mapping[str, Any]
    top: Mapping[str, Any]
    raw: Mapping[str, Any]
    source: str
    line: int


@dataclass(frozen=True, slots=True)
class Skipped:
    category: str
    shape: str


@dataclass(frozen=True, slots=True)
class Bad:
    """Input that could not be read as a record: quarantined whole, with the reason."""

    source: str
    line: int
    reason: str
    raw: str


Item = Routed | Skipped | Bad


class InputError(OSError):
    """An input path that cannot be read at all (exit code 1)."""


def classify(obj: Any, source: str, line: int) -> Iterator[Item]:
    """Unwrap envelopes, pages and arrays; route each record by its keys."""
    if isinstance(obj, list):
        for item in obj:
            yield from classify(item, source, line)
        return
    if not isinstance(obj, dict):
        yield Bad(source, line, f"expected a JSON object, got {type(obj).__name__}", _dump(obj))
        return
    records = obj.get("records")
    if isinstance(records, list):
        for rec in records:
            yield from _record(rec, source, line, in_envelope=True)
        return
    value = obj.get("value")
    if isinstance(value, list) and ("@odata.context" in obj or "@odata.nextLink" in obj or len(obj) == 1):
        for rec in value:
            yield from _record(rec, source, line, in_envelope=True)
        return
    yield from _record(obj, source, line, in_envelope=False)


def _record(rec: Any, source: str, line: int, *, in_envelope: bool) -> Iterator[Item]:
    if not isinstance(rec, dict):
        yield Bad(source, line, f"expected a record object, got {type(rec).__name__}", _dump(rec))
        return
    props = rec.get("properties")
    category = rec.get("category")
    if isinstance(props, dict) and isinstance(category, str):
        cat = category.strip()
        low = cat.lower()
        if low in ("auditlogs", "audit"):
            yield Routed("audit", "eventhub", "AuditLogs", props, rec, rec, source, line)
        elif low in _SIGNIN_CATEGORIES:
            yield Routed("signin", "eventhub", _SIGNIN_CATEGORIES[low], props, rec, rec, source, line)
        else:
            yield Skipped(cat or "(empty)", "eventhub")
        return
    if "activityDisplayName" in rec and ("initiatedBy" in rec or "loggedByService" in rec):
        yield Routed("audit", "graph", "AuditLogs", rec, {}, rec, source, line)
        return
    if "createdDateTime" in rec and ("userPrincipalName" in rec or "userId" in rec):
        yield _graph_signin(rec, source, line)
        return
    if any(k in rec for k in _LA_MARKERS):
        yield _la_row(rec, source, line)
        return
    if "category" in rec and "records" not in rec and isinstance(category, str) and not in_envelope:
        yield Skipped(category, "eventhub")
        return
    keys = ", ".join(sorted(map(str, rec))[:8])
    yield Bad(source, line, f"unrecognised record shape (keys: {keys})", _dump(rec))


def _graph_signin(rec: dict[str, Any], source: str, line: int) -> Item:
    types = rec.get("signInEventTypes")
    if isinstance(types, list) and types and not any("User" in str(t) for t in types):
        return Skipped("ServicePrincipalSignInLogs", "graph")
    if not rec.get("userId") and rec.get("servicePrincipalId"):
        return Skipped("ServicePrincipalSignInLogs", "graph")
    interactive = rec.get("isInteractive")
    non = interactive is False or (isinstance(types, list) and "nonInteractiveUser" in types)
    category = "NonInteractiveUserSignInLogs" if non else "SignInLogs"
    return Routed("signin", "graph", category, rec, {}, rec, source, line)


def _la_row(rec: dict[str, Any], source: str, line: int) -> Item:
    table = rec.get("Type")
    if isinstance(table, str) and table:
        if table not in _LA_TABLES:
            return Skipped(table, "loganalytics")
        route, category = _LA_TABLES[table]
    elif "ActivityDisplayName" in rec or "InitiatedBy" in rec or "TargetResources" in rec:
        route, category = "audit", "AuditLogs"
    elif "UserPrincipalName" in rec or "UserId" in rec:
        interactive = rec.get("IsInteractive")
        non = interactive is False or (isinstance(interactive, str) and interactive.lower() == "false")
        route, category = "signin", ("NonInteractiveUserSignInLogs" if non else "SignInLogs")
    else:
        return Skipped(str(rec.get("Category") or "(unknown table)"), "loganalytics")
    props, top = la_to_camel(rec)
    return Routed(route, "loganalytics", category, props, top, rec, source, line)  # type: ignore[arg-type]


def _dump(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return repr(obj)


# --- files ---------------------------------------------------------------------------------------


def expand(paths: Iterable[str]) -> list[str]:
    """Files of ``paths`` (folders recursively, sorted); raises InputError for a missing path."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
            continue
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.rglob("*")) if f.is_file() and _log_file(f))
        elif path.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


LOG_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson", ".csv", ".log", ""})


def _log_file(f: Path) -> bool:
    """In a folder, read what can hold logs (by suffix, under .gz) and skip READMEs, configs, dotfiles."""
    if f.name.startswith("."):
        return False
    name = f.name[:-3] if f.name.endswith(".gz") else f.name
    return Path(name).suffix.lower() in LOG_SUFFIXES


def _open(path: str) -> io.BufferedReader:
    raw: IO[bytes]
    if path == "-":
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from exc
    buf = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 20)  # type: ignore[arg-type]
    if buf.peek(2)[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=buf), 1 << 20)  # type: ignore[arg-type]
    return buf


def read_file(path: str, counter: list[int]) -> Iterator[Item]:
    """Items of one file. ``counter[0]`` is advanced by the bytes read (after decompression)."""
    f = _open(path)
    try:
        name = path.lower().removesuffix(".gz")
        head = f.peek(4096)[:4096]
        try:
            if name.endswith(".csv") or _looks_like_csv(head):
                yield from _read_csv(f, path, counter)
            else:
                yield from _read_json(f, path, counter)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            yield Bad(path, 0, f"unreadable input: {exc}", "")
    finally:
        if path != "-":
            f.close()


def _looks_like_csv(head: bytes) -> bool:
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip()
    return bool(first) and first[:1] not in (b"{", b"[") and b"," in first and b'"' not in first[:1]


def _read_json(f: io.BufferedReader, source: str, counter: list[int]) -> Iterator[Item]:
    first = f.peek(1 << 16).lstrip()[:1]
    if first == b"[":
        data = f.read()
        counter[0] += len(data)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            yield from _salvage_lines(data, source)
            return
        yield from classify(doc, source, 1)
        return
    # JSON Lines unless the first line alone is not a complete document (pretty-printed JSON).
    line_no = 0
    pending: list[bytes] = []
    for line in f:
        counter[0] += len(line)
        line_no += 1
        if pending:
            pending.append(line)
            continue
        stripped = line.strip()
        if not stripped:
            continue
        try:
            obj = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            if line_no == 1:
                pending.append(line)
                continue
            yield Bad(source, line_no, f"malformed JSON: {exc}", _text(stripped))
            continue
        yield from classify(obj, source, line_no)
    if pending:
        start = line_no - len(pending) + 1
        data = b"".join(pending)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            yield from _salvage_lines(data, source, start)
            return
        yield from classify(doc, source, start)


def _salvage_lines(data: bytes, source: str, start: int = 1) -> Iterator[Item]:
    """A broken document: read it line by line so the good records survive and each bad line is kept."""
    for i, line in enumerate(data.splitlines(), start):
        s = line.strip().rstrip(b",")
        if s in (b"", b"[", b"]", b"{", b"}"):
            continue
        if s.startswith(b"["):
            s = s[1:].lstrip()
        if s.endswith(b"]") and not s.endswith(b"]]"):
            s = s[:-1].rstrip().rstrip(b",")
        try:
            obj = orjson.loads(s)
        except orjson.JSONDecodeError as exc:
            yield Bad(source, i, f"malformed JSON: {exc}", _text(line))
            continue
        yield from classify(obj, source, i)


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def _read_csv(f: io.BufferedReader, source: str, counter: list[int]) -> Iterator[Item]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="replace", newline="")
    reader = csv.DictReader(text)
    for row in reader:
        line = reader.line_num
        if None in row:
            extra = row.pop(None)  # type: ignore[call-overload]
            yield Bad(source, line, "CSV row has more fields than the header", _dump({**row, "": extra}))
            continue
        cleaned = {k: (v if v != "" else None) for k, v in row.items() if k}
        counter[0] += sum(len(v) for v in row.values() if v)
        yield from classify(cleaned, source, line)


def size_of(path: str) -> int:
    try:
        return os.path.getsize(path) if path != "-" else 0
    except OSError:
        return 0

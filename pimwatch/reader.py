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
from typing import Any, Literal

import orjson

from pimwatch.normalize import la_to_camel

Route = Literal["audit", "signin"]
_SIGNIN_CATEGORIES = {
    "signinlogs": "SignInLogs",
    "noninteractiveusersigninlogs": "NonInteractiveUserSignInLogs",
}
_LA_TABLES = {
    "AuditLogs": ("audit", "AuditLogs"),
    "SigninLogs": ("signin", "SignInLogs"),
    "AADNonInteractiveUserSignInLogs": ("signin", "NonInteractiveUserSignInLogs"),
}
_EH_ROUTES: dict[str, tuple[Route, str]] = {
    "AuditLogs": ("audit", "AuditLogs"),
    "SignInLogs": ("signin", "SignInLogs"),
    "NonInteractiveUserSignInLogs": ("signin", "NonInteractiveUserSignInLogs"),
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
class Screened:
    """A sign-in that the byte screen showed to be of no interest: counted, never parsed."""

    category: str


@dataclass(frozen=True, slots=True)
class Screen:
    """Byte needles of the only sign-ins any detector wants (break-glass ids and UPNs).

    A line-per-record Event Hub sign-in whose bytes contain none of the needles (compared
    lower-cased) cannot concern those accounts and is counted without being parsed. Built only from
    needles that JSON never escapes (see :meth:`pimwatch.detector.Settings.signin_screen`).
    """

    needles: tuple[bytes, ...]


_SCREEN_CATEGORIES = {
    b"SignInLogs": "SignInLogs",
    b"NonInteractiveUserSignInLogs": "NonInteractiveUserSignInLogs",
}


@dataclass(frozen=True, slots=True)
class Bad:
    """Input that could not be read as a record: quarantined whole, with the reason."""

    source: str
    line: int
    reason: str
    raw: str


Item = Routed | Skipped | Screened | Bad


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
            yield route_record(rec, source, line, in_envelope=True)
        return
    value = obj.get("value")
    if isinstance(value, list) and ("@odata.context" in obj or "@odata.nextLink" in obj or len(obj) == 1):
        for rec in value:
            yield route_record(rec, source, line, in_envelope=True)
        return
    yield route_record(obj, source, line)


def route_record(rec: Any, source: str, line: int, *, in_envelope: bool = False) -> Item:
    """One record (not an envelope) → where it goes."""
    if type(rec) is not dict:
        return Bad(source, line, f"expected a record object, got {type(rec).__name__}", _dump(rec))
    props = rec.get("properties")
    category = rec.get("category")
    if type(props) is dict and type(category) is str:
        route = _EH_ROUTES.get(category)
        if route is not None:
            return Routed(route[0], "eventhub", route[1], props, rec, rec, source, line)
        low = category.strip().lower()
        if low in ("auditlogs", "audit"):
            return Routed("audit", "eventhub", "AuditLogs", props, rec, rec, source, line)
        if low in _SIGNIN_CATEGORIES:
            return Routed("signin", "eventhub", _SIGNIN_CATEGORIES[low], props, rec, rec, source, line)
        return Skipped(category.strip() or "(empty)", "eventhub")
    if "activityDisplayName" in rec and ("initiatedBy" in rec or "loggedByService" in rec):
        return Routed("audit", "graph", "AuditLogs", rec, {}, rec, source, line)
    if "createdDateTime" in rec and ("userPrincipalName" in rec or "userId" in rec):
        return _graph_signin(rec, source, line)
    if any(k in rec for k in _LA_MARKERS):
        return _la_row(rec, source, line)
    if isinstance(category, str) and not in_envelope:
        return Skipped(category, "eventhub")
    keys = ", ".join(sorted(map(str, rec))[:8])
    return Bad(source, line, f"unrecognised record shape (keys: {keys})", _dump(rec))


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
    raw: Any
    if path == "-":
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from exc
    buf: io.BufferedReader = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 20)
    if buf.peek(2)[:2] == b"\x1f\x8b":
        gz: Any = gzip.GzipFile(fileobj=buf)
        return io.BufferedReader(gz, 1 << 20)
    return buf


def read_file(path: str, counter: list[int], screen: Screen | None = None) -> Iterator[Item]:
    """Items of one file. ``counter[0]`` is advanced by the bytes read (after decompression)."""
    f = _open(path)
    try:
        name = path.lower().removesuffix(".gz")
        head = f.peek(4096)[:4096]
        try:
            if name.endswith(".csv") or _looks_like_csv(head):
                yield from _read_csv(f, path, counter)
            else:
                yield from _read_json(f, path, counter, screen)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            yield Bad(path, 0, f"unreadable input: {exc}", "")
    finally:
        if path != "-":
            f.close()


def _looks_like_csv(head: bytes) -> bool:
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip()
    return bool(first) and first[:1] not in (b"{", b"[") and b"," in first and b'"' not in first[:1]


def _read_json(
    f: io.BufferedReader, source: str, counter: list[int], screen: Screen | None = None
) -> Iterator[Item]:
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
    nbytes = 0
    pending: list[bytes] = []
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    needles = screen.needles if screen is not None else None
    for line in f:
        nbytes += len(line)
        line_no += 1
        if pending:
            pending.append(line)
            continue
        if needles is not None:
            # A bare Event Hub record: Entra writes its top-level "category" before "properties";
            # only an exact match counts, and never in an envelope or page (its first record's
            # category says nothing about the others).
            i = line.find(b'"category":"', 0, 1024)
            if i >= 0 and line.find(b'"records"', 0, i) < 0 and line.find(b'"value"', 0, i) < 0:
                category = _SCREEN_CATEGORIES.get(line[i + 12 : line.find(b'"', i + 12, i + 64)])
                if category is not None:
                    hay = line.lower()
                    for needle in needles:
                        if needle in hay:
                            break
                    else:
                        yield Screened(category)
                        continue
        try:
            obj = loads(line)
        except decode_error as exc:
            if not line.strip():
                continue
            if line_no == 1:
                pending.append(line)
                continue
            yield Bad(source, line_no, f"malformed JSON: {exc}", _text(line.strip()))
            continue
        if type(obj) is dict and "records" not in obj and "value" not in obj:
            yield route_record(obj, source, line_no)
        else:
            yield from classify(obj, source, line_no)
        if line_no & 1023 == 0:
            counter[0] += nbytes
            nbytes = 0
    counter[0] += nbytes
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
            extra = row.pop(None)  # type: ignore[call-overload,unused-ignore]
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

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
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
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
    """Sign-ins that the screen showed to be of no interest: counted, never normalized."""

    category: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class Screen:
    """The only sign-ins any detector wants: those of the accounts in ``sources`` (break-glass: ids,
    UPNs, lower-cased), and those whose properties-level ``values`` name a wanted value (e.g.
    ``riskLevelDuringSignIn`` ``high``; compared lower-case). Both are fixed by the configuration
    and read from the record itself, never from what was read before: what the screen lets through
    does not depend on the order of the input.

    ``wants(props)`` is the check on a parsed record. ``uninteresting(line)`` is the same check on a
    line-per-record Event Hub sign-in, so that it is counted without being parsed whole: a typed
    partial decode (msgspec) reads only ``properties`` and, in it, the fields the check reads
    (``userId``, ``userPrincipalName`` and the ``values`` fields); the rest of the line is skipped
    in C without building objects (~3 µs for a 3.7 KB sign-in, half of a full parse). It is a JSON
    parser, so it reads what the parser reads: a field nested deeper is not a properties-level one,
    a repeated key counts once (the last one, as orjson), escapes are decoded. A line it cannot read
    (not JSON, ``properties`` no object or absent) is parsed, and its fault reported, as before.
    """

    sources: tuple[tuple[AbstractSet[str], AbstractSet[str]], ...]
    values: tuple[tuple[str, frozenset[str]], ...] = ()
    # Decodes a line to its properties: userId, userPrincipalName, then the values fields.
    _decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False, compare=False)
    # ``values`` as (index of the field in the decoded tuple, wanted values).
    _checks: tuple[tuple[int, frozenset[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = ("userId", "userPrincipalName", *(name for name, _ in self.values if name not in _USER))
        # Attribute names f0, f1, ... for the JSON names (which need not be identifiers).
        props = msgspec.defstruct(
            "ScreenedProperties",
            [(f"f{i}", object, None) for i in range(len(names))],
            rename={f"f{i}": name for i, name in enumerate(names)},
            array_like=False,
        )
        record = msgspec.defstruct("ScreenedSignIn", [("properties", props | None, None)])
        object.__setattr__(self, "_decoder", msgspec.json.Decoder(record))
        object.__setattr__(self, "_checks", tuple((names.index(n), w) for n, w in self.values))

    def known(self, uid: object, upn: object) -> bool:
        for ids, upns in self.sources:
            if isinstance(uid, str) and uid.lower() in ids:
                return True
            if isinstance(upn, str) and upn.lower() in upns:
                return True
        return False

    def wants(self, props: Mapping[str, Any]) -> bool:
        for name, wanted in self.values:
            value = props.get(name)
            if value is not None and str(value).lower() in wanted:
                return True
        return self.known(props.get("userId"), props.get("userPrincipalName"))

    def uninteresting(self, line: bytes) -> bool:
        try:
            props = self._decoder.decode(line).properties
        except msgspec.DecodeError:  # (ValidationError included): not for the screen to judge
            return False
        if props is None:
            return False
        # What wants() does on the parsed record, on the decoded fields (userId, UPN, then values).
        fields = msgspec.structs.astuple(props)
        for i, wanted in self._checks:
            value = fields[i]
            if value is not None and str(value).lower() in wanted:
                return False
        return not self.known(fields[0], fields[1])


_USER = ("userId", "userPrincipalName")


_SIGNIN_EH = frozenset({"SignInLogs", "NonInteractiveUserSignInLogs"})
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
    if len(obj) == 4 and is_quarantined(obj):
        yield from unquarantine(obj)
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


QUARANTINE_KEYS = frozenset({"source", "line", "reason", "raw"})


def is_quarantined(obj: Mapping[str, Any]) -> bool:
    """A quarantine record (pimwatch/quarantine.py): exactly the keys source, line, reason, raw."""
    return obj.keys() == QUARANTINE_KEYS and type(obj["raw"]) is str


def unquarantine(rec: Mapping[str, Any]) -> Iterator[Item]:
    """A quarantine record read back: its ``raw`` text is read again as the original input (a record,
    an Event Hub message, a line), under its original source and line, so the records a fixed parser
    now understands are replayed and the rest are quarantined again as they were."""
    source = str(rec["source"])
    line = rec["line"] if type(rec["line"]) is int else 0
    raw: str = rec["raw"]
    if not raw.strip():  # a note about an unreadable file: nothing to read again
        yield Bad(source, line, str(rec["reason"]), raw)
        return
    data = raw.encode()
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        yield from _salvage_lines(data, source, line)  # complete values in it are read, the rest is bad
        return
    if type(obj) is dict and "records" not in obj and "value" not in obj and not is_quarantined(obj):
        item = route_record(obj, source, line)
        yield Bad(source, line, item.reason, raw) if type(item) is Bad else item
    else:
        yield from classify(obj, source, line)


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
            raw = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from exc
    buf: io.BufferedReader = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 20)
    if buf.peek(2)[:2] == b"\x1f\x8b":
        # GzipFile buffers by itself; not wrapped in a large buffer so that, when a later part of
        # the file is corrupt, the lines decompressed before it are still handed out first.
        gz: Any = gzip.GzipFile(fileobj=buf)
        return gz  # type: ignore[no-any-return]
    return buf


def read_file(path: str, counter: list[int], screen: Screen | None = None) -> Iterator[Item]:
    """Items of one file. ``counter[0]`` is advanced by the bytes read (after decompression)."""
    f = _open(path)
    try:
        name = path.lower().removesuffix(".gz")
        try:
            head = f.peek(4096)[:4096]  # decompresses already: inside the try
            if name.endswith(".csv") or _looks_like_csv(head):
                yield from _read_csv(f, path, counter)
            else:
                yield from _read_json(f, path, counter, screen)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            yield Bad(path, 0, f"unreadable input (the records before this point were read): {exc}", "")
    finally:
        if path != "-":
            f.close()


def _looks_like_csv(head: bytes) -> bool:
    first = head.removeprefix(_BOM).split(b"\n", 1)[0].strip()
    return bool(first) and first[:1] not in (b"{", b"[") and b"," in first


_BOM = b"\xef\xbb\xbf"


def _read_json(
    f: io.BufferedReader, source: str, counter: list[int], screen: Screen | None = None
) -> Iterator[Item]:
    if f.peek(3)[:3] == _BOM:  # PowerShell 5.1 and Notepad write one
        f.read(3)
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
    uninteresting = screen.uninteresting if screen is not None else None
    screened: dict[str, int] = {}
    wants = screen.wants if screen is not None else None
    for line in f:
        nbytes += len(line)
        line_no += 1
        if pending:
            pending.append(line)
            continue
        if uninteresting is not None:
            # A bare Event Hub record: Entra writes its top-level "category" before "properties";
            # only an exact match counts, and never in an envelope (its first record's category
            # says nothing about the others). Graph and Log Analytics sign-ins carry no "category".
            i = line.find(b'"category":"', 0, 1024) if line[:1] == b"{" else -1
            if i >= 0 and line.find(b'"records"', 0, i) < 0:
                category = _SCREEN_CATEGORIES.get(line[i + 12 : line.find(b'"', i + 12, i + 64)])
                if category is not None and uninteresting(line):
                    screened[category] = screened.get(category, 0) + 1  # counted in batches
                    if line_no & 4095 == 0:
                        yield from _flush(screened)
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
        if type(obj) is dict and len(obj) == 4 and is_quarantined(obj):
            yield from unquarantine(obj)
        elif type(obj) is dict and "records" not in obj and "value" not in obj:
            item = route_record(obj, source, line_no)
            if type(item) is Bad:  # keep the line as it was read, not as re-serialized
                item = Bad(source, line_no, item.reason, _text(line.strip()))
            yield item
        elif type(obj) is dict and type(records := obj.get("records")) is list:
            # An Event Hub message: inlined (this is the production shape) with the sign-in check;
            # the sign-ins of no interest are counted with the file's others, in batches.
            for rec in records:
                if wants is not None and type(rec) is dict:
                    category = rec.get("category")
                    if category in _SIGNIN_EH:
                        props = rec.get("properties")
                        if type(props) is dict and not wants(props):
                            screened[category] = screened.get(category, 0) + 1
                            continue
                yield route_record(rec, source, line_no, in_envelope=True)
        elif type(obj) is dict or type(obj) is list:
            yield from classify(obj, source, line_no)
        else:
            yield Bad(
                source, line_no, f"expected a JSON object, got {type(obj).__name__}", _text(line.strip())
            )
        if line_no & 1023 == 0:
            counter[0] += nbytes
            nbytes = 0
    counter[0] += nbytes
    yield from _flush(screened)
    if pending:
        start = line_no - len(pending) + 1
        data = b"".join(pending)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            yield from _salvage_lines(data, source, start)
            return
        yield from classify(doc, source, start)


def _flush(screened: dict[str, int]) -> Iterator[Screened]:
    for category, n in screened.items():
        yield Screened(category, n)
    screened.clear()


_DECODER = json.JSONDecoder()


def _salvage_lines(data: bytes, source: str, start: int = 1) -> Iterator[Item]:
    """A broken document: pull out every complete JSON value it still holds, keep the rest as bad.

    Values are found one after another (separators ``,[]`` and whitespace skipped); an unreadable
    stretch runs to the next line that opens an object at the same or a lower indentation, and is
    quarantined whole. Works for JSON Lines, one-line arrays and pretty-printed arrays alike.
    """
    text = _text(data)
    n = len(text)
    pos = 0
    line = start
    counted = 0  # text[:counted] has been scanned for newlines into ``line``
    while True:
        while pos < n and text[pos] in " \t\r\n,[]":
            pos += 1
        if pos >= n:
            return
        line += text.count("\n", counted, pos)
        counted = pos
        if text[pos] == "{":
            try:
                obj, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                end = _next_object(text, pos)
                yield Bad(source, line, f"malformed JSON: {exc.msg}", text[pos:end].strip())
            else:
                yield from classify(obj, source, line)
        else:
            end = _next_object(text, pos)
            yield Bad(source, line, "malformed JSON: not a JSON object", text[pos:end].strip())
        pos = end


def _next_object(text: str, pos: int) -> int:
    """Where the next line opening an object at ``pos``'s indentation (or less) starts, else the end."""
    indent = pos - (text.rfind("\n", 0, pos) + 1)
    i = text.find("\n", pos)
    while i >= 0:
        j = i + 1
        stripped = len(text) - len(text[j:].lstrip(" \t"))
        if stripped < len(text) and text[stripped] == "{" and stripped - j <= indent:
            return j
        i = text.find("\n", j)
    return len(text)


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

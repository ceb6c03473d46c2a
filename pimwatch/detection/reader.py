"""Bytes → routed records, whatever the input shape (entra-events.md §1, §2, §2.4).

Files: JSON Lines, one JSON document (object or array, pretty-printed or not), concatenated
documents, CSV (Log Analytics exports, the portal's too), each optionally gzip-compressed, in UTF-8,
UTF-16 or UTF-32 (found from the first bytes); ``-`` is stdin; folders are read recursively, hidden
folders and binary files left out. Objects: Event Hub messages ``{"records": [...]}``, Event Hub
records, Graph ``directoryAudit``/``signIn`` objects and ``{"value": [...]}`` pages, Log Analytics
rows, Graph PowerShell SDK objects (``ConvertTo-Json`` in PowerShell 7 and 5.1, ``Export-Csv`` with
or without its ``#TYPE`` line: export-shapes.md (c)-(e)). The shape is decided per record, by its
keys.

Reading is one pass, linear in the size, memory bounded by the largest JSON value (``_Json``): bad
input is quarantined with its line and byte offset and reading goes on; nothing raises out of
``read_file`` but InputError for a file that cannot be opened.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import gzip
import io
import itertools
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import orjson

from pimwatch.detection.normalize import from_powershell, la_to_camel

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
        record = msgspec.defstruct(
            "ScreenedSignIn", [("category", object, None), ("properties", props | None, None)]
        )
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

    def uninteresting(self, line: bytes, category: str | None = None) -> bool:
        """``category``: the one the caller read from the bytes (the first occurrence); the parser
        keeps the last, so a line whose decoded category differs is left to the parser."""
        try:
            decoded = self._decoder.decode(line)
        except msgspec.DecodeError:  # (ValidationError included): not for the screen to judge
            return False
        if category is not None and decoded.category != category:
            return False
        return self._lets_go(decoded.properties)

    def skip(self, record: bytes | memoryview) -> str | None:
        """A record of an Event Hub message, as bytes: its category when it is a sign-in the screen
        lets go (what the message's parsed loop decides with ``wants``), else None."""
        try:
            decoded = self._decoder.decode(record)
        except msgspec.DecodeError:
            return None
        category = decoded.category
        if type(category) is not str or category not in _SIGNIN_EH:
            return None
        return category if self._lets_go(decoded.properties) else None

    def _lets_go(self, props: Any) -> bool:
        if props is None:
            return False
        # What wants() does on the parsed record, on the decoded fields (userId, UPN, then values).
        # (known() inlined, and a string's lower() without str(): this runs for every sign-in.)
        fields = astuple(props)
        for i, wanted in self._checks:
            value = fields[i]
            if value is not None and (value if type(value) is str else str(value)).lower() in wanted:
                return False
        uid, upn = fields[0], fields[1]
        uid = uid.lower() if type(uid) is str else None
        upn = upn.lower() if type(upn) is str else None
        for ids, upns in self.sources:  # noqa: SIM110 - a loop: no generator object per sign-in
            if uid in ids or upn in upns:
                return False
        return True


_USER = ("userId", "userPrincipalName")
astuple = msgspec.structs.astuple


_SIGNIN_EH = frozenset({"SignInLogs", "NonInteractiveUserSignInLogs"})


class _Message(msgspec.Struct):
    """An Event Hub message: its records kept as their bytes."""

    records: list[msgspec.Raw]


_MESSAGE = msgspec.json.Decoder(_Message)
_SCREEN_CATEGORIES = {
    b"SignInLogs": "SignInLogs",
    b"NonInteractiveUserSignInLogs": "NonInteractiveUserSignInLogs",
}


@dataclass(frozen=True, slots=True)
class Bad:
    """Input that could not be read as a record: quarantined whole, with the reason.

    ``offset``: where ``raw`` starts, in bytes from the start of the file's text (decompressed,
    UTF-8), when known. ``data``: the exact bytes when they are not UTF-8 (``raw`` then shows them
    with replacement characters; the quarantine keeps ``data``).
    """

    source: str
    line: int
    reason: str
    raw: str
    offset: int | None = None
    data: bytes | None = None


Item = Routed | Skipped | Screened | Bad


UNREADABLE = "unreadable input"  # the reason of a file that failed while being read (the run exits 1)


class InputError(OSError):
    """An input path that cannot be read at all (exit code 1)."""


def classify(
    obj: Any, source: str, line: int, replays: int = 0, *, check_depth: bool = False
) -> Iterator[Item]:
    """Unwrap envelopes, pages and arrays (of arrays: no recursion); route each record by its keys.
    ``check_depth``: each record nested deeper than MAX_DEPTH is quarantined (not yet checked)."""
    if isinstance(obj, list):
        todo = [iter(obj)]
        while todo:
            item = next(todo[-1], todo)  # ``todo`` itself marks the end of a list
            if item is todo:
                todo.pop()
            elif isinstance(item, list):
                todo.append(iter(item))
            else:
                yield from classify(item, source, line, replays, check_depth=check_depth)
        return
    if not isinstance(obj, dict):
        yield Bad(source, line, f"expected a JSON object, got {type(obj).__name__}", _dump(obj))
        return
    if 4 <= len(obj) <= 5 and is_quarantined(obj):
        yield from unquarantine(obj, replays)
        return
    records = obj.get("records")
    if isinstance(records, list):
        for rec in records:
            yield _route_checked(rec, source, line, True, check_depth)
        return
    value = obj.get("value")
    if isinstance(value, list) and (
        "@odata.context" in obj
        or "@odata.nextLink" in obj
        or len(obj) == 1
        or obj.keys() == {"value", "Count"}
    ):
        for rec in value:
            yield _route_checked(rec, source, line, True, check_depth)
        return
    yield _route_checked(obj, source, line, False, check_depth)


def _route_checked(rec: Any, source: str, line: int, in_envelope: bool, check_depth: bool) -> Item:
    if check_depth and _too_deep(rec):
        return Bad(source, line, _DEEP, _dump(rec))
    return route_record(rec, source, line, in_envelope=in_envelope)


QUARANTINE_KEYS = frozenset({"source", "line", "reason", "raw"})
QUARANTINE_KEYS_BASE64 = frozenset({"source", "line", "reason", "raw_base64"})
MAX_REPLAYS = 4  # a quarantine entry inside a quarantine entry ... is read again this deep at most


def is_quarantined(obj: Mapping[str, Any]) -> bool:
    """A quarantine record (pimwatch/state/quarantine.py): the keys source, line, reason and either raw
    (the text read) or raw_base64 (bytes that are not UTF-8), and optionally offset."""
    keys = obj.keys() - {"offset"}
    if keys == QUARANTINE_KEYS:
        return type(obj["raw"]) is str
    return keys == QUARANTINE_KEYS_BASE64 and type(obj["raw_base64"]) is str


def unquarantine(rec: Mapping[str, Any], replays: int = 0) -> Iterator[Item]:
    """A quarantine record read back: its raw input is read again as it was first read (a line, a
    value, an Event Hub message), under its original source, line and offset. What the reader now
    understands is replayed; when nothing in it is readable, the entry comes back exactly as it was
    (same reason, same bytes), so replaying the quarantine gives the same quarantine."""
    source = str(rec["source"])
    line = rec["line"] if type(rec["line"]) is int else 0
    offset = rec.get("offset") if type(rec.get("offset")) is int else None
    reason = str(rec["reason"])
    exact: bytes | None = None
    if "raw_base64" in rec:
        try:
            exact = base64.b64decode(rec["raw_base64"], validate=True)
        except (binascii.Error, ValueError):
            yield Bad(source, line, f"unreadable quarantine entry (raw_base64 is not base64): {reason}", "")
            return
        raw = exact.decode(errors="replace")
        data = exact
    else:
        raw = rec["raw"]
        data = raw.encode(errors="surrogatepass")
    again = Bad(source, line, reason, raw, offset, exact)
    if not data.strip() or replays >= MAX_REPLAYS:  # e.g. a note about an unreadable file
        yield again
        return
    items = list(read_bytes(data, source, line, offset or 0, replays + 1))
    if all(type(i) is Bad for i in items):
        yield again
    else:
        yield from items


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
    if _powershell(rec):
        return _powershell_record(rec, source, line)
    if any(k in rec for k in _LA_MARKERS):
        return _la_row(rec, source, line)
    if isinstance(category, str) and not in_envelope:
        return Skipped(category, "eventhub")
    keys = ", ".join(sorted(map(str, rec))[:8])
    return Bad(source, line, f"unrecognised record shape (keys: {keys})", _dump(rec))


def _graph_signin(
    rec: dict[str, Any], source: str, line: int, shape: str = "graph", raw: dict[str, Any] | None = None
) -> Item:
    types = rec.get("signInEventTypes")
    if isinstance(types, list) and types and not any("User" in str(t) for t in types):
        return Skipped("ServicePrincipalSignInLogs", shape)
    if not rec.get("userId") and rec.get("servicePrincipalId"):
        return Skipped("ServicePrincipalSignInLogs", shape)
    interactive = rec.get("isInteractive")
    non = (
        interactive is False
        or (isinstance(interactive, str) and interactive.lower() == "false")  # Export-Csv: "False"
        or (isinstance(types, list) and "nonInteractiveUser" in types)
    )
    category = "NonInteractiveUserSignInLogs" if non else "SignInLogs"
    return Routed("signin", shape, category, rec, {}, rec if raw is None else raw, source, line)


POWERSHELL = "powershell"
POWERSHELL_FLATTENED = "powershell-flattened"
"""Shapes of Graph PowerShell SDK objects (``Get-MgAuditLogDirectoryAudit``, ``Get-MgAuditLogSignIn``)
through ConvertTo-Json or Export-Csv (export-shapes.md (c)-(e)); ``-flattened``: nested objects
were written as their .NET type names (Export-Csv, ConvertTo-Json below its ``-Depth``), so an
audit record has lost its actor, targets or details, a sign-in its status or location."""


def _powershell(rec: Mapping[str, Any]) -> bool:
    """Whether a PascalCase record is a Graph PowerShell object rather than a Log Analytics row: the
    SDK declares ``AdditionalProperties`` on every model (a row never has it); without it (a
    ``Select-Object`` of some properties), nested objects with PascalCase keys tell."""
    if "AdditionalProperties" in rec:
        return True
    initiated, status = rec.get("InitiatedBy"), rec.get("Status")
    return (type(initiated) is dict and ("User" in initiated or "App" in initiated)) or (
        type(status) is dict and "ErrorCode" in status
    )


def _powershell_record(rec: dict[str, Any], source: str, line: int) -> Item:
    obj, lost = from_powershell(rec)
    if "activityDisplayName" in obj:
        shape = POWERSHELL_FLATTENED if lost else POWERSHELL
        return Routed("audit", shape, "AuditLogs", obj, {}, rec, source, line)
    if "createdDateTime" in obj and ("userPrincipalName" in obj or "userId" in obj):
        shape = POWERSHELL_FLATTENED if lost & {"status", "location"} else POWERSHELL
        return _graph_signin(obj, source, line, shape, rec)
    keys = ", ".join(sorted(map(str, rec))[:8])
    return Bad(source, line, f"unrecognised record shape (keys: {keys})", _dump(rec))


def _la_row(rec: dict[str, Any], source: str, line: int) -> Item:
    table = rec.get("Type")
    known = _LA_TABLES.get(table) if isinstance(table, str) else None
    if known is not None:
        route, category = known
    elif isinstance(table, str) and table and (table in _OTHER_TABLES or not _la_columns(rec, strict=True)):
        return Skipped(table, "loganalytics")  # another table (or a "Type" and nothing to go by)
    elif (inferred := _la_columns(rec, strict=bool(table))) is not None:
        # No "Type", or a query projected or overwrote it: the columns say which table it is.
        route, category = inferred
    else:
        return Skipped(str(rec.get("Category") or "(unknown table)"), "loganalytics")
    if "TableName" in rec:
        # `az monitor log-analytics query` writes every value as str(value): a null is "None"
        # (export-shapes.md (b)).
        rec = {k: (None if v == "None" else v) for k, v in rec.items()}
    props, top = la_to_camel(rec)
    return Routed(route, "loganalytics", category, props, top, rec, source, line)  # type: ignore[arg-type]


# Log Analytics tables of the Entra connector that pimwatch does not read: a row of one of them is
# skipped even when its columns look like a sign-in's.
_OTHER_TABLES = frozenset(
    {
        "AADServicePrincipalSignInLogs",
        "AADManagedIdentitySignInLogs",
        "AADProvisioningLogs",
        "ADFSSignInLogs",
        "AADRiskyUsers",
        "AADUserRiskEvents",
        "AADRiskyServicePrincipals",
        "AADServicePrincipalRiskEvents",
        "MicrosoftGraphActivityLogs",
        "NetworkAccessTraffic",
        "ManagedIdentitySignInLogs",
        "AzureActivity",
        "OfficeActivity",
        "SigninLogs_CL",
    }
)


def _la_columns(rec: Mapping[str, Any], *, strict: bool) -> tuple[Route, str] | None:
    """The table a Log Analytics row is from, by its columns: ``Type`` is absent (a query dropped it:
    one telling column is enough), or is no table name (``strict``: a query overwrote it, so the
    row must look like the table's: an audit record's activity and actor or targets, a sign-in's
    user and app, conditional access status or IP address)."""
    audit = ("InitiatedBy" in rec or "TargetResources" in rec) and "ActivityDisplayName" in rec
    if audit or (
        not strict and ("ActivityDisplayName" in rec or "InitiatedBy" in rec or "TargetResources" in rec)
    ):
        return "audit", "AuditLogs"
    if ("UserPrincipalName" in rec or "UserId" in rec) and (
        not strict or "AppDisplayName" in rec or "ConditionalAccessStatus" in rec or "IPAddress" in rec
    ):
        interactive = rec.get("IsInteractive")
        category = rec.get("Category")
        non = (
            interactive is False
            or (isinstance(interactive, str) and interactive.lower() == "false")
            or (isinstance(category, str) and category.lower() == "noninteractiveusersigninlogs")
        )
        return "signin", ("NonInteractiveUserSignInLogs" if non else "SignInLogs")
    return None


def _dump(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # orjson refuses more than 254 levels, among others
        try:
            return repr(obj)
        except RecursionError:
            return f"({type(obj).__name__} too deeply nested to show)"


# --- files ---------------------------------------------------------------------------------------


def expand(paths: Iterable[str], skipped: Counter[str] | None = None) -> list[str]:
    """Files of ``paths`` (folders recursively, sorted); raises InputError for a missing path.

    In a folder, hidden folders and files (``.git``, ``.venv``, ...), files whose name says they are
    not logs, and files whose first bytes are not text are left out; each one is counted in
    ``skipped`` under the reason. A file named on the command line is always read.
    """
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
            continue
        path = Path(p)
        if path.is_dir():
            out.extend(_walk(path, skipped if skipped is not None else Counter()))
        elif path.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def _walk(root: Path, skipped: Counter[str]) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root, onerror=lambda exc: skipped.update(["unreadable folder"])):
        hidden = [d for d in dirs if d.startswith(".")]
        if hidden:
            skipped["hidden folder"] += len(hidden)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # not descended into
        for name in files:
            f = Path(folder, name)
            if name.startswith("."):
                skipped["hidden file"] += 1
            elif not _log_file(f):
                skipped["not a log file name"] += 1
            elif not f.is_file():
                skipped["not a regular file"] += 1
            else:
                why = _not_text(f)
                if why:
                    skipped[why] += 1
                else:
                    found.append(str(f))
    return sorted(found)


LOG_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson", ".csv", ".log", ""})


def _log_file(f: Path) -> bool:
    """In a folder, read what can hold logs (by suffix, under .gz) and skip READMEs, configs, dotfiles."""
    if f.name.startswith("."):
        return False
    name = f.name[:-3] if f.name.endswith(".gz") else f.name
    return Path(name).suffix.lower() in LOG_SUFFIXES


def _not_text(f: Path) -> str | None:
    """Why a file in a folder is not a text log, from its first bytes (decompressed), or None."""
    try:
        with open(f, "rb") as fh:
            head = fh.read(_SNIFF)
            if head[:2] == b"\x1f\x8b":
                fh.seek(0)
                with gzip.GzipFile(fileobj=fh) as gz:
                    head = gz.read(_SNIFF)
    except (OSError, EOFError, zlib.error):
        return None  # read anyway: the error is reported, with the file's name, when it is read
    return _binary(head)


_SNIFF = 8192
_CONTROL = bytes(c for c in range(32) if c not in b"\t\n\r\f") + b"\x7f"


def _binary(head: bytes) -> str | None:
    """``"not text (binary content)"`` when ``head`` is not the start of a text file in any encoding
    pimwatch reads (NUL bytes outside UTF-16/UTF-32, or more than 1 % control characters)."""
    if not head or _encoding(head)[0] != "utf-8":
        return None
    if b"\x00" in head or len(head) - len(head.translate(None, _CONTROL)) > len(head) // 100:
        return "not text (binary content)"
    return None


# Byte order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _encoding(head: bytes) -> tuple[str, int]:
    """(encoding, length of its byte order mark) from a file's first bytes.

    A BOM decides (Windows PowerShell 5.1 ``>`` and ``Out-File`` write UTF-16 LE with one, Notepad
    and ``Out-File -Encoding utf8`` UTF-8 with one). Without a BOM, a text log starts with an ASCII
    character (``{``, ``[``, a CSV header), so the places of NUL bytes among the first four tell
    UTF-32 and UTF-16 from UTF-8.
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, len(bom)
    if len(head) >= 4 and head[0] and not head[1] and not head[2] and not head[3]:
        return "utf-32-le", 0
    if len(head) >= 4 and not head[0] and not head[1] and not head[2] and head[3]:
        return "utf-32-be", 0
    if len(head) >= 4 and head[0] and not head[1] and head[2] and not head[3]:
        return "utf-16-le", 0
    if len(head) >= 4 and not head[0] and head[1] and not head[2] and head[3]:
        return "utf-16-be", 0
    return "utf-8", 0


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
    return buf


def _decompressed(buf: io.BufferedReader) -> io.BufferedReader:
    if buf.peek(2)[:2] == b"\x1f\x8b":
        # GzipFile buffers by itself; not wrapped in a large buffer so that, when a later part of
        # the file is corrupt, the lines decompressed before it are still handed out first.
        gz: Any = gzip.GzipFile(fileobj=buf)
        return gz  # type: ignore[no-any-return]
    return buf


def _utf8_lines(f: io.BufferedReader, encoding: str, bom: int) -> Iterator[bytes]:
    """The file's lines as UTF-8 bytes (each with its ``\\n``), decoded chunk by chunk: memory is
    one chunk plus the longest line, whatever the file's size and encoding."""
    if bom:
        f.read(bom)
    return iter(f) if encoding == "utf-8" else _transcoded(f, encoding)


def _transcoded(f: io.BufferedReader, encoding: str) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    rest = b""
    while chunk := f.read(1 << 20):
        parts = (rest + decoder.decode(chunk).encode()).split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part + b"\n"
    rest += decoder.decode(b"", final=True).encode()
    if rest:
        yield rest


def read_file(path: str, counter: list[int], screen: Screen | None = None) -> Iterator[Item]:
    """Items of one file. ``counter[0]`` is advanced by the bytes read (after decompression, as UTF-8).

    Raises InputError only when the file cannot be opened; a file that fails later (EIO, a corrupt
    gzip stream) yields what was read before the failure, then a Bad item whose reason starts with
    ``unreadable input`` (the CLI exits 1 at the end of such a run).
    """
    f = _open(path)
    scanner: _Json | _Csv | None = None
    try:
        f = _decompressed(f)  # peeks: inside the try
        head = f.peek(_SNIFF)[:_SNIFF]
        encoding, bom = _encoding(head)
        binary = _binary(head)
        if binary:
            yield Bad(path, 0, f"{binary}: not read", "")
            return
        lines = _utf8_lines(f, encoding, bom)
        first = next(lines, b"")
        lines = itertools.chain((first,), lines)
        name = path.lower().removesuffix(".gz")
        if name.endswith(".csv") or _looks_like_csv(first):
            scanner = _Csv(path, counter)
        else:
            scanner = _Json(path, counter, screen)
        yield from scanner.read(lines)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        if scanner is not None:
            yield from scanner.end()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        yield Bad(path, 0, f"{UNREADABLE} (the records before this point were read): {reason}", "")
    finally:
        if path != "-":
            f.close()


def _looks_like_csv(first: bytes) -> bool:
    first = first.removeprefix(_BOM).strip()
    if first.startswith(_TYPE_LINE):  # Windows PowerShell 5.1 Export-Csv
        return True
    return bool(first) and first[:1] not in (b"{", b"[") and b"," in first


_TYPE_LINE = b"#TYPE "


_BOM = b"\xef\xbb\xbf"

MAX_DEPTH = 254
"""Deepest nesting of a JSON value read (Entra records nest fewer than 10 levels): the deepest orjson
writes, so any value read can be stored. A deeper value is quarantined with that reason: no parser,
detector or store ever sees it (and nothing recurses deeper than this)."""
MAX_VALUE = 64 << 20
"""Largest JSON value held whole. The bytes of a longer unclosed value are quarantined in pieces."""
PIECE = 1 << 20
"""Largest quarantine entry for text that is no JSON value at all (or the rest of a too-long one)."""

# Inside a value only brackets count, strings aside (a JSON string never spans lines, so an
# unterminated one ends at its line's end and the brackets after it are not counted).
_VALUE_TOKEN = re.compile(rb'"(?:[^"\\\n]|\\.)*"?|[\[\]{}]')
_BRACKET = re.compile(rb"[\[\]{}]")
_OUTSIDE = re.compile(rb"[^\s,]")  # the next thing between values: whitespace and commas skipped
_JUNK_END = re.compile(rb"[\[\]{]")
_OPEN = b"{["[0], b"{["[1]
_NOT_OPENING = bytes(c for c in range(256) if c not in b"{[")  # deleted: what is left is counted


def _too_deep(obj: Any) -> bool:
    """Whether a parsed value nests deeper than MAX_DEPTH: orjson refuses to write it (its limit is
    MAX_DEPTH; nothing else in a value orjson read can make it fail)."""
    try:
        orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return True
    return False


# The start of a Graph page or an Event Hub message: scalar members, then the records array.
_PAGE_HEAD = re.compile(
    rb'\{\s*(?:"[^"\\]*"\s*:\s*(?:"(?:[^"\\\n]|\\.)*"|[-+.\w]+)\s*,\s*)*"(?:value|records)"\s*:\s*\['
)
_DEEP = f"too deeply nested (more than {MAX_DEPTH} levels): not read"
_LONG = f"malformed JSON: a value longer than {MAX_VALUE} bytes (kept in pieces)"


class _Json:
    """JSON in any layout, read line by line in one pass (time linear in the size, memory bounded by
    the largest value).

    A line that is a JSON document by itself is parsed at once (JSON Lines, the production shape).
    Otherwise brackets are counted to find where each value ends: a top-level value, or each element
    of a top-level array (so a huge pretty-printed array is read element by element), and the value
    is parsed alone. A value that cannot be parsed is quarantined whole, with its line and byte
    offset; one that never closes ends where a line opens an object at its indentation or left of it
    (the next record of a truncated JSON Lines file or pretty-printed array), and the scan goes on
    from there. Text that is no value at all is quarantined in pieces of at most ``PIECE`` bytes.

    Duplicate keys: the last one wins, everywhere (orjson, and the sign-in screen leaves a record
    with repeated user keys to the parser).
    """

    def __init__(self, source: str, counter: list[int], screen: Screen | None = None, replays: int = 0):
        self.source = source
        self.counter = counter
        self.screen = screen
        self.replays = replays  # how many quarantine entries deep this text is (replay in replay)
        self.screened: dict[str, int] = {}
        self.array = False  # inside a top-level array: its elements are the values
        self.stack: list[int] = []  # open brackets of the pending value
        self.extra = 0  # open brackets beyond MAX_DEPTH (not kept)
        self.deep = False  # the pending value went deeper than MAX_DEPTH
        self.buf = bytearray()  # the pending value's bytes so far
        self.at = (0, 0, 0)  # line, offset, column where the pending value (or junk) starts
        self.junk: list[bytes] = []
        self.junk_size = 0
        self.overflow = False  # the pending value was longer than MAX_VALUE: quarantined piecewise
        self.closing: bytes | None = None  # the line that closes a pretty-printed pending value
        self.deeper = b""  # how the lines inside it start
        self.guess = True  # whether to guess where a pretty-printed value ends

    # -- driving --

    def read(self, lines: Iterable[bytes], line_no: int = 1, offset: int = 0) -> Iterator[Item]:
        # The production shape (a record or an Event Hub message per line) is read inline here;
        # anything else goes through feed().
        loads, decode_error, source = orjson.loads, orjson.JSONDecodeError, self.source
        uninteresting = self.screen.uninteresting if self.screen is not None else None
        screened = self.screened
        start = offset
        for line in lines:
            if self.closing is not None and line.startswith(self.deeper) and len(self.buf) < MAX_VALUE:
                self.buf += line  # inside a pretty-printed value (see _between)
            elif self.stack or self.extra or self.junk or self.array:
                yield from self.feed(line, line_no, offset)
            elif (
                # A bare Event Hub sign-in of no interest: counted, never parsed. Entra writes the
                # top-level "category" before "properties"; only an exact match counts, never in an
                # envelope (its first record's category says nothing about the others), nor when
                # the key is repeated with another value (the screen's decode, which keeps the last
                # one as the parser does, sees that).
                uninteresting is not None
                and line[:1] == b"{"
                and (i := line.find(b'"category":"', 0, 1024)) >= 0
                and (category := _SCREEN_CATEGORIES.get(line[i + 12 : line.find(b'"', i + 12, i + 64)]))
                and line.find(b'"records"', 0, i) < 0
                and uninteresting(line, category)
            ):
                screened[category] = screened.get(category, 0) + 1
            elif (
                line[:1] == b"{"
                and b'"records"' in line[:64]
                and (items := self._message(line, line_no)) is not None
            ):
                yield from items  # an Event Hub message, split before decoding (see _message)
            else:
                try:
                    obj = loads(line)
                except decode_error:
                    yield from self.feed(line, line_no, offset)
                else:
                    if len(line.translate(None, _NOT_OPENING)) > MAX_DEPTH:
                        yield from self._document(obj, line, line_no, offset, checked=False)
                    elif (
                        type(obj) is dict
                        and "records" not in obj
                        and "value" not in obj
                        and not 4 <= len(obj) <= 5
                    ):
                        item = route_record(obj, source, line_no)
                        # kept as the text that was read, not as re-serialized
                        yield (
                            _bad(source, line_no, item.reason, line.strip(), offset)
                            if type(item) is Bad
                            else item
                        )
                    else:
                        yield from self._document(obj, line, line_no, offset)
            line_no += 1
            offset += len(line)
            if line_no & 1023 == 0:
                self.counter[0] += offset - start
                start = offset
                yield from _flush(self.screened)
        self.counter[0] += offset - start
        yield from self.end()

    def _message(self, line: bytes, no: int) -> list[Item] | None:
        """An Event Hub message (the production shape) taken apart into its records' bytes before
        anything is decoded: the sign-ins the screen lets go are counted from a partial decode of
        their own bytes, and only the others are parsed (a whole message decoded at once made 100
        dicts, most of them thrown away, and fed the garbage collector). The items are those the
        parsed message gives (see _document). None leaves the line to that path: no top-level
        ``records`` array, a record the parser refuses, or one with brackets enough to need the
        depth check."""
        try:
            records = _MESSAGE.decode(line).records
        except msgspec.DecodeError:
            return None
        skip = self.screen.skip if self.screen is not None else None
        items: list[Item] = []
        counts: dict[str, int] = {}
        for raw in records:
            data = memoryview(raw)
            if skip is not None and (category := skip(data)) is not None:
                counts[category] = counts.get(category, 0) + 1
                continue
            if data.nbytes > MAX_DEPTH and len(bytes(data).translate(None, _NOT_OPENING)) > MAX_DEPTH:
                return None
            try:
                rec = orjson.loads(data)
            except orjson.JSONDecodeError:
                return None
            items.append(route_record(rec, self.source, no, in_envelope=True))
        for category, n in counts.items():
            self.screened[category] = self.screened.get(category, 0) + n
        return items

    def end(self) -> Iterator[Item]:
        yield from self._abandon("malformed JSON: the value is not closed at the end of the input")
        yield from self._flush_junk()
        yield from _flush(self.screened)

    # -- one line --

    def feed(self, line: bytes, no: int, off: int) -> Iterator[Item]:
        pos = 0
        if self.stack or self.extra:
            if self._resync(line):
                yield from self._abandon("malformed JSON: the value is not closed before the next record")
            elif self.closing is not None:
                if line.rstrip(b" \t\r\n,") != self.closing:
                    yield from self._hold(line)
                    return
                end = yield from self._close_pretty(line)
                if end is None:
                    return
                pos = end
            else:
                pos = self._scan(line, 0)
                if self.stack or self.extra:
                    yield from self._hold(line)
                    return
                yield from self._complete(line[:pos])
        if pos == 0:
            stripped = line.strip()
            if not stripped:
                return
            if self.junk and stripped[:1] in (b"{", b"["):
                yield from self._flush_junk()
            if not self.junk and (not self.array or stripped[:1] == b"{"):
                try:
                    obj = orjson.loads(stripped.removesuffix(b",") if self.array else line)
                except orjson.JSONDecodeError:
                    pass
                else:
                    yield from self._document(obj, line, no, off, checked=False)
                    return
        yield from self._between(line, pos, no, off)

    def _resync(self, line: bytes) -> bool:
        """Whether ``line``, met inside an unclosed value, starts the next record instead: it begins
        at the value's column or left of it (where a pretty printer puts only the value's closing
        bracket) and opens an object, or is a JSON document by itself."""
        stripped = line.lstrip(b" \t")
        if len(line) - len(stripped) > self.at[2] or stripped[:1] in (b"}", b"]", b"\n", b"\r", b""):
            return False
        if stripped[:1] == b"{":
            return True
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return False
        return True

    def _between(self, line: bytes, pos: int, no: int, off: int) -> Iterator[Item]:
        """The rest of ``line`` from ``pos``, outside any value."""
        n = len(line)
        while pos < n:
            m = _OUTSIDE.search(line, pos)
            if m is None:
                if self.junk:
                    self._add_junk(line[pos:])
                return
            i = m.start()
            c = line[i]
            if c == 123 or (c == 91 and self.array):  # "{", or an array inside the top-level one
                yield from self._flush_junk()
                self.at = (no, off + i, i)
                self.stack.append(c)
                if c == 123 and self.guess and not line[i + 1 :].strip():
                    # "{" alone on its line: pretty-printed, so the value very likely ends at the
                    # first line holding only "}" at the same indentation; lines are collected
                    # without counting brackets, and the parser checks the guess.
                    self.closing = line[:i] + b"}"
                    self.deeper = line[:i] + b" "
                    yield from self._hold(line[i:])
                    return
                end = self._scan(line, i + 1)
                if self.stack or self.extra:
                    yield from self._hold(line[i:])
                    return
                yield from self._complete(line[i:end])
                pos = end
            elif c == 91 or c == 93:  # "[" opens the top-level array, "]" closes it (or is stray)
                yield from self._flush_junk()
                self.array = c == 91
                pos = i + 1
            else:
                if not self.junk:
                    self.at = (no, off + i, i)
                j = _JUNK_END.search(line, i)
                end = n if j is None else j.start()
                self._add_junk(line[pos:end] if self.junk else line[i:end])
                if self.junk_size >= PIECE:
                    yield from self._flush_junk()
                pos = end

    def _scan(self, line: bytes, pos: int) -> int:
        """Count brackets from ``pos``; where the pending value closes, else ``len(line)``."""
        if _BRACKET.search(line, pos) is None:
            return len(line)
        stack = self.stack
        limit = MAX_DEPTH - self.array  # the top-level array is one level of the document
        for m in _VALUE_TOKEN.finditer(line, pos):
            c = line[m.start()]
            if c == 34:
                continue
            if c in _OPEN:
                if len(stack) >= limit:
                    self.extra += 1
                    self.deep = True
                else:
                    stack.append(c)
            elif self.extra:
                self.extra -= 1
            else:
                stack.pop()  # a mismatched bracket closes it all the same; the parser will say
                if not stack:
                    return m.end()
        return len(line)

    # -- values --

    def _hold(self, part: bytes) -> Iterator[Item]:
        self.buf += part
        if len(self.buf) > (PIECE if self.overflow else MAX_VALUE):
            line, offset, column = self.at
            data = self._take()
            yield _bad(self.source, line, _LONG, data, offset)
            self.overflow = True
            self.at = (line + data.count(b"\n"), offset + len(data), column)

    def _close_pretty(self, line: bytes) -> Generator[Item, None, int | None]:
        """``line`` holds only the guessed closing "}" of the pretty-printed pending value: parsed
        whole if the guess was right, else brackets are counted (``_recount``). Returns where
        reading ``line`` goes on, or None when it is consumed."""
        assert self.closing is not None
        pos = len(self.closing)
        if not self.overflow:
            data = bytes(self.buf) + line[:pos]
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
            else:
                first, offset, _ = self.at
                self.closing = None
                self.stack.clear()
                self.buf.clear()
                yield from self._document(obj, data, first, offset, checked=False)
                return pos
        self.buf += line
        yield from self._recount()
        return None

    def _recount(self) -> Iterator[Item]:
        """A wrong guess about where a pretty-printed value ends: brackets are counted over what was
        collected, as if no guess had been made. Bytes after a value that ends earlier are read
        again without guessing, so each byte is read at most twice."""
        self.closing = None
        if self.overflow:  # its start is quarantined already: the rest goes with it
            yield self._bad_value(_LONG)
            return
        first, offset, _ = self.at
        data = self._take()
        self.stack[:] = [123]
        end = self._scan(data, 1)
        if self.stack or self.extra:  # still open: collected on, counting brackets
            self.buf += data
            return
        yield from self._complete(data[:end])
        self.guess = False
        try:
            no, off = first + data.count(b"\n", 0, end), offset + end
            for part in _split_lines(data[end:]):
                yield from self.feed(part, no, off)
                no, off = no + 1, off + len(part)
        finally:
            self.guess = True

    def _take(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def _abandon(self, reason: str) -> Iterator[Item]:
        """No more of the pending value will come: what of it is complete is read, the rest is given
        up (reading inside a broken page can leave a value of its own pending: given up too)."""
        while True:
            if self.closing is not None and not self._page():  # the guessed "}" never came: count
                yield from self._recount()
            if not (self.stack or self.extra):
                return
            yield from self._give_up(reason)

    def _give_up(self, reason: str) -> Iterator[Item]:
        """The pending value cannot be completed: quarantined, or read inside (``_broken``)."""
        if self.deep or self.overflow:
            yield self._bad_value(reason)
            return
        first, offset, _ = self.at
        self.stack.clear()
        self.extra = 0
        self.closing = None
        yield from self._broken(self._take(), reason, first, offset)

    def _broken(self, data: bytes, reason: str, first: int, offset: int) -> Iterator[Item]:
        """A value that does not parse: quarantined whole, unless it is a Graph page or an Event Hub
        message (a truncated download, a damaged record in it). Then only its head is quarantined
        and its records are read one by one, like the elements of a top-level array."""
        head = _PAGE_HEAD.match(data, 0, 1 << 16)
        if head is None:
            yield _bad(self.source, first, reason, data.rstrip(), offset)
            return
        end = head.end()
        yield _bad(self.source, first, f"{reason} (its records are read one by one)", data[:end], offset)
        outer, self.array = self.array, True
        no, off = first + data.count(b"\n", 0, end), offset + end
        del head
        for part in _split_lines(data, end):
            yield from self.feed(part, no, off)
            no, off = no + 1, off + len(part)
        if not (self.array or self.stack or self.extra):
            self.array = outer

    def _page(self) -> bool:
        """Whether the pending value starts like a Graph page or an Event Hub message."""
        return _PAGE_HEAD.match(self.buf, 0, 1 << 16) is not None

    def _bad_value(self, reason: str) -> Bad:
        line, offset, _ = self.at
        if self.deep:
            reason = _DEEP
        self.stack.clear()
        self.extra = 0
        self.deep = False
        self.overflow = False
        self.closing = None
        return _bad(self.source, line, reason, self._take().rstrip(), offset)

    def _complete(self, tail: bytes) -> Iterator[Item]:
        self.buf += tail
        line, offset, _ = self.at
        deep, overflow = self.deep, self.overflow
        self.deep = self.overflow = False
        data = self._take()
        if overflow:
            yield _bad(self.source, line, _LONG, data, offset)
            return
        if deep:
            yield _bad(self.source, line, _DEEP, data, offset)
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            yield from self._broken(data, f"malformed JSON: {exc}", line, offset)
            return
        yield from self._document(obj, data, line, offset)

    def _document(self, obj: Any, data: bytes, no: int, off: int, *, checked: bool = True) -> Iterator[Item]:
        """One parsed JSON document (a line, or a value found by counting brackets)."""
        source = self.source
        # Depth: a document of few brackets is shallow; else a single record is walked whole, and
        # the records of an envelope, a page or an array one by one (only those that are routed).
        each = not checked and len(data.translate(None, _NOT_OPENING)) > MAX_DEPTH
        if each and not (type(obj) is dict and (type(obj.get("records")) is list or "value" in obj)):
            each = False
            if _too_deep(obj):
                yield _bad(source, no, _DEEP, data.strip(), off)
                return
        if type(obj) is dict:
            if 4 <= len(obj) <= 5 and is_quarantined(obj):
                yield from unquarantine(obj, self.replays)
                return
            records = obj.get("records")
            if type(records) is list:
                # An Event Hub message (the production shape) with the sign-in check; the sign-ins
                # of no interest are counted with the file's others, in batches.
                wants = self.screen.wants if self.screen is not None else None
                for rec in records:
                    if wants is not None and type(rec) is dict:
                        category = rec.get("category")
                        if type(category) is str and category in _SIGNIN_EH:  # (a list: unhashable)
                            props = rec.get("properties")
                            if type(props) is dict and not wants(props):
                                self.screened[category] = self.screened.get(category, 0) + 1
                                continue
                    yield _route_checked(rec, source, no, True, each)
                return
            if "value" not in obj:
                item = route_record(obj, source, no)
                # kept as the text that was read, not as re-serialized
                yield _bad(source, no, item.reason, data.strip(), off) if type(item) is Bad else item
                return
        elif type(obj) is not list:
            yield _bad(source, no, f"expected a JSON object, got {type(obj).__name__}", data.strip(), off)
            return
        yield from classify(obj, source, no, self.replays, check_depth=each)

    # -- text that is no value --

    def _add_junk(self, part: bytes) -> None:
        self.junk.append(part)
        self.junk_size += len(part)

    def _flush_junk(self) -> Iterator[Item]:
        if not self.junk:
            return
        data = b"".join(self.junk)
        self.junk.clear()
        self.junk_size = 0
        if not data.strip():
            return
        line, offset, _ = self.at
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            reason = "malformed JSON: text outside any JSON object"
        else:
            reason = f"expected a JSON object, got {type(value).__name__}"
        yield _bad(self.source, line, reason, data.strip(), offset)


def _bad(source: str, line: int, reason: str, data: bytes, offset: int | None = None) -> Bad:
    """A Bad item keeping ``data`` exactly: as text when it is UTF-8, else as bytes too."""
    try:
        return Bad(source, line, reason, data.decode(), offset)
    except UnicodeDecodeError:
        return Bad(source, line, reason, data.decode(errors="replace"), offset, data)


def _flush(screened: dict[str, int]) -> Iterator[Screened]:
    for category, n in screened.items():
        yield Screened(category, n)
    screened.clear()


def read_bytes(data: bytes, source: str, line: int = 1, offset: int = 0, replays: int = 0) -> Iterator[Item]:
    """Items of ``data`` read as a JSON file's text (the quarantine's ``raw`` read again)."""
    yield from _Json(source, [0], None, replays).read(_split_lines(data), line, offset)


def _split_lines(data: bytes, start: int = 0) -> Iterator[bytes]:
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


_UNIT = re.compile(r"\s+\[[^\]]*\]\s*$")  # a unit suffix on a column name, " [UTC]"


class _Csv:
    """CSV (Log Analytics exports): one record per row, keyed by the header; a ragged row is
    quarantined as the text that was read (so a replay finds it as bad as before)."""

    def __init__(self, source: str, counter: list[int]):
        self.source = source
        self.counter = counter

    def read(self, lines: Iterable[bytes]) -> Iterator[Item]:
        csv.field_size_limit(MAX_VALUE)  # an unclosed quote: one bad row, not the rest of the file held
        taken: list[bytes] = []
        where = [0]  # byte offset of the next line

        def text() -> Iterator[str]:
            for line in lines:
                taken.append(line)
                yield line.decode(errors="replace")

        reader = csv.reader(text(), strict=True)  # an unclosed quote at the end is an error, not a row
        header: list[str] | None = None
        while True:
            try:
                row = next(reader, None)
            except csv.Error as exc:  # e.g. a bare carriage return inside a field
                row, error = [], f"malformed CSV: {exc}"
            else:
                if row is None:
                    return
                error = ""
            raw = b"".join(taken)
            line = reader.line_num - len(taken) + 1
            taken.clear()
            offset = where[0]
            where[0] += len(raw)
            self.counter[0] += len(raw)
            if error:
                yield _bad(self.source, line, error, raw.strip(), offset)
                continue
            if header is None:
                if len(row) == 1 and row[0].startswith("#TYPE "):
                    continue  # Windows PowerShell 5.1 Export-Csv: "#TYPE <class>" before the header
                header = [_UNIT.sub("", name) for name in row]  # "TimeGenerated [UTC]": the portal's
                continue
            if not any(row):
                continue
            if len(row) > len(header):
                yield _bad(self.source, line, "CSV row has more fields than the header", raw.strip(), offset)
                continue
            cleaned = {k: (v if v != "" else None) for k, v in zip(header, row, strict=False) if k}
            cleaned.update((k, None) for k in header[len(row) :] if k)
            yield from classify(cleaned, self.source, line)

    def end(self) -> Iterator[Item]:
        return iter(())


def size_of(path: str) -> int:
    try:
        return os.path.getsize(path) if path != "-" else 0
    except OSError:
        return 0

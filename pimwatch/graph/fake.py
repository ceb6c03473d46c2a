"""A local Microsoft Graph on loopback: serves a tenant (a dict, see :mod:`pimwatch.graph.tenants`) in
the documented shapes, for the tests and ``./scripts/demo.sh posture``. Real HTTP, real sockets.

What it reproduces (graph-and-report.md §2): ``/v1.0`` and ``/beta`` roots; collections as
``{"@odata.context", "value": [...]}`` with ``@odata.nextLink`` (the whole URL, ``$skiptoken``) after
``page_size`` items; ``$filter`` with ``eq`` clauses joined by ``and`` (the audit logs also ``ge``/``le``
on the time and ``targetResources/any``: :func:`log_rows`); ``$expand=principal`` (the directory
object, with its ``@odata.type``) and ``$expand=policy($expand=rules)``; a missing required
``$filter`` on the policy and PIM-for-Groups endpoints → 400 ``invalidRequest`` (undocumented:
inference); an unknown object → 404 ``Request_ResourceNotFound``; the error envelope
``{"error": {"code", "message", "innerError"}}``. ``faults`` script failures (429 with
``Retry-After``, 403, 5xx) by path; ``requests`` records every request line.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

Json = dict[str, Any]
_EQ = re.compile(r"(\w+(?:/\w+)?)\s+eq\s+'([^']*)'")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Fault:
    """Answer ``status`` (with ``headers`` and an error ``code``) to the next ``times`` requests whose
    path contains ``path``."""

    path: str
    status: int
    code: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    message: str = ""


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": "2026-01-01T00:00:00",
                    "request-id": "00000000-0000-0000-0000-000000000000",
                },
            }
        }
    )


class FakeGraph:
    def __init__(self, tenant: Json, page_size: int = 100) -> None:
        self.tenant = tenant
        self.page_size = page_size
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, headers = outer.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeGraph:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- answering -------------------------------------------------------------------------------
    def answer(self, raw: str) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.requests.append(raw)
            parts = urlsplit(raw)
            for f in self.faults:
                if f.times and f.path in parts.path:
                    f.times -= 1
                    return f.status, error_body(f.code or str(f.status), f.message or "scripted"), f.headers
            version, _, path = parts.path.lstrip("/").partition("/")
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            if version not in ("v1.0", "beta"):
                return 404, error_body("BadRequest", "Invalid version"), {}
            try:
                result = self.route(version, path, query)
            except _Error as e:
                return e.status, error_body(e.code, e.message), {}
            if isinstance(result, list):
                return 200, self._page(version, parts.path, query, result), {}
            return 200, orjson.dumps(result), {}

    def _page(self, version: str, path: str, query: dict[str, str], items: list[Json]) -> bytes:
        size = int(query.get("$top") or self.page_size)
        skip = int(query.get("$skiptoken") or 0)
        page: Json = {
            "@odata.context": f"{self.url}/{version}/$metadata#{path}",
            "value": items[skip : skip + size],
        }
        if skip + size < len(items) and "$top" not in query:
            q = {k: v for k, v in query.items() if k != "$skiptoken"}
            q["$skiptoken"] = str(skip + size)
            from pimwatch.graph.client import url_for

            page["@odata.nextLink"] = url_for(self.url, version, path.split("/", 2)[2], q)
        return orjson.dumps(page)

    def route(self, version: str, path: str, q: dict[str, str]) -> Json | list[Json]:
        t = self.tenant
        flt = q.get("$filter", "")
        eq = dict(_EQ.findall(flt))
        expand = q.get("$expand", "")
        p = path.strip("/").split("/")
        if path == "roleManagement/directory/roleDefinitions":
            return list(t.get("roleDefinitions", []))
        if path == "policies/roleManagementPolicyAssignments":
            if "scopeId" not in eq or "scopeType" not in eq:
                raise _Error(400, "invalidRequest", "The $filter on scopeId and scopeType is required")
            if eq["scopeType"] == "Group":
                rows = t.get("groupPolicies", {}).get(eq["scopeId"], [])
            else:
                rows = t.get("rolePolicies", [])
            rows = [
                r
                for r in rows
                if "roleDefinitionId" not in eq or r.get("roleDefinitionId") == eq["roleDefinitionId"]
            ]
            if "policy" not in expand:
                rows = [{k: v for k, v in r.items() if k != "policy"} for r in rows]
            return rows
        if p[:2] == ["roleManagement", "directory"] and len(p) == 3:
            rows = t.get(p[2])
            if rows is None:
                raise _Error(404, "Request_ResourceNotFound", f"Resource not found for the segment '{p[2]}'")
            return self._expand(self._filter(rows, eq), expand)
        if p[:3] == ["identityGovernance", "privilegedAccess", "group"] and len(p) == 4:
            if "groupId" not in eq and "principalId" not in eq:
                raise _Error(400, "invalidRequest", "The $filter on groupId or principalId is required")
            group = t.get("groups", {}).get(eq.get("groupId", ""), {})
            return self._expand(self._filter(group.get(p[3], []), eq), expand)
        if p[0] == "groups" and len(p) == 3 and p[2] in ("members", "transitiveMembers"):
            group = t.get("groups", {}).get(p[1])
            if group is None:
                raise _Error(404, "Request_ResourceNotFound", f"Resource '{p[1]}' does not exist")
            return [self._object(m) for m in group.get("members", [])]
        if p[0] == "users" and len(p) == 2:
            return self._object(p[1], required=True)
        if p[0] == "users" and p[2:] == ["authentication", "methods"]:
            return list(t.get("authenticationMethods", {}).get(p[1], []))
        if p[0] == "servicePrincipals" and len(p) == 2:
            return self._object(p[1], required=True)
        if path == "subscribedSkus":
            return list(t.get("subscribedSkus", []))
        if path == "identity/conditionalAccess/policies":
            return list(t.get("conditionalAccessPolicies", []))
        if path == "auditLogs/signIns":
            return log_rows(t.get("signIns", []), flt, "createdDateTime")
        if path == "auditLogs/directoryAudits":
            return log_rows(t.get("directoryAudits", []), flt, "activityDateTime")
        if version == "beta" and p[:2] == ["identityGovernance", "roleManagementAlerts"] and len(p) == 3:
            return self._filter(t.get("roleManagementAlerts", {}).get(p[2], []), eq)
        raise _Error(400, "BadRequest", f"Resource not found for the segment '{p[0]}'")

    @staticmethod
    def _filter(rows: list[Json], eq: dict[str, str]) -> list[Json]:
        def ok(r: Json) -> bool:
            return all(str(r.get(k)) == v for k, v in eq.items() if k in r)

        return [r for r in rows if ok(r)]

    def _object(self, oid: str, required: bool = False) -> Json:
        objects = self.tenant.get("directoryObjects", {})
        found = objects.get(oid) or next(
            (o for o in objects.values() if str(o.get("userPrincipalName", "")).lower() == oid.lower()), None
        )
        if found is None:
            if required:
                raise _Error(404, "Request_ResourceNotFound", f"Resource '{oid}' does not exist")
            return {"id": oid}
        return dict(found)

    def _expand(self, rows: list[Json], expand: str) -> list[Json]:
        if "principal" not in expand:
            return rows
        return [{**r, "principal": self._object(str(r.get("principalId")))} for r in rows]


_CLAUSE = re.compile(
    r"^(?:(?P<field>[\w/]+)\s+(?P<op>eq|ge|le)\s+(?P<value>'[^']*'|\S+)"
    r"|targetResources/any\((?P<var>\w+):\s*(?P=var)/(?P<tfield>\w+)\s+eq\s+'(?P<tvalue>[^']*)'\))$"
)


def log_rows(rows: list[Json], flt: str, time_field: str) -> list[Json]:
    """``auditLogs/directoryAudits`` and ``auditLogs/signIns``: ``$filter`` clauses joined by ``and``
    (``eq`` on a field or a ``/`` path such as ``initiatedBy/user/id``, ``ge``/``le`` on the time,
    ``targetResources/any(t:t/id eq '...')``; ``eq`` ignores case, as the directory's does), newest
    first as Graph lists them. A clause it does not
    understand is 400 ``invalidRequest`` (so a query the fake cannot check fails loudly)."""
    from pimwatch.detection.timeutil import parse_time

    clauses: list[tuple[str, str, Any]] = []  # (op, field, value)
    for clause in (c.strip() for c in re.split(r"\s+and\s+", flt) if c.strip()):
        m = _CLAUSE.match(clause)
        if m is None:
            raise _Error(400, "invalidRequest", f"Invalid filter clause: {clause}")
        if m["var"]:
            clauses.append(("any", m["tfield"], m["tvalue"].lower()))
        elif m["op"] == "eq":
            clauses.append(("eq", m["field"], m["value"].strip("'").lower()))
        else:
            at = parse_time(m["value"])
            if m["field"] != time_field or at is None:
                raise _Error(400, "invalidRequest", f"Invalid filter clause: {clause}")
            clauses.append((m["op"], time_field, at))

    def holds(r: Json, op: str, name: str, want: Any) -> bool:
        if op == "any":
            targets = r.get("targetResources") or []
            return any(isinstance(x, dict) and str(x.get(name)).lower() == want for x in targets)
        if op == "eq":
            value: Any = r
            for part in name.split("/"):
                value = value.get(part) if isinstance(value, dict) else None
            return str(value).lower() == str(want)
        t = parse_time(r.get(name))
        return t is not None and bool(t >= want if op == "ge" else t <= want)

    found = [r for r in rows if all(holds(r, *c) for c in clauses)]
    return sorted(
        found, key=lambda r: (parse_time(r.get(time_field)) or _EPOCH, str(r.get("id"))), reverse=True
    )


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@contextmanager
def serve(tenant: Json, page_size: int = 100) -> Iterator[FakeGraph]:
    server = FakeGraph(tenant, page_size).start()
    try:
        yield server
    finally:
        server.stop()

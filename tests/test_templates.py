"""The deployment's hardening, its azd files and the Sentinel resources, checked statically.

Two checkers, and for each a test that it FAILS on a copy of the templates with one property taken out:

- ``problems()`` below, over the templates as read by ``tests/bicep.py`` (no Bicep compiler installs
  here, so there is no ARM JSON; what that reader cannot see is said there): azure.yaml and
  main.bicepparam, the site's FTP/TLS/HTTP/2/HTTPS settings and basic publishing credentials, storage
  TLS, keys and zone redundancy, tags on every resource that takes them, the IP allow-list parameter
  of the HTTP functions, and Sentinel's table, data collection rule and analytic rule (columns, entity
  mapping, incident creation) against the sink's columns and docs/sentinel-dcr.json.
- checkov (``tests/checkov.py``), which parses main.bicep since the template avoids the constructs
  its parser rejects (multi-line call arguments, lambdas: the one lambda lives in
  modules/key-vault-references.bicep, which checkov cannot parse). Its built-in Azure checks cover the
  site and storage settings; it has no checks for Sentinel, DCR or azd, hence the first checker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pimwatch.detection.detector import discover
from sinks import sentinel as sentinel_sink
from tests.bicep import Expr, Template, bicepparam, parse, value
from tests.checkov import run_checkov

ROOT = Path(__file__).resolve().parent.parent
FILES = (
    "azure.yaml",
    "infra/main.bicep",
    "infra/main.bicepparam",
    "infra/modules/sentinel.bicep",
    "docs/sentinel-dcr.json",
)
TABLE = "PimwatchAlerts_CL"
STREAM = "Custom-PimwatchAlerts"
# The built-in checks of checkov that main.bicep must pass (the others it fails are accepted in
# docs/deploy.md, "What is hardened": public network access, health check, client certificates...).
CHECKOV_REQUIRED = {
    "CKV_AZURE_78": "FTP deployments are disabled",
    "CKV_AZURE_70": "the Function App is only accessible over HTTPS",
    "CKV_AZURE_145": "the Function App uses TLS 1.2",
    "CKV_AZURE_67": "the Function App uses HTTP/2",
    "CKV_AZURE_3": "storage: HTTPS traffic only",
    "CKV_AZURE_44": "storage: TLS 1.2",
    "CKV_AZURE_223": "Event Hubs: TLS 1.2",
    "CKV_AZURE_34": "blob containers are private",
    "CKV_AZURE_110": "Key Vault purge protection",
    "CKV_AZURE_111": "Key Vault soft delete",
    "CKV_AZURE_71": "the Function App has a managed identity",
}


def current() -> dict[str, str]:
    return {name: (ROOT / name).read_text(encoding="utf-8") for name in FILES}


# ------------------------------------------------------------------------------------------ checker


def problems(files: Mapping[str, str]) -> list[str]:
    """Everything missing from the hardened, azd-deployable, Sentinel-ready templates (empty: none)."""
    out: list[str] = []
    missing = [name for name in FILES if name not in files]
    out += [f"{name}: missing" for name in missing]
    if "infra/main.bicep" in missing:
        return out
    main = parse(files["infra/main.bicep"])
    out += _site(main) + _storage(main) + _tags(main, "resourceTags")
    if "azure.yaml" not in missing:
        out += _azd(main, files["azure.yaml"])
    if "infra/main.bicepparam" not in missing:
        out += _bicepparam(main, files["infra/main.bicepparam"])
    if "infra/modules/sentinel.bicep" not in missing:
        module = parse(files["infra/modules/sentinel.bicep"])
        out += _sentinel(main, module, files.get("docs/sentinel-dcr.json"))
        out += [f"modules/sentinel.bicep: {p}" for p in _tags(module, "tags")]
    return out


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _one(t: Template, type_: str, what: str, out: list[str]) -> dict[str, Any]:
    found = [r for r in t.of_type(type_) if not r.existing]
    if len(found) != 1:
        out.append(f"{what}: expected one {type_}, found {len(found)}")
        return {}
    return found[0].value


def _site(main: Template) -> list[str]:
    out: list[str] = []
    apps = [r for r in main.of_type("Microsoft.Web/sites")]
    if len(apps) != 1:
        return [f"Function App: expected one Microsoft.Web/sites, found {len(apps)}"]
    app = apps[0]
    props = app.value.get("properties") or {}
    config = props.get("siteConfig") or {}
    if props.get("httpsOnly") is not True:
        out.append("Function App: httpsOnly is not true")
    if config.get("ftpsState") != "Disabled":
        out.append("Function App: siteConfig.ftpsState is not 'Disabled'")
    for key in ("minTlsVersion", "scmMinTlsVersion"):
        if config.get(key) not in ("1.2", "1.3"):
            out.append(f"Function App: siteConfig.{key} is not '1.2' or later")
    if config.get("http20Enabled") is not True:
        out.append("Function App: siteConfig.http20Enabled is not true")
    # test-alert and health: an optional IP allow-list besides the function key
    if "httpAllowedIpRanges" not in main.params or main.params["httpAllowedIpRanges"].type != "array":
        out.append("Function App: no array parameter httpAllowedIpRanges for the HTTP functions")
    restrictions = config.get("ipSecurityRestrictions")
    if not (isinstance(restrictions, Expr) and re.search(r"\bin\s+httpAllowedIpRanges\s*:", restrictions)):
        out.append("Function App: siteConfig.ipSecurityRestrictions is not built from httpAllowedIpRanges")
    default = str(config.get("ipSecurityRestrictionsDefaultAction") or "")
    if not ("httpAllowedIpRanges" in default and "'Deny'" in default):
        out.append("Function App: ipSecurityRestrictionsDefaultAction is not 'Deny' with an allow-list")
    # no basic (publishing profile) credentials on either endpoint
    denied: set[str] = set()
    for policy in main.of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies"):
        body = policy.value
        names = policy.loop[1] if policy.loop and body.get("name") == policy.loop[0] else [body.get("name")]
        if body.get("parent") == app.symbol and _get(body, "properties", "allow") is False:
            denied |= {n for n in names if isinstance(n, str) and not isinstance(n, Expr)}
    for endpoint in ("ftp", "scm"):
        if endpoint not in denied:
            out.append(
                f"Function App: basicPublishingCredentialsPolicies '{endpoint}' with allow: false missing"
            )
    return out


def _storage(main: Template) -> list[str]:
    out: list[str] = []
    storage = _one(main, "Microsoft.Storage/storageAccounts", "storage", out)
    props = storage.get("properties") or {}
    expected = {
        "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": True,
        "allowSharedKeyAccess": False,
        "allowBlobPublicAccess": False,
    }
    for key, want in expected.items():
        if props.get(key) != want or isinstance(props.get(key), Expr):
            out.append(f"storage: {key} is not {want!r}")
    sku = _get(storage, "sku", "name")
    param = main.params.get(str(sku)) if isinstance(sku, Expr) else None
    if param is None:
        out.append("storage: sku.name is not a parameter (zone redundancy must be selectable)")
    else:
        allowed = re.search(r"@allowed\((\[.*?\])\)", param.decorators, re.DOTALL)
        if allowed is None or "Standard_ZRS" not in value(allowed.group(1)):
            out.append(f"storage: parameter {param.name} does not allow Standard_ZRS")
        if param.default != "'Standard_ZRS'":
            out.append(f"storage: parameter {param.name} does not default to Standard_ZRS")
    namespace = _one(main, "Microsoft.EventHub/namespaces", "Event Hubs", out)
    if _get(namespace, "properties", "minimumTlsVersion") != "1.2":
        out.append("Event Hubs: minimumTlsVersion is not '1.2'")
    return out


def _tags(t: Template, tags: str) -> list[str]:
    """Every resource this template creates that has a location (a tracked resource: the ones that
    take tags) carries the tags, and the tags come from the ``tags`` parameter."""
    out: list[str] = []
    if "tags" not in t.params or t.params["tags"].type != "object":
        out.append("no object parameter tags")
    if tags != "tags" and "tags" not in t.variables.get(tags, ""):
        out.append(f"var {tags} does not include the tags parameter")
    for r in t.resources.values():
        if r.existing or "location" not in r.body:
            continue
        given = r.body.get("tags", "")
        if not re.search(rf"(^|\W){tags}(\W|$)", given):
            out.append(f"resource {r.symbol} ({r.type}) has no tags from {tags}")
    for name, module in t.modules.items():
        params = value(module.get("params", "{}"))
        if "tags" in params and params["tags"] != tags:
            out.append(f"module {name} is not given {tags} as its tags")
    return out


def _azd(main: Template, text: str) -> list[str]:
    out: list[str] = []
    doc = yaml.safe_load(text) or {}
    infra = doc.get("infra") or {}
    if infra.get("provider", "bicep") != "bicep" or infra.get("path") != "infra":
        out.append("azure.yaml: infra is not provider bicep at path infra")
    if infra.get("module", "main") != "main":
        out.append("azure.yaml: infra.module is not main (infra/main.bicep)")
    services = doc.get("services") or {}
    functions = {
        name: s
        for name, s in services.items()
        if s.get("host") == "function"
        and s.get("language") in ("python", "py")
        and s.get("project") in (".", "./")
    }
    if len(functions) != 1:
        out.append("azure.yaml: no service with host function, language python, project . (function_app.py)")
        return out
    (service,) = functions
    tags = value(main.resources["app"].body.get("tags", "{}")) if "app" in main.resources else None
    service_var = main.variables.get("azdServiceName", "")
    app_tags = str(tags)
    if not (
        "'azd-service-name': azdServiceName" in app_tags.replace("\n", " ") and service_var == f"'{service}'"
    ):
        out.append(f"Function App: no tag azd-service-name: '{service}' (azd deploy finds the app by it)")
    return out


def _bicepparam(main: Template, text: str) -> list[str]:
    out: list[str] = []
    try:
        using, params = bicepparam(text)
    except AssertionError as exc:
        return [f"main.bicepparam: {exc}"]
    if using != "main.bicep":
        out.append(f"main.bicepparam: using '{using}', not 'main.bicep'")
    out += [
        f"main.bicepparam: {name} is not a parameter of main.bicep"
        for name in params
        if name not in main.params
    ]
    required = [p.name for p in main.params.values() if p.default is None]
    out += [
        f"main.bicepparam: required parameter {name} not given" for name in required if name not in params
    ]
    if "AZURE_ENV_NAME" not in params.get("environmentName", ""):
        out.append("main.bicepparam: environmentName is not read from AZURE_ENV_NAME (the azd-env-name tag)")
    return out


def _columns(raw: Any) -> list[tuple[Any, Any]]:
    if not isinstance(raw, list):
        return []
    return [(c.get("name"), c.get("type")) for c in raw if isinstance(c, dict)]


def _sentinel(main: Template, module: Template, dcr_json: str | None) -> list[str]:
    out: list[str] = []
    decl = main.module_decls.get("sentinel")
    if decl is None or main.modules["sentinel"]["path"] != "modules/sentinel.bicep":
        out.append("main.bicep: no module sentinel 'modules/sentinel.bicep'")
    wanted = list(sentinel_sink.COLUMNS)
    columns = _columns(value(module.variables.get("columns", "[]")))
    if columns != wanted:
        out.append(f"sentinel: var columns is not sinks/sentinel.py COLUMNS: {columns}")
    # the table
    table = _one(module, "Microsoft.OperationalInsights/workspaces/tables", "sentinel table", out)
    if table:
        name = table.get("name")
        if not (name == TABLE or (isinstance(name, Expr) and literal_var(module, name) == TABLE)):
            out.append(f"sentinel table: not named {TABLE}")
        if _get(table, "properties", "schema", "columns") != "columns":
            out.append("sentinel table: schema.columns is not the columns")
    # the data collection rule
    dcr = _one(module, "Microsoft.Insights/dataCollectionRules", "sentinel DCR", out)
    if dcr:
        props = dcr.get("properties") or {}
        streams = props.get("streamDeclarations") or {}
        declared = {
            literal_var(module, Expr(k[2:-1])) if k.startswith("${") else k: v for k, v in streams.items()
        }
        if _get(declared, STREAM, "columns") != "columns":
            out.append(f"sentinel DCR: stream {STREAM} is not declared with the columns")
        destinations = [
            d.get("name") for d in _get(props, "destinations", "logAnalytics") or [] if isinstance(d, dict)
        ]
        flows = props.get("dataFlows") or []
        ok = False
        for flow in flows if isinstance(flows, list) else []:
            out_stream = flow.get("outputStream")
            if isinstance(out_stream, Expr):
                out_stream = re.sub(
                    r"\$\{(\w+)\}", lambda m: literal_var(module, Expr(m.group(1))) or "?", out_stream[1:-1]
                )
            streams_in = [
                literal_var(module, s) if isinstance(s, Expr) else s for s in flow.get("streams") or []
            ]
            ok |= (
                STREAM in streams_in
                and out_stream == f"Custom-{TABLE}"
                and bool(set(flow.get("destinations") or []) & set(destinations))
            )
        if not ok:
            out.append(f"sentinel DCR: no data flow {STREAM} -> Custom-{TABLE} into the workspace")
        if "table" not in str(dcr.get("dependsOn")):
            out.append("sentinel DCR: does not depend on the table")
    # the app may publish to it
    publishers = [
        r for r in module.of_type("Microsoft.Authorization/roleAssignments") if r.body.get("scope") == "dcr"
    ]
    if not publishers:
        out.append("sentinel DCR: no role assignment for the app on the rule")
    if dcr_json is not None:
        sample = json.loads(dcr_json)
        sample_columns = _columns(_get(sample, "properties", "streamDeclarations", STREAM, "columns"))
        if sample_columns != wanted:
            out.append("docs/sentinel-dcr.json: stream columns differ from the sink's")
    out += _rule(module)
    return out


def literal_var(t: Template, name: Expr) -> str | None:
    """The string value of ``name`` when it is a variable with a plain string value."""
    raw = t.variables.get(str(name).strip())
    v = value(raw) if raw is not None else None
    return v if isinstance(v, str) and not isinstance(v, Expr) else None


def _projected(query: str) -> set[str]:
    """The columns of the query's last ``project``."""
    projects = re.findall(r"\|\s*project\s+([^|]+)", query)
    return {c.strip().split("=")[0].strip() for c in projects[-1].split(",")} if projects else set()


def _expands_entities(query: str) -> bool:
    """Whether the query's mv-apply (or mv-expand) expands the Entities column or a copy of it."""
    clause = re.search(r"\|\s*mv-(?:apply|expand)\b([^|(]*)", query)
    if clause is None:
        return False
    pairs = [p for p in re.findall(r"(\w+)\s*=\s*(\w+)", clause.group(1)) if p[0] != "with_itemindex"]
    source = pairs[-1][1] if pairs else clause.group(1).split()[0]
    return source == "Entities" or re.search(rf"\|\s*extend\s+{source}\s*=\s*Entities\b", query) is not None


def _rule(module: Template) -> list[str]:
    out: list[str] = []
    rules = module.of_type("Microsoft.SecurityInsights/alertRules")
    if len(rules) != 1:
        return [f"sentinel: expected one analytic rule (SecurityInsights/alertRules), found {len(rules)}"]
    rule = rules[0].value
    props = rule.get("properties") or {}
    if rule.get("kind") != "Scheduled":
        out.append("analytic rule: kind is not 'Scheduled'")
    if rule.get("scope") != "workspace":
        out.append("analytic rule: not scoped to the workspace")
    if _get(props, "incidentConfiguration", "createIncident") is not True:
        out.append("analytic rule: incidentConfiguration.createIncident is not true")
    if props.get("enabled") not in (True, "ruleEnabled"):
        out.append("analytic rule: enabled is neither true nor the ruleEnabled parameter")
    query = props.get("query")
    if isinstance(query, Expr):
        query = value(module.variables.get(str(query), "''"))
    if not isinstance(query, str) or not query.strip().startswith(TABLE):
        return [*out, f"analytic rule: the query does not read {TABLE}"]
    projected = _projected(query)
    mapped: dict[str, set[str]] = {}
    for entity in props.get("entityMappings") or []:
        for fm in entity.get("fieldMappings") or []:
            mapped.setdefault(entity.get("entityType"), set()).add(fm.get("identifier"))
            if fm.get("columnName") not in projected:
                out.append(
                    f"analytic rule: entity column {fm.get('columnName')} is not projected by the query"
                )
    if not {"AadUserId", "FullName"} <= mapped.get("Account", set()):
        out.append("analytic rule: no Account entity mapped by AadUserId and FullName (UPN)")
    if "Address" not in mapped.get("IP", set()):
        out.append("analytic rule: no IP entity mapped by Address")
    if "Name" not in mapped.get("CloudApplication", set()):
        out.append("analytic rule: no CloudApplication entity mapped by Name")
    if not _expands_entities(query):
        out.append("analytic rule: the entities are not read from the Entities column (mv-apply)")
    tactics = set(props.get("tactics") or ())
    declared = {t for p in discover() for t in p.meta.tactics}
    if not declared <= tactics:
        out.append(f"analytic rule: tactics lack {sorted(declared - tactics)} that detectors declare")
    details = props.get("customDetails") or {}
    if not {"Tactics", "Techniques"} <= set(details):
        out.append("analytic rule: the alert's Tactics and Techniques are not custom details")
    for column in (props.get("customDetails") or {}).values():
        if column not in projected:
            out.append(f"analytic rule: custom detail column {column} is not projected by the query")
    override = props.get("alertDetailsOverride") or {}
    for fmt in (override.get("alertDisplayNameFormat"), override.get("alertDescriptionFormat")):
        for column in re.findall(r"\{\{(\w+)\}\}", str(fmt or "")):
            if column not in projected:
                out.append(f"analytic rule: {{{{{column}}}}} is not projected by the query")
    if override.get("alertSeverityColumnName") not in projected:
        out.append("analytic rule: the severity column is not projected by the query")
    return out


# -------------------------------------------------------------------------------------------- tests


def test_the_templates_pass_the_checker() -> None:
    assert problems(current()) == []


def test_the_checker_sees_what_it_checks() -> None:
    """Guards the test above against passing on nothing: the values it compares are read."""
    main = parse(current()["infra/main.bicep"])
    config = main.resources["app"].value["properties"]["siteConfig"]
    assert config["ftpsState"] == "Disabled" and config["http20Enabled"] is True
    module = parse(current()["infra/modules/sentinel.bicep"])
    (rule,) = module.of_type("Microsoft.SecurityInsights/alertRules")
    query = value(module.variables["ruleQuery"])
    assert {
        "PrincipalId",
        "PrincipalUpn",
        "AccountAadUserId",
        "AccountUpn",
        "IpAddress",
        "AppName",
    } <= _projected(query)
    assert len(rule.value["properties"]["entityMappings"]) == 4
    assert "mv-apply with_itemindex = Index Entity = EntityList" in query
    (policy,) = main.of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert policy.loop == ("endpoint", ["ftp", "scm"])


def _drop_line(text: str, pattern: str) -> str:
    lines = text.split("\n")
    hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert len(hits) == 1, f"{pattern!r} matches {len(hits)} lines"
    del lines[hits[0]]
    return "\n".join(lines)


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


MAIN, SENTINEL = "infra/main.bicep", "infra/modules/sentinel.bicep"
# (what is taken out, file, how, a fragment of the problem the checker must report)
MUTATIONS: list[tuple[str, str, Any, str]] = [
    ("azure.yaml", "azure.yaml", None, "azure.yaml: missing"),
    (
        "azd function service",
        "azure.yaml",
        lambda t: _replace(t, "host: function", "host: appservice"),
        "no service",
    ),
    ("azd infra path", "azure.yaml", lambda t: _replace(t, "path: infra", "path: deploy"), "infra is not"),
    ("bicepparam", "infra/main.bicepparam", None, "main.bicepparam: missing"),
    (
        "bicepparam using",
        "infra/main.bicepparam",
        lambda t: _replace(t, "using 'main.bicep'", "using 'x.bicep'"),
        "using",
    ),
    (
        "bicepparam env",
        "infra/main.bicepparam",
        lambda t: _drop_line(t, r"^param environmentName"),
        "AZURE_ENV_NAME",
    ),
    (
        "azd-service-name tag",
        MAIN,
        lambda t: _replace(t, "{ 'azd-service-name': azdServiceName }", "{}"),
        "azd-service-name",
    ),
    ("httpsOnly", MAIN, lambda t: _drop_line(t, r"^\s+httpsOnly: true"), "httpsOnly"),
    ("ftpsState", MAIN, lambda t: _drop_line(t, r"ftpsState: 'Disabled'"), "ftpsState"),
    (
        "FTP allowed",
        MAIN,
        lambda t: _replace(t, "ftpsState: 'Disabled'", "ftpsState: 'AllAllowed'"),
        "ftpsState",
    ),
    (
        "site TLS",
        MAIN,
        lambda t: _replace(t, "      minTlsVersion: '1.2'", "      minTlsVersion: '1.0'"),
        "minTlsVersion",
    ),
    ("scm TLS", MAIN, lambda t: _drop_line(t, r"scmMinTlsVersion"), "scmMinTlsVersion"),
    ("HTTP/2", MAIN, lambda t: _replace(t, "http20Enabled: true", "http20Enabled: false"), "http20Enabled"),
    ("basic publishing scm", MAIN, lambda t: _drop_line(t, r"^    'scm'$"), "'scm'"),
    ("basic publishing allowed", MAIN, lambda t: _replace(t, "allow: false", "allow: true"), "'ftp'"),
    (
        "IP allow-list",
        MAIN,
        lambda t: _replace(t, "in httpAllowedIpRanges:", "in []:"),
        "ipSecurityRestrictions",
    ),
    ("storage TLS", MAIN, lambda t: _replace(t, "'TLS1_2'", "'TLS1_0'"), "storage: minimumTlsVersion"),
    ("storage HTTPS", MAIN, lambda t: _drop_line(t, r"supportsHttpsTrafficOnly"), "supportsHttpsTrafficOnly"),
    (
        "storage keys",
        MAIN,
        lambda t: _replace(t, "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"),
        "allowSharedKeyAccess",
    ),
    (
        "ZRS parameter",
        MAIN,
        lambda t: _replace(t, "name: storageSkuName", "name: 'Standard_LRS'"),
        "sku.name",
    ),
    (
        "ZRS default",
        MAIN,
        lambda t: _replace(
            t, "param storageSkuName string = 'Standard_ZRS'", "param storageSkuName string = 'Standard_LRS'"
        ),
        "default",
    ),
    (
        "Event Hubs TLS",
        MAIN,
        lambda t: _replace(t, "minimumTlsVersion: '1.2'", "minimumTlsVersion: '1.0'"),
        "Event Hubs",
    ),
    (
        "tags parameter",
        MAIN,
        lambda t: _replace(t, "param tags object = {}", "param labels object = {}").replace(
            "}, tags,", "}, labels,"
        ),
        "no object parameter tags",
    ),
    (
        "tags on a resource",
        MAIN,
        lambda t: _replace(
            t,
            "  location: location\n  tags: resourceTags\n  kind: 'StorageV2'",
            "  location: location\n  kind: 'StorageV2'",
        ),
        "resource storage",
    ),
    ("tags of Sentinel", SENTINEL, lambda t: _drop_line(t, r"^  tags: tags$"), "resource dcr"),
    ("Sentinel module", SENTINEL, None, "modules/sentinel.bicep: missing"),
    (
        "Sentinel in main",
        MAIN,
        lambda t: _replace(
            t, "module sentinel 'modules/sentinel.bicep'", "module sentinel 'modules/other.bicep'"
        ),
        "no module sentinel",
    ),
    (
        "table",
        SENTINEL,
        lambda t: _replace(
            t,
            "Microsoft.OperationalInsights/workspaces/tables@",
            "Microsoft.OperationalInsights/workspaces/savedSearches@",
        ),
        "sentinel table",
    ),
    ("a column", SENTINEL, lambda t: _drop_line(t, r"name: 'SchemaVersion'"), "COLUMNS"),
    (
        "DCR stream",
        SENTINEL,
        lambda t: _replace(
            t,
            "        columns: columns\n      }\n    }\n    destinations",
            "        columns: []\n      }\n    }\n    destinations",
        ),
        "stream",
    ),
    (
        "DCR flow",
        SENTINEL,
        lambda t: _replace(t, "outputStream: 'Custom-${tableName}'", "outputStream: 'Microsoft-Syslog'"),
        "data flow",
    ),
    (
        "DCR publisher",
        SENTINEL,
        lambda t: _replace(t, "  scope: dcr\n", "  scope: workspace\n"),
        "role assignment",
    ),
    (
        "analytic rule",
        SENTINEL,
        lambda t: _replace(
            t, "Microsoft.SecurityInsights/alertRules@", "Microsoft.SecurityInsights/watchlists@"
        ),
        "analytic rule",
    ),
    ("scheduled", SENTINEL, lambda t: _replace(t, "kind: 'Scheduled'", "kind: 'NRT'"), "Scheduled"),
    (
        "incidents",
        SENTINEL,
        lambda t: _replace(t, "createIncident: true", "createIncident: false"),
        "createIncident",
    ),
    (
        "account entity",
        SENTINEL,
        lambda t: _replace(t, "{ identifier: 'AadUserId', columnName: 'PrincipalId' }", "").replace(
            "{ identifier: 'AadUserId', columnName: 'AccountAadUserId' }", ""
        ),
        "Account",
    ),
    ("IP entity", SENTINEL, lambda t: _replace(t, "entityType: 'IP'", "entityType: 'Host'"), "IP entity"),
    (
        "cloud application entity",
        SENTINEL,
        lambda t: _replace(t, "entityType: 'CloudApplication'", "entityType: 'URL'"),
        "CloudApplication",
    ),
    (
        "entities from the alert",
        SENTINEL,
        lambda t: _replace(t, "| extend EntityList = Entities\n", "| extend EntityList = Context\n"),
        "Entities column",
    ),
    ("a tactic", SENTINEL, lambda t: _drop_line(t, r"^      'Impact'$"), "Impact"),
    (
        "tactics detail",
        SENTINEL,
        lambda t: _drop_line(t, r"Tactics: 'AlertTactics'"),
        "Tactics and Techniques",
    ),
    (
        "a mapped column",
        SENTINEL,
        lambda t: _replace(t, ", IpAddress, AppName,", ", AppName,"),
        "IpAddress is not projected",
    ),
    (
        "DCR sample",
        "docs/sentinel-dcr.json",
        lambda t: _replace(t, '"name": "SchemaVersion"', '"name": "Version"'),
        "sentinel-dcr.json",
    ),
]


@pytest.mark.parametrize(("what", "name", "mutate", "expected"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_checker_fails_without_each_property(what: str, name: str, mutate: Any, expected: str) -> None:
    files = current()
    if mutate is None:
        del files[name]
    else:
        files[name] = mutate(files[name])
    found = problems(files)
    assert any(expected in p for p in found), f"{what}: {found}"


# -------------------------------------------------------------------------------------------- checkov


def test_checkov_parses_main_and_passes_the_hardening_checks(tmp_path: Path) -> None:
    """checkov's own Azure checks on main.bicep; and on copies without a property each, that the check
    for it fails (one run over all the copies)."""
    mutants = {
        "original": current()[MAIN],
        "ftp": _drop_line(current()[MAIN], r"ftpsState: 'Disabled'"),
        "http1": _replace(current()[MAIN], "http20Enabled: true", "http20Enabled: false"),
        "tls": _replace(current()[MAIN], "      minTlsVersion: '1.2'", "      minTlsVersion: '1.0'"),
        "http": _drop_line(current()[MAIN], r"^\s+httpsOnly: true"),
        "storage": _replace(current()[MAIN], "'TLS1_2'", "'TLS1_0'"),
    }
    for name, text in mutants.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.bicep").write_text(text, encoding="utf-8")
    report = run_checkov(tmp_path, sorted(CHECKOV_REQUIRED))
    assert report.parsing_errors == [], f"checkov could not parse {report.parsing_errors}"
    failed = {folder: {c for c, _ in report.failed if _ == folder} for folder in mutants}
    passed = {folder: {c for c, _ in report.passed if _ == folder} for folder in mutants}
    assert failed["original"] == set(), f"main.bicep fails checkov: {failed['original']}"
    assert passed["original"] == set(CHECKOV_REQUIRED), set(CHECKOV_REQUIRED) - passed["original"]
    assert "CKV_AZURE_78" in failed["ftp"]
    assert "CKV_AZURE_67" in failed["http1"]
    assert "CKV_AZURE_145" in failed["tls"]
    assert "CKV_AZURE_70" in failed["http"]
    assert "CKV_AZURE_44" in failed["storage"]

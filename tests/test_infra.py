"""The deployment templates (``infra/``) against the code, host.json and ``docs/deploy.md``.

No Bicep compiler installs from the registries this project reaches, so the templates are read as text
by the small reader of ``tests/bicep.py`` (what it can and cannot see is said there). What it
checks are the mistakes that would only show in a real subscription: an app setting the code reads
and nobody sets, a binding that names a setting the template does not deploy, a role GUID that is
not the role it claims, a diagnostic setting with the wrong categories, a parameter nobody explained,
an interpolation of an undefined name.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pimwatch.hosting import azure_settings as storage
from tests.bicep import Template, _entries, _skip, literal, read
from tests.bicep import strings as _strings
from tests.bicep import value as bicep_value

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
DIAGNOSTIC = INFRA / "entra-diagnostic-setting.bicep"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# Azure built-in role definition ids, copied from Microsoft's "Azure built-in roles" reference
# (articles/role-based-access-control/built-in-roles*.md in MicrosoftDocs/azure-docs). Independent of
# main.bicep on purpose: a GUID typed wrong there grants another role, or none, and fails only in Azure.
BUILTIN_ROLES = {
    "Azure Event Hubs Data Receiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
    "Azure Event Hubs Data Sender": "2b629674-e913-4c01-ae53-ef4638d8f975",
    "Azure Event Hubs Data Owner": "f526a384-b230-433a-b45c-95f59c4a2dec",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# What the Function App's identity must hold, and on which resource (symbol in main.bicep).
APP_ROLES = {
    "Azure Event Hubs Data Receiver": "hub",
    "Storage Blob Data Owner": "storage",  # host storage with an identity; covers pimwatch's blobs
    "Storage Table Data Contributor": "storage",
    "Key Vault Secrets User": "vault",
}

# The app-settings contract (docs/deploy.md), identity-based, as it must be deployed in Azure.
CONTRACT = {
    "PIMWATCH_EVENTHUB__fullyQualifiedNamespace",
    "PIMWATCH_EVENTHUB_NAME",
    "PIMWATCH_CONSUMER_GROUP",
    "PIMWATCH_EVENTHUB_PARTITIONS",
    "PIMWATCH_STORAGE__accountName",
    "PIMWATCH_TABLE_PREFIX",
    "PIMWATCH_QUARANTINE_CONTAINER",
    "PIMWATCH_DEADLETTER_CONTAINER",
    "PIMWATCH_CONFIG",
    "AzureWebJobsStorage__accountName",
    "AzureFunctionsJobHost__extensions__eventHubs__initialOffsetOptions__enqueuedTimeUtc",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}
# Of those, the ones pimwatch's own code reads (the others are read by the Functions host).
READ_BY_PIMWATCH = {
    "PIMWATCH_EVENTHUB_PARTITIONS",
    "PIMWATCH_STORAGE__accountName",
    "PIMWATCH_TABLE_PREFIX",
    "PIMWATCH_QUARANTINE_CONTAINER",
    "PIMWATCH_DEADLETTER_CONTAINER",
    "PIMWATCH_CONFIG",
}
# Settings the code reads that the Azure deployment must NOT set, and why.
NOT_DEPLOYED = {
    "PIMWATCH_STATE": "local SQLite state (func start); Azure uses the Table store",
    "PIMWATCH_QUARANTINE_DIR": "local quarantine folder; Azure uses a blob container",
    "PIMWATCH_STORAGE": "connection string with an account key; the template is identity-based",
    "PIMWATCH_EVENTHUB": "connection string with a SAS key; the template is identity-based",
    "PIMWATCH_STORAGE__tableServiceUri": "alternative to __accountName (custom DNS, sovereign clouds)",
    "PIMWATCH_STORAGE__blobServiceUri": "alternative to __accountName (custom DNS, sovereign clouds)",
    "PIMWATCH_STORAGE__clientId": "user-assigned identity only; the app has a system-assigned one",
    "PIMWATCH_EVENTHUB__clientId": "user-assigned identity only; the app has a system-assigned one",
    "PIMWATCH_CHECKPOINT_CONTAINER": "pimwatch consume only (the Functions host checkpoints itself)",
    "PIMWATCH_START": "pimwatch consume only (Functions: initialOffsetOptions)",
    "PIMWATCH_GRAPH_CLIENT_SECRET": "graph.credential client_secret only; Azure reads Graph as the app",
}
# Flex Consumption takes the language from functionAppConfig.runtime and deprecates these.
FLEX_DEPRECATED = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}
SETTING_RE = re.compile(r"\bPIMWATCH_[A-Z_]*[A-Z](?:__[a-z][A-Za-z]+)?")
GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


@pytest.fixture(scope="module")
def main() -> Template:
    return read(MAIN)


@pytest.fixture(scope="module")
def diagnostic() -> Template:
    return read(DIAGNOSTIC)


def app_settings(main: Template) -> dict[str, str]:
    """The settings main.bicep deploys by name (sink secrets and extras are parameters)."""
    config = main.of_type("Microsoft.Web/sites/config")
    assert len(config) == 1 and config[0].body["name"] == "'appsettings'"
    union = config[0].body["properties"]
    assert union == (
        "union(extraAppSettings, sentinelSettings, secretReferences.outputs.references, pimwatchSettings)"
    ), "pimwatch's own settings must come last in the union, so no extra or secret setting replaces them"
    return main.var_object("pimwatchSettings")


def code_settings() -> dict[str, set[str]]:
    """Every ``PIMWATCH_*`` name in pimwatch/ and function_app.py, with the files that mention it."""
    found: dict[str, set[str]] = {}
    for path in [ROOT / "function_app.py", *sorted((ROOT / "pimwatch").rglob("*.py"))]:
        for name in SETTING_RE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def event_hub_binding() -> dict[str, Any]:
    """The binding the Python worker generates for ``entra_events``, from a fresh import of the app
    (``get_functions()`` may be called once per app object; test_runtime.py has its own)."""
    spec = importlib.util.spec_from_file_location("function_app_for_infra", ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions = {str(f.get_function_name()): f for f in module.app.get_functions()}
    binding: dict[str, Any] = json.loads(functions["entra_events"].get_function_json())["bindings"][0]
    return binding


# ------------------------------------------------------------------------------------------- tests


def test_the_reader_finds_the_declarations(main: Template) -> None:
    """Guards the tests below against passing on nothing: the reader sees the template's structure."""
    assert {"eventHubName", "partitionCount", "sinkSecretSettings", "initialOffsetUtc"} <= set(main.params)
    assert main.params["eventHubName"].default == "'entra-logs'"
    assert "@maxValue(32)" in main.params["partitionCount"].decorators
    assert {"namespace", "hub", "storage", "vault", "app", "appSettings"} <= set(main.resources)
    assert main.resources["hub"].type == "Microsoft.EventHub/namespaces/eventhubs"
    assert "diagnosticRuleId" in main.outputs
    with pytest.raises(ValueError, match="unbalanced"):
        _skip("{ a: [ 'x}' }", 1, "}")


def test_the_contract_settings_are_deployed(main: Template) -> None:
    settings = app_settings(main)
    assert CONTRACT - set(settings) == set(), "contract settings missing from main.bicep"
    assert FLEX_DEPRECATED & set(settings) == set()
    assert not any(k.startswith("PIMWATCH_") and k not in CONTRACT for k in settings), (
        set(settings) - CONTRACT
    )


def test_every_setting_the_code_reads_is_deployed_or_deliberately_not(main: Template) -> None:
    """A new app setting read by pimwatch fails here until main.bicep sets it (or it is listed, with
    the reason, in NOT_DEPLOYED)."""
    in_code = code_settings()
    deployed = set(app_settings(main))
    missing = {name: files for name, files in in_code.items() if name not in deployed | set(NOT_DEPLOYED)}
    assert missing == {}, f"read by the code but not deployed by infra/main.bicep: {missing}"


def test_the_partitions_setting_is_the_hub_s_partition_count(main: Template) -> None:
    """The tick clock waits for every partition the hub has (pimwatch/state/progress.py): the setting must
    follow the hub's partition count, not be typed twice."""
    assert app_settings(main)["PIMWATCH_EVENTHUB_PARTITIONS"] == "string(partitionCount)"
    hub = main.resources["hub"].body["properties"]
    assert re.search(r"\bpartitionCount:\s*partitionCount\b", hub), hub


def test_the_contract_is_read_by_the_code() -> None:
    """The settings the template deploys for pimwatch are the ones its code reads: no dead setting."""
    in_code = code_settings()
    assert READ_BY_PIMWATCH - set(in_code) == set()
    assert {"PIMWATCH_EVENTHUB_NAME", "PIMWATCH_CONSUMER_GROUP", "PIMWATCH_EVENTHUB"} <= set(in_code)


def test_the_trigger_binding_names_the_deployed_hub_and_consumer_group(main: Template) -> None:
    binding = event_hub_binding()
    settings = app_settings(main)
    hub_setting = binding["eventHubName"].strip("%")
    group_setting = binding["consumerGroup"].strip("%")
    assert binding["eventHubName"] == f"%{hub_setting}%" and binding["consumerGroup"] == f"%{group_setting}%"
    # the hub the app reads is the hub the template creates, under the same parameter
    assert settings[hub_setting] == "eventHubName"
    assert main.resources["hub"].body["name"] == "eventHubName"
    assert main.resources["hub"].body["parent"] == "namespace"
    # the consumer group the app reads exists on that hub, and is pimwatch's own
    assert settings[group_setting] == "functionsConsumerGroup"
    groups = main.of_type("Microsoft.EventHub/namespaces/eventhubs/consumergroups")
    assert {(g.body["parent"], g.body["name"]) for g in groups} == {
        ("hub", "functionsConsumerGroup"),
        ("hub", "standaloneConsumerGroup"),
    }
    defaults = {
        literal(main.params[p].default or "") for p in ("functionsConsumerGroup", "standaloneConsumerGroup")
    }
    assert defaults == {"pimwatch", "pimwatch-consume"} and "$Default" not in defaults
    # identity-based connection: the binding's connection is a prefix, the namespace its property
    assert f"{binding['connection']}__fullyQualifiedNamespace" in settings
    assert binding["connection"] not in settings  # no connection string with a key
    assert (
        "namespace.properties.serviceBusEndpoint"
        in settings[f"{binding['connection']}__fullyQualifiedNamespace"]
    )


def test_role_ids_are_the_builtin_roles_they_name(main: Template) -> None:
    role_ids = {name: literal(guid) for name, guid in main.var_object("roleIds").items()}
    for name, guid in role_ids.items():
        assert BUILTIN_ROLES.get(name) == guid, f"{name}: {guid} is not that built-in role"
    stray = {
        g.lower() for p in INFRA.rglob("*.bicep") for g in GUID_RE.findall(p.read_text(encoding="utf-8"))
    } - set(BUILTIN_ROLES.values())
    assert stray == set(), f"GUIDs in infra/ that are not known built-in roles: {stray}"


def test_the_app_identity_gets_each_role_on_the_right_resource(main: Template) -> None:
    assignments = main.of_type("Microsoft.Authorization/roleAssignments")
    granted: dict[str, str] = {}
    for a in assignments:
        props = _entries(a.body["properties"][1:-1])
        role = re.fullmatch(
            r"subscriptionResourceId\(\s*'Microsoft.Authorization/roleDefinitions',\s*roleIds\['([^']+)'\]\s*,?\s*\)",
            props["roleDefinitionId"],
        )
        assert role, f"{a.symbol}: roleDefinitionId must be a built-in role from roleIds"
        assert props["principalId"] == "app.identity.principalId"
        assert props["principalType"] == "'ServicePrincipal'"
        granted[role.group(1)] = a.body["scope"]
    assert granted == APP_ROLES
    # Sentinel: Monitoring Metrics Publisher on the DCR, only when a Sentinel workspace is named
    module = main.modules["sentinel"]
    assert module["path"] == "modules/sentinel.bicep"
    params = _entries(module["params"][1:-1])
    assert params["publisherRoleId"] == "roleIds['Monitoring Metrics Publisher']"
    assert params["principalId"] == "app.identity.principalId"
    assert main.module_decls["sentinel"].condition == "deploySentinel"
    assert main.variables["deploySentinel"] == "!empty(sentinelWorkspaceName)"
    assert main.params["sentinelWorkspaceName"].default == "''"
    sentinel = read(INFRA / "modules" / "sentinel.bicep")
    (publisher,) = sentinel.of_type("Microsoft.Authorization/roleAssignments")
    assert publisher.body["scope"] == "dcr"
    assert sentinel.resources["dcr"].type == "Microsoft.Insights/dataCollectionRules"
    assert _entries(publisher.body["properties"][1:-1]) == {
        "roleDefinitionId": (
            "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', publisherRoleId)"
        ),
        "principalId": "principalId",
        "principalType": "'ServicePrincipal'",
    }
    # the app settings wait for the permissions they need
    depends = main.resources["appSettings"].body["dependsOn"]
    assert {a.symbol for a in assignments} <= set(re.findall(r"\w+", depends))


def test_the_diagnostic_setting_streams_exactly_the_three_categories(
    diagnostic: Template, main: Template
) -> None:
    assert re.search(r"^targetScope = 'tenant'$", diagnostic.text, re.MULTILINE)
    (setting,) = diagnostic.resources.values()
    assert setting.type.lower() == "microsoft.aadiam/diagnosticsettings"
    assert "'microsoft.aadiam/diagnosticSettings@2017-04-01'" in diagnostic.text
    props = _entries(setting.body["properties"][1:-1])
    logs = [_entries(m) for m in re.findall(r"\{([^{}]*)\}", props["logs"])]
    assert sorted(literal(entry["category"]) for entry in logs) == [
        "AuditLogs",
        "NonInteractiveUserSignInLogs",
        "SignInLogs",
    ]
    assert all(entry["enabled"] == "true" for entry in logs)
    assert props["eventHubAuthorizationRuleId"] == "eventHubAuthorizationRuleId"
    assert diagnostic.params["eventHubAuthorizationRuleId"].default is None  # required
    assert diagnostic.params["eventHubName"].default == main.params["eventHubName"].default
    # ... through a namespace-level rule with the rights Azure Monitor streaming needs
    (rule,) = main.of_type("Microsoft.EventHub/namespaces/authorizationRules")
    assert rule.body["parent"] == "namespace"
    rights = _entries(rule.body["properties"][1:-1])["rights"]
    assert sorted(re.findall(r"'(\w+)'", rights)) == ["Listen", "Manage", "Send"]
    assert "output diagnosticRuleId string = diagnosticRule.id" in main.text
    namespace = _entries(main.resources["namespace"].body["properties"][1:-1])
    assert namespace["disableLocalAuth"] == "false"  # the diagnostic setting authenticates with the rule


def test_the_first_deployment_starts_an_hour_back(main: Template) -> None:
    setting = "AzureFunctionsJobHost__extensions__eventHubs__initialOffsetOptions__enqueuedTimeUtc"
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    node: Any = host
    for key in setting.split("__")[1:]:
        assert key in node, f"{setting} overrides host.json {key!r}, which is not there"
        node = node[key]
    assert host["extensions"]["eventHubs"]["initialOffsetOptions"]["type"] == "fromEnqueuedTime"
    assert app_settings(main)[setting] == "initialOffsetUtc"
    assert (
        main.params["initialOffsetUtc"].default == "dateTimeAdd(utcNow('u'), '-PT1H', 'yyyy-MM-ddTHH:mm:ssZ')"
    )


def test_the_app_runs_python_3_11_on_flex_consumption(main: Template) -> None:
    app = main.resources["app"]
    assert (
        main.resources["plan"].body["sku"].replace(" ", "").replace("\n", "")
        == "{name:'FC1'tier:'FlexConsumption'}"
    )
    assert app.body["identity"].replace(" ", "").replace("\n", "") == "{type:'SystemAssigned'}"
    config = _entries(_entries(app.body["properties"][1:-1])["functionAppConfig"][1:-1])
    runtime = _entries(config["runtime"][1:-1])
    assert runtime == {"name": "'python'", "version": "'3.11'"}  # not 3.13: docs/functions.md, retry policy
    deployment = _entries(_entries(config["deployment"][1:-1])["storage"][1:-1])
    assert _entries(deployment["authentication"][1:-1]) == {"type": "'SystemAssignedIdentity'"}
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'requires-python = ">=3.11"' in pyproject


def test_storage_is_keyless_and_private(main: Template) -> None:
    props = _entries(main.resources["storage"].body["properties"][1:-1])
    assert props["allowSharedKeyAccess"] == "false"
    assert props["allowBlobPublicAccess"] == "false"
    assert props["minimumTlsVersion"] == "'TLS1_2'"
    vault = _entries(main.resources["vault"].body["properties"][1:-1])
    assert (vault["enableRbacAuthorization"], vault["enableSoftDelete"], vault["enablePurgeProtection"]) == (
        "true",
        "true",
        "true",
    )
    # every container pimwatch writes to is created, under the names the settings give it
    containers = main.resources["containers"]
    loop = main.text[main.text.index("resource containers") :]
    for param in ("quarantineContainer", "deadLetterContainer", "checkpointContainer"):
        assert param in loop.split("]:")[0]
    assert containers.body["parent"] == "blobService"
    settings = app_settings(main)
    assert settings["PIMWATCH_QUARANTINE_CONTAINER"] == "quarantineContainer"
    assert settings["PIMWATCH_DEADLETTER_CONTAINER"] == "deadLetterContainer"
    # the defaults are the code's defaults
    assert literal(main.params["quarantineContainer"].default or "") == storage.DEFAULT_QUARANTINE_CONTAINER
    assert literal(main.params["deadLetterContainer"].default or "") == storage.DEFAULT_DEADLETTER_CONTAINER
    assert literal(main.params["tablePrefix"].default or "") == storage.DEFAULT_PREFIX


def test_sink_secrets_are_key_vault_references(main: Template) -> None:
    module = main.modules["secretReferences"]
    assert module["path"] == "modules/key-vault-references.bicep"
    assert _entries(module["params"][1:-1]) == {"vaultName": "vaultName", "settings": "sinkSecretSettings"}
    references = (INFRA / "modules" / "key-vault-references.bicep").read_text(encoding="utf-8")
    value = references[references.index("output references object = ") :]
    assert value.startswith("output references object = toObject(") and "settings," in value
    assert "'@Microsoft.KeyVault(VaultName=${vaultName};SecretName=${replace(setting, '_', '-')})'" in value
    assert main.params["sinkSecretSettings"].type == "array"


def test_interpolations_name_declared_symbols() -> None:
    """``'${NAME}'`` in a Bicep string is an interpolation: a ``${...}`` meant for the YAML must be
    escaped (``\\${NAME}``) or the deployment fails on an undefined symbol."""
    for path in sorted(INFRA.rglob("*.bicep")):
        t = read(path)
        known = set(t.params) | set(t.variables) | set(t.resources) | set(t.modules)
        for m in re.finditer(r"\bfor\s+(?:(\w+)|\((\w+),\s*(\w+)\))\s+in\b", t.text):
            known |= {name for name in m.groups() if name}  # loop variables
        for start, end in _strings(t.text):
            body = t.text[start + 1 : end]
            for m in re.finditer(r"(?<!\\)\$\{\s*([A-Za-z_]\w*)(\s*\()?", body):
                if m.group(2) is None:  # a function call, e.g. ${replace(...)}, is not a symbol
                    assert m.group(1) in known | {"setting"}, f"{path.name}: undefined ${{{m.group(1)}}}"


def test_the_example_parameters_fit_the_template(main: Template) -> None:
    example = json.loads((INFRA / "main.parameters.example.json").read_text(encoding="utf-8"))
    assert example["$schema"].endswith("/deploymentParameters.json#")
    types = {"string": str, "int": int, "bool": bool, "array": list, "object": dict}
    for name, entry in example["parameters"].items():
        assert name in main.params, f"main.parameters.example.json: {name} is not a parameter of main.bicep"
        param = main.params[name]
        assert isinstance(entry["value"], types[param.type]), (
            f"{name}: {entry['value']!r} is not a {param.type}"
        )
        value: Any = entry["value"]
        low = re.search(r"@minValue\((\d+)\)", param.decorators)
        high = re.search(r"@maxValue\((\d+)\)", param.decorators)
        assert low is None or value >= int(low.group(1)), f"{name}: {value} below @minValue"
        assert high is None or value <= int(high.group(1)), f"{name}: {value} above @maxValue"
        allowed = re.search(r"@allowed\(\[(.*?)\]\)", param.decorators, re.DOTALL)
        if allowed:
            assert value in bicep_value(f"[{allowed.group(1)}]"), f"{name}: {value} not @allowed"
    required = {p.name for p in main.params.values() if p.default is None}
    assert required <= set(example["parameters"])


def test_the_config_path_ships_with_the_code(main: Template) -> None:
    """PIMWATCH_CONFIG points into the deployed package: .funcignore must not drop its folder."""
    config = literal(main.params["configPath"].default or "")
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert config.split("/")[0] not in ignored and config not in ignored
    assert "infra" in ignored  # the templates are not part of the app


def test_deploy_doc_explains_every_parameter_and_setting(main: Template, diagnostic: Template) -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for name in main.params:  # a row of the parameters table
        assert f"\n| `{name}` |" in doc, f"docs/deploy.md has no table row for parameter {name}"
    for name in diagnostic.params:
        assert f"`{name}`" in doc, f"docs/deploy.md does not explain parameter {name}"
    for name in [*app_settings(main), *NOT_DEPLOYED]:
        assert f"`{name}`" in doc, f"docs/deploy.md does not mention app setting {name}"
    for role in APP_ROLES:
        assert role in doc


def test_the_functions_requirements_pin_every_runtime_dependency_of_pyproject() -> None:
    """The Functions deployment installs requirements.txt, not the package: a dependency added to
    pyproject.toml (or an extra the app runs: ``telemetry`` the metrics, ``graph`` the posture timers,
    ``report`` the weekly report) but not here would be missing in Azure (and the reverse, unpinned)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = {
        d.split(";")[0].strip().lower()
        for d in [*project["dependencies"], *extras["telemetry"], *extras["graph"], *extras["report"]]
    }
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pinned = {ln.strip().lower() for ln in lines if ln.strip() and not ln.startswith("#")}
    assert wanted - pinned == set(), "pin these in requirements.txt as in pyproject.toml"
    assert pinned - wanted == {"azure-functions==1.26.0"}

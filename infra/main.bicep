// pimwatch in Azure: Event Hub for the Entra logs, the Functions app that reads it, its state, secrets
// and telemetry. Resource-group scope; the Entra diagnostic setting that feeds the hub is tenant scope
// (entra-diagnostic-setting.bicep). Steps, roles and choices: docs/deploy.md.
//
// Hosting: Flex Consumption (FC1), Linux, Python 3.11. Target-based scaling gives the Event Hub function
// at most one instance per partition; per-function scaling keeps the timer and HTTP functions on their
// own instances. Flex sets the language in functionAppConfig.runtime and deprecates the app settings
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION, so they are not set here.
//
// Hardened (docs/deploy.md, "What is hardened"; tests/test_templates.py fails when one of these goes):
// no FTP and no basic (publishing-profile) credentials, HTTPS only, TLS 1.2 minimum on the site, its
// deployment (scm) endpoint, storage and Event Hubs, HTTP/2, no storage keys, tags on every resource
// that takes them, zone-redundant storage by default, an optional IP allow-list in front of the HTTP
// functions, and the Sentinel table, data collection rule and analytic rule (modules/sentinel.bicep).
// `azd up` deploys it with main.bicepparam (azure.yaml at the repository root).
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------- parameters

@description('Region of every resource. Flex Consumption is not in every region: az functionapp list-flexconsumption-locations.')
param location string = resourceGroup().location

@description('Tags on every resource that takes them; pimwatch adds application=pimwatch and, under azd, azd-env-name.')
param tags object = {}

@description('The azd environment (AZURE_ENV_NAME, set by main.bicepparam); tagged as azd-env-name. Empty outside azd.')
param environmentName string = ''

@description('Prefix of the resource names; a hash of the resource group id is appended for uniqueness.')
@minLength(3)
@maxLength(11)
param baseName string = 'pimwatch'

@description('The hub the Entra diagnostic setting writes to.')
param eventHubName string = 'entra-logs'

@description('Partitions of the hub: the most Functions instances that read it at once. Fixed on Standard once created.')
@minValue(1)
@maxValue(32)
param partitionCount int = 4

@description('Days the hub keeps events (Standard: 1 to 7): how long pimwatch may stall without losing any.')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 7

@description('Throughput units of the Standard namespace (1 MB/s or 1,000 events/s in, 2 MB/s out each).')
@minValue(1)
@maxValue(40)
param throughputUnits int = 1

@description('Consumer group of the Functions app (PIMWATCH_CONSUMER_GROUP); never $Default.')
param functionsConsumerGroup string = 'pimwatch'

@description('Consumer group for a standalone `pimwatch consume`, never shared with the Functions app.')
param standaloneConsumerGroup string = 'pimwatch-consume'

@description('Namespace-level shared access rule (Listen, Send, Manage) that the Entra diagnostic setting uses.')
param diagnosticRuleName string = 'entra-diagnostic-setting'

@description('PIMWATCH_CONFIG: the YAML config, a path relative to the app root, deployed with the code.')
param configPath string = 'config/pimwatch.yaml'

@description('PIMWATCH_TABLE_PREFIX: prefix of the state tables (a letter, then letters or digits).')
param tablePrefix string = 'pimwatch'

@description('PIMWATCH_QUARANTINE_CONTAINER: blob container for input that could not be used.')
param quarantineContainer string = 'pimwatch-quarantine'

@description('PIMWATCH_DEADLETTER_CONTAINER: blob container for deliveries a sink refused for good.')
param deadLetterContainer string = 'pimwatch-deadletters'

@description('PIMWATCH_CHECKPOINT_CONTAINER of a standalone `pimwatch consume` (created here, unused by Functions).')
param checkpointContainer string = 'pimwatch-checkpoints'

@description('App settings the YAML reads as \${NAME} and that come from Key Vault, e.g. TEAMS_WORKFLOW_URL. Each is a Key Vault reference to the secret of the same name with "_" replaced by "-" (Key Vault names allow no "_").')
param sinkSecretSettings array = []

@description('Further plain app settings the YAML reads as \${NAME} (not secrets), e.g. {"DCE_URL": "...", "DCR_ID": "..."}.')
param extraAppSettings object = {}

@description('Where a first deployment starts reading the hub (only used while the consumer group has no checkpoint): the deployment time minus one hour.')
param initialOffsetUtc string = dateTimeAdd(utcNow('u'), '-PT1H', 'yyyy-MM-ddTHH:mm:ssZ')

@description('Flex Consumption: the most instances of each function (scale group). The Event Hub function also stops at the partition count.')
param maximumInstanceCount int = 40

@description('Flex Consumption: memory of each instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Days the Log Analytics workspace behind Application Insights keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Redundancy of the storage account (state, checkpoints, package). ZRS survives the loss of a zone; use Standard_LRS only where the region has no zones.')
@allowed([
  'Standard_ZRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSkuName string = 'Standard_ZRS'

@description('CIDR ranges allowed to call the HTTP functions (health, test-alert) besides their function key. Empty: any address with the key.')
param httpAllowedIpRanges array = []

@description('Log Analytics workspace with Microsoft Sentinel: creates the table PimwatchAlerts_CL, the data collection rule and the analytic rule there (modules/sentinel.bicep). Empty: no Sentinel resources.')
param sentinelWorkspaceName string = ''

@description('Resource group of that workspace (same subscription).')
param sentinelWorkspaceResourceGroup string = resourceGroup().name

@description('Region of that workspace: the data collection rule must be in the same region.')
param sentinelWorkspaceLocation string = location

@description('Whether the analytic rule that turns pimwatch alerts into Sentinel incidents is enabled.')
param sentinelRuleEnabled bool = true

// ----------------------------------------------------------------------------------------- names

var suffix = uniqueString(resourceGroup().id)
var namespaceName = 'evhns-${baseName}-${suffix}'
var storageName = take(toLower('st${replace(baseName, '-', '')}${suffix}'), 24)
var vaultName = take('kv-${baseName}-${suffix}', 24)
var workspaceName = 'log-${baseName}-${suffix}'
var insightsName = 'appi-${baseName}-${suffix}'
var planName = 'plan-${baseName}-${suffix}'
var appName = 'func-${baseName}-${suffix}'
var deploymentContainer = 'app-package'
var deploySentinel = !empty(sentinelWorkspaceName)

// The azd service in azure.yaml that `azd deploy` publishes to the Function App (found by this tag).
var azdServiceName = 'pimwatch'
var resourceTags = union({ application: 'pimwatch' }, tags, empty(environmentName) ? {} : { 'azd-env-name': environmentName })

// Built-in role definitions (ids from the Azure built-in roles reference; tests/test_infra.py keeps a
// copy of the table and fails if one of these drifts).
var roleIds = {
  'Azure Event Hubs Data Receiver': 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  'Key Vault Secrets User': '4633458b-17de-408a-b874-0445c86b69e6'
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ------------------------------------------------------------------------------------- Event Hubs

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: resourceTags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: throughputUnits
  }
  properties: {
    minimumTlsVersion: '1.2'
    // The Entra diagnostic setting writes with the shared access rule below: local (SAS) auth stays on.
    disableLocalAuth: false
    publicNetworkAccess: 'Enabled'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource functionsGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: functionsConsumerGroup
  properties: {
    userMetadata: 'pimwatch Functions app (entra_events)'
  }
}

resource standaloneGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: standaloneConsumerGroup
  properties: {
    userMetadata: 'pimwatch consume (standalone consumer)'
  }
}

// Azure Monitor streams diagnostic logs with a namespace-level rule that has Manage, Send and Listen.
resource diagnosticRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: diagnosticRuleName
  properties: {
    rights: [
      'Listen'
      'Send'
      'Manage'
    ]
  }
}

// ---------------------------------------------------------------------------------------- Storage

// One account: the Functions host's storage (AzureWebJobsStorage: Event Hub checkpoints, timer
// leases, keys), the deployment package, and pimwatch's tables and containers. No account keys:
// every client uses the managed identity.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  tags: resourceTags
  kind: 'StorageV2'
  sku: {
    name: storageSkuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    isHnsEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in [
    deploymentContainer
    quarantineContainer
    deadLetterContainer
    checkpointContainer
  ]: {
    parent: blobService
    name: name
    properties: {
      publicAccess: 'None'
    }
  }
]

// ------------------------------------------------------------------------------ monitoring, secrets

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: resourceTags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: insightsName
  location: location
  tags: resourceTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: resourceTags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    // Key Vault references on Flex Consumption cannot reach a network-restricted vault.
    publicNetworkAccess: 'Enabled'
  }
}

// ------------------------------------------------------------------------------ the Functions app

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: resourceTags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(resourceTags, { 'azd-service-name': azdServiceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      // health and test-alert: a function key, and with httpAllowedIpRanges also a source address from
      // the list. The deployment endpoint (scm) keeps its own rules: azd and Core Tools publish there
      // with an Entra token (basic credentials are off below).
      ipSecurityRestrictionsDefaultAction: empty(httpAllowedIpRanges) ? 'Allow' : 'Deny'
      ipSecurityRestrictions: [
        for (cidr, i) in httpAllowedIpRanges: {
          name: 'allowed-${i}'
          ipAddress: cidr
          action: 'Allow'
          priority: 100 + i
        }
      ]
      scmIpSecurityRestrictionsUseMain: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // 3.11, not 3.13: @app.retry on an Event Hub trigger fails to load on 3.13 (docs/functions.md).
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    containers
  ]
}

// No FTP and no publishing-profile (basic) credentials on either endpoint: deployments authenticate
// with Entra ID (azd, Core Tools and the CLI all do).
resource publishingCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = [
  for endpoint in [
    'ftp'
    'scm'
  ]: {
    parent: app
    name: endpoint
    properties: {
      allow: false
    }
  }
]

// ------------------------------------------------------------- role assignments of the app identity

resource hubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, app.id, roleIds['Azure Event Hubs Data Receiver'])
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds['Azure Event Hubs Data Receiver'])
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Host storage with an identity needs Blob Data Owner (it creates containers); it also covers the
// deployment package and pimwatch's quarantine and dead-letter blobs.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, app.id, roleIds['Storage Blob Data Owner'])
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds['Storage Blob Data Owner'])
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// pimwatch's state tables, and the host's diagnostic events.
resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, app.id, roleIds['Storage Table Data Contributor'])
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds['Storage Table Data Contributor'])
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, app.id, roleIds['Key Vault Secrets User'])
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds['Key Vault Secrets User'])
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Sentinel: the custom table, the data collection rule the sentinel sink sends to (the app may
// publish to it), and the analytic rule that turns pimwatch alerts into incidents.
module sentinel 'modules/sentinel.bicep' = if (deploySentinel) {
  name: 'pimwatch-sentinel'
  scope: resourceGroup(sentinelWorkspaceResourceGroup)
  params: {
    workspaceName: sentinelWorkspaceName
    location: sentinelWorkspaceLocation
    dcrName: 'dcr-${baseName}-${suffix}'
    principalId: app.identity.principalId
    publisherRoleId: roleIds['Monitoring Metrics Publisher']
    ruleEnabled: sentinelRuleEnabled
    tags: resourceTags
  }
}

// ---------------------------------------------------------------------------------- app settings

// The contract of docs/deploy.md (identity-based: no connection string, no key anywhere).
var pimwatchSettings = {
  AzureWebJobsStorage__accountName: storage.name
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  AzureFunctionsJobHost__extensions__eventHubs__initialOffsetOptions__enqueuedTimeUtc: initialOffsetUtc
  // serviceBusEndpoint is https://<namespace>.servicebus.windows.net:443/ (another suffix in sovereign clouds)
  PIMWATCH_EVENTHUB__fullyQualifiedNamespace: split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
  PIMWATCH_EVENTHUB_NAME: eventHubName
  PIMWATCH_CONSUMER_GROUP: functionsConsumerGroup
  // the hub's partitions (ids 0..n-1): clock-driven detectors wait for a partition not read yet
  PIMWATCH_EVENTHUB_PARTITIONS: string(partitionCount)
  PIMWATCH_STORAGE__accountName: storage.name
  PIMWATCH_TABLE_PREFIX: tablePrefix
  PIMWATCH_QUARANTINE_CONTAINER: quarantineContainer
  PIMWATCH_DEADLETTER_CONTAINER: deadLetterContainer
  PIMWATCH_CONFIG: configPath
}

// What the YAML's sentinel sink reads as ${SENTINEL_LOGS_ENDPOINT} and ${SENTINEL_DCR_ID} (docs/sentinel.md).
var sentinelSettings = deploySentinel ? {
  SENTINEL_LOGS_ENDPOINT: sentinel.outputs.logsIngestionEndpoint
  SENTINEL_DCR_ID: sentinel.outputs.dcrImmutableId
} : {}

// The Key Vault references of sinkSecretSettings, built by a module: its lambda (toObject) is the one
// construct checkov's Bicep parser cannot read, and kept out of this file checkov checks main.bicep.
module secretReferences 'modules/key-vault-references.bicep' = {
  name: 'pimwatch-key-vault-references'
  params: {
    vaultName: vaultName
    settings: sinkSecretSettings
  }
}

// A separate resource after the role assignments, so the host's first start with these settings
// finds its storage, hub and vault permissions in place. pimwatch's own settings win over
// extraAppSettings, the Sentinel settings and sink secrets of the same name.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: union(extraAppSettings, sentinelSettings, secretReferences.outputs.references, pimwatchSettings)
  dependsOn: [
    hubReceiver
    blobOwner
    tableContributor
    secretsUser
    functionsGroup
  ]
}

// ---------------------------------------------------------------------------------------- outputs

output functionAppName string = app.name
output principalId string = app.identity.principalId
output eventHubNamespace string = namespace.name
output eventHubName string = hub.name
output diagnosticRuleId string = diagnosticRule.id
output storageAccountName string = storage.name
output keyVaultName string = vault.name
output sentinelDcrImmutableId string = deploySentinel ? sentinel.outputs.dcrImmutableId : ''
output sentinelLogsEndpoint string = deploySentinel ? sentinel.outputs.logsIngestionEndpoint : ''

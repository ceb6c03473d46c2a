// Microsoft Sentinel for pimwatch, in the resource group of the Sentinel workspace (main.bicep deploys it
// when sentinelWorkspaceName is set; docs/sentinel.md):
//   - the custom table PimwatchAlerts_CL (the columns of sinks/sentinel.py COLUMNS),
//   - a data collection rule of kind Direct (its own logs ingestion endpoint, no DCE) with the input
//     stream Custom-PimwatchAlerts that the sentinel sink sends to, and Monitoring Metrics Publisher on
//     it for the Functions app,
//   - a scheduled analytic rule that turns every pimwatch alert into a Sentinel alert and incident, with
//     its principal and the first other account, IP address and cloud application of its Entities
//     mapped to entities.
// tests/test_templates.py checks the columns against the sink and docs/sentinel-dcr.json.
targetScope = 'resourceGroup'

@description('The Log Analytics workspace with (or to get) Microsoft Sentinel.')
param workspaceName string

@description('Region of the workspace: a data collection rule must be in its destination\'s region.')
param location string

@description('Name of the data collection rule.')
param dcrName string

@description('Object id of the identity that sends to the rule (the Functions app).')
param principalId string

@description('Role definition GUID of Monitoring Metrics Publisher (passed by main.bicep).')
param publisherRoleId string

@description('Whether the analytic rule runs.')
param ruleEnabled bool = true

@description('Tags of the data collection rule (the other resources here take none).')
param tags object

var tableName = 'PimwatchAlerts_CL'
var streamName = 'Custom-PimwatchAlerts'

// One row per alert delivery; the order and types of sinks/sentinel.py COLUMNS.
var columns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'AlertId', type: 'string' }
  { name: 'Detector', type: 'string' }
  { name: 'Severity', type: 'string' }
  { name: 'Title', type: 'string' }
  { name: 'Summary', type: 'string' }
  { name: 'PrincipalId', type: 'string' }
  { name: 'PrincipalUpn', type: 'string' }
  { name: 'PrincipalName', type: 'string' }
  { name: 'FirstSeen', type: 'datetime' }
  { name: 'LastSeen', type: 'datetime' }
  { name: 'Count', type: 'int' }
  { name: 'EventIds', type: 'dynamic' }
  { name: 'Context', type: 'dynamic' }
  { name: 'Entities', type: 'dynamic' }
  { name: 'Tactics', type: 'dynamic' }
  { name: 'Techniques', type: 'dynamic' }
  { name: 'Status', type: 'string' }
  { name: 'SchemaVersion', type: 'int' }
  { name: 'GroupId', type: 'string' }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// Enables Microsoft Sentinel on the workspace (a no-op where it is already enabled).
resource onboarding 'Microsoft.SecurityInsights/onboardingStates@2024-03-01' = {
  name: 'default'
  scope: workspace
  properties: {}
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    plan: 'Analytics'
    schema: {
      name: tableName
      columns: columns
    }
  }
}

resource dcr 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: dcrName
  location: location
  tags: tags
  kind: 'Direct'
  properties: {
    description: 'pimwatch alerts (Logs Ingestion API) into the PimwatchAlerts_CL table'
    streamDeclarations: {
      '${streamName}': {
        columns: columns
      }
    }
    destinations: {
      logAnalytics: [
        {
          workspaceResourceId: workspace.id
          name: 'sentinelWorkspace'
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          streamName
        ]
        destinations: [
          'sentinelWorkspace'
        ]
        transformKql: 'source'
        outputStream: 'Custom-${tableName}'
      }
    ]
  }
  dependsOn: [
    table
  ]
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dcr.id, principalId, publisherRoleId)
  scope: dcr
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', publisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Every 5 minutes, the alerts ingested in the last 10 (overlapping runs, so none falls between two):
// a row seen twice is grouped into the same incident by its AlertId. The filter is on ingestion
// time because TimeGenerated is the alert's event time, which can be older than the run while the
// pipeline catches up; the query period (1 day) bounds how old it may be.
// Entities are the alert's own (sinks/sentinel.py: objects with a type and Sentinel's identifiers,
// sorted by type and identity, a last text item counting those left out). mv-apply (on a copy, so
// Entities stays) finds, per row, the first IP and cloud application and the accounts; the account
// mapped besides the principal is the first that is not the principal (who acted, approved, was
// assigned...). A summarize without "by" gives one row for an empty list too: no alert is dropped.
// CloudApplication is mapped by Name: its AppId identifier is Defender for Cloud Apps' integer id,
// not an Entra application id. Roles (no Sentinel entity), tactics and
// techniques go to custom details: an analytic rule's own tactics are static (all pimwatch can raise).
var ruleQuery = '''
PimwatchAlerts_CL
| extend Ingested = ingestion_time()
| where Ingested > ago(10m)
| summarize arg_max(Ingested, *) by AlertId
| extend AlertSeverity = case(Severity in ("critical", "high"), "High", Severity == "medium", "Medium", Severity == "low", "Low", "Informational")
| extend AlertName = substring(Title, 0, 200)
| extend EntityList = Entities
| mv-apply with_itemindex = Index Entity = EntityList to typeof(dynamic) on (
    extend Type = tostring(Entity.type)
    | summarize Accounts = make_list_if(Index, Type == "account"), IpIndex = minif(Index, Type == "ip"), AppIndex = minif(Index, Type == "cloud-application"), RoleNames = make_list_if(tostring(Entity.name), Type == "role")
    )
| extend Accounts = array_sort_asc(Accounts)
| extend FirstAccount = Entities[toint(Accounts[0])]
| extend IsPrincipal = (isnotempty(PrincipalId) and tostring(FirstAccount.aadUserId) =~ PrincipalId) or (isnotempty(PrincipalUpn) and tostring(FirstAccount.upn) =~ PrincipalUpn)
| extend Account = iff(IsPrincipal, Entities[toint(Accounts[1])], FirstAccount)
| extend AccountAadUserId = tostring(Account.aadUserId), AccountUpn = tostring(Account.upn), AccountName = tostring(Account.displayName)
| extend IpAddress = iff(isnull(IpIndex), "", tostring(Entities[toint(IpIndex)].address))
| extend App = iff(isnull(AppIndex), dynamic(null), Entities[toint(AppIndex)])
| extend AppName = coalesce(tostring(App.name), tostring(App.appId), tostring(App.id))
| extend Roles = strcat_array(RoleNames, "; "), AlertTactics = strcat_array(Tactics, ","), AlertTechniques = strcat_array(Techniques, ",")
| project TimeGenerated, AlertId, Detector, Severity, AlertSeverity, AlertName, Title, Summary, PrincipalId, PrincipalUpn, PrincipalName, AccountAadUserId, AccountUpn, AccountName, IpAddress, AppName, Roles, AlertTactics, AlertTechniques, FirstSeen, LastSeen, Count, EventIds, Context, Entities, Status
'''

resource rule 'Microsoft.SecurityInsights/alertRules@2024-03-01' = {
  name: guid(workspace.id, 'pimwatch-alerts')
  scope: workspace
  kind: 'Scheduled'
  properties: {
    displayName: 'pimwatch: privileged identity alert'
    description: 'An alert of pimwatch (PIM activations, role assignments, break-glass use, ...) from the PimwatchAlerts_CL table. One Sentinel alert per pimwatch alert; alerts with the same AlertId join one incident.'
    enabled: ruleEnabled
    severity: 'High'
    query: ruleQuery
    queryFrequency: 'PT5M'
    queryPeriod: 'P1D'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionEnabled: false
    suppressionDuration: 'PT5H'
    // Static: every tactic a pimwatch detector declares. The alert's own are the AlertTactics detail.
    tactics: [
      'InitialAccess'
      'Persistence'
      'PrivilegeEscalation'
      'DefenseEvasion'
      'CredentialAccess'
      'Impact'
    ]
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
    alertDetailsOverride: {
      alertDisplayNameFormat: 'pimwatch: {{AlertName}}'
      alertDescriptionFormat: '{{Summary}}'
      alertSeverityColumnName: 'AlertSeverity'
    }
    customDetails: {
      PimwatchAlertId: 'AlertId'
      Detector: 'Detector'
      PimwatchSeverity: 'Severity'
      RecordCount: 'Count'
      Tactics: 'AlertTactics'
      Techniques: 'AlertTechniques'
      Roles: 'Roles'
    }
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          { identifier: 'AadUserId', columnName: 'PrincipalId' }
          { identifier: 'FullName', columnName: 'PrincipalUpn' }
          { identifier: 'DisplayName', columnName: 'PrincipalName' }
        ]
      }
      {
        entityType: 'Account'
        fieldMappings: [
          { identifier: 'AadUserId', columnName: 'AccountAadUserId' }
          { identifier: 'FullName', columnName: 'AccountUpn' }
          { identifier: 'DisplayName', columnName: 'AccountName' }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          { identifier: 'Address', columnName: 'IpAddress' }
        ]
      }
      {
        entityType: 'CloudApplication'
        fieldMappings: [
          { identifier: 'Name', columnName: 'AppName' }
        ]
      }
    ]
    incidentConfiguration: {
      createIncident: true
      groupingConfiguration: {
        enabled: true
        reopenClosedIncident: false
        lookbackDuration: 'P1D'
        matchingMethod: 'Selected'
        groupByEntities: []
        groupByAlertDetails: []
        groupByCustomDetails: [
          'PimwatchAlertId'
        ]
      }
    }
  }
  dependsOn: [
    onboarding
    table
  ]
}

output logsIngestionEndpoint string = dcr.properties.endpoints.logsIngestion
output dcrImmutableId string = dcr.properties.immutableId
output ruleId string = rule.id

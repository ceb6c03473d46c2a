// Microsoft Sentinel for pimwatch, in the resource group of the Sentinel workspace (main.bicep deploys it
// when sentinelWorkspaceName is set; docs/sentinel.md):
//   - the custom table PimwatchAlerts_CL (the columns of sinks/sentinel.py COLUMNS),
//   - a data collection rule of kind Direct (its own logs ingestion endpoint, no DCE) with the input
//     stream Custom-PimwatchAlerts that the sentinel sink sends to, and Monitoring Metrics Publisher on
//     it for the Functions app,
//   - a scheduled analytic rule that turns every pimwatch alert into a Sentinel alert and incident, with
//     its accounts and IP address mapped to entities.
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
// The actor (who did it) and the IP address are read from the alert's Context, under the keys the
// detectors use today; a column of entities from the sink would replace these lookups.
var ruleQuery = '''
PimwatchAlerts_CL
| extend Ingested = ingestion_time()
| where Ingested > ago(10m)
| summarize arg_max(Ingested, *) by AlertId
| extend AlertSeverity = case(Severity in ("critical", "high"), "High", Severity == "medium", "Medium", Severity == "low", "Low", "Informational")
| extend AlertName = substring(Title, 0, 200)
| extend ActorId = coalesce(tostring(Context.initiated_by.id), tostring(Context.actor.id), tostring(Context.changed_by.id), tostring(Context.elevated_by.id), tostring(Context.denied_by.id), tostring(Context.approver.id))
| extend ActorUpn = coalesce(tostring(Context.initiated_by.upn), tostring(Context.actor.upn), tostring(Context.changed_by.upn), tostring(Context.elevated_by.upn), tostring(Context.denied_by.upn), tostring(Context.approver.upn))
| extend IpAddress = coalesce(tostring(Context.ip_address), tostring(Context.ip), tostring(Context.initiated_by.ip), tostring(Context.actor.ip), tostring(Context.changed_by.ip), tostring(Context.elevated_by.ip), tostring(Context.denied_by.ip), tostring(Context.approver.ip))
| project TimeGenerated, AlertId, Detector, Severity, AlertSeverity, AlertName, Title, Summary, PrincipalId, PrincipalUpn, PrincipalName, ActorId, ActorUpn, IpAddress, FirstSeen, LastSeen, Count, EventIds, Context, Status
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
    tactics: [
      'PrivilegeEscalation'
      'Persistence'
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
          { identifier: 'AadUserId', columnName: 'ActorId' }
          { identifier: 'FullName', columnName: 'ActorUpn' }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          { identifier: 'Address', columnName: 'IpAddress' }
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

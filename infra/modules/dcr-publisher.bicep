// Monitoring Metrics Publisher for the Functions app on the data collection rule of the sentinel sink
// (Logs Ingestion API; docs/sentinel.md). A module so main.bicep can target the DCR's resource group.
targetScope = 'resourceGroup'

@description('Name of an existing data collection rule in this resource group.')
param dcrName string

@description('Object id of the identity that sends to the rule (the Functions app).')
param principalId string

@description('Role definition GUID (Monitoring Metrics Publisher, passed by main.bicep).')
param roleDefinitionId string

resource dcr 'Microsoft.Insights/dataCollectionRules@2022-06-01' existing = {
  name: dcrName
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dcr.id, principalId, roleDefinitionId)
  scope: dcr
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

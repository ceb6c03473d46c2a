// Parameters of main.bicep for `azd up` (azd sets AZURE_ENV_NAME; `azd env set NAME value` sets the
// PIMWATCH_* variables read below) and for `az deployment group create --parameters infra/main.bicepparam`.
// The region is the resource group's. A parameter left out keeps main.bicep's default; edit this file
// for the others (docs/deploy.md explains each one), e.g. sinkSecretSettings = ['TEAMS_WORKFLOW_URL'].
using 'main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', '')
param baseName = readEnvironmentVariable('PIMWATCH_BASE_NAME', 'pimwatch')
param tags = {
  owner: readEnvironmentVariable('PIMWATCH_OWNER_TAG', 'security-operations')
}
// Standard_LRS where the region has no availability zones.
param storageSkuName = readEnvironmentVariable('PIMWATCH_STORAGE_SKU', 'Standard_ZRS')
// Fixed once the hub exists (Standard tier): choose it before the first `azd up`.
param partitionCount = 4
param sinkSecretSettings = []
// A workspace with Microsoft Sentinel (in this resource group unless sentinelWorkspaceResourceGroup is
// added here): the table, data collection rule and analytic rule are created there. Empty: none.
param sentinelWorkspaceName = readEnvironmentVariable('PIMWATCH_SENTINEL_WORKSPACE', '')

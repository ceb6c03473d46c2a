// App settings that are Key Vault references: for each name in `settings`, the setting NAME refers to
// the secret of the same name with "_" replaced by "-" (Key Vault names allow no "_"). No resources;
// a module only so that main.bicep has no lambda (checkov's Bicep parser cannot read one).
targetScope = 'resourceGroup'

@description('The vault the references point to.')
param vaultName string

@description('Names of the app settings, e.g. ["TEAMS_WORKFLOW_URL"].')
param settings array

output references object = toObject(
  settings,
  setting => setting,
  setting => '@Microsoft.KeyVault(VaultName=${vaultName};SecretName=${replace(setting, '_', '-')})'
)

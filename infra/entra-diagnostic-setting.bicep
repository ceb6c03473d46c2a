// The Microsoft Entra diagnostic setting that streams the three log categories pimwatch reads to the
// hub of main.bicep. Tenant scope: `az deployment tenant create` (needs Owner at the root scope "/"
// and the Security Administrator Entra role), or create the same setting in the Entra admin center
// (docs/deploy.md, step 5). SignInLogs and NonInteractiveUserSignInLogs need Entra ID P1 or P2.
targetScope = 'tenant'

@description('Name of the diagnostic setting (unique in the tenant).')
param settingName string = 'pimwatch'

@description('The output diagnosticRuleId of main.bicep: a namespace-level rule with Listen, Send and Manage.')
param eventHubAuthorizationRuleId string

@description('The hub (main.bicep output eventHubName). Named, so every category goes to this one hub.')
param eventHubName string = 'entra-logs'

resource entraLogs 'microsoft.aadiam/diagnosticSettings@2017-04-01' = {
  name: settingName
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'AuditLogs'
        enabled: true
      }
      {
        category: 'SignInLogs'
        enabled: true
      }
      {
        category: 'NonInteractiveUserSignInLogs'
        enabled: true
      }
    ]
  }
}

output diagnosticSettingId string = entraLogs.id

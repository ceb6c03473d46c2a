#!/usr/bin/env bash
# Grant the Function App's managed identity the Graph application permissions posture reads with
# (docs/graph.md, "Permissions"). Run once, signed in with `az login` as a Privileged Role
# Administrator (or Global Administrator). Idempotent: an app role already assigned is left alone.
#
#   scripts/graph-consent.sh <managed identity object id> [--only "Perm.One Perm.Two"]
set -euo pipefail
usage() { echo "usage: $0 <managed identity (service principal) object id> [--only \"PERMISSION ...\"]" >&2; exit 2; }
[ $# -ge 1 ] || usage
principal=$1; shift
permissions="Organization.Read.All RoleManagement.Read.Directory RoleManagementPolicy.Read.Directory
RoleManagementPolicy.Read.AzureADGroup RoleAssignmentSchedule.Read.Directory RoleEligibilitySchedule.Read.Directory
GroupMember.Read.All PrivilegedEligibilitySchedule.Read.AzureADGroup User.Read.All Application.Read.All
RoleManagementAlert.Read.Directory Policy.Read.All UserAuthenticationMethod.Read.All AuditLog.Read.All Directory.Read.All"
if [ "${1:-}" = "--only" ]; then [ $# -eq 2 ] || usage; permissions=$2; fi
graph=https://graph.microsoft.com/v1.0
# Microsoft Graph's service principal in this tenant (its appId is the same everywhere).
resource=$(az rest --method get --url "$graph/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')" \
  --query id -o tsv)
have=$(az rest --method get --url "$graph/servicePrincipals/$principal/appRoleAssignments" \
  --query "value[?resourceId=='$resource'].appRoleId" -o tsv)
for permission in $permissions; do
  role=$(az rest --method get --url "$graph/servicePrincipals/$resource" \
    --query "appRoles[?value=='$permission' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)
  if [ -z "$role" ]; then echo "unknown application permission: $permission" >&2; exit 1; fi
  if grep -qx "$role" <<<"$have"; then echo "already granted: $permission"; continue; fi
  az rest --method post --url "$graph/servicePrincipals/$principal/appRoleAssignments" \
    --headers Content-Type=application/json \
    --body "{\"principalId\": \"$principal\", \"resourceId\": \"$resource\", \"appRoleId\": \"$role\"}" >/dev/null
  echo "granted: $permission"
done

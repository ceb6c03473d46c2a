"""Tenants for the local Graph (:mod:`pimwatch.graph.fake`): a compliant one, one that breaks every
check once, one without P2. Shapes as the Graph docs' examples (graph-and-report.md §2.1): policy
rules as in ``policyroot-list-rolemanagementpolicyassignments.md`` Ex. 2 (17 rules, ``@odata.type``,
``target``), a direct assignment as in ``rbacapplication-list-roleassignmentschedules.md`` (schedule
``createdUsing``/``createdDateTime`` null) and ``…-list-roleassignmentscheduleinstances.md``
(instance ``startDateTime`` null). Written as data, not copied: the docs' examples are shortened and
two are invalid JSON (trailing commas in the PIM-for-Groups eligibility and signIns examples).
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timedelta
from typing import Any

from pimwatch.detection.detector import DEFAULT_PRIVILEGED_ROLES
from pimwatch.detection.timeutil import iso

Json = dict[str, Any]
TENANT = "aaaabbbb-0000-4000-8000-00000000cafe"
GA = DEFAULT_PRIVILEGED_ROLES["Global Administrator"]
PRA = DEFAULT_PRIVILEGED_ROLES["Privileged Role Administrator"]
UA = DEFAULT_PRIVILEGED_ROLES["User Administrator"]
EXA = DEFAULT_PRIVILEGED_ROLES["Exchange Administrator"]
SPA = DEFAULT_PRIVILEGED_ROLES["SharePoint Administrator"]
APA = DEFAULT_PRIVILEGED_ROLES["Application Administrator"]
SECA = DEFAULT_PRIVILEGED_ROLES["Security Administrator"]
HDA = DEFAULT_PRIVILEGED_ROLES["Helpdesk Administrator"]
BILA = DEFAULT_PRIVILEGED_ROLES["Billing Administrator"]
AUTHA = DEFAULT_PRIVILEGED_ROLES["Authentication Administrator"]
READER = "4a5d8f65-41da-4de4-8968-e035b65339cf"  # Reports Reader: not privileged
SECOPS = "secops@contoso.com"
GROUP = "60bba733-f09d-49b7-8445-32369aa066b3"  # "User admins (PIM)", a role-assignable group


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _target(caller: str, level: str) -> Json:
    return {
        "caller": caller,
        "operations": ["all"],
        "level": level,
        "inheritableSettings": [],
        "enforcedSettings": [],
    }


def _expiration(rid: str, required: bool, duration: str) -> Json:
    caller, level = ("EndUser", "Assignment") if "EndUser" in rid else ("Admin", rid.rsplit("_", 1)[1])
    return {
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
        "id": rid,
        "isExpirationRequired": required,
        "maximumDuration": duration,
        "target": _target(caller, level),
    }


def _enablement(rid: str, enabled: list[str]) -> Json:
    caller, level = ("EndUser", "Assignment") if "EndUser" in rid else ("Admin", rid.rsplit("_", 1)[1])
    return {
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule",
        "id": rid,
        "enabledRules": enabled,
        "target": _target(caller, level),
    }


def _notification(rid: str, recipients: list[str]) -> Json:
    _, who, caller, level = rid.split("_")
    return {
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyNotificationRule",
        "id": rid,
        "notificationType": "Email",
        "recipientType": who,
        "notificationLevel": "All",
        "isDefaultRecipientsEnabled": True,
        "notificationRecipients": recipients,
        "target": _target(caller, level),
    }


def rules(tier: str = "other", secops: bool = True) -> list[Json]:
    """The 17 rules of a policy: ``high``/``medium`` meet the guide's tiers; ``other`` is the docs'
    Ex. 2 sample tenant (8 h, MFA + justification, no approval). ``secops``: the security team is an
    additional recipient of the admin notifications (what CISA 7.7-7.9 require)."""
    activation = {"high": "PT4H", "medium": "PT8H"}.get(tier, "PT8H")
    lifetime = {"high": "P180D", "medium": "P365D"}.get(tier, "P365D")
    required = tier in ("high", "medium")
    enabled = ["MultiFactorAuthentication", "Justification"] + (["Ticketing"] if tier == "high" else [])
    approvers = [
        {"@odata.type": "#microsoft.graph.groupMembers", "groupId": uid(900), "description": "PIM approvers"}
    ]
    extra = [SECOPS] if secops else []
    return [
        _expiration("Expiration_Admin_Eligibility", required, lifetime),
        _enablement("Enablement_Admin_Eligibility", []),
        _notification("Notification_Admin_Admin_Eligibility", extra),
        _notification("Notification_Requestor_Admin_Eligibility", []),
        _notification("Notification_Approver_Admin_Eligibility", []),
        _expiration("Expiration_Admin_Assignment", required, "P180D" if tier == "high" else lifetime),
        _enablement("Enablement_Admin_Assignment", ["Justification"]),
        _notification("Notification_Admin_Admin_Assignment", extra),
        _notification("Notification_Requestor_Admin_Assignment", []),
        _notification("Notification_Approver_Admin_Assignment", []),
        {
            "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule",
            "id": "Approval_EndUser_Assignment",
            "target": _target("EndUser", "Assignment"),
            "setting": {
                "isApprovalRequired": tier == "high",
                "isApprovalRequiredForExtension": False,
                "isRequestorJustificationRequired": True,
                "approvalMode": "SingleStage",
                "approvalStages": [
                    {
                        "approvalStageTimeOutInDays": 1,
                        "isApproverJustificationRequired": True,
                        "escalationTimeInMinutes": 0,
                        "isEscalationEnabled": False,
                        "primaryApprovers": approvers if tier == "high" else [],
                        "escalationApprovers": [],
                    }
                ],
            },
        },
        {
            "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyAuthenticationContextRule",
            "id": "AuthenticationContext_EndUser_Assignment",
            "isEnabled": False,
            "claimValue": None,
            "target": _target("EndUser", "Assignment"),
        },
        _expiration("Expiration_EndUser_Assignment", True, activation),
        _enablement("Enablement_EndUser_Assignment", enabled),
        _notification("Notification_Admin_EndUser_Assignment", extra),
        _notification("Notification_Requestor_EndUser_Assignment", []),
        _notification("Notification_Approver_EndUser_Assignment", []),
    ]


def _policy(scope: str, role: str, tier: str) -> Json:
    kind = "Group" if scope != "/" else "DirectoryRole"
    n = int(hashlib.sha256((scope + role).encode()).hexdigest()[:8], 16)  # stable whatever the hash seed
    pid = f"{kind}_{scope if kind == 'Group' else TENANT}_{uid(n)}"
    return {
        "id": f"{pid}_{role}",
        "policyId": pid,
        "scopeId": scope,
        "scopeType": kind,
        "roleDefinitionId": role,
        "policy": {
            "id": pid,
            "displayName": kind,
            "description": kind,
            "isOrganizationDefault": False,
            "scopeId": scope,
            "scopeType": kind,
            "lastModifiedDateTime": None,
            "lastModifiedBy": {"displayName": None, "id": None},
            "rules": rules(tier),
        },
    }


def _tier(role: str) -> str:
    return "high" if role in (GA, PRA) else "medium" if role in (UA, EXA) else "other"


class Tenant:
    """Builds the tenant dict :class:`pimwatch.graph.fake.FakeGraph` serves."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        roles = {**DEFAULT_PRIVILEGED_ROLES, "Reports Reader": READER}
        self.data: Json = {
            "tenantId": TENANT,
            "roleDefinitions": [
                {"id": rid, "templateId": rid, "displayName": name, "isBuiltIn": True}
                for name, rid in roles.items()
            ],
            "rolePolicies": [_policy("/", rid, _tier(rid)) for rid in roles.values()],
            "groupPolicies": {GROUP: [_policy(GROUP, "member", "medium"), _policy(GROUP, "owner", "medium")]},
            "roleAssignmentSchedules": [],
            "roleAssignmentScheduleInstances": [],
            "roleEligibilityScheduleInstances": [],
            "roleAssignmentScheduleRequests": [],
            "groups": {GROUP: {"members": [], "eligibilityScheduleInstances": []}},
            "directoryObjects": {
                GROUP: {
                    "@odata.type": "#microsoft.graph.group",
                    "id": GROUP,
                    "displayName": "User admins (PIM)",
                }
            },
            "subscribedSkus": [
                {
                    "skuId": "84a661c4-e949-4bd2-a560-ed7766fcaf2b",
                    "skuPartNumber": "AAD_PREMIUM_P2",
                    "capabilityStatus": "Enabled",
                    "servicePlans": [{"servicePlanName": "AAD_PREMIUM_P2", "provisioningStatus": "Success"}],
                }
            ],
            "conditionalAccessPolicies": [],
            "authenticationMethods": {},
            "signIns": [],
            "roleManagementAlerts": {"alerts": [], "alertConfigurations": []},
        }
        for name in (
            "RedundantAssignmentAlert",
            "StaleSignInAlert",
            "NoMfaOnRoleActivationAlert",
            "RolesAssignedOutsidePimAlert",
        ):
            aid = f"DirectoryRole_{TENANT}_{name}"
            self.data["roleManagementAlerts"]["alerts"].append(
                {
                    "id": aid,
                    "alertDefinitionId": aid,
                    "scopeId": "/",
                    "scopeType": "DirectoryRole",
                    "incidentCount": 0,
                    "isActive": False,
                    "lastScannedDateTime": iso(now - timedelta(hours=3)),
                }
            )
            self.data["roleManagementAlerts"]["alertConfigurations"].append(
                {
                    "id": aid,
                    "alertDefinitionId": aid,
                    "scopeId": "/",
                    "scopeType": "DirectoryRole",
                    "isEnabled": True,
                }
            )

    def ago(self, days: float) -> str:
        return iso(self.now - timedelta(days=days))

    def user(self, n: int, upn: str, **fields: Any) -> str:
        oid = uid(n)
        self.data["directoryObjects"][oid] = {
            "@odata.type": "#microsoft.graph.user",
            "id": oid,
            "displayName": upn.split("@")[0],
            "userPrincipalName": upn,
            "userType": "Member",
            "accountEnabled": True,
            "onPremisesSyncEnabled": None,
            "onPremisesImmutableId": None,
            **fields,
        }
        return oid

    def eligible(
        self, principal: str, role: str, since_days: float = 200, activated_days: float | None = 5
    ) -> None:
        self.data["roleEligibilityScheduleInstances"].append(
            {
                "id": f"{principal}-{role}-1-e",
                "principalId": principal,
                "roleDefinitionId": role,
                "directoryScopeId": "/",
                "appScopeId": None,
                "startDateTime": self.ago(since_days),
                "endDateTime": iso(self.now + timedelta(days=150)),
                "memberType": "Direct",
                "roleEligibilityScheduleId": f"{principal}-{role}",
            }
        )
        if activated_days is not None:
            self.data["roleAssignmentScheduleRequests"].append(
                {
                    "id": f"req-{principal}-{role}",
                    "action": "selfActivate",
                    "principalId": principal,
                    "roleDefinitionId": role,
                    "directoryScopeId": "/",
                    "status": "Provisioned",
                    "createdDateTime": self.ago(activated_days),
                    "justification": "ticket work",
                }
            )

    def active(self, principal: str, role: str, *, direct: bool = False) -> None:
        """A standing (``Assigned``, no expiration) assignment: through PIM, or ``direct`` (the
        role-assignments API: no ``createdUsing``, instance ``startDateTime`` null)."""
        sid = f"{principal}-{role}-1"
        start = self.ago(400)
        self.data["roleAssignmentSchedules"].append(
            {
                "id": sid,
                "principalId": principal,
                "roleDefinitionId": role,
                "directoryScopeId": "/",
                "appScopeId": None,
                "createdUsing": None if direct else sid,
                "createdDateTime": None if direct else start,
                "modifiedDateTime": None,
                "status": "Provisioned",
                "assignmentType": "Assigned",
                "memberType": "Direct",
                "scheduleInfo": {
                    "startDateTime": start,
                    "recurrence": None,
                    "expiration": {"type": "noExpiration", "endDateTime": None, "duration": None},
                },
            }
        )
        self.data["roleAssignmentScheduleInstances"].append(
            {
                "id": sid,
                "principalId": principal,
                "roleDefinitionId": role,
                "directoryScopeId": "/",
                "appScopeId": None,
                "startDateTime": None if direct else start,
                "endDateTime": None,
                "assignmentType": "Assigned",
                "memberType": "Direct",
                "roleAssignmentOriginId": sid,
                "roleAssignmentScheduleId": sid,
            }
        )

    def break_glass(self, n: int, upn: str, signed_in_days: float) -> str:
        oid = self.user(n, upn)
        self.active(oid, GA)
        self.data["authenticationMethods"][oid] = [
            {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod", "id": uid(700 + n)},
            {
                "@odata.type": "#microsoft.graph.fido2AuthenticationMethod",
                "id": uid(800 + n),
                "model": "YubiKey 5",
            },
        ]
        self.data["signIns"].append(
            {
                "id": f"signin-{oid}",
                "createdDateTime": self.ago(signed_in_days),
                "userId": oid,
                "userPrincipalName": upn,
                "appDisplayName": "Azure Portal",
                "status": {"errorCode": 0},
            }
        )
        return oid

    def rule(self, role: str, rule_id: str, **fields: Any) -> None:
        for pa in self.data["rolePolicies"]:
            if pa["roleDefinitionId"] == role:
                for r in pa["policy"]["rules"]:
                    if r["id"] == rule_id:
                        r.update(fields)

    def copy(self) -> Json:
        return copy.deepcopy(self.data)


BREAK_GLASS = ("bg1@contoso.com", "bg2@contoso.com")


def compliant(now: datetime) -> Tenant:
    """Every check passes: 5 Global Administrators (3 eligible, 2 break-glass), 6 other privileged
    administrators (one through a PIM group, one a PIM-eligible member of it), the guide's tiers."""
    t = Tenant(now)
    bg = [t.break_glass(1, BREAK_GLASS[0], 3), t.break_glass(2, BREAK_GLASS[1], 10)]
    t.data["conditionalAccessPolicies"] = [
        {
            "id": uid(600),
            "displayName": "Require MFA for administrators",
            "state": "enabled",
            "conditions": {"users": {"includeRoles": [GA], "excludeUsers": bg, "excludeGroups": []}},
        }
    ]
    for n, upn in ((11, "ada"), (12, "grace"), (13, "linus")):
        t.eligible(t.user(n, f"{upn}@contoso.com"), GA)
    for n, upn, role in (
        (21, "pra", PRA),
        (22, "ua", UA),
        (23, "exa", EXA),
        (24, "spa", SPA),
        (25, "apa", APA),
    ):
        t.eligible(t.user(n, f"{upn}@contoso.com"), role)
    t.data["roleEligibilityScheduleInstances"].append(
        {
            "id": f"{GROUP}-{UA}-1-e",
            "principalId": GROUP,
            "roleDefinitionId": UA,
            "directoryScopeId": "/",
            "startDateTime": t.ago(300),
            "endDateTime": None,
            "memberType": "Direct",
        }
    )
    member = t.user(31, "groupie@contoso.com")
    pim_member = t.user(32, "pimgroupie@contoso.com")
    t.data["groups"][GROUP]["members"] = [member]
    t.data["groups"][GROUP]["eligibilityScheduleInstances"] = [
        {
            "id": f"{GROUP}_member_{uid(32)}",
            "groupId": GROUP,
            "principalId": pim_member,
            "accessId": "member",
            "startDateTime": t.ago(30),
            "endDateTime": None,
            "memberType": "Direct",
        }
    ]
    return t


def violating(now: datetime) -> Tenant:
    """Each check fails exactly once (posture.license: see :func:`without_p2`)."""
    t = compliant(now)
    for n in range(14, 18):  # 9 Global Administrators: count (2-8) and ratio (9 / 7 > 1)
        t.eligible(t.user(n, f"extra{n}@contoso.com"), GA)
    t.active(t.user(41, "direct@contoso.com"), SECA, direct=True)  # permanent, and outside PIM
    t.rule(GA, "Expiration_EndUser_Assignment", maximumDuration="PT8H")  # drift: baseline PT4H
    t.rule(SECA, "Notification_Admin_EndUser_Assignment", notificationRecipients=[])  # nobody told
    for s in t.data["signIns"]:
        if s["userPrincipalName"] == BREAK_GLASS[1]:
            s["createdDateTime"] = t.ago(45)  # drill overdue
    t.eligible(t.user(42, "stale@contoso.com"), HDA, activated_days=None)  # never activated
    t.eligible(
        t.user(43, "hybrid@contoso.com", onPremisesSyncEnabled=True, onPremisesImmutableId="abc=="), BILA
    )
    t.eligible(t.user(44, "guest_fabrikam.com#EXT#@contoso.com", userType="Guest"), AUTHA)
    alert = t.data["roleManagementAlerts"]["alerts"][0]
    alert.update(isActive=True, incidentCount=2)
    return t


def without_p2(now: datetime) -> Tenant:
    t = compliant(now)
    t.data["subscribedSkus"] = [
        {
            "skuId": "078d2b04-f1bd-4111-bbd4-b4b1b354cef4",
            "skuPartNumber": "AAD_PREMIUM",
            "capabilityStatus": "Enabled",
            "servicePlans": [{"servicePlanName": "AAD_PREMIUM", "provisioningStatus": "Success"}],
        }
    ]
    return t

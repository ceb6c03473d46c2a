"""Generate pimwatch's bundled demo stream: one day (2026-03-10 UTC) of a mid-size Entra tenant.

Run ``python samples/make_demo.py``. It (re)writes ``samples/demo/day.eventhub.jsonl.gz``: Event Hub
messages, one per line, each ``{"records": [...]}`` with 50-100 diagnostic-setting records, the way an
Entra diagnostic setting delivers AuditLogs, SignInLogs, NonInteractiveUserSignInLogs and friends to
Event Hub. The output is byte-for-byte reproducible (fixed seed, fixed base date, gzip mtime 0).

What is in the day (Contoso, ~300 users, 31 PIM admins, two break-glass accounts):

* ~7,000 user sign-ins (interactive ``SignInLogs`` and the more numerous ``NonInteractiveUserSignInLogs``)
  with a diurnal curve, ~6 % interactive failures (50126, 50074, 53003, 500121, ...), a few
  ``ServicePrincipalSignInLogs`` and two ``MicrosoftGraphActivityLogs`` records (categories to skip);
* a few hundred ordinary audit records (Update user, Add member to group, User registered security
  info, Reset password (self-service), Update application, ...);
* PIM activation life cycles (requested, approval requested / approved, completed plus the Core
  Directory ``Add member to role`` by MS-PIM, expiry plus the Core Directory removal ~6 s earlier,
  early deactivation, an ``ActiveDurationTooShort`` failure, single denials, ``RoleAssignmentExists``
  retries, two settings changes that only strengthen policy); every background activation completes
  inside business hours (07:00-19:00 UTC);
* admin work around the role assignments: eligible and active assignments through PIM (``requested`` then
  ``completed``, active ones with their MS-PIM Core Directory write), direct Core Directory role writes
  by admins, PIM's own alert records (``Add member to role outside of PIM (permanent)``, ``Triggered`` /
  ``Resolve`` / ``Disable`` / ``Enable PIM alert``), Conditional Access policy updates (whole policy
  before and after in ``modifiedProperties``), a root elevation to User Access Administrator and
  Temporary Access Passes;
* twenty planted incidents (below), and the documented drift: lowercase ``level`` = "Informational",
  ``durationMs`` "0", a record without ``tenantId``, a trailing dot on a Core Directory activity name,
  a lowercase ``justification`` key, ``Level`` "4" as a string, a non-ISO ``time`` on a skipped
  category, a few minutes of lateness and a handful of exact duplicates (same ``properties.id``).

Record shapes follow the real public samples in ``/work/shared/samples`` (see SOURCES.md there):
01 (Core Directory ``Add member to role``, newer ``properties`` layout), 02/03 (PIM record: target order
Role, Request, User, Directory, Other and the ``additionalDetails`` keys), 04 (audit envelope), 05
(interactive sign-in), 06 (service-principal sign-in, string ``durationMs``, lowercase ``level``), 07
(``{"records": [...]}`` envelope), 10 (expiry pair: MS-PIM ``Remove member from role`` then "Azure AD
PIM" ``Remove member from role (PIM activation expired)`` ~6 s later, PIM id layout) and 11
(``Update role setting in PIM`` resultReason sentences, ``ActiveDurationTooShort``, MFA/approval
flags). The ``MicrosoftGraphActivityLogs`` shape follows a real record pinned in a public test
(rknightion/graph2otel). ``Update conditional access policy`` follows a real Event Hub record in a public
test script (service Conditional Access, category Policy, id ``IPCGraph_...``, the whole policy as JSON in
the ``ConditionalAccessPolicy`` modified property); the root elevation follows the Entra record documented
by Stratus Red Team (category AzureRBACRoleManagementElevateAccess, service "Azure RBAC (Elevated
Access)"); the Temporary Access Pass follows Microsoft's security operations guide (Admin registered
security info, Authentication Methods, UserManagement, resultReason "Admin registered temporary access
pass method for user"); ``Add member to role outside of PIM (permanent)`` follows sample 11
(RoleElevatedOutsidePimAlert, a new RoleAssignmentRequestId and StartTime at every scan). No key comes
from the fabricated examples listed in SOURCES.md. Illustrative, not captured: the failure text of a
policy-refused activation request, the denial comments, the target layout of PIM alert records (the
alert named on the first target, as the community pass-through rule reads it), the targets of the
elevation record and the ``Method`` detail of security-info records.
``Role.WellKnownObjectName`` values verified in public sources: TenantAdmins, UserAccountAdmins,
SecurityAdmins, PrivilegedRoleAdmins, HelpdeskAdmins, ExchangeServiceAdmins; the others are best guesses.
All IP addresses are from the documentation ranges (RFC 5737 / RFC 3849).

Planted incidents. Times are event times (``activityDateTime`` / ``createdDateTime``) on 2026-03-10 UTC.
Each time is followed by the record's ``properties.id``. The PIM ids end in the activity time as a Windows
FILETIME (as in sample 10), so the generator computes them from the fixed GUIDs and times in
``INCIDENT_A_*`` .. ``INCIDENT_D`` below.

a. Break-glass use by bg-admin01@contoso.onmicrosoft.com (c0ffee00-0000-4000-8000-00000000b001)
   -> breakglass.signin critical, breakglass.activity critical
   02:17:23  SignInLogs: interactive, single factor (Password), CA notApplied, from Hanoi (VN)
             0eaa1d86-e68e-4a2b-9b34-839d6fdaa0be
   02:24:12  NonInteractiveUserSignInLogs: token refresh
             5a979af0-674b-4b28-b9a8-b9dd66d22486
   02:28:40  AuditLogs: Reset password (by admin), initiated by bg-admin01, on yuki.cook@contoso.com
             Directory_03e84068-a72d-488e-b372-5ee4273d8a1d_BG7RP_417203391
   02:31:47  token refresh with the UPN upper-cased and no tenantId
             870d6078-c239-4d70-b78c-119e636053ce
   02:46:30  token refresh, sent twice (exact duplicate)
             47867404-f51a-483f-b397-9519afd634f1
   03:05:55  token refresh
             3b8cb50c-3754-4ab7-b38a-ba127a384b18
b. Activation burst by adm-mallory@contoso.com: 4 roles completed in 5 min 19 s
   -> activation.simultaneous high
   14:05:12  Exchange Administrator
             PIM_d42488e5-725d-4068-80d3-ccf0f47547d7_8c68a5a1-fb3d-4d4a-b9f0-b3d63012325a_134176251125410738
   14:06:40  SharePoint Administrator (delivered ~7 min late)
             PIM_04f0f6bc-065a-44a8-9c51-06c996b4957a_3143a7d9-f0d7-47d3-b509-257f061b9034_134176252001184422
   14:08:55  User Administrator (lowercase level, durationMs "0")
             PIM_c86b1b32-72cc-4f67-a4b5-3f93e0f43dca_d960e2dc-22cb-41d9-b7c4-e83770f78a53_134176253353348170
   14:10:31  Application Administrator
             PIM_2aacad4d-f27c-4549-b23c-af57ed9275f1_7d2ca942-b11c-4b77-8531-0e53fd345d1a_134176254319071537
c. Repeated failures of adm-trudy@contoso.com: 4 in 15 min 21 s -> activation.repeated_failure high
   10:29:41  request denied (Global Administrator) by adm-peggy
             PIM_de7b95f7-4095-4569-b1d6-c3f5927fcf25_40c0c0d0-bbec-4746-8799-18c1cadda4bb_134176121813307465
   10:36:52  request denied (Privileged Role Administrator) by adm-peggy, delivered ~6 min late
             PIM_1122e435-620c-4d5b-879d-a5c2b6f5dc6c_b36fb90b-1413-4387-b2f0-807516d3a13d_134176126120114839
   10:41:18  requested (Security Administrator) with result failure (policy validation)
             PIM_26063e8c-5163-461e-9d0a-7f422edb5202_5e0b81ba-1eee-4eda-969d-2298b7df7e0f_134176128786590217
   10:45:02  PIM activation request expired (Global Administrator, requested yesterday), Level "4"
             PIM_2da6cbae-df53-4ef9-96fb-d8106b1daf47_19f47867-099b-48b3-9055-6c14f80bffb1_134176131024473302
d. Weakening settings changes by adm-sybil@contoso.com
   19:41:07  Global Administrator: 24 h max duration, MFA, approval and justification disabled
             -> settings.changed critical
             PIM_3cbe5c49-8b19-4a14-a48e-03af3058448b_dc3d8993-e61d-4368-9eee-7f333f55f24e_134176452672839016
   19:44:29  group PIM-Tier0-Server-Admins (GroupManagement): ticket info requirement disabled
             -> settings.changed high
             PIM_1b308224-41b2-4b79-9752-1ceedd74c63e_61359cd4-cf3c-4a18-baae-d489b68a72ff_134176454696015504

e.-t. Incidents for the assignment, activation-pattern, approval, PIM-alert, Conditional Access and
   credential detectors: their times are the ``INCIDENT_E_*`` .. ``INCIDENT_T_*`` constants below and their
   ids come from ``planted()`` (fixed GUIDs), so they too are independent of the noise.
   e  10:22 adm-chuck adds Privileged Role Administrator to his everyday account outside PIM, and at
      10:31 disables the PIM alert "Roles are being assigned outside of Privileged Identity Management"
      -> assignment.outside_pim, assignment.permanent, assignment.privileged, pim.alert_tampering (high)
   f  06:01, 08:03, 10:05 PIM's scan re-reports svc-mailflow's standing Exchange Administrator
      -> assignment.outside_pim high (one alert, count 3)
   g  11:05 adm-peggy makes adm-xavier a permanent Global Administrator
      -> assignment.permanent high, assignment.privileged high
   h  11:40 adm-xavier elevates to User Access Administrator at the Azure root -> elevation.root_access
   i  12:14 adm-xavier puts CA003 (admin MFA) in report-only -> conditional_access.weakened high
   j  12:07 and 14:09 PIM: "There are too many global administrators" -> pim.builtin_alert (PIM's low)
   k  14:19 adm-faythe makes a Fabrikam guest eligible for Application Administrator
      -> assignment.privileged high
   l  15:36-16:09 adm-wendy makes 5 people eligible for Helpdesk Administrator
      -> assignment.bulk high (+ assignment.privileged high for each)
   m  17:06 adm-uma makes herself an active Intune Administrator -> assignment.self high
   n  12:02, 13:10, 14:26 adm-yasmin activates Exchange Administrator -> activation.too_frequent medium
   o  23:10 adm-quentin activates SharePoint Administrator -> activation.off_hours medium
   p  17:08 adm-lena's high-risk sign-in, 17:28 her Security Administrator request
      -> activation.risky_session high
   q  15:02 adm-nora's Global Administrator request approved only at 15:52, 17:41 adm-hugo's never
      -> approval.overdue medium (nora's resolved, hugo's open)
   r  16:42 adm-victor approves his own Global Administrator request -> approval.self_approved critical
   s  14:31 adm-peggy issues a Temporary Access Pass to adm-judy -> credentials.privileged_changed high
   t  18:21 adm-niaj activates Intune Administrator for the first time -> activation.first_time low
   Single denials (adm-oscar, adm-rupert, adm-trudy's two) -> activation.denied low each; bg-admin02's
   re-created permanent Global Administrator assignment (11:09) -> breakglass.activity critical (one
   alert, count 3: requested, completed, MS-PIM write) and assignment.privileged high, not
   assignment.permanent.

Near misses that must NOT alert: adm-grace activates 2 roles in 8 min
(one of them delivered twice, so only a tool without de-duplication counts 3); adm-ivan activates 3 roles
over 2 h 10 min; adm-judy gets 3 ``RoleAssignmentExists`` failures in 11 min; adm-oscar and adm-rupert get
one denial each; adm-heidi (Helpdesk) resets passwords during office hours; two settings changes by
adm-walter only strengthen policy; the MS-PIM Core Directory writes of every activation and PIM
assignment; adm-peggy's ``Enable PIM alert`` and ``Resolve PIM alert``; a failed ``Add eligible member
to role in PIM requested (timebound)`` and a Reports Reader eligibility (not privileged); adm-faythe's 3
eligible User Administrators (bulk threshold 5); adm-carol's 2 SharePoint activations (threshold 3);
adm-lena's morning sign-in and activation; approvals within 15 minutes; adm-olivia's report-only switch
of a user-group-only policy (CA004) and rename of a report-only pilot policy (CA010); adm-heidi's
Temporary Access Pass for an ordinary user and the users' self-service security-info registrations;
adm-quentin's morning SharePoint activation (so 23:10 is not a first activation).
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def fixed_guid(label: str) -> str:
    """A stable, random-looking GUID for a named tenant object (independent of the noise generator)."""
    h = f"{random.Random(f'pimwatch-demo:{label}').getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


SEED = 20260310
BASE = datetime(2026, 3, 10, tzinfo=UTC)
DAY = 24 * 3600
TICKS = 10_000_000  # 100 ns ticks per second (the 7-decimal timestamps Entra writes)
FILETIME_1970 = 11_644_473_600 * TICKS  # 1601-01-01 -> 1970-01-01 in 100 ns ticks
BASE_FILETIME = FILETIME_1970 + int(BASE.timestamp()) * TICKS

TENANT_ID = "7d1c7a44-2b7e-4f0e-9d51-7c2a3d9e8b10"
TENANT_NAME = "Contoso"
RESOURCE_ID = f"/tenants/{TENANT_ID}/providers/Microsoft.aadiam"
DOMAIN = "contoso.com"
OUT = Path(__file__).resolve().parent / "demo" / "day.eventhub.jsonl.gz"

PIM_SYSTEM_USER: Record = {
    "id": "9dfd627f-bdc5-4b1c-af9d-c85097fdeff8",
    "displayName": "Azure AD PIM",
    "userPrincipalName": None,
    "ipAddress": None,
    "roles": [],
}
MS_PIM_APP = {
    "appId": None,
    "displayName": "MS-PIM",
    "servicePrincipalId": fixed_guid("sp:MS-PIM"),
    "servicePrincipalName": None,
}
HR_SYNC_APP_ID = fixed_guid("app:Contoso HR Sync")
DEFAULT_USER_WID = "b79fbf4d-3ef9-4689-8143-76b194e85509"
PRA_TEMPLATE = "e8611ab8-c189-46e8-94e1-60213ab1f814"


@dataclass(frozen=True)
class Role:
    name: str
    template_id: str
    well_known: str
    approval: bool = False  # this tenant's PIM policy requires approval for activation


ROLES = {
    r.name: r
    for r in (
        Role("Global Administrator", "62e90394-69f5-4237-9190-012177145e10", "TenantAdmins", approval=True),
        Role("Privileged Role Administrator", PRA_TEMPLATE, "PrivilegedRoleAdmins", approval=True),
        Role(
            "Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d", "SecurityAdmins", approval=True
        ),
        Role("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1", "UserAccountAdmins"),
        Role("Helpdesk Administrator", "729827e3-9c14-49f7-bb1b-9608f156bbb8", "HelpdeskAdmins"),
        Role("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de", "ExchangeServiceAdmins"),
        Role("SharePoint Administrator", "f28a1f50-f6e7-4571-818b-6a12f2af6b6c", "SharePointServiceAdmins"),
        Role(
            "Application Administrator", "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "ApplicationAdministrators"
        ),
        Role("Intune Administrator", "3a2c62db-5318-420d-8d74-23affee5d9d5", "IntuneServiceAdmins"),
        Role("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf", "ReportsReaders"),
    )
}

# (city, state, country, lat, lon, ASN, UTC offset on 2026-03-10 (US already on DST), weight)
PLACES = (
    ("Seattle", "Washington", "US", 47.6062, -122.3321, 20115, -7, 18),
    ("New York", "New York", "US", 40.7128, -74.006, 7922, -4, 22),
    ("Chicago", "Illinois", "US", 41.8781, -87.6298, 7018, -5, 8),
    ("London", "England", "GB", 51.5072, -0.1276, 2856, 0, 20),
    ("Dublin", "Dublin", "IE", 53.3498, -6.2603, 5466, 0, 6),
    ("Berlin", "Berlin", "DE", 52.52, 13.405, 3320, 1, 10),
    ("Kraków", "Malopolskie", "PL", 50.0647, 19.945, 5617, 1, 8),
    ("Paris", "Ile-De-France", "FR", 48.8566, 2.3522, 3215, 1, 8),
)
UNUSUAL_PLACE = ("Hanoi", "Ha Noi", "VN", 21.0285, 105.8542, 45899, 7, 0)

FIRST = (
    "Adele",
    "Alex",
    "Allan",
    "Amara",
    "Ben",
    "Chloe",
    "Christie",
    "Daniel",
    "Debra",
    "Diego",
    "Elena",
    "Emily",
    "Ewa",
    "Fatima",
    "Finn",
    "Grady",
    "Hannah",
    "Henrietta",
    "Irvin",
    "Isaiah",
    "Jakub",
    "Johanna",
    "Joni",
    "Jonas",
    "Katarzyna",
    "Lars",
    "Lee",
    "Lidia",
    "Liam",
    "Lynne",
    "Marta",
    "Megan",
    "Miriam",
    "Nestor",
    "Noah",
    "Olga",
    "Patti",
    "Pradeep",
    "Priya",
    "Raj",
    "Sofia",
    "Tomasz",
    "Yuki",
    "Zoë",
    "José",
)
LAST = (
    "Archie",
    "Bauer",
    "Brown",
    "Chen",
    "Cook",
    "Dubois",
    "Fischer",
    "Garcia",
    "Holt",
    "Kowalski",
    "Lopez",
    "Martin",
    "Mueller",
    "Murphy",
    "Nguyen",
    "Novak",
    "O'Brien",
    "Patel",
    "Rossi",
    "Sherman",
    "Silva",
    "Smith",
    "Vance",
    "Wilber",
    "Wilkins",
    "Wójcik",
    "Núñez",
)
ASCII_FOLD = str.maketrans({"ë": "e", "é": "e", "ó": "o", "ú": "u", "ñ": "n", "'": ""})

# (appDisplayName, appId, resourceDisplayName, resourceId, clientAppUsed, interactive weight, NI weight)
APPS = (
    (
        "Microsoft Teams",
        "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
        "Microsoft Teams Services",
        "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
        "Mobile Apps and Desktop clients",
        25,
        30,
    ),
    (
        "Microsoft Office",
        "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        "Office 365 Exchange Online",
        "00000002-0000-0ff1-ce00-000000000000",
        "Mobile Apps and Desktop clients",
        20,
        25,
    ),
    (
        "OfficeHome",
        "4765445b-32c6-49b0-83e6-1d93765276ca",
        "OfficeHome",
        "4765445b-32c6-49b0-83e6-1d93765276ca",
        "Browser",
        15,
        4,
    ),
    (
        "Outlook Mobile",
        "27922004-5251-4030-b22d-91ecd9a37ea4",
        "Office 365 Exchange Online",
        "00000002-0000-0ff1-ce00-000000000000",
        "Mobile Apps and Desktop clients",
        10,
        18,
    ),
    (
        "Microsoft Authentication Broker",
        "29d9ed98-a469-4536-ade2-f981bc1d605e",
        "Microsoft Graph",
        "00000003-0000-0000-c000-000000000000",
        "Mobile Apps and Desktop clients",
        8,
        14,
    ),
    (
        "Office 365 SharePoint Online",
        "00000003-0000-0ff1-ce00-000000000000",
        "Office 365 SharePoint Online",
        "00000003-0000-0ff1-ce00-000000000000",
        "Browser",
        10,
        6,
    ),
    (
        "Azure Portal",
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "Windows Azure Service Management API",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "Browser",
        2,
        1,
    ),
    (
        "My Signins",
        "19db86c3-b2b9-44cc-b339-36da233a3be2",
        "My Signins",
        "19db86c3-b2b9-44cc-b339-36da233a3be2",
        "Browser",
        2,
        0,
    ),
)
AZURE_PORTAL = APPS[6]
GRAPH_PS = (
    "Microsoft Graph Command Line Tools",
    "14d82eec-204b-4c2f-b7e8-296a70dab67e",
    "Microsoft Graph",
    "00000003-0000-0000-c000-000000000000",
    "Mobile Apps and Desktop clients",
    0,
    0,
)

# (operatingSystem, browser, userAgent)
DEVICES = (
    (
        "Windows10",
        "Edge 133.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/133.0.0.0 Safari/537.36 Edg/133.0.0.0",
    ),
    (
        "Windows10",
        "Rich Client 4.66.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/130.0.0.0 Safari/537.36 Teams/25031.805.3440",
    ),
    (
        "MacOs",
        "Safari 18.3",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.3 Safari/605.1.15",
    ),
    (
        "Ios",
        "Mobile Safari 18.3",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148",
    ),
    (
        "Android",
        "Chrome Mobile 133.0.6943",
        "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/133.0.6943.89 Mobile Safari/537.36",
    ),
)

# (errorCode, failureReason, weight)
INTERACTIVE_FAILURES = (
    (50126, "Error validating credentials due to invalid username or password.", 35),
    (50074, "Strong Authentication is required.", 20),
    (50140, "This error occurred due to 'Keep me signed in' interrupt when the user was signing in.", 15),
    (
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token "
        "issuance.",
        10,
    ),
    (500121, "Authentication failed during strong authentication request.", 12),
    (
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a new location, "
        "you must use multi-factor authentication to access.",
        8,
    ),
)
NONINTERACTIVE_FAILURES = (
    (
        70044,
        "The session has expired or is invalid due to sign-in frequency checks by conditional access.",
        40,
    ),
    (50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed.", 30),
    (50133, "Session is invalid due to expiration or recent password change.", 20),
    (
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token "
        "issuance.",
        10,
    ),
)

# Conditional Access policies of the tenant: (id, displayName, grant controls). Break-glass accounts are
# excluded from all of them (older guidance), so their sign-ins show notApplied.
CA_POLICIES = (
    (fixed_guid("ca:CA001"), "CA001: Require MFA for all users", ["Mfa"]),
    (fixed_guid("ca:CA002"), "CA002: Block legacy authentication", ["Block"]),
    (
        fixed_guid("ca:CA003"),
        "CA003: Require phishing-resistant MFA for admins",
        ["AuthenticationStrength"],
    ),
    (
        fixed_guid("ca:CA004"),
        "CA004: Require compliant device for Office 365",
        ["RequireCompliantDevice"],
    ),
)

# --- Planted incidents: fixed ids and times (independent of the background noise) ----------------
BG_ADMIN01 = "c0ffee00-0000-4000-8000-00000000b001"
BG_ADMIN02 = "c0ffee00-0000-4000-8000-00000000b002"  # no activity at all: must produce no alert
Clock = tuple[int, int, float]  # (hour, minute, second) on the demo day
# bg-admin01: the interactive sign-in, the token refreshes (id, time, UPN casing) and the password reset
INCIDENT_A_SIGNIN: tuple[str, Clock] = ("0eaa1d86-e68e-4a2b-9b34-839d6fdaa0be", (2, 17, 23.4181592))
INCIDENT_A_REFRESH: tuple[tuple[str, Clock, str], ...] = (
    ("5a979af0-674b-4b28-b9a8-b9dd66d22486", (2, 24, 12.0937114), "lower"),
    ("870d6078-c239-4d70-b78c-119e636053ce", (2, 31, 47.5516308), "UPPER"),  # also: no tenantId
    ("47867404-f51a-483f-b397-9519afd634f1", (2, 46, 30.2270061), "lower"),  # also: sent twice
    ("3b8cb50c-3754-4ab7-b38a-ba127a384b18", (3, 5, 55.8843320), "lower"),
)
# (correlationId, id suffix, time) of the Core Directory "Reset password (by admin)"
INCIDENT_A_RESET: tuple[str, str, Clock] = (
    "03e84068-a72d-488e-b372-5ee4273d8a1d",
    "BG7RP_417203391",
    (2, 28, 40.6627405),
)
# adm-mallory: (role, request time, completed time, correlationId, second GUID of the PIM id)
INCIDENT_B = (
    (
        "Exchange Administrator",
        (14, 4, 31.2099121),
        (14, 5, 12.5410738),
        "d42488e5-725d-4068-80d3-ccf0f47547d7",
        "8c68a5a1-fb3d-4d4a-b9f0-b3d63012325a",
    ),
    (
        "SharePoint Administrator",
        (14, 6, 2.7712040),
        (14, 6, 40.1184422),  # delivered ~7 min late
        "04f0f6bc-065a-44a8-9c51-06c996b4957a",
        "3143a7d9-f0d7-47d3-b509-257f061b9034",
    ),
    (
        "User Administrator",
        (14, 8, 20.0552913),
        (14, 8, 55.3348170),  # lowercase level, durationMs "0"
        "c86b1b32-72cc-4f67-a4b5-3f93e0f43dca",
        "d960e2dc-22cb-41d9-b7c4-e83770f78a53",
    ),
    (
        "Application Administrator",
        (14, 9, 50.4406281),
        (14, 10, 31.9071537),
        "2aacad4d-f27c-4549-b23c-af57ed9275f1",
        "7d2ca942-b11c-4b77-8531-0e53fd345d1a",
    ),
)
# adm-trudy: (kind, role, time, correlationId, second GUID of the PIM id)
INCIDENT_C = (
    (
        "denied",
        "Global Administrator",
        (10, 29, 41.3307465),
        "de7b95f7-4095-4569-b1d6-c3f5927fcf25",
        "40c0c0d0-bbec-4746-8799-18c1cadda4bb",
    ),
    (
        "denied",
        "Privileged Role Administrator",
        (10, 36, 52.0114839),  # delivered ~6 min late
        "1122e435-620c-4d5b-879d-a5c2b6f5dc6c",
        "b36fb90b-1413-4387-b2f0-807516d3a13d",
    ),
    (
        "failed",
        "Security Administrator",
        (10, 41, 18.6590217),
        "26063e8c-5163-461e-9d0a-7f422edb5202",
        "5e0b81ba-1eee-4eda-969d-2298b7df7e0f",
    ),
    (
        "expired",
        "Global Administrator",
        (10, 45, 2.4473302),  # Level "4" as a string
        "2da6cbae-df53-4ef9-96fb-d8106b1daf47",
        "19f47867-099b-48b3-9055-6c14f80bffb1",
    ),
)
GA_WEAKENING = (
    "Setting changes in this session: Maximum activation duration updated to 24:00:00. "
    "MFA on activation requirement disabled. Approval disabled. "
    "Justification on activation requirement disabled."
)
GROUP_WEAKENING = "Setting changes in this session: Ticket info requirement disabled."
TIER0_GROUP = (fixed_guid("group:PIM-Tier0-Server-Admins"), "PIM-Tier0-Server-Admins")
MEMBER_ROLE = Role("Member", fixed_guid("pim-group-role:Member"), "")  # PIM for Groups "role"
# adm-sybil: (category, time, correlationId, second GUID of the PIM id, resultReason)
INCIDENT_D = (
    (
        "RoleManagement",
        (19, 41, 7.2839016),
        "3cbe5c49-8b19-4a14-a48e-03af3058448b",
        "dc3d8993-e61d-4368-9eee-7f333f55f24e",
        GA_WEAKENING,
    ),
    (
        "GroupManagement",
        (19, 44, 29.6015504),
        "1b308224-41b2-4b79-9752-1ceedd74c63e",
        "61359cd4-cf3c-4a18-baae-d489b68a72ff",
        GROUP_WEAKENING,
    ),
)


def planted(label: str) -> tuple[str, str]:
    """(correlationId, second GUID) of a planted record: fixed, independent of the background noise."""
    return fixed_guid(f"planted:{label}:corr"), fixed_guid(f"planted:{label}:other")


# Incidents e-t (issue 3): the event time of each planted record. Their ids come from planted().
OUTSIDE_PIM_ALERT = "Roles are being assigned outside of Privileged Identity Management"
OUTSIDE_PIM_DEFINITION = "RolesAssignedOutsidePimAlert"
TOO_MANY_GA_ALERT = "There are too many global administrators"
TOO_MANY_GA_DEFINITION = "TooManyGlobalAdminsAssignedToTenantAlert"
ELEVATE_ACCESS = "User has elevated their access to User Access Administrator for their Azure Resources"
TAP_REASON = "Admin registered temporary access pass method for user"
# e. adm-chuck grants Privileged Role Administrator to his everyday account outside PIM, then
#    disables the PIM alert that would report it
INCIDENT_E_ADD: Clock = (10, 22, 14.6120447)
INCIDENT_E_DISABLE: Clock = (10, 31, 40.2093318)
# f. PIM's scan re-reports a legacy standing Exchange Administrator assignment (svc-mailflow) 3 times
INCIDENT_F_SCANS: tuple[Clock, ...] = ((6, 1, 37.5501203), (8, 3, 52.1180735), (10, 5, 11.9034116))
# g. adm-peggy makes adm-xavier a permanent (active) Global Administrator
INCIDENT_G_PERMANENT: Clock = (11, 5, 2.7719046)
INCIDENT_G_BREAK_GLASS: Clock = (11, 9, 44.0795170)  # look-alike: the same for bg-admin02
# h. adm-xavier elevates his access to User Access Administrator at the Azure root
INCIDENT_H_ELEVATE: Clock = (11, 40, 17.3381520)
# i. adm-xavier puts the admin MFA policy (CA003) in report-only mode
INCIDENT_I_CA: Clock = (12, 14, 55.0842771)
# j. PIM: "There are too many global administrators", triggered at two scans
INCIDENT_J_TRIGGERED: tuple[Clock, ...] = ((12, 7, 31.4410982), (14, 9, 40.7736615))
# k. adm-faythe makes a Fabrikam guest eligible for Application Administrator
INCIDENT_K_GUEST: Clock = (14, 19, 5.2214470)
# l. adm-wendy makes 5 service-desk staff eligible for Helpdesk Administrator in 34 minutes
INCIDENT_L_BULK: tuple[Clock, ...] = (
    (15, 36, 12.4410087),
    (15, 43, 40.1107362),
    (15, 51, 5.8874190),
    (15, 58, 27.3302514),
    (16, 9, 50.6681733),
)
# m. adm-uma assigns herself Intune Administrator (active, time-bound)
INCIDENT_M_SELF: Clock = (17, 6, 52.9017734)
# n. adm-yasmin activates Exchange Administrator 3 times in 2 h 24 min, 30 minutes each
INCIDENT_N_ACTIVATIONS: tuple[tuple[Clock, Clock], ...] = (
    ((12, 1, 44.1205517), (12, 2, 20.3390014)),
    ((13, 10, 3.5519328), (13, 10, 41.0672295)),
    ((14, 25, 31.8006127), (14, 26, 9.2294770)),
)
# o. adm-quentin activates SharePoint Administrator at night
INCIDENT_O_OFF_HOURS: tuple[Clock, Clock] = ((23, 9, 48.0311265), (23, 10, 26.5528003))
# p. adm-lena: a high-risk sign-in, then a Security Administrator activation request 20 min later
#    Her morning activation is the first one of the day: activation.first_time starts learning there.
INCIDENT_P_MORNING: tuple[Clock, Clock] = ((7, 1, 30.6472190), (7, 2, 5.9120385))
INCIDENT_P_RISKY_SIGNIN: tuple[str, Clock] = ("6f0d2c8e-93b1-4a57-8e2c-51d4b7a90c13", (17, 8, 21.6604410))
INCIDENT_P_REQUEST: Clock = (17, 28, 40.3117905)
# q. adm-nora's Global Administrator request waits 50 min for approval; adm-hugo's never gets one
INCIDENT_Q_LATE: tuple[Clock, float] = ((15, 2, 30.5519046), 3011.0)  # (request, approver's delay in s)
INCIDENT_Q_UNDECIDED: Clock = (17, 41, 12.0886301)
# r. adm-victor approves his own Global Administrator request
INCIDENT_R_SELF_APPROVED: tuple[Clock, float] = ((16, 40, 5.7718245), 166.4)
# s. adm-peggy issues a Temporary Access Pass to adm-judy (User Administrator since 12:40)
INCIDENT_S_TAP: Clock = (14, 31, 26.1903377)
# t. adm-niaj activates the Intune Administrator directory role for the first time (after the demo
#    config's 11-hour learning period of activation.first_time, which starts at 07:02:05)
INCIDENT_T_FIRST_TIME: tuple[Clock, Clock] = ((18, 21, 9.4417730), (18, 21, 47.8093362))


# --- time helpers ---------------------------------------------------------------------------------
def at(h: int, m: int, s: float = 0.0) -> int:
    """Ticks since BASE for a wall-clock time on the demo day."""
    return round(((h * 60 + m) * 60 + s) * TICKS)


def hms(t: Clock) -> int:
    return at(*t)


def iso(t: int, zulu: bool = True) -> str:
    sec, frac = divmod(t, TICKS)
    stamp = (BASE + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:07d}" + ("Z" if zulu else "+00:00")


def us_style(t: int) -> str:
    """The non-ISO form seen in real traffic: ``3/10/2026 4:12:09 AM``."""
    d = BASE + timedelta(seconds=t // TICKS)
    hour = d.hour % 12 or 12
    return f"{d.month}/{d.day}/{d.year} {hour}:{d.minute:02d}:{d.second:02d} {'AM' if d.hour < 12 else 'PM'}"


def pim_id(corr: str, other: str, t: int) -> str:
    """PIM audit ids look like ``PIM_<guid>_<guid>_<activity time as FILETIME>`` (sample 10)."""
    return f"PIM_{corr}_{other}_{BASE_FILETIME + t}"


@dataclass
class Person:
    id: str
    upn: str
    name: str
    place: tuple[Any, ...]
    ip: str
    device: int
    device_id: str
    admin_of: Person | None = None  # for adm- accounts: the person's everyday account
    eligible: tuple[str, ...] = ()

    def initiator(self) -> dict[str, Any]:
        return {
            "user": {
                "id": self.id,
                "displayName": self.name,
                "userPrincipalName": self.upn,
                "ipAddress": self.ip,
                "roles": [],
            }
        }

    def target(self) -> Record:
        return {
            "id": self.id,
            "displayName": self.name,
            "type": "User",
            "userPrincipalName": self.upn,
            "modifiedProperties": [],
            "administrativeUnits": [],
        }


@dataclass
class Item:
    deliver: int  # when the record reaches the hub (orders the stream)
    seq: int
    record: Record


# (short name, last name, home place index, eligible roles)
ADMINS = (
    ("alice", "Schmidt", 5, ("User Administrator", "Helpdesk Administrator")),
    ("bob", "Okafor", 3, ("Exchange Administrator", "Reports Reader")),
    ("carol", "Lindqvist", 4, ("SharePoint Administrator", "Reports Reader")),
    ("dave", "Moreau", 7, ("Intune Administrator", "Helpdesk Administrator")),
    ("erin", "Walsh", 1, ("Security Administrator", "Reports Reader")),
    ("frank", "Kowalczyk", 6, ("Application Administrator", "User Administrator")),
    ("grace", "Hopper", 1, ("Exchange Administrator", "SharePoint Administrator", "Helpdesk Administrator")),
    ("heidi", "Lang", 5, ("Helpdesk Administrator", "User Administrator")),
    ("ivan", "Petrov", 6, ("Intune Administrator", "Reports Reader", "Application Administrator")),
    ("judy", "Tran", 0, ("User Administrator", "Helpdesk Administrator")),
    (
        "mallory",
        "Fischer",
        3,
        (
            "Exchange Administrator",
            "SharePoint Administrator",
            "User Administrator",
            "Application Administrator",
            "Security Administrator",
        ),
    ),
    ("niaj", "Rahman", 3, ("Intune Administrator",)),
    ("olivia", "Brandt", 5, ("Security Administrator", "Global Administrator")),
    ("oscar", "Delgado", 2, ("Exchange Administrator", "Security Administrator")),
    ("peggy", "Sullivan", 1, ("Privileged Role Administrator", "Global Administrator")),
    ("rupert", "Hale", 0, ("Application Administrator", "Global Administrator")),
    ("sybil", "Marsh", 3, ("Privileged Role Administrator",)),
    ("trent", "Iverson", 4, ("SharePoint Administrator", "Exchange Administrator")),
    ("trudy", "Kane", 1, ("Global Administrator", "Privileged Role Administrator", "Security Administrator")),
    ("victor", "Osei", 0, ("Privileged Role Administrator", "Global Administrator")),
    ("walter", "Brooks", 3, ("Privileged Role Administrator",)),
    # Admins of the incidents and look-alikes added for the assignment, approval and credential
    # detectors (incidents e-t); the background PIM traffic leaves them alone.
    ("chuck", "Wagner", 1, ("Privileged Role Administrator",)),
    ("faythe", "Olsen", 3, ("Privileged Role Administrator",)),
    ("wendy", "Castillo", 0, ("Privileged Role Administrator",)),
    ("uma", "Perera", 4, ("Privileged Role Administrator",)),
    ("xavier", "Duval", 7, ()),
    ("yasmin", "Haddad", 3, ("Exchange Administrator",)),
    ("quentin", "Roux", 7, ("SharePoint Administrator", "Exchange Administrator")),
    ("lena", "Vogel", 5, ("User Administrator", "Security Administrator")),
    ("nora", "Lindgren", 4, ("Global Administrator",)),
    ("hugo", "Marchetti", 2, ("Security Administrator",)),
)
APPROVERS = ("peggy", "victor", "walter")


class Demo:
    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.items: list[Item] = []
        self.role_objects = {name: self.uuid() for name in ROLES}  # tenant-specific directory role objects
        self.people: list[Person] = []
        self.admins: dict[str, Person] = {}
        # Users who get a privileged role in the demo day: the background leaves their credentials
        # alone (a method change of a privileged principal is credentials.privileged_changed's business).
        self.quiet: set[str] = set()
        self._make_people()

    # --- small helpers -----------------------------------------------------------------------------
    def uuid(self, rng: random.Random | None = None) -> str:
        r = rng or self.rng
        h = f"{r.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[r.randrange(4)]}{h[17:20]}-{h[20:]}"

    def signin_id(self) -> str:
        return self.uuid()[:-4] + self.rng.choice(("0100", "0200", "2e00", "4b00", "a500", "d900"))

    def directory_id(self, corr: str) -> str:
        r = self.rng
        tag = "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(5))
        return f"Directory_{corr}_{tag}_{r.randrange(10**8, 10**9)}"

    def t(self, h: int, m: int, s: float = 0.0) -> int:
        """A wall-clock time plus a random sub-tenth of a second (real timestamps carry 7 decimals)."""
        return at(h, m, s) + self.rng.randrange(TICKS // 10)

    def jitter(self, low: float, high: float) -> int:
        return round(self.rng.uniform(low, high) * TICKS)

    def emit(self, record: Record, event_t: int, late_s: float = 0.0) -> Record:
        """Queue a record; it reaches the hub 30-90 s after its ``time`` field (plus ``late_s``)."""
        if not 0 <= event_t < DAY * TICKS:
            return record  # outside the demo day (e.g. an expiry tomorrow): not part of this stream
        sent = event_t if record["category"] == "AuditLogs" else event_t + 120 * TICKS  # sign-in time lags
        deliver = sent + self.jitter(30, 90) + round(late_s * TICKS)
        self.items.append(Item(deliver, len(self.items), record))
        return record

    # --- directory -------------------------------------------------------------------------------
    def _ip(self, place_idx: int) -> str:
        r = self.rng
        if r.random() < 0.6:  # office egress (one per site)
            return f"198.51.100.{10 + place_idx * 3 + r.randrange(3)}"
        if r.random() < 0.15:
            a, b, c = r.randrange(0x1000, 0xFFFF), r.randrange(0x10, 0xFF), r.randrange(1, 0xFF)
            return f"2001:db8:{a:x}:{b:x}::{c:x}"
        return f"203.0.113.{r.randrange(1, 255)}"

    def _make_people(self) -> None:
        r = self.rng
        weights = [p[7] for p in PLACES]
        seen: set[str] = set()
        while len(self.people) < 300:
            first, last = r.choice(FIRST), r.choice(LAST)
            local = f"{first}.{last}".lower().translate(ASCII_FOLD)
            if local in seen:
                continue
            seen.add(local)
            pi = r.choices(range(len(PLACES)), weights)[0]
            self.people.append(
                Person(
                    self.uuid(),
                    f"{local}@{DOMAIN}",
                    f"{first} {last}",
                    PLACES[pi],
                    self._ip(pi),
                    r.randrange(len(DEVICES)),
                    self.uuid() if r.random() < 0.85 else "",
                )
            )
        for short, last, pi, eligible in ADMINS:
            local = f"{short}.{last}".lower()
            everyday = Person(
                self.uuid(),
                f"{local}@{DOMAIN}",
                f"{short.title()} {last}",
                PLACES[pi],
                f"198.51.100.{10 + pi * 3}",
                0,
                self.uuid(),
            )
            self.people.append(everyday)
            adm = Person(
                self.uuid(),
                f"adm-{short}@{DOMAIN}",
                f"{short.title()} {last} (Admin)",
                PLACES[pi],
                everyday.ip,
                0,
                everyday.device_id,
                admin_of=everyday,
                eligible=eligible,
            )
            self.admins[short] = adm

    # --- sign-ins --------------------------------------------------------------------------------
    def _ca(self, user: Person, outcome: str, admin: bool) -> list[Record]:
        """appliedConditionalAccessPolicies for an ordinary (non break-glass) sign-in."""
        out = []
        for pid, name, grant in CA_POLICIES:
            if outcome == "excluded":
                result = "notApplied"
            elif name.startswith("CA001"):
                result = (
                    "success" if outcome == "success" else ("failure" if outcome == "mfa" else "notApplied")
                )
            elif name.startswith("CA002"):
                result = "notApplied"
            elif name.startswith("CA003"):
                result = ("success" if outcome == "success" else "failure") if admin else "notApplied"
            else:
                if outcome == "blocked":
                    result = "failure"
                else:
                    result = "reportOnlySuccess" if user.device_id else "reportOnlyFailure"
            out.append(
                {
                    "id": pid,
                    "displayName": name,
                    "enforcedGrantControls": list(grant),
                    "enforcedSessionControls": [],
                    "result": result,
                }
            )
        if outcome == "blocked":  # CA004 is enforced for the blocked cases in this tenant's data
            out[3]["result"] = "failure"
        return out

    def signin(
        self,
        user: Person,
        t: int,
        *,
        interactive: bool,
        app: Sequence[Any],
        code: int = 0,
        reason: str = "",
        sid: str | None = None,
        upn: str | None = None,
        place: tuple[Any, ...] | None = None,
        ip: str | None = None,
        break_glass: bool = False,
        admin: bool = False,
        risk: tuple[str, list[str]] | None = None,
        mfa_method: str | None = None,
    ) -> Record:
        """One user sign-in (sample 05). ``risk`` = (riskLevelDuringSignIn, riskEventTypes_v2) of an
        Identity Protection detection; ``mfa_method`` overrides the second factor of an admin sign-in."""
        r = self.rng
        sid = sid or self.signin_id()
        corr = self.uuid()
        place = place or user.place
        ip = ip or user.ip
        city, state, country, lat, lon, asn = place[:6]
        os_, browser, ua = DEVICES[user.device]
        ok = code == 0
        when = iso(t, zulu=False)
        if break_glass:
            requirement = "singleFactorAuthentication"
            ca_status, policies = "notApplied", self._ca(user, "excluded", admin)
            steps = (
                [("Password", True, "Correct password", "Primary authentication")]
                if interactive
                else [
                    (
                        "Previously satisfied",
                        True,
                        "First factor requirement satisfied by claim in the token",
                        "Primary authentication",
                    )
                ]
            )
        elif interactive:
            outcome = {53003: "blocked", 50074: "mfa", 50076: "mfa", 500121: "mfa"}.get(code, "success")
            requirement = "multiFactorAuthentication" if code != 50126 else "singleFactorAuthentication"
            ca_status = (
                "failure" if code == 53003 else ("notApplied" if code in (50126, 50140) else "success")
            )
            policies = self._ca(user, outcome if code not in (50126, 50140) else "excluded", admin)
            if code == 50126:
                steps = [
                    (
                        "Password",
                        False,
                        "Invalid username or password or Invalid on-premise username or password.",
                        "Primary authentication",
                    )
                ]
            elif user.device == 0 and not admin and r.random() < 0.4:
                steps = [
                    (
                        "Windows Hello for Business",
                        ok,
                        "Windows Hello for Business" if ok else reason,
                        "Primary authentication",
                    )
                ]
            else:
                mfa_method = mfa_method or (
                    "Passkey (Microsoft Authenticator)"
                    if admin
                    else r.choice(
                        (
                            "Mobile app notification",
                            "Mobile app notification",
                            "Previously satisfied",
                            "OATH verification code",
                        )
                    )
                )
                mfa_ok = code not in (500121, 50074, 50076)
                steps = [
                    ("Password", True, "Correct password", "Primary authentication"),
                    (
                        mfa_method,
                        mfa_ok,
                        "MFA successfully completed"
                        if mfa_ok
                        else (
                            "MFA denied; user declined the authentication"
                            if code == 500121
                            else "MFA required in Azure AD"
                        ),
                        "Multi-factor authentication",
                    ),
                ]
        else:
            requirement = r.choice(("singleFactorAuthentication", "multiFactorAuthentication"))
            if admin:  # an admin's refresh token carries the MFA claim of its phishing-resistant sign-in
                requirement = "multiFactorAuthentication"
            ca_status = "failure" if code == 53003 else "success"
            policies = self._ca(user, "blocked" if code == 53003 else "success", admin)
            steps = [
                (
                    "Previously satisfied",
                    ok,
                    "First factor requirement satisfied by claim in the token" if ok else reason,
                    "Primary authentication",
                )
            ]
        if risk is None and break_glass and interactive:
            risk = ("medium", ["unfamiliarFeatures"])
        risk_level, risk_events = risk or ("none", [])
        status: Record = {"errorCode": code}
        if not ok:
            status.update(
                failureReason=reason,
                additionalDetails="MFA required in Azure AD" if code in (50074, 50076) else None,
            )
        props: Record = {
            "id": sid,
            "createdDateTime": when,
            "userDisplayName": user.name,
            "userPrincipalName": upn or user.upn,
            "userId": user.id,
            "appId": app[1],
            "appDisplayName": app[0],
            "ipAddress": ip,
            "status": status,
            "clientAppUsed": app[4],
            "userAgent": ua,
            "deviceDetail": {
                "deviceId": user.device_id,
                "displayName": ("CTS-" + user.device_id[:6].upper()) if user.device_id else "",
                "operatingSystem": os_,
                "browser": browser,
                "isCompliant": bool(user.device_id),
                "isManaged": bool(user.device_id),
                "trustType": "Azure AD joined" if user.device_id else "",
            },
            "location": {
                "city": city,
                "state": state,
                "countryOrRegion": country,
                "geoCoordinates": {"latitude": lat, "longitude": lon},
            },
            "mfaDetail": {},
            "correlationId": corr,
            "conditionalAccessStatus": ca_status,
            "appliedConditionalAccessPolicies": policies,
            "originalRequestId": sid,
            "isInteractive": interactive,
            "tokenIssuerName": "",
            "tokenIssuerType": "AzureAD",
            "authenticationProcessingDetails": [
                {"key": "Legacy TLS (TLS 1.0, 1.1, 3DES)", "value": "False"},
                {"key": "Is CAE Token", "value": "False" if interactive else "True"},
            ],
            "networkLocationDetails": [
                {"networkType": "trustedNamedLocation", "networkNames": ["Contoso offices"]}
            ]
            if ip.startswith("198.51.100.")
            else [],
            "processingTimeInMilliseconds": r.randrange(40, 900 if interactive else 180),
            "riskDetail": "none",
            "riskLevelAggregated": risk_level,
            "riskLevelDuringSignIn": risk_level,
            "riskState": "atRisk" if risk_level != "none" else "none",
            "riskEventTypes": [],
            "riskEventTypes_v2": risk_events,
            "resourceDisplayName": app[2],
            "resourceId": app[3],
            "resourceTenantId": TENANT_ID,
            "homeTenantId": TENANT_ID,
            "authenticationDetails": [
                {
                    "authenticationStepDateTime": when,
                    "authenticationMethod": m,
                    "succeeded": s,
                    "authenticationStepResultDetail": d,
                    "authenticationStepRequirement": q,
                    "StatusSequence": 0,
                    "RequestSequence": i,
                }
                for i, (m, s, d, q) in enumerate(steps)
            ],
            "authenticationRequirementPolicies": []
            if requirement == "singleFactorAuthentication"
            else [{"requirementProvider": "multiConditionalAccess", "detail": "Conditional Access"}],
            "authenticationRequirement": requirement,
            "servicePrincipalId": "",
            "userType": "Member",
            "flaggedForReview": False,
            "isTenantRestricted": False,
            "autonomousSystemNumber": asn,
            "crossTenantAccessType": "none",
            "privateLinkDetails": {},
            "ssoExtensionVersion": "",
            "uniqueTokenIdentifier": base64.urlsafe_b64encode(
                r.getrandbits(128).to_bytes(16, "big")
            ).decode()[:22],
            "incomingTokenType": "none" if interactive else r.choice(("refreshToken", "primaryRefreshToken")),
            "authenticationProtocol": "none",
        }
        rec: Record = {
            "time": iso(t + self.jitter(60, 120)),
            "resourceId": RESOURCE_ID,
            "operationName": "Sign-in activity",
            "operationVersion": "1.0",
            "category": "SignInLogs" if interactive else "NonInteractiveUserSignInLogs",
            "tenantId": TENANT_ID,
            "resultType": str(code),
            "resultSignature": "None",
        }
        if not ok:
            rec["resultDescription"] = reason
        rec.update(
            {
                "durationMs": 0,
                "callerIpAddress": ip,
                "correlationId": corr,
                "identity": user.name,
                "Level": 4,
                "location": country,
                "properties": props,
            }
        )
        return rec

    def _day_time(self, user: Person, work_share: float) -> int:
        """A sign-in time: mostly inside the user's local office hours, otherwise anywhere in the day."""
        r = self.rng
        if r.random() < work_share:
            local = r.triangular(7.5, 19.0, 10.5)
            hour = (local - user.place[6]) % 24
        else:
            hour = r.uniform(0, 24)
        return round(float(hour) * 3600 * TICKS) + r.randrange(TICKS)

    def _pick_failure(self, interactive: bool) -> tuple[int, str]:
        table = INTERACTIVE_FAILURES if interactive else NONINTERACTIVE_FAILURES
        code, reason, _ = self.rng.choices(table, [f[2] for f in table])[0]
        return code, reason

    def background_signins(self) -> None:
        r = self.rng
        for user in self.people:
            for interactive, mean, work_share, fail_rate in (
                (True, 4.6, 0.9, 0.06),
                (False, 16.5, 0.7, 0.025),
            ):
                n = max(0, round(r.gauss(mean, mean / 3)))
                weights = [a[5] if interactive else a[6] for a in APPS]
                for _ in range(n):
                    t = self._day_time(user, work_share)
                    app = r.choices(APPS, weights)[0]
                    code, reason = self._pick_failure(interactive) if r.random() < fail_rate else (0, "")
                    self.emit(
                        self.signin(user, t, interactive=interactive, app=app, code=code, reason=reason), t
                    )

    def admin_signin(self, adm: Person, t: int) -> None:
        """An admin opens the portal (interactive, phishing-resistant MFA) and keeps refreshing tokens."""
        self.emit(self.signin(adm, t, interactive=True, app=AZURE_PORTAL, admin=True), t)
        for k in range(self.rng.randrange(1, 4)):
            t2 = t + at(0, 10 + 17 * k) + self.jitter(0, 300)
            self.emit(self.signin(adm, t2, interactive=False, app=AZURE_PORTAL, admin=True), t2)

    def service_principal_signins(self) -> None:
        """A few ServicePrincipalSignInLogs records (sample 06 shape): a category pimwatch must skip."""
        r = self.rng
        apps = (
            (
                "Contoso HR Sync",
                HR_SYNC_APP_ID,
                "Microsoft Graph",
                "00000003-0000-0000-c000-000000000000",
            ),
            (
                "Contoso Backup Agent",
                fixed_guid("app:Contoso Backup Agent"),
                "Office 365 Exchange Online",
                "00000002-0000-0ff1-ce00-000000000000",
            ),
        )
        for k in range(12):
            name, app_id, res_name, res_id = apps[k % 2]
            t = at(k * 2, 0) + self.jitter(0, 3600)
            sid, corr = self.signin_id(), self.uuid()
            props = {
                "alternateSignInName": "",
                "appDisplayName": name,
                "appId": app_id,
                "appliedConditionalAccessPolicies": [],
                "authenticationDetails": [],
                "authenticationProtocol": "none",
                "authenticationRequirement": "",
                "clientAppUsed": "Unknown",
                "conditionalAccessStatus": "notApplied",
                "correlationId": corr,
                "createdDateTime": iso(t, zulu=False),
                "crossTenantAccessType": "none",
                "id": sid,
                "ipAddress": "198.51.100.200",
                "isInteractive": False,
                "location": {
                    "city": "Amsterdam",
                    "countryOrRegion": "NL",
                    "geoCoordinates": {"latitude": 52.3676, "longitude": 4.9041},
                    "state": "Noord-Holland",
                },
                "originalRequestId": sid,
                "resourceDisplayName": res_name,
                "resourceId": res_id,
                "resourceTenantId": TENANT_ID,
                "servicePrincipalCredentialKeyId": self.uuid(),
                "servicePrincipalCredentialThumbprint": "",
                "servicePrincipalId": self.uuid(r),
                "servicePrincipalName": name,
                "status": {"errorCode": 0},
                "userAgent": "",
                "userDisplayName": "",
                "userId": "",
                "userPrincipalName": "",
            }
            rec = {
                "callerIpAddress": "198.51.100.200",
                "category": "ServicePrincipalSignInLogs",
                "correlationId": corr,
                "durationMs": "0",
                "level": "Informational",
                "location": "NL",
                "operationName": "Sign-in activity",
                "operationVersion": "1.0",
                "properties": props,
                "resourceId": RESOURCE_ID,
                "resultSignature": "SUCCESS",
                "resultType": "0",
                "tenantId": TENANT_ID,
                "time": us_style(t + at(0, 2)) if k == 2 else iso(t + at(0, 1, 30)),
            }
            self.emit(rec, t)

    def graph_activity(self) -> None:
        """Two MicrosoftGraphActivityLogs records (real shape, pinned in a public test): to be skipped."""
        for k, t in enumerate((self.t(6, 12, 3.5), self.t(15, 48, 41.25))):
            req = self.uuid()
            props = {
                "__UDI_RequiredFields_TenantId": TENANT_ID,
                "timeGenerated": iso(t),
                "location": "West Europe",
                "requestId": req,
                "operationId": req,
                "clientRequestId": self.uuid(),
                "apiVersion": "v1.0",
                "requestMethod": "GET",
                "responseStatusCode": 200,
                "tenantId": TENANT_ID,
                "durationMs": 84213,
                "responseSizeBytes": 18342,
                "signInActivityId": "b3kZ8mXrS0Kc1n2Q4pT7AA",
                "roles": "AuditLog.Read.All Directory.Read.All",
                "appId": HR_SYNC_APP_ID,
                "scopes": "",
                "identityProvider": f"https://sts.windows.net/{TENANT_ID}/",
                "clientAuthMethod": "2",
                "wids": "0997a1d0-0d1d-4acb-b408-d5ca73121e90",
                "isReplay": False,
                "C_Idtyp": "app",
                "ipAddress": "198.51.100.200",
                "userAgent": "ContosoHRSync/2.4",
                "requestUri": "https://graph.microsoft.com/v1.0/auditLogs/directoryAudits?$top=999",
                "policyEvaluated": False,
                "tokenIssuedAt": iso(t - at(0, 40)),
            }
            rec: Record = {
                "time": iso(t),
                "resourceId": RESOURCE_ID.upper(),
                "operationName": "Microsoft Graph Activity",
                "operationVersion": "v1.0",
                "category": "MicrosoftGraphActivityLogs",
                "resultSignature": "200",
                "durationMs": "84213",
                "callerIpAddress": "198.51.100.200",
                "correlationId": req,
                "level": "Informational",
                "location": "West Europe",
                "properties": props,
            }
            if k == 1:
                rec["tenantId"] = TENANT_ID
            self.emit(rec, t)

    # --- audit records -----------------------------------------------------------------------------
    def audit(
        self,
        t: int,
        props: Record,
        identity: str | None,
        caller_ip: str | None,
        late_s: float = 0.0,
    ) -> Record:
        rec: Record = {
            "time": iso(t),
            "resourceId": RESOURCE_ID,
            "operationName": props["activityDisplayName"],
            "operationVersion": "1.0",
            "category": "AuditLogs",
            "tenantId": TENANT_ID,
            "resultSignature": "None",
            "durationMs": 0,
            "callerIpAddress": caller_ip or "<null>",
            "correlationId": props["correlationId"],
        }
        if identity is not None:
            rec["identity"] = identity
        rec["Level"] = 4
        rec["properties"] = props
        return self.emit(rec, t, late_s)

    def directory_props(
        self,
        t: int,
        activity: str,
        category: str,
        optype: str,
        initiated: Record,
        targets: list[Record],
        details: list[Record] | None = None,
        corr: str | None = None,
        pid: str | None = None,
        service: str = "Core Directory",
        newer: bool = False,
    ) -> Record:
        corr = corr or self.uuid()
        props: Record = {}
        if newer:  # the newer layout repeats envelope fields inside properties (sample 01)
            props.update(
                tenantId=TENANT_ID,
                resultType="",
                resultDescription="",
                operationName=activity,
                identity="",
                tenantGeo="EU",
            )
        props.update(
            id=pid or self.directory_id(corr),
            category=category,
            correlationId=corr,
            result="success",
            resultReason="",
            activityDisplayName=activity,
            activityDateTime=iso(t, zulu=False),
            loggedByService=service,
            operationType=optype,
            userAgent=None,
            initiatedBy=initiated,
            targetResources=targets,
            additionalDetails=details or [],
        )
        return props

    def background_audit(self) -> None:
        r = self.rng
        users = [u for u in self.people[:300] if u.id not in self.quiet]
        helpdesk = self.admins["heidi"]
        substrate = {
            "app": {
                "appId": None,
                "displayName": "Microsoft Substrate Management",
                "servicePrincipalId": fixed_guid("sp:Microsoft Substrate Management"),
                "servicePrincipalName": None,
            }
        }
        groups = [
            (fixed_guid(f"group:{n}"), n)
            for n in (
                "All Staff",
                "Sales EMEA",
                "Finance",
                "Engineering",
                "M365 E5 Licensed",
                "VPN Users",
                "Contoso Marketing",
                "Project Falcon",
            )
        ]
        apps = [
            (self.uuid(), n)
            for n in (
                "Contoso Expense Portal",
                "Contoso HR Sync",
                "Salesforce",
                "ServiceNow",
                "GitHub Enterprise",
            )
        ]
        ga = "Microsoft Graph Client Library 1.0"
        plan = (
            ("Update user", 120),
            ("Add member to group", 45),
            ("Remove member from group", 15),
            ("User registered security info", 25),
            ("Reset password (self-service)", 8),
            ("Update device", 60),
            ("Add app role assignment grant to user", 25),
            ("Update application", 12),
            ("Consent to application", 3),
            ("Update service principal", 8),
        )
        for activity, count in plan:
            for _ in range(count):
                u = r.choice(users)
                t = self._day_time(u, 0.85)
                target = u.target()
                initiated: Record = substrate
                identity: str | None = "Microsoft Substrate Management"
                caller: str | None = None
                details = [{"key": "UserType", "value": "Member"}]
                category, optype, service = "UserManagement", "Update", "Core Directory"
                actor = r.choice(list(self.admins.values())) if r.random() < 0.5 else u
                if activity == "Update user":
                    target["modifiedProperties"] = [
                        {
                            "displayName": "StsRefreshTokensValidFrom",
                            "oldValue": '["2026-02-11T09:12:40Z"]',
                            "newValue": f'["{iso(t)[:19]}Z"]',
                        },
                        {
                            "displayName": "Included Updated Properties",
                            "oldValue": None,
                            "newValue": '"StsRefreshTokensValidFrom"',
                        },
                    ]
                    if r.random() < 0.4:
                        initiated, identity, caller = actor.initiator(), actor.name, actor.ip
                elif activity in ("Add member to group", "Remove member from group"):
                    gid, gname = r.choice(groups)
                    key = "newValue" if activity.startswith("Add") else "oldValue"
                    other = "oldValue" if key == "newValue" else "newValue"
                    target["modifiedProperties"] = [
                        {"displayName": "Group.ObjectID", other: None, key: f'"{gid}"'},
                        {"displayName": "Group.DisplayName", other: None, key: f'"{gname}"'},
                        {"displayName": "Group.WellKnownObjectName", "oldValue": None, "newValue": None},
                    ]
                    extra: Record = {
                        "id": gid,
                        "displayName": None,
                        "type": "Group",
                        "groupType": "azureAD",
                        "modifiedProperties": [],
                        "administrativeUnits": [],
                    }
                    category, optype = "GroupManagement", "Assign" if key == "newValue" else "Unassign"
                    initiated, identity, caller = actor.initiator(), actor.name, actor.ip
                    props = self.directory_props(
                        t,
                        activity,
                        category,
                        optype,
                        initiated,
                        [target, extra],
                        details,
                        newer=r.random() < 0.5,
                    )
                    self.audit(t, props, identity, caller)
                    continue
                elif activity == "User registered security info":
                    category, optype, service = "UserManagement", "Add", "Authentication Methods"
                    initiated, identity, caller = u.initiator(), u.name, u.ip
                    details = [
                        {
                            "key": "Method",
                            "value": r.choice(("Microsoft Authenticator App", "Passkey", "Mobile phone")),
                        }
                    ]
                elif activity == "Reset password (self-service)":
                    category, optype, service = "UserManagement", "Update", "Self-service Password Management"
                    initiated, identity, caller = u.initiator(), u.name, u.ip
                    details = []
                elif activity == "Update device":
                    category, optype = "Device", "Update"
                    target = {
                        "id": self.uuid(),
                        "displayName": f"CTS-{r.randrange(16**6):06X}",
                        "type": "Device",
                        "modifiedProperties": [
                            {
                                "displayName": "ApproximateLastLogonTimestamp",
                                "oldValue": None,
                                "newValue": f'"{iso(t)}"',
                            }
                        ],
                        "administrativeUnits": [],
                    }
                    initiated = {
                        "app": {
                            "appId": None,
                            "displayName": "Device Registration Service",
                            "servicePrincipalId": fixed_guid("sp:Device Registration Service"),
                            "servicePrincipalName": None,
                        }
                    }
                    identity = "Device Registration Service"
                    details = []
                elif activity in ("Add app role assignment grant to user", "Consent to application"):
                    aid, aname = r.choice(apps)
                    category, optype = "ApplicationManagement", "Assign"
                    target = {
                        "id": aid,
                        "displayName": aname,
                        "type": "ServicePrincipal",
                        "modifiedProperties": [],
                        "administrativeUnits": [],
                    }
                    initiated, identity, caller = actor.initiator(), actor.name, actor.ip
                    details = [{"key": "User-Agent", "value": ga}]
                else:  # Update application / Update service principal
                    aid, aname = r.choice(apps)
                    category, optype = "ApplicationManagement", "Update"
                    target = {
                        "id": aid,
                        "displayName": aname,
                        "type": "Application" if "application" in activity else "ServicePrincipal",
                        "modifiedProperties": [
                            {
                                "displayName": "Included Updated Properties",
                                "oldValue": None,
                                "newValue": '"AppAddress"',
                            }
                        ],
                        "administrativeUnits": [],
                    }
                    initiated, identity, caller = actor.initiator(), actor.name, actor.ip
                    details = [{"key": "User-Agent", "value": ga}, {"key": "AppId", "value": self.uuid()}]
                props = self.directory_props(
                    t,
                    activity,
                    category,
                    optype,
                    initiated,
                    [target],
                    details,
                    service=service,
                    newer=r.random() < 0.5,
                )
                self.audit(t, props, identity, caller)
        # Benign "Reset password (by admin)" by the helpdesk admin during office hours
        for h, m in ((9, 14), (11, 3), (15, 37)):
            t = at(h, m) + self.jitter(0, 59)
            victim = r.choice(users)
            props = self.directory_props(
                t,
                "Reset password (by admin)",
                "UserManagement",
                "Update",
                helpdesk.initiator(),
                [victim.target()],
                [],
                newer=True,
            )
            self.audit(t, props, helpdesk.name, helpdesk.ip)

    # --- PIM ------------------------------------------------------------------------------------------
    def pim_props(
        self,
        t: int,
        activity: str,
        role: Role,
        *,
        initiated: Record,
        subject: Person,
        request_id: str,
        optype: str,
        result: str = "success",
        reason: str = "",
        details: list[Record] | None = None,
        corr: str | None = None,
        other: str | None = None,
        category: str = "RoleManagement",
        group: tuple[str, str] | None = None,
    ) -> Record:
        corr = corr or self.uuid()
        role_target = {
            "id": role.template_id,
            "displayName": role.name,
            "type": "Role",
            "modifiedProperties": [
                {
                    "displayName": "RoleDefinitionOriginId",
                    "oldValue": '""',
                    "newValue": f'"{role.template_id}"',
                },
                {"displayName": "RoleDefinitionOriginType", "oldValue": '""', "newValue": '"BuiltInRole"'},
                {"displayName": "TemplateId", "oldValue": '""', "newValue": f'"{role.template_id}"'},
            ],
            "administrativeUnits": [],
        }
        scope = {
            "id": TENANT_ID,
            "displayName": TENANT_NAME,
            "type": "Directory",
            "modifiedProperties": [],
            "administrativeUnits": [],
        }
        if group:
            role_target = {
                "id": role.template_id,
                "displayName": role.name,
                "type": "Role",
                "modifiedProperties": [],
                "administrativeUnits": [],
            }
            scope = {
                "id": group[0],
                "displayName": group[1],
                "type": "Group",
                "groupType": "azureAD",
                "modifiedProperties": [],
                "administrativeUnits": [],
            }
        targets = [
            role_target,
            {"id": request_id, "type": "Request", "modifiedProperties": [], "administrativeUnits": []},
            subject.target(),
            scope,
            {"id": self.uuid(), "type": "Other", "modifiedProperties": [], "administrativeUnits": []},
        ]
        return {
            "id": pim_id(corr, other or self.uuid(), t),
            "category": category,
            "correlationId": corr,
            "result": result,
            "resultReason": reason,
            "activityDisplayName": activity,
            "activityDateTime": iso(t, zulu=False),
            "loggedByService": "PIM",
            "operationType": optype,
            "userAgent": None,
            "initiatedBy": initiated,
            "targetResources": targets,
            "additionalDetails": details or [],
        }

    @staticmethod
    def activation_details(
        role: Role,
        start: int,
        hours: float,
        justification: str,
        caller: Person | None,
        request_id: str,
        *,
        audit_type: str | None = None,
        approval: bool | None = None,
        justification_key: str = "Justification",
    ) -> list[Record]:
        d = [
            {"key": "RoleDefinitionOriginId", "value": role.template_id},
            {"key": "RoleDefinitionOriginType", "value": "BuiltInRole"},
            {"key": "TemplateId", "value": role.template_id},
            {"key": "StartTime", "value": iso(start)},
            {"key": "ExpirationTime", "value": iso(start + round(hours * 3600 * TICKS))},
            {"key": justification_key, "value": justification},
        ]
        if audit_type:
            d.append({"key": "AuditType", "value": audit_type})
        if approval is not None:
            d.append({"key": "IsAuthenticatedWithMfa", "value": "True"})
            d.append({"key": "IsActivationRequireApproval", "value": "true" if approval else "false"})
        if caller is not None:
            wids = DEFAULT_USER_WID
            if caller.admin_of and caller.upn.split("@")[0][4:] in APPROVERS:
                wids = f"{PRA_TEMPLATE},{DEFAULT_USER_WID}"
            d += [
                {"key": "oid", "value": caller.id},
                {"key": "tid", "value": TENANT_ID},
                {"key": "wids", "value": wids},
                {"key": "ipaddr", "value": caller.ip},
            ]
        d.append({"key": "RequestId", "value": request_id})
        return d

    def core_directory_role(
        self,
        t: int,
        adm: Person,
        role: Role,
        add: bool,
        activity: str | None = None,
        group: tuple[str, str] | None = None,
        late_s: float = 0.0,
        initiator: Person | None = None,
        corr: str | None = None,
        pid: str | None = None,
    ) -> Record:
        """The directory write that PIM performs, initiated by app MS-PIM (samples 01 and 10).

        With ``initiator``, the same write made directly by an admin (outside PIM, sample 01)."""
        new, old = ("newValue", "oldValue") if add else ("oldValue", "newValue")
        user = adm.target()
        if group:
            user["modifiedProperties"] = [
                {"displayName": "Group.ObjectID", old: None, new: f'"{group[0]}"'},
                {"displayName": "Group.DisplayName", old: None, new: f'"{group[1]}"'},
                {"displayName": "Group.WellKnownObjectName", "oldValue": None, "newValue": None},
            ]
            targets = [
                user,
                {
                    "id": group[0],
                    "displayName": None,
                    "type": "Group",
                    "groupType": "azureAD",
                    "modifiedProperties": [],
                    "administrativeUnits": [],
                },
            ]
            activity = activity or ("Add member to group" if add else "Remove member from group")
            category = "GroupManagement"
        else:
            obj = self.role_objects[role.name]
            user["modifiedProperties"] = [
                {"displayName": "Role.ObjectID", old: None, new: f'"{obj}"'},
                {"displayName": "Role.DisplayName", old: None, new: f'"{role.name}"'},
                {"displayName": "Role.TemplateId", old: None, new: f'"{role.template_id}"'},
                {"displayName": "Role.WellKnownObjectName", old: None, new: f'"{role.well_known}"'},
            ]
            targets = [user]
            if add:
                targets.append(
                    {
                        "id": obj,
                        "displayName": None,
                        "type": "Role",
                        "modifiedProperties": [],
                        "administrativeUnits": [],
                    }
                )
            activity = activity or ("Add member to role" if add else "Remove member from role")
            category = "RoleManagement"
        props = self.directory_props(
            t,
            activity,
            category,
            "Assign" if add else "Unassign",
            initiator.initiator() if initiator else {"app": dict(MS_PIM_APP)},
            targets,
            corr=corr,
            pid=pid,
            newer=True,
        )
        if initiator is not None:
            return self.audit(t, props, initiator.name, initiator.ip, late_s)
        return self.audit(t, props, "MS-PIM", None, late_s)

    def activation(
        self,
        adm: Person,
        role_name: str,
        t_request: int,
        *,
        hours: float = 2,
        approver: Person | None = None,
        justification: str | None = None,
        corr: str | None = None,
        other: str | None = None,
        t_completed: int | None = None,
        end: str = "expire",
        group: tuple[str, str] | None = None,
        late_s: float = 0.0,
        mirror_activity: str | None = None,
        justification_key: str = "Justification",
        approve_after_s: float | None = None,
        requested_ids: tuple[str, str] | None = None,
        pending_ids: tuple[str, str] | None = None,
        approved_ids: tuple[str, str] | None = None,
        undecided: bool = False,
    ) -> tuple[Record, int, int]:
        """One full activation: request [-> approval] -> completed + Core Directory mirror -> end.

        ``end`` is "expire" (MS-PIM removal then "Azure AD PIM" expiry ~6 s later), "deactivate"
        (the user deactivates early) or "keep". Returns the completed record, its time and the end time.
        ``approve_after_s`` fixes the approver's delay (default 2.5-15 min) and then the approval
        request follows the request by a fixed 1.4 s; ``requested_ids``, ``pending_ids`` and
        ``approved_ids`` fix the (correlationId, second GUID) of the requested, approval-requested and
        approved records; ``undecided`` stops after the approval request (nobody acts on it): then the
        approval-requested record and its time are returned.
        """
        r = self.rng
        role = MEMBER_ROLE if group else ROLES[role_name]
        category = "GroupManagement" if group else "RoleManagement"
        justification = justification or r.choice(
            (
                f"INC{r.randrange(10**6, 10**7)}: user cannot access mailbox",
                f"CHG{r.randrange(10**5, 10**6)} approved change window",
                "Weekly access review follow-up",
                "Onboarding new starters",
                f"Investigating alert SEC-{r.randrange(1000, 9999)}",
                "License clean-up",
                "Vendor escalation, see ticket",
            )
        )
        request_id = self.uuid()
        needs_approval = approver is not None
        start = t_request
        self.pim_record(
            t_request,
            "Add member to role requested (PIM activation)",
            role,
            adm,
            adm,
            request_id,
            "Create",
            justification,
            self.activation_details(
                role,
                start,
                hours,
                justification,
                adm,
                request_id,
                audit_type="CreateRequestRoleActivation",
                approval=needs_approval,
            ),
            category=category,
            group=group,
            corr=requested_ids[0] if requested_ids else None,
            other=requested_ids[1] if requested_ids else None,
        )
        t = t_request
        if approver is not None:
            t += round(1.4187 * TICKS) if approve_after_s is not None else self.jitter(0.8, 2.5)
            pending = self.pim_record(
                t,
                "Add member to role approval requested (PIM activation)",
                role,
                adm,
                adm,
                request_id,
                "Update",
                justification,
                self.activation_details(role, start, hours, justification, adm, request_id),
                category=category,
                group=group,
                corr=pending_ids[0] if pending_ids else None,
                other=pending_ids[1] if pending_ids else None,
            )
            if undecided:
                return pending, t, t
            t += round(approve_after_s * TICKS) if approve_after_s is not None else self.jitter(150, 900)
            self.pim_record(
                t,
                "Add member to role request approved (PIM activation)",
                role,
                approver,
                adm,
                request_id,
                "Update",
                "Approved",
                self.activation_details(role, start, hours, justification, approver, request_id),
                category=category,
                group=group,
                corr=approved_ids[0] if approved_ids else None,
                other=approved_ids[1] if approved_ids else None,
            )
        t_done = t_completed if t_completed is not None else t + self.jitter(30, 45)
        self.core_directory_role(
            t_done - self.jitter(2, 6), adm, role, add=True, group=group, activity=mirror_activity
        )
        completed = self.pim_record(
            t_done,
            "Add member to role completed (PIM activation)",
            role,
            adm,
            adm,
            request_id,
            "Update",
            justification,
            self.activation_details(
                role, t_done, hours, justification, adm, request_id, justification_key=justification_key
            ),
            corr=corr,
            other=other,
            category=category,
            group=group,
            late_s=late_s,
        )
        t_end = t_done + round(hours * 3600 * TICKS)
        if end == "expire":
            self.expire(t_end, adm, role, request_id, category, group)
        elif end == "deactivate":
            t_end = t_done + self.jitter(1200, min(5400, hours * 3600 - 300))
            self.deactivate(t_end, adm, role, request_id, category, group)
        return completed, t_done, t_end

    def pim_record(
        self,
        t: int,
        activity: str,
        role: Role,
        actor: Person | None,
        subject: Person,
        request_id: str,
        optype: str,
        reason: str,
        details: list[Record],
        *,
        result: str = "success",
        corr: str | None = None,
        other: str | None = None,
        category: str = "RoleManagement",
        group: tuple[str, str] | None = None,
        late_s: float = 0.0,
    ) -> Record:
        initiated = actor.initiator() if actor else {"user": dict(PIM_SYSTEM_USER)}
        props = self.pim_props(
            t,
            activity,
            role,
            initiated=initiated,
            subject=subject,
            request_id=request_id,
            optype=optype,
            result=result,
            reason=reason,
            details=details,
            corr=corr,
            other=other,
            category=category,
            group=group,
        )
        return self.audit(
            t, props, actor.name if actor else "Azure AD PIM", actor.ip if actor else None, late_s
        )

    def expire(
        self,
        t_end: int,
        adm: Person,
        role: Role,
        request_id: str,
        category: str,
        group: tuple[str, str] | None,
    ) -> None:
        t_dir = t_end + self.jitter(0.3, 1.2)
        self.core_directory_role(t_dir, adm, role, add=False, group=group)
        details = [
            {"key": "RoleDefinitionOriginId", "value": role.template_id},
            {"key": "RoleDefinitionOriginType", "value": "BuiltInRole"},
            {"key": "TemplateId", "value": role.template_id},
            {"key": "AuditType", "value": "RemoveActivatedRole"},
            {"key": "ActionType", "value": "Revoke"},
            {
                "key": "OriginRoleAssignmentId",
                "value": base64.urlsafe_b64encode(self.rng.getrandbits(256).to_bytes(32, "big"))
                .decode()
                .rstrip("=")
                + "-1",
            },
            {"key": "RoleAssignmentRequestId", "value": request_id},
        ]
        self.pim_record(
            t_dir + self.jitter(5.5, 6.5),
            "Remove member from role (PIM activation expired)",
            role,
            None,
            adm,
            request_id,
            "Delete",
            "",
            details,
            category=category,
            group=group,
        )

    def deactivate(
        self, t: int, adm: Person, role: Role, request_id: str, category: str, group: tuple[str, str] | None
    ) -> None:
        new_request = self.uuid()
        details = [
            {"key": "RoleDefinitionOriginId", "value": role.template_id},
            {"key": "TemplateId", "value": role.template_id},
            {"key": "oid", "value": adm.id},
            {"key": "tid", "value": TENANT_ID},
            {"key": "ipaddr", "value": adm.ip},
            {"key": "RequestId", "value": new_request},
            {"key": "RoleAssignmentRequestId", "value": request_id},
        ]
        self.pim_record(
            t,
            "Remove member from role requested (PIM deactivate)",
            role,
            adm,
            adm,
            new_request,
            "Create",
            "Task done",
            details,
            category=category,
            group=group,
        )
        t_dir = t + self.jitter(8, 20)
        self.core_directory_role(t_dir, adm, role, add=False, group=group)
        self.pim_record(
            t_dir + self.jitter(4, 7),
            "Remove member from role completed (PIM deactivate)",
            role,
            adm,
            adm,
            new_request,
            "Delete",
            "Task done",
            details,
            category=category,
            group=group,
        )

    def denial(
        self,
        adm: Person,
        role_name: str,
        t_request: int,
        approver: Person,
        comment: str,
        t_denied: int | None = None,
        corr: str | None = None,
        other: str | None = None,
        late_s: float = 0.0,
    ) -> Record:
        role = ROLES[role_name]
        request_id = self.uuid()
        just = self.rng.choice(
            ("Need to review tenant settings", "Urgent fix requested by manager", "Audit preparation")
        )
        self.pim_record(
            t_request,
            "Add member to role requested (PIM activation)",
            role,
            adm,
            adm,
            request_id,
            "Create",
            just,
            self.activation_details(
                role,
                t_request,
                2,
                just,
                adm,
                request_id,
                audit_type="CreateRequestRoleActivation",
                approval=True,
            ),
        )
        self.pim_record(
            t_request + self.jitter(0.8, 2.5),
            "Add member to role approval requested (PIM activation)",
            role,
            adm,
            adm,
            request_id,
            "Update",
            just,
            self.activation_details(role, t_request, 2, just, adm, request_id),
        )
        t_denied = t_denied if t_denied is not None else t_request + self.jitter(180, 1200)
        return self.pim_record(
            t_denied,
            "Add member to role request denied (PIM activation)",
            role,
            approver,
            adm,
            request_id,
            "Update",
            comment,
            self.activation_details(role, t_request, 2, just, approver, request_id),
            corr=corr,
            other=other,
            late_s=late_s,
        )

    def settings_change(
        self,
        t: int,
        actor: Person,
        role: Role,
        reason: str,
        category: str = "RoleManagement",
        group: tuple[str, str] | None = None,
        corr: str | None = None,
        other: str | None = None,
    ) -> Record:
        """``Update role setting in PIM``: the changes are sentences in resultReason (sample 11, S24)."""
        corr = corr or self.uuid()
        policy = {"id": self.uuid(), "type": "Other", "modifiedProperties": [], "administrativeUnits": []}
        if group:  # PIM for Groups: [0] is Member/Owner, the group sits at [2] (S24)
            targets = [
                {
                    "id": role.template_id,
                    "displayName": role.name,
                    "type": "Role",
                    "modifiedProperties": [],
                    "administrativeUnits": [],
                },
                policy,
                {
                    "id": group[0],
                    "displayName": group[1],
                    "type": "Group",
                    "groupType": "azureAD",
                    "modifiedProperties": [],
                    "administrativeUnits": [],
                },
            ]
        else:
            targets = [
                {
                    "id": role.template_id,
                    "displayName": role.name,
                    "type": "Role",
                    "modifiedProperties": [],
                    "administrativeUnits": [],
                },
                policy,
                {
                    "id": TENANT_ID,
                    "displayName": TENANT_NAME,
                    "type": "Directory",
                    "modifiedProperties": [],
                    "administrativeUnits": [],
                },
            ]
        details = [
            {"key": "AuditType", "value": "UpdatePolicy"},
            {"key": "oid", "value": actor.id},
            {"key": "tid", "value": TENANT_ID},
            {"key": "wids", "value": f"{PRA_TEMPLATE},{DEFAULT_USER_WID}"},
            {"key": "ipaddr", "value": actor.ip},
            {"key": "UserAgent", "value": DEVICES[0][2]},
        ]
        props = {
            "id": pim_id(corr, other or self.uuid(), t),
            "category": category,
            "correlationId": corr,
            "result": "success",
            "resultReason": reason,
            "activityDisplayName": "Update role setting in PIM",
            "activityDateTime": iso(t, zulu=False),
            "loggedByService": "PIM",
            "operationType": "Update",
            "userAgent": None,
            "initiatedBy": actor.initiator(),
            "targetResources": targets,
            "additionalDetails": details,
        }
        return self.audit(t, props, actor.name, actor.ip)

    def background_pim(self) -> None:
        """Ordinary PIM traffic of admins not involved in an incident (<= 2 activations, >= 75 min apart).

        Every request is made between 07:15 and 17:30 UTC, so that it completes (approval included)
        inside the business hours of the demo config (07:00-19:00 UTC)."""
        r = self.rng
        a = self.admins
        approvers = [a[n] for n in APPROVERS]
        busy = {"grace", "ivan", "judy", "mallory", "trudy", "sybil", "oscar", "rupert"}
        busy |= {"carol", "olivia", "peggy", "victor", "niaj"} | {short for short, *_ in ADMINS[21:]}
        first_deactivate = True
        for short, adm in a.items():
            if short in busy:
                continue
            n = 1 if short in APPROVERS else r.choice((1, 2, 2))
            t = at(7, 15) + self.jitter(0, 4.5 * 3600)
            for k in range(n):
                role_name = r.choice(adm.eligible)
                approver = (
                    r.choice([p for p in approvers if p is not adm]) if ROLES[role_name].approval else None
                )
                self.admin_signin(adm, t - self.jitter(60, 240))
                end = "deactivate" if (k == 0 and r.random() < 0.25) else "expire"
                if short == "alice" and first_deactivate:
                    end, first_deactivate = "deactivate", False
                _, t_done, t_end = self.activation(
                    adm,
                    role_name,
                    t,
                    hours=r.choice((1, 2, 4, 8)),
                    approver=approver,
                    end=end,
                    mirror_activity="Add member to role." if short == "bob" and k == 0 else None,
                )
                if short == "dave" and k == 0:  # tries to deactivate after 3 minutes: refused
                    self.removal_too_short(t_done + self.jitter(150, 210), adm, ROLES[role_name])
                t = max(t_end, t_done + at(1, 15)) + self.jitter(600, 4 * 3600)
                if t > at(17, 30):
                    break
        # PIM for Groups: niaj becomes Member of the Tier-0 server admins group for an hour
        niaj = a["niaj"]
        t = at(13, 20) + self.jitter(0, 300)
        self.admin_signin(niaj, t - self.jitter(60, 200))
        self.activation(niaj, "Intune Administrator", t, hours=1, group=TIER0_GROUP)

    def removal_too_short(self, t: int, adm: Person, role: Role) -> None:
        request_id = self.uuid()
        details = [
            {"key": "RoleDefinitionOriginId", "value": role.template_id},
            {"key": "TemplateId", "value": role.template_id},
            {"key": "AuditType", "value": "CreateRoleRemovalRequest"},
            {"key": "oid", "value": adm.id},
            {"key": "tid", "value": TENANT_ID},
            {"key": "ipaddr", "value": adm.ip},
            {"key": "RequestId", "value": request_id},
        ]
        self.pim_record(
            t,
            "Process role removal request",
            role,
            adm,
            adm,
            request_id,
            "Create",
            "ActiveDurationTooShort",
            details,
            result="failure",
        )

    def near_misses(self) -> None:
        """Benign patterns next to each incident: they must not alert."""
        a = self.admins
        # adm-grace: 2 roles in 8 minutes (threshold is 3); the second completion is delivered twice.
        grace = a["grace"]
        self.admin_signin(grace, self.t(8, 27, 40))
        self.activation(grace, "Exchange Administrator", self.t(8, 30, 51.7), hours=4)
        second, _, _ = self.activation(grace, "SharePoint Administrator", self.t(8, 38, 2.3), hours=4)
        self.duplicate(second, 150)
        # adm-ivan: 3 roles spread over 2 h 10 min, each 1 h, never two at a time.
        ivan = a["ivan"]
        for k, (role_name, when) in enumerate(
            (
                ("Intune Administrator", self.t(9, 0, 12.6)),
                ("Reports Reader", self.t(10, 5, 40.1)),
                ("Application Administrator", self.t(11, 10, 3.9)),
            )
        ):
            self.admin_signin(ivan, when - at(0, 3))
            self.activation(
                ivan,
                role_name,
                when,
                hours=1,
                justification_key="justification" if k == 1 else "Justification",
            )
        # adm-judy: activates User Administrator, then retries 3 times: RoleAssignmentExists (benign).
        judy = a["judy"]
        ua = ROLES["User Administrator"]
        self.admin_signin(judy, self.t(12, 37, 10))
        self.activation(judy, "User Administrator", self.t(12, 40, 22.8), hours=8)
        for when in (self.t(12, 52, 9.1), self.t(12, 55, 47.4), self.t(13, 3, 30.2)):
            rid = self.uuid()
            self.pim_record(
                when,
                "Add member to role requested (PIM activation)",
                ua,
                judy,
                judy,
                rid,
                "Create",
                "RoleAssignmentExists",
                self.activation_details(
                    ua,
                    when,
                    8,
                    "Password resets for new starters",
                    judy,
                    rid,
                    audit_type="CreateRequestRoleActivation",
                    approval=False,
                ),
                result="failure",
            )
        # Single denials for two different admins, hours apart.
        self.admin_signin(a["oscar"], self.t(12, 15))
        self.denial(
            a["oscar"],
            "Security Administrator",
            self.t(12, 18, 33.0),
            a["victor"],
            "Please use the Exchange Administrator role for this task",
        )
        self.admin_signin(a["rupert"], self.t(16, 2))
        self.denial(
            a["rupert"],
            "Global Administrator",
            self.t(16, 5, 12.5),
            a["peggy"],
            "Global Administrator is not needed for app registrations",
        )
        # Settings changes that only strengthen policy.
        walter = a["walter"]
        self.settings_change(
            self.t(11, 52, 18.4),
            walter,
            ROLES["Exchange Administrator"],
            "Setting changes in this session: MFA on activation requirement enabled. "
            "Approval enabled with approvers [redacted].",
        )
        self.settings_change(
            self.t(16, 37, 5.9),
            walter,
            ROLES["Intune Administrator"],
            "Setting changes in this session: MFA on activation requirement enabled. "
            "Justification on activation requirement enabled.",
        )

    # --- planted incidents -------------------------------------------------------------------------
    def incident_a_break_glass(self) -> None:
        """bg-admin01 signs in single-factor from Hanoi at 02:17, refreshes tokens, resets a password."""
        bg = Person(
            BG_ADMIN01,
            "bg-admin01@contoso.onmicrosoft.com",
            "Emergency Access 01",
            UNUSUAL_PLACE,
            "192.0.2.77",
            0,
            "",
        )
        sid, when = INCIDENT_A_SIGNIN
        t = hms(when)
        self.emit(self.signin(bg, t, interactive=True, app=AZURE_PORTAL, sid=sid, break_glass=True), t)
        for k, (rid, rwhen, case) in enumerate(INCIDENT_A_REFRESH):
            tr = hms(rwhen)
            app = GRAPH_PS if k == 2 else AZURE_PORTAL
            rec = self.signin(
                bg,
                tr,
                interactive=False,
                app=app,
                sid=rid,
                break_glass=True,
                upn=bg.upn.upper() if case == "UPPER" else None,
            )
            if case == "UPPER":
                del rec["tenantId"]
            self.emit(rec, tr)
            if k == 2:
                self.duplicate(rec, 95)
        corr, tag, rwhen = INCIDENT_A_RESET
        t = hms(rwhen)
        victim = self.people[17]
        target = victim.target()
        target["displayName"] = None
        props = self.directory_props(
            t,
            "Reset password (by admin)",
            "UserManagement",
            "Update",
            bg.initiator(),
            [target],
            [],
            corr=corr,
            pid=f"Directory_{corr}_{tag}",
            newer=True,
        )
        props["initiatedBy"]["user"]["displayName"] = None
        self.audit(t, props, bg.upn, bg.ip)

    def incident_b_burst(self) -> list[Record]:
        """adm-mallory gets 4 distinct roles activated within 6 minutes at ~14:05."""
        mallory = self.admins["mallory"]
        self.admin_signin(mallory, self.t(14, 1, 55.2))
        out = []
        for k, (role_name, t_req, t_done, corr, other) in enumerate(INCIDENT_B):
            rec, _, _ = self.activation(
                mallory,
                role_name,
                hms(t_req),
                hours=2,
                t_completed=hms(t_done),
                corr=corr,
                other=other,
                justification="Mailbox migration cut-over",
                late_s=420 if k == 1 else 0,
            )
            if k == 2:
                rec["level"] = "Informational"
                del rec["Level"]
                rec["durationMs"] = "0"
            out.append(rec)
        return out

    def incident_c_denials(self) -> list[Record]:
        """adm-trudy: 4 denied / failed / expired activation requests within 16 minutes at ~10:30."""
        trudy, peggy = self.admins["trudy"], self.admins["peggy"]
        self.admin_signin(trudy, self.t(10, 23, 12.9))
        out = []
        for kind, role_name, when, corr, other in INCIDENT_C:
            t = hms(when)
            role = ROLES[role_name]
            if kind == "denied":
                comment = (
                    "No change ticket referenced; not approved"
                    if role.name.startswith("Global")
                    else "Denied: request does not match an open change"
                )
                out.append(
                    self.denial(
                        trudy,
                        role_name,
                        t - self.jitter(200, 260),
                        peggy,
                        comment,
                        t_denied=t,
                        corr=corr,
                        other=other,
                        late_s=360 if role.name.startswith("Priv") else 0,
                    )
                )
            elif kind == "failed":
                rid = self.uuid()
                reason = (
                    "RoleAssignmentRequestPolicyValidationFailed: The following policy rules failed: "
                    '["TicketingRule","JustificationRule"]'
                )
                out.append(
                    self.pim_record(
                        t,
                        "Add member to role requested (PIM activation)",
                        role,
                        trudy,
                        trudy,
                        rid,
                        "Create",
                        reason,
                        self.activation_details(
                            role,
                            t,
                            2,
                            "",
                            trudy,
                            rid,
                            audit_type="CreateRequestRoleActivation",
                            approval=True,
                        ),
                        result="failure",
                        corr=corr,
                        other=other,
                    )
                )
            else:  # a pending request from yesterday expired without an approver acting on it
                rid = self.uuid()
                requested = t - DAY * TICKS - self.jitter(2, 6)
                rec = self.pim_record(
                    t,
                    "PIM activation request expired",
                    role,
                    None,
                    trudy,
                    rid,
                    "Update",
                    "",
                    self.activation_details(role, requested, 2, "Quarterly tenant review", None, rid),
                    corr=corr,
                    other=other,
                )
                rec["Level"] = "4"
                out.append(rec)
        return out

    def incident_d_settings(self) -> list[Record]:
        """adm-sybil activates Privileged Role Administrator, then weakens GA and Tier-0 group settings."""
        a = self.admins
        sybil = a["sybil"]
        self.admin_signin(sybil, self.t(17, 37, 30.1))
        self.activation(
            sybil, "Privileged Role Administrator", self.t(17, 40, 4.4), hours=3, approver=a["walter"]
        )
        out = []
        for category, when, corr, other, reason in INCIDENT_D:
            if category == "RoleManagement":
                out.append(
                    self.settings_change(
                        hms(when), sybil, ROLES["Global Administrator"], reason, corr=corr, other=other
                    )
                )
            else:
                out.append(
                    self.settings_change(
                        hms(when),
                        sybil,
                        MEMBER_ROLE,
                        reason,
                        category=category,
                        group=TIER0_GROUP,
                        corr=corr,
                        other=other,
                    )
                )
        return out

    # --- issue 3: records for the assignment, approval, PIM-alert, CA and credential detectors --------
    def assignment_details(
        self,
        role: Role,
        start: int,
        end: int | None,
        justification: str,
        actor: Person,
        request_id: str,
    ) -> list[Record]:
        """additionalDetails of an admin's PIM assignment request (samples 02 and 03)."""
        d: list[Record] = [
            {"key": "RoleDefinitionOriginId", "value": role.template_id},
            {"key": "RoleDefinitionOriginType", "value": "BuiltInRole"},
            {"key": "TemplateId", "value": role.template_id},
            {"key": "StartTime", "value": iso(start)},
        ]
        if end is not None:
            d.append({"key": "ExpirationTime", "value": iso(end)})
        d += [
            {"key": "Justification", "value": justification},
            {"key": "oid", "value": actor.id},
            {"key": "tid", "value": TENANT_ID},
            {"key": "wids", "value": f"{PRA_TEMPLATE},{DEFAULT_USER_WID}"},
            {"key": "ipaddr", "value": actor.ip},
            {"key": "RequestId", "value": request_id},
        ]
        return d

    def pim_assignment(
        self,
        t: int,
        actor: Person,
        subject: Person,
        role_name: str,
        justification: str,
        *,
        eligible: bool,
        hours: float | None,
        ids: tuple[str, str] | None = None,
        failure: str = "",
    ) -> Record:
        """An admin assigns a role through PIM: ``requested`` a few seconds before ``completed`` (samples
        02/03); an active assignment also gets its Core Directory write by MS-PIM. ``hours`` None =
        permanent. With ``failure``, only the request is logged, with result failure, at ``t``."""
        role = ROLES[role_name]
        span = "permanent" if hours is None else "timebound"
        noun = "eligible member" if eligible else "member"
        request_id = self.uuid()
        end = None if hours is None else t + round(hours * 3600 * TICKS)
        details = self.assignment_details(role, t, end, justification, actor, request_id)
        requested = f"Add {noun} to role in PIM requested ({span})"
        if failure:
            return self.pim_record(
                t, requested, role, actor, subject, request_id, "Update", failure, details, result="failure"
            )
        self.pim_record(
            t - self.jitter(6, 15),
            requested,
            role,
            actor,
            subject,
            request_id,
            "Update",
            justification,
            details,
        )
        if not eligible:
            self.core_directory_role(t - self.jitter(1, 3), subject, role, add=True)
        return self.pim_record(
            t,
            f"Add {noun} to role in PIM completed ({span})",
            role,
            actor,
            subject,
            request_id,
            "Update",
            justification,
            details,
            corr=ids[0] if ids else None,
            other=ids[1] if ids else None,
        )

    def outside_pim_record(self, t: int, subject: Person, role: Role, ids: tuple[str, str]) -> Record:
        """PIM's per-assignment alert record for a role held outside PIM (entra-events.md §3.3, sample
        11): AuditType RoleElevatedOutsidePimAlert, a new RoleAssignmentRequestId and a StartTime equal
        to its own time at every scan, no Core Directory record alongside."""
        rid = self.uuid()
        details = [
            {"key": "RoleDefinitionOriginId", "value": role.template_id},
            {"key": "RoleDefinitionOriginType", "value": "BuiltInRole"},
            {"key": "TemplateId", "value": role.template_id},
            {"key": "StartTime", "value": iso(t)},
            {"key": "AuditType", "value": "RoleElevatedOutsidePimAlert"},
            {"key": "RoleAssignmentRequestId", "value": rid},
        ]
        return self.pim_record(
            t,
            "Add member to role outside of PIM (permanent)",
            role,
            None,
            subject,
            rid,
            "Create",
            "",
            details,
            corr=ids[0],
            other=ids[1],
        )

    def pim_alert_record(
        self,
        t: int,
        activity: str,
        actor: Person | None,
        alert: str,
        definition: str,
        ids: tuple[str, str] | None = None,
    ) -> Record:
        """A PIM alert record (Triggered / Resolve / Disable / Enable PIM alert): the alert is the first
        target, named as the community pass-through rule reads it (targetResources[0].displayName)."""
        corr, other = ids or (self.uuid(), self.uuid())
        targets = [
            {
                "id": f"DirectoryRole_{TENANT_ID}_{definition}",
                "displayName": alert,
                "type": "Role",
                "modifiedProperties": [],
                "administrativeUnits": [],
            },
            {
                "id": TENANT_ID,
                "displayName": TENANT_NAME,
                "type": "Directory",
                "modifiedProperties": [],
                "administrativeUnits": [],
            },
        ]
        details: list[Record] = []
        if actor is not None:
            details = [
                {"key": "oid", "value": actor.id},
                {"key": "tid", "value": TENANT_ID},
                {"key": "wids", "value": f"{ROLES['Global Administrator'].template_id},{DEFAULT_USER_WID}"},
                {"key": "ipaddr", "value": actor.ip},
            ]
        props = {
            "id": pim_id(corr, other, t),
            "category": "RoleManagement",
            "correlationId": corr,
            "result": "success",
            "resultReason": "",
            "activityDisplayName": activity,
            "activityDateTime": iso(t, zulu=False),
            "loggedByService": "PIM",
            "operationType": "Update",
            "userAgent": None,
            "initiatedBy": actor.initiator() if actor else {"user": dict(PIM_SYSTEM_USER)},
            "targetResources": targets,
            "additionalDetails": details,
        }
        return self.audit(t, props, actor.name if actor else "Azure AD PIM", actor.ip if actor else None)

    @staticmethod
    def ca_policy(
        policy_id: str,
        name: str,
        state: str,
        *,
        roles: Sequence[str] = (),
        groups: Sequence[str] = (),
        grant: Record,
        modified: str,
        apps: Sequence[str] = ("All",),
    ) -> Record:
        """A conditionalAccessPolicy as Entra writes it into modifiedProperties (Graph v1.0 layout)."""
        return {
            "id": policy_id,
            "displayName": name,
            "createdDateTime": "2024-11-04T10:12:31.5520148+00:00",
            "modifiedDateTime": modified,
            "state": state,
            "conditions": {
                "applications": {
                    "includeApplications": list(apps),
                    "excludeApplications": [],
                    "includeUserActions": [],
                    "includeAuthenticationContextClassReferences": [],
                    "applicationFilter": None,
                },
                "users": {
                    "includeUsers": [],
                    "excludeUsers": [BG_ADMIN01, BG_ADMIN02],
                    "includeGroups": list(groups),
                    "excludeGroups": [],
                    "includeRoles": list(roles),
                    "excludeRoles": [],
                },
                "locations": None,
                "userRiskLevels": [],
                "signInRiskLevels": [],
                "clientAppTypes": ["all"],
                "servicePrincipalRiskLevels": [],
            },
            "grantControls": grant,
            "sessionControls": None,
        }

    def ca_policy_update(
        self, t: int, actor: Person, old: Record, new: Record, corr: str, pid: str | None = None
    ) -> Record:
        """``Update conditional access policy`` (service Conditional Access, category Policy): the whole
        policy before and after as JSON in the ``ConditionalAccessPolicy`` modified property."""
        r = self.rng
        tag = "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(5))
        target = {
            "id": new["id"],
            "displayName": new["displayName"],
            "type": "Policy",
            "modifiedProperties": [
                {
                    "displayName": "ConditionalAccessPolicy",
                    "oldValue": json.dumps(old, separators=(",", ":")),
                    "newValue": json.dumps(new, separators=(",", ":")),
                }
            ],
            "administrativeUnits": [],
        }
        props = self.directory_props(
            t,
            "Update conditional access policy",
            "Policy",
            "Update",
            actor.initiator(),
            [target],
            [{"key": "Category", "value": "Conditional Access"}],
            corr=corr,
            pid=pid or f"IPCGraph_{corr}_{tag}_{r.randrange(10**7, 10**8)}",
            service="Conditional Access",
        )
        return self.audit(t, props, actor.name, actor.ip)

    def tap_registered(
        self, t: int, actor: Person, subject: Person, corr: str | None = None, pid: str | None = None
    ) -> Record:
        """An admin creates a Temporary Access Pass for a user (Authentication Methods, UserManagement)."""
        props = self.directory_props(
            t,
            "Admin registered security info",
            "UserManagement",
            "Add",
            actor.initiator(),
            [subject.target()],
            [{"key": "Method", "value": "Temporary Access Pass"}],
            corr=corr,
            pid=pid,
            service="Authentication Methods",
        )
        props["resultReason"] = TAP_REASON
        return self.audit(t, props, actor.name, actor.ip)

    def make_person(self, label: str, upn: str, name: str, place: int = 3) -> Person:
        return Person(
            fixed_guid(f"user:{label}"), upn, name, PLACES[place], f"198.51.100.{10 + place * 3}", 0, ""
        )

    def incidents_e_to_m_assignments(self) -> None:
        """Role assignments outside PIM and through it, PIM's alert records, root elevation, CA change."""
        a = self.admins
        chuck, peggy, victor, walter = a["chuck"], a["peggy"], a["victor"], a["walter"]
        xavier, faythe, wendy, uma, olivia = a["xavier"], a["faythe"], a["wendy"], a["uma"], a["olivia"]
        pra = ROLES["Privileged Role Administrator"]
        svc = self.make_person("svc-mailflow", f"svc-mailflow@{DOMAIN}", "Mail Flow Service")
        bg02 = Person(
            BG_ADMIN02, "bg-admin02@contoso.onmicrosoft.com", "Emergency Access 02", PLACES[3], "", 0, ""
        )
        # f. PIM's ~2-hourly scan reports the legacy standing assignment until adm-peggy removes it.
        for k, when in enumerate(INCIDENT_F_SCANS):
            self.outside_pim_record(hms(when), svc, ROLES["Exchange Administrator"], planted(f"f{k}"))
        # adm-peggy (Global Administrator for 8 h from ~09:30) cleans up during the day.
        self.admin_signin(peggy, self.t(9, 14, 3.3))
        self.activation(peggy, "Global Administrator", self.t(9, 17, 40.2), hours=8, approver=victor)
        self.core_directory_role(
            self.t(10, 48, 20.5), svc, ROLES["Exchange Administrator"], add=False, initiator=peggy
        )
        # e. adm-chuck: PRA activation (approved), the direct grant, then the alert is switched off.
        self.admin_signin(chuck, self.t(9, 52, 30.8))
        self.activation(chuck, "Privileged Role Administrator", self.t(9, 55, 2.6), hours=2, approver=victor)
        everyday = chuck.admin_of
        assert everyday is not None
        corr, _ = planted("e-add")
        self.core_directory_role(
            hms(INCIDENT_E_ADD),
            everyday,
            pra,
            add=True,
            initiator=chuck,
            corr=corr,
            pid=f"Directory_{corr}_CHK7Q_538120447",
        )
        self.pim_alert_record(
            hms(INCIDENT_E_DISABLE),
            "Disable PIM alert",
            chuck,
            OUTSIDE_PIM_ALERT,
            OUTSIDE_PIM_DEFINITION,
            planted("e-disable"),
        )
        # ... adm-peggy removes the grant and switches the alert back on (look-alike: Enable PIM alert).
        self.core_directory_role(self.t(15, 12, 8.1), everyday, pra, add=False, initiator=peggy)
        self.pim_alert_record(
            self.t(15, 20, 45.9), "Enable PIM alert", peggy, OUTSIDE_PIM_ALERT, OUTSIDE_PIM_DEFINITION
        )
        # g. permanent Global Administrator for adm-xavier; the same for bg-admin02 (look-alike: break-glass
        #    accounts are permanent Global Administrators by design).
        self.pim_assignment(
            hms(INCIDENT_G_PERMANENT),
            peggy,
            xavier,
            "Global Administrator",
            "Tenant migration project, temporary",
            eligible=False,
            hours=None,
            ids=planted("g-permanent"),
        )
        self.pim_assignment(
            hms(INCIDENT_G_BREAK_GLASS),
            peggy,
            bg02,
            "Global Administrator",
            "Quarterly break-glass review: re-create the permanent assignment",
            eligible=False,
            hours=None,
            ids=planted("g-break-glass"),
        )
        # j. PIM's next scans notice the extra Global Administrator; adm-peggy resolves it in between.
        self.pim_alert_record(
            hms(INCIDENT_J_TRIGGERED[0]),
            "Triggered PIM alert",
            None,
            TOO_MANY_GA_ALERT,
            TOO_MANY_GA_DEFINITION,
            planted("j0"),
        )
        self.pim_alert_record(
            self.t(13, 2, 18.6), "Resolve PIM alert", peggy, TOO_MANY_GA_ALERT, TOO_MANY_GA_DEFINITION
        )
        self.pim_alert_record(
            hms(INCIDENT_J_TRIGGERED[1]),
            "Triggered PIM alert",
            None,
            TOO_MANY_GA_ALERT,
            TOO_MANY_GA_DEFINITION,
            planted("j1"),
        )
        # h. adm-xavier elevates to User Access Administrator at the Azure root ...
        self.admin_signin(xavier, self.t(11, 31, 50.2))
        t = hms(INCIDENT_H_ELEVATE)
        corr, _ = planted("h-elevate")
        props = self.directory_props(
            t,
            ELEVATE_ACCESS,
            "AzureRBACRoleManagementElevateAccess",
            "Assign",
            xavier.initiator(),
            [xavier.target()],
            [],
            corr=corr,
            pid=fixed_guid("planted:h-elevate:id"),
            service="Azure RBAC (Elevated Access)",
        )
        self.audit(t, props, xavier.name, xavier.ip)
        # i. ... and puts CA003 (phishing-resistant MFA for admin roles) in report-only mode.
        admin_roles = [ROLES[n].template_id for n in ROLES if n != "Reports Reader"]
        strength = {
            "operator": "OR",
            "builtInControls": [],
            "customAuthenticationFactors": [],
            "termsOfUse": [],
            "authenticationStrength": {
                "id": "00000000-0000-0000-0000-000000000004",
                "displayName": "Phishing-resistant MFA",
            },
        }
        ca3_id, ca3_name = CA_POLICIES[2][0], CA_POLICIES[2][1]
        old = self.ca_policy(
            ca3_id,
            ca3_name,
            "enabled",
            roles=admin_roles,
            grant=strength,
            modified="2025-10-21T14:03:12.1043377+00:00",
        )
        new = dict(
            old,
            state="enabledForReportingButNotEnforced",
            modifiedDateTime=iso(hms(INCIDENT_I_CA), zulu=False),
        )
        corr = planted("i-ca")[0]
        self.ca_policy_update(hms(INCIDENT_I_CA), xavier, old, new, corr, f"IPCGraph_{corr}_K3M8R_73310596")
        # Look-alikes: adm-olivia (Security Administrator) edits a policy that targets a user group only,
        # and renames a pilot policy.
        self.admin_signin(olivia, self.t(9, 26, 11.4))
        self.activation(olivia, "Security Administrator", self.t(9, 29, 35.0), hours=4, approver=walter)
        mfa = {
            "operator": "OR",
            "builtInControls": ["compliantDevice"],
            "customAuthenticationFactors": [],
            "termsOfUse": [],
        }
        e5 = fixed_guid("group:M365 E5 Licensed")
        ca4_id, ca4_name = CA_POLICIES[3][0], CA_POLICIES[3][1]
        t = self.t(9, 52, 41.7)
        old = self.ca_policy(
            ca4_id,
            ca4_name,
            "enabled",
            groups=[e5],
            grant=mfa,
            modified="2025-12-02T08:44:09.6630918+00:00",
            apps=["Office365"],
        )
        new = dict(old, state="enabledForReportingButNotEnforced", modifiedDateTime=iso(t, zulu=False))
        self.ca_policy_update(t, olivia, old, new, self.uuid())
        pilot_id = fixed_guid("ca:CA010")
        block = {
            "operator": "OR",
            "builtInControls": ["block"],
            "customAuthenticationFactors": [],
            "termsOfUse": [],
        }
        t = self.t(10, 10, 3.2)
        old = self.ca_policy(
            pilot_id,
            "CA010: Block legacy clients (pilot)",
            "enabledForReportingButNotEnforced",
            roles=admin_roles,
            grant=block,
            modified="2026-02-17T16:20:55.0918812+00:00",
        )
        new = dict(
            old,
            displayName="CA010: Block legacy authentication for admins (pilot)",
            modifiedDateTime=iso(t, zulu=False),
        )
        self.ca_policy_update(t, olivia, old, new, self.uuid())
        # k. adm-faythe (PRA from ~13:30): a Reports Reader eligibility for a new starter (not privileged),
        #    a refused Security Administrator request (too long), then a guest made eligible for
        #    Application Administrator.
        self.admin_signin(faythe, self.t(13, 20, 40.9))
        self.activation(
            faythe, "Privileged Role Administrator", self.t(13, 23, 9.3), hours=4, approver=walter
        )
        starter, analyst = self.people[140], self.people[141]
        self.quiet |= {self.people[k].id for k in (120, 121, 122, 123, 124, 150, 151, 152)}
        self.pim_assignment(
            self.t(13, 52, 10.4),
            faythe,
            starter,
            "Reports Reader",
            "New starter, reporting team",
            eligible=True,
            hours=180 * 24,
        )
        self.pim_assignment(
            self.t(14, 3, 33.8),
            faythe,
            analyst,
            "Security Administrator",
            "SOC rotation",
            eligible=True,
            hours=365 * 24,
            failure="RoleAssignmentRequestPolicyValidationFailed: The following policy rules failed: "
            '["ExpirationRule"]',
        )
        guest = self.make_person(
            "guest:nadia.khan",
            "nadia.khan_fabrikam.com#EXT#@contoso.onmicrosoft.com",
            "Nadia Khan (Fabrikam)",
        )
        self.pim_assignment(
            hms(INCIDENT_K_GUEST),
            faythe,
            guest,
            "Application Administrator",
            "Fabrikam SSO integration, ticket CHG204511",
            eligible=True,
            hours=30 * 24,
            ids=planted("k-guest"),
        )
        # Look-alike for l: adm-faythe makes 3 people eligible for User Administrator within 24 minutes.
        for k, t_done in enumerate((self.t(16, 20, 2.5), self.t(16, 31, 48.0), self.t(16, 44, 13.9))):
            self.pim_assignment(
                t_done,
                faythe,
                self.people[150 + k],
                "User Administrator",
                "Regional IT support",
                eligible=True,
                hours=90 * 24,
            )
        # l. adm-wendy (PRA) makes 5 service-desk staff eligible for Helpdesk Administrator.
        self.admin_signin(wendy, self.t(15, 22, 5.1))
        self.activation(
            wendy, "Privileged Role Administrator", self.t(15, 24, 50.6), hours=2, approver=victor
        )
        for k, when in enumerate(INCIDENT_L_BULK):
            self.pim_assignment(
                hms(when),
                wendy,
                self.people[120 + k],
                "Helpdesk Administrator",
                "Service desk onboarding, CHG204733",
                eligible=True,
                hours=365 * 24,
                ids=planted(f"l{k}"),
            )
        # m. adm-uma (PRA) makes herself an active Intune Administrator for 8 hours.
        self.admin_signin(uma, self.t(16, 38, 12.0))
        self.activation(uma, "Privileged Role Administrator", self.t(16, 41, 0.7), hours=1, approver=walter)
        self.pim_assignment(
            hms(INCIDENT_M_SELF),
            uma,
            uma,
            "Intune Administrator",
            "Autopilot profile fix",
            eligible=False,
            hours=8,
            ids=planted("m-self"),
        )

    def incidents_n_to_s_activations(self) -> None:
        """Activation patterns, approvals and a Temporary Access Pass."""
        a = self.admins
        victor, walter, peggy = a["victor"], a["walter"], a["peggy"]
        # n. adm-yasmin: Exchange Administrator 3 times in 2 h 24 min, 30 minutes each time.
        yasmin = a["yasmin"]
        for k, (requested, completed) in enumerate(INCIDENT_N_ACTIVATIONS):
            corr, other = planted(f"n{k}")
            self.admin_signin(yasmin, hms(requested) - self.jitter(100, 200))
            self.activation(
                yasmin,
                "Exchange Administrator",
                hms(requested),
                hours=0.5,
                t_completed=hms(completed),
                corr=corr,
                other=other,
                justification="Mail flow rule changes, CHG204620",
            )
        # Look-alike: adm-carol activates SharePoint Administrator twice, 2 h 20 min apart.
        carol = a["carol"]
        for when in (self.t(9, 10, 44.2), self.t(11, 31, 2.9)):
            self.admin_signin(carol, when - self.jitter(90, 200))
            self.activation(carol, "SharePoint Administrator", when, hours=1)
        # o. adm-quentin activates SharePoint Administrator at 23:10 (he already did at 08:14: not a
        #    first activation).
        quentin = a["quentin"]
        when = self.t(8, 14, 2.2)
        self.admin_signin(quentin, when - self.jitter(100, 200))
        self.activation(quentin, "SharePoint Administrator", when, hours=1)
        (requested, completed) = INCIDENT_O_OFF_HOURS
        corr, other = planted("o-night")
        self.admin_signin(quentin, hms(requested) - self.jitter(150, 260))
        self.activation(
            quentin,
            "SharePoint Administrator",
            hms(requested),
            hours=1,
            t_completed=hms(completed),
            corr=corr,
            other=other,
            justification="Site collection restore",
        )
        # p. adm-lena: a normal morning activation; in the afternoon two MFA denials, then a high-risk
        #    sign-in (MFA approved) and, 20 minutes later, a Security Administrator request.
        lena = a["lena"]
        (requested, completed) = INCIDENT_P_MORNING
        self.admin_signin(lena, hms(requested) - self.jitter(120, 200))
        corr, other = planted("p-morning")
        self.activation(
            lena,
            "User Administrator",
            hms(requested),
            hours=2,
            t_completed=hms(completed),
            corr=corr,
            other=other,
            justification="Starter accounts for the Berlin office",
        )
        risky_ip, (sid, risky_at) = "203.0.113.66", INCIDENT_P_RISKY_SIGNIN
        for k in range(2):
            tf = hms(risky_at) - at(0, 5 - 2 * k) - self.jitter(0, 20)
            self.emit(
                self.signin(
                    lena,
                    tf,
                    interactive=True,
                    app=AZURE_PORTAL,
                    admin=True,
                    ip=risky_ip,
                    code=500121,
                    reason="Authentication failed during strong authentication request.",
                    mfa_method="Mobile app notification",
                ),
                tf,
            )
        t = hms(risky_at)
        self.emit(
            self.signin(
                lena,
                t,
                interactive=True,
                app=AZURE_PORTAL,
                admin=True,
                ip=risky_ip,
                sid=sid,
                risk=("high", ["maliciousIPAddress", "unfamiliarFeatures"]),
                mfa_method="Mobile app notification",
            ),
            t,
        )
        self.activation(
            lena,
            "Security Administrator",
            hms(INCIDENT_P_REQUEST),
            hours=2,
            approver=walter,
            justification="Review alert SEC-4471",
            requested_ids=planted("p-risky"),
        )
        # q. adm-nora's Global Administrator request: approved only after 50 minutes ...
        nora = a["nora"]
        (requested, delay) = INCIDENT_Q_LATE
        self.admin_signin(nora, hms(requested) - self.jitter(120, 240))
        self.activation(
            nora,
            "Global Administrator",
            hms(requested),
            hours=2,
            approver=victor,
            approve_after_s=delay,
            pending_ids=planted("q-late-pending"),
            approved_ids=planted("q-late-approved"),
            justification="Licensing true-up with Microsoft, CHG204650",
        )
        # ... and adm-hugo's Security Administrator request: nobody decides before midnight.
        hugo = a["hugo"]
        self.admin_signin(hugo, hms(INCIDENT_Q_UNDECIDED) - self.jitter(120, 240))
        self.activation(
            hugo,
            "Security Administrator",
            hms(INCIDENT_Q_UNDECIDED),
            hours=4,
            approver=walter,
            undecided=True,
            approve_after_s=0,
            pending_ids=planted("q-undecided"),
            justification="Defender incident 8812 follow-up",
        )
        # r. adm-victor approves his own Global Administrator request.
        (requested, delay) = INCIDENT_R_SELF_APPROVED
        self.admin_signin(victor, hms(requested) - self.jitter(120, 240))
        self.activation(
            victor,
            "Global Administrator",
            hms(requested),
            hours=1,
            approver=victor,
            approve_after_s=delay,
            approved_ids=planted("r-self-approved"),
            justification="Emergency fix for federation settings",
        )
        # t. adm-niaj activates the Intune Administrator directory role for the first time (so far only the
        #    Member role of PIM-Tier0-Server-Admins, in background_pim).
        niaj = a["niaj"]
        (requested, completed) = INCIDENT_T_FIRST_TIME
        self.admin_signin(niaj, hms(requested) - self.jitter(120, 200))
        corr, other = planted("t-first")
        self.activation(
            niaj,
            "Intune Administrator",
            hms(requested),
            hours=1,
            t_completed=hms(completed),
            corr=corr,
            other=other,
            justification="Autopilot deployment profile for the London office",
        )
        # s. adm-peggy issues a Temporary Access Pass to adm-judy (User Administrator since 12:40).
        corr = planted("s-tap")[0]
        self.tap_registered(hms(INCIDENT_S_TAP), peggy, a["judy"], corr, f"Directory_{corr}_TAP4W_601783377")
        # Look-alike: adm-heidi (Helpdesk) issues one to a new starter (an ordinary user).
        self.tap_registered(self.t(10, 15, 40.3), a["heidi"], self.people[140])

    # --- drift, duplicates, output -----------------------------------------------------------------
    def duplicate(self, record: Record, after_s: float) -> None:
        """Entra re-sends a record unchanged (same properties.id) in a later message."""
        src = next(i for i in self.items if i.record is record)
        self.items.append(
            Item(src.deliver + round(after_s * TICKS), len(self.items), json.loads(json.dumps(record)))
        )

    def background_drift(self) -> None:
        r = self.rng
        signins = [
            i.record
            for i in self.items
            if i.record["category"] in ("SignInLogs", "NonInteractiveUserSignInLogs")
            and i.record["properties"]["userId"] not in (BG_ADMIN01, BG_ADMIN02)
        ]
        audits = [
            i.record
            for i in self.items
            if i.record["category"] == "AuditLogs" and i.record["properties"]["loggedByService"] != "PIM"
        ]
        for rec in r.sample(signins, 40):
            rec["Level"] = "4"
        for rec in r.sample(signins, 3):
            rec["durationMs"] = "0"
        for rec in r.sample(audits, 3):
            del rec["Level"]
            rec["level"] = "Informational"
        for rec in r.sample(audits, 2):
            del rec["tenantId"]
        for rec in r.sample(signins, 4) + r.sample(audits, 1):
            self.duplicate(rec, r.uniform(60, 400))
        for item in r.sample([i for i in self.items if i.record["category"] != "AuditLogs"], 10):
            item.deliver += self.jitter(240, 540)  # a few records arrive 4-9 minutes late

    def build(self) -> None:
        self.incident_a_break_glass()
        self.incident_b_burst()
        self.incident_c_denials()
        self.incident_d_settings()
        self.incidents_e_to_m_assignments()
        self.incidents_n_to_s_activations()
        self.near_misses()
        self.background_pim()
        self.background_signins()
        self.background_audit()
        self.service_principal_signins()
        self.graph_activity()
        self.background_drift()

    def messages(self) -> list[list[Record]]:
        """Order by arrival at the hub and cut into Event Hub messages of 50-100 records."""
        items = sorted(self.items, key=lambda i: (i.deliver, i.seq))
        out: list[list[Record]] = []
        k = 0
        while k < len(items):
            n, left = self.rng.randrange(50, 101), len(items) - k
            if left - n < 50:  # no runt message at the end
                n = left if left <= 100 else left // 2
            out.append([i.record for i in items[k : k + n]])
            k += n
        return out


def render(seed: int = SEED) -> bytes:
    demo = Demo(seed)
    demo.build()
    lines = [
        json.dumps({"records": batch}, ensure_ascii=False, separators=(",", ":")) for batch in demo.messages()
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=9, mtime=0)


def main() -> int:
    data = render()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

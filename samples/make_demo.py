"""Generate pimwatch's bundled demo stream: one day (2026-03-10 UTC) of a mid-size Entra tenant.

Run ``python samples/make_demo.py``. It (re)writes ``samples/demo/day.eventhub.jsonl.gz``: Event Hub
messages, one per line, each ``{"records": [...]}`` with 50-100 diagnostic-setting records, the way an
Entra diagnostic setting delivers AuditLogs, SignInLogs, NonInteractiveUserSignInLogs and friends to
Event Hub. The output is byte-for-byte reproducible (fixed seed, fixed base date, gzip mtime 0).

What is in the day (Contoso, ~300 users, 21 PIM admins, two break-glass accounts):

* ~7,000 user sign-ins (interactive ``SignInLogs`` and the more numerous ``NonInteractiveUserSignInLogs``)
  with a diurnal curve, ~6 % interactive failures (50126, 50074, 53003, 500121, ...), a few
  ``ServicePrincipalSignInLogs`` and two ``MicrosoftGraphActivityLogs`` records (categories to skip);
* a few hundred ordinary audit records (Update user, Add member to group, User registered security
  info, Reset password (self-service), Update application, ...);
* PIM activation life cycles (requested, approval requested / approved, completed plus the Core
  Directory ``Add member to role`` by MS-PIM, expiry plus the Core Directory removal ~6 s earlier,
  early deactivation, an ``ActiveDurationTooShort`` failure, single denials, ``RoleAssignmentExists``
  retries, two settings changes that only strengthen policy);
* four planted incidents (below), and the documented drift: lowercase ``level`` = "Informational",
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
(rknightion/graph2otel). No key comes from the fabricated examples listed in SOURCES.md. Illustrative,
not captured: the failure text of a policy-refused activation request and the denial comments.
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

Near misses that must NOT alert: bg-admin02 (no activity at all); adm-grace activates 2 roles in 8 min
(one of them delivered twice, so only a tool without de-duplication counts 3); adm-ivan activates 3 roles
over 2 h 10 min; adm-judy gets 3 ``RoleAssignmentExists`` failures in 11 min; adm-oscar and adm-rupert get
one denial each; adm-heidi (Helpdesk) resets passwords during office hours; two settings changes by
adm-walter only strengthen policy.
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
)
APPROVERS = ("peggy", "victor", "walter")


class Demo:
    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.items: list[Item] = []
        self.role_objects = {name: self.uuid() for name in ROLES}  # tenant-specific directory role objects
        self.people: list[Person] = []
        self.admins: dict[str, Person] = {}
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
    ) -> Record:
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
                mfa_method = (
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
            "riskLevelAggregated": "medium" if break_glass and interactive else "none",
            "riskLevelDuringSignIn": "medium" if break_glass and interactive else "none",
            "riskState": "atRisk" if break_glass and interactive else "none",
            "riskEventTypes": [],
            "riskEventTypes_v2": ["unfamiliarFeatures"] if break_glass and interactive else [],
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
        users = self.people[:300]
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
            (self.uuid(), n)
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
    ) -> Record:
        """The directory write that PIM performs, initiated by app MS-PIM (samples 01 and 10)."""
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
            {"app": dict(MS_PIM_APP)},
            targets,
            newer=True,
        )
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
    ) -> tuple[Record, int, int]:
        """One full activation: request [-> approval] -> completed + Core Directory mirror -> end.

        ``end`` is "expire" (MS-PIM removal then "Azure AD PIM" expiry ~6 s later), "deactivate"
        (the user deactivates early) or "keep". Returns the completed record, its time and the end time.
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
        )
        t = t_request
        if approver is not None:
            t += self.jitter(0.8, 2.5)
            self.pim_record(
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
            )
            t += self.jitter(150, 900)
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
        """Ordinary PIM traffic of admins not involved in an incident (<= 2 activations, >= 75 min apart)."""
        r = self.rng
        a = self.admins
        approvers = [a[n] for n in APPROVERS]
        busy = {"grace", "ivan", "judy", "mallory", "trudy", "sybil", "oscar", "rupert"}
        first_deactivate = True
        for short, adm in a.items():
            if short in busy:
                continue
            n = 1 if short in APPROVERS else r.choice((1, 2, 2))
            t = at(6, 30) + self.jitter(0, 5 * 3600)
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
                if t > at(21, 0):
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
        self.admin_signin(sybil, self.t(19, 27, 30.1))
        self.activation(
            sybil, "Privileged Role Administrator", self.t(19, 30, 4.4), hours=1, approver=a["walter"]
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

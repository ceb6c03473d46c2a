"""Alert entities (pimwatch.detection.entities) and MITRE tactics: what a record names, in Sentinel's
vocabulary, bounded, and the same list whatever order the records of an alert fold in."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimwatch.detection import entities
from pimwatch.detection.alerts import Alert, Severity, fold
from pimwatch.detection.detector import TACTICS, Detector, discover
from pimwatch.detection.normalize import audit_event, signin_event
from pimwatch.detection.records import directory, guid, pim, signin, user
from pimwatch.testing.harness import run_records

ALICE = user("adm-alice")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
PLUGINS = discover()


def _events_entities(rec: dict[str, Any]) -> list[dict[str, str]]:
    """What the real normalizer's Event of an Event Hub record names."""
    make = signin_event if rec["category"].endswith("SignInLogs") else audit_event
    return entities.of_event(make(rec["properties"], rec, "eventhub", rec["category"], rec))


def test_a_pim_record_names_actor_target_ip_and_role() -> None:
    rec = pim(
        "Add member to role completed (PIM activation)",
        "2026-03-10T09:00:00Z",
        ALICE,
        principal=ALICE,
        role=GA,
    )
    found = _events_entities(rec)
    assert {"type": "role", "roleDefinitionId": GA[1], "name": GA[0]} in found
    assert {"type": "ip", "address": "20.190.1.10"} in found
    accounts = [e for e in found if e["type"] == "account"]
    assert accounts and all(e["upn"] == "adm-alice@contoso.com" for e in accounts)
    assert accounts[0]["aadUserId"] == ALICE[0]


def test_an_app_actor_is_a_cloud_application_and_a_group_scope_a_security_group() -> None:
    mirror = directory("Add member to role", "2026-03-10T09:00:05Z", "MS-PIM", ALICE, role=GA)
    assert {"type": "cloud-application", "id": guid("sp", "MS-PIM"), "name": "MS-PIM"} in _events_entities(
        mirror
    )
    group = (guid("group", "tier0"), "PIM-Tier0")
    rec = pim(
        "Add member to role completed (PIM activation)",
        "2026-03-10T09:00:00Z",
        ALICE,
        principal=ALICE,
        role=("Member", "member"),
        group=group,
        category="GroupManagement",
    )
    assert {"type": "security-group", "objectGuid": group[0], "name": "PIM-Tier0"} in _events_entities(rec)


def test_a_signin_names_its_ip_and_app() -> None:
    rec = signin(ALICE, "2026-03-10T02:17:23Z", ip="192.0.2.77")
    found = _events_entities(rec)
    assert {"type": "ip", "address": "192.0.2.77"} in found
    assert any(e["type"] == "cloud-application" and e.get("appId") for e in found)


def test_values_are_cleaned_and_bounded() -> None:
    long = "x" * 5000 + "\n\x1b[31m"
    e = entities.entity("account", upn="A@Contoso.com", displayName=long)
    assert e is not None and e["upn"] == "a@contoso.com"
    assert len(e["displayName"]) == entities.VALUE_CHARS and e["displayName"].endswith(entities.MARKER)
    assert entities.entity("ip", address=None) is None  # nothing that says which one
    with pytest.raises(ValueError, match="unknown entity type 'host'"):
        entities.entity("host", name="x")


_ENTITY = st.one_of(
    st.builds(lambda i: {"type": "ip", "address": f"192.0.2.{i}"}, st.integers(0, 60)),
    st.builds(
        lambda i, named: (
            {"type": "account", "aadUserId": f"id-{i}"} | ({"displayName": f"N{i}"} if named else {})
        ),
        st.integers(0, 30),
        st.booleans(),
    ),
    st.builds(lambda i: {"type": "role", "name": f"Role {i}"}, st.integers(0, 10)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_ENTITY, max_size=12), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_merge_is_the_same_in_any_order_and_grouping(
    lists: list[list[dict[str, str]]], rnd: random.Random
) -> None:
    once = entities.merge(*lists)
    assert len(once) <= entities.LIMIT
    shuffled = [list(x) for x in lists]
    rnd.shuffle(shuffled)
    for x in shuffled:
        rnd.shuffle(x)
    stepwise: list[dict[str, str]] = []
    for x in shuffled:  # folding one side at a time, as the store does
        merged = entities.merge(stepwise, x)
        assert entities.changes(stepwise, x) or merged == stepwise  # the fold's fast check misses nothing
        stepwise = merged
    assert stepwise == once == entities.merge(*shuffled)
    # one entity once: the sighting that says more wins (a display name)
    ids = [e.get("aadUserId") for e in once if e["type"] == "account"]
    assert len(ids) == len(set(ids))


def test_fold_unions_entities_whatever_comes_first() -> None:
    def alert(t: str, rid: str, ents: list[dict[str, str]]) -> Alert:
        return Alert(
            id="a",
            detector="d",
            severity=Severity.HIGH,
            title=t,
            summary="",
            runbook="",
            mitre=[],
            principal={},
            context={},
            events=[(t, rid)],
            entities=ents,
        )

    a = alert("2026-03-10T01:00:00Z", "r1", [{"type": "ip", "address": "192.0.2.1"}])
    b = alert("2026-03-10T02:00:00Z", "r2", [{"type": "ip", "address": "192.0.2.2"}])
    one = fold(fold(None, a, a.events, {}), b, b.events, {})
    a2 = alert("2026-03-10T01:00:00Z", "r1", [{"type": "ip", "address": "192.0.2.1"}])
    b2 = alert("2026-03-10T02:00:00Z", "r2", [{"type": "ip", "address": "192.0.2.2"}])
    other = fold(fold(None, b2, b2.events, {}), a2, a2.events, {})
    assert one.to_dict() == other.to_dict()
    assert [e["address"] for e in one.entities] == ["192.0.2.1", "192.0.2.2"]


def test_every_alert_of_a_case_names_its_principal_and_the_detector_tactics() -> None:
    recs = [
        pim(
            "Add member to role completed (PIM activation)",
            "2026-03-10T09:00:00Z",
            ALICE,
            principal=ALICE,
            role=GA,
        ),
    ]
    alerts, _ = run_records(recs, PLUGINS)
    assert alerts
    for a in alerts:
        d = a.to_dict()
        assert d["tactics"] and set(d["tactics"]) <= set(TACTICS)
        assert any(e.get("aadUserId") == ALICE[0] for e in d["entities"]), d


@pytest.mark.parametrize(
    ("tactics", "error"),
    [(("Privilege Escalation",), "unknown MITRE tactics"), (("Impact", "Persistence"), "kill-chain order")],
)
def test_tactics_are_sentinel_names_in_kill_chain_order(tactics: tuple[str, ...], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Detector(id="x.y", severity=Severity.LOW, summary="", runbook="", mitre=(), tactics=tactics)


def test_every_detector_declares_tactics() -> None:
    for p in PLUGINS:
        assert p.meta.tactics, f"{p.meta.id} declares no MITRE tactics"

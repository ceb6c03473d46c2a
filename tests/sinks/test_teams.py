"""sinks/teams.py: the Workflows envelope and Adaptive Card, its size bound and escaping, the answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import detectors.breakglass_signin as breakglass
from pimwatch.config import ConfigError, build
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Policy
from pimwatch.delivery.sink import Http, PermanentError, SinkError, TransientError
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import discover
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing.sinks import (
    BREAKGLASS_SIGNIN,
    OFF_HOURS,
    OUTSIDE_PIM,
    PIM_BUILTIN,
    case_alerts,
    check_golden_json,
    deliver,
    sample_alert,
)
from sinks import teams
from tests.loopback import Answer, serve

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sinks" / "teams"
SIG = "sig-SECRET-0123456789abcdef"
PATH = (
    "/workflows/abc/triggers/manual/paths/invoke"
    f"?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
)
BG = "c0ffee00-0000-4000-8000-00000000b001"


def config(url: str = f"https://prod-01.westeurope.logic.azure.com{PATH}", **extra: Any) -> teams.Config:
    return teams.Config.model_validate({"type": "teams", "webhook_url": url, **extra})


def alert(severity: Severity, **fields: Any) -> Alert:
    return sample_alert(severity, OFF_HOURS, **fields)


def golden_alerts() -> dict[str, Alert]:
    return {
        "critical": alert(
            Severity.CRITICAL,
            **BREAKGLASS_SIGNIN,
            summary="An emergency (break-glass) account signed in or tried to.",
            context={
                "sign_in": "interactive",
                "succeeded": True,
                "single_factor": True,
                "authentication_methods": ["Password"],
                "ip_address": "185.220.101.4",
                "location": {"country": "RO", "city": "Bucharest"},
                "app": "Azure Portal",
                "risk_level": None,
            },
            events=[("2026-03-10T02:17:00.000000Z", "s1")],
        ),
        "high": alert(
            Severity.HIGH,
            **OUTSIDE_PIM,
            context={
                "role": "Global Administrator",
                "role_id": "62e90394-69f5-4237-9190-012177145e10",
                "permanent": True,
                "initiated_by": {"id": None, "upn": "it-ops@contoso.com", "name": "IT Ops"},
                "justification": None,
            },
        ),
        "medium": alert(
            Severity.MEDIUM,
            context={
                "role": "Global Administrator",
                "local_time": "2026-03-14T02:10:00+00:00",
                "weekday": "Saturday",
                "justification": "INC0042 — Exchange outage, approved by J. Doe",
                "request_id": "req-42",
            },
        ),
        "low": alert(
            Severity.LOW,
            detector="activation.simultaneous",
            title="Adm Oliver holds 2 privileged roles at once",
            context={"roles": ["Exchange Administrator", "User Administrator"], "justification": None},
            events=[("2026-03-14T09:00:00.000000Z", "r1"), ("2026-03-14T09:05:30.000000Z", "r2")],
        ),
        "info": alert(
            Severity.INFO,
            **PIM_BUILTIN,
            summary="PIM raised one of its built-in alerts.",
            runbook="",
            mitre=[],
        ),
    }


EVIL = (
    "[x](http://evil.example/p?q=1) <script>alert(1)</script> <at>admin</at> "
    "CEF|sep\\back=eq\nnext line\r\n**bold** _it_ # head \u202egnp.exe Zoë 日本 🙂 "
)
BIG = (EVIL * (100_000 // len(EVIL) + 1))[:100_000]


def injection_alert(**fields: Any) -> Alert:
    evil: dict[str, Any] = dict(
        title=EVIL + BIG,
        summary=EVIL,
        runbook=BIG,
        principal={"id": "x) [y](http://evil2.example)", "upn": EVIL, "name": BIG},
        context={
            "role": EVIL + BIG,
            "justification": BIG,
            "free_text": BIG,
            EVIL: BIG,
            "nested": {"k": BIG, EVIL: EVIL},
            "list": [BIG, EVIL],
            **{f"extra_{i}": BIG for i in range(40)},
        },
    )
    return alert(Severity.CRITICAL, **(evil | fields))


# --- helpers ----------------------------------------------------------------------------------------


def card_of(payload: dict[str, Any]) -> dict[str, Any]:
    card: dict[str, Any] = payload["attachments"][0]["content"]
    return card


def texts(node: Any) -> Iterator[str]:
    """Every string Teams renders as Markdown: TextBlock.text, Fact.title, Fact.value."""
    if isinstance(node, dict):
        if node.get("type") == "TextBlock":
            yield node["text"]
        if node.get("type") == "FactSet":
            for fact in node["facts"]:
                yield fact["title"]
                yield fact["value"]
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from texts(item)


def unescaped(text: str) -> str:
    """``text`` with every backslash-escaped character removed: what Markdown could still act on."""
    return re.sub(r"\\.", "", text, flags=re.S)


_COLORS = {"default", "dark", "light", "accent", "good", "warning", "attention"}
_CONTAINER_STYLES = {"default", "emphasis", "good", "attention", "warning", "accent"}
_COMMON = {"type", "id", "isVisible", "spacing", "separator", "height", "requires", "fallback"}
_ENUMS = {
    "color": _COLORS,
    "weight": {"default", "lighter", "bolder"},
    "size": {"default", "small", "medium", "large", "extralarge"},
    "spacing": {"default", "none", "small", "medium", "large", "extralarge", "padding"},
    "horizontalAlignment": {"left", "center", "right"},
    "fontType": {"default", "monospace"},
}
ELEMENTS: dict[str, tuple[set[str], set[str]]] = {  # type: (required, allowed) in Adaptive Cards ≤ 1.5
    "TextBlock": (
        {"text"},
        {
            "text",
            "wrap",
            "color",
            "weight",
            "size",
            "isSubtle",
            "maxLines",
            "horizontalAlignment",
            "fontType",
        },
    ),
    "FactSet": ({"facts"}, {"facts"}),
    "Container": (
        {"items"},
        {"items", "style", "bleed", "verticalContentAlignment", "minHeight", "selectAction", "rtl"},
    ),
    "ColumnSet": (set(), {"columns", "style", "bleed", "minHeight", "horizontalAlignment", "selectAction"}),
    "Column": (set(), {"items", "width", "style", "bleed", "verticalContentAlignment", "minHeight", "rtl"}),
    "ActionSet": ({"actions"}, {"actions"}),
}
CARD_KEYS = {
    "$schema", "type", "version", "body", "actions", "msteams", "fallbackText", "speak", "lang",
    "minHeight", "verticalContentAlignment", "selectAction", "rtl",
}  # fmt: skip


def validate_card(card: Any) -> list[str]:
    """Structural Adaptive Card ≤ 1.5 check of the subset this sink may use (no network, no schema lib)."""
    problems: list[str] = []
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return ["card: type must be AdaptiveCard"]
    version = card.get("version")
    if not (isinstance(version, str) and re.fullmatch(r"1\.[0-9]", version) and int(version[2]) <= 5):
        problems.append(f"card.version: {version!r} is not 1.0 … 1.5")
    problems += [f"card.{k}: unknown property" for k in set(card) - CARD_KEYS]
    if "msteams" in card and card["msteams"] != {"width": "Full"}:
        problems.append("card.msteams: only {'width': 'Full'} is expected")
    if not isinstance(card.get("body"), list) or not card["body"]:
        problems.append("card.body: expected a non-empty list")
    for i, element in enumerate(card.get("body") or []):
        problems += _element(element, f"body[{i}]")
    for i, action in enumerate(card.get("actions") or []):
        problems += _action(action, f"actions[{i}]")
    return problems


def _element(el: Any, path: str) -> list[str]:
    if not isinstance(el, dict) or el.get("type") not in ELEMENTS:
        return [f"{path}: element type {el.get('type') if isinstance(el, dict) else el!r} not allowed"]
    required, allowed = ELEMENTS[el["type"]]
    problems = [f"{path}.{k}: missing" for k in required - set(el)]
    problems += [f"{path}.{k}: not a {el['type']} property" for k in set(el) - allowed - _COMMON]
    for key, values in _ENUMS.items():
        if key in el and str(el[key]).lower() not in values:
            problems.append(f"{path}.{key}: {el[key]!r} not one of {sorted(values)}")
    if "style" in el and el["style"] not in _CONTAINER_STYLES:
        problems.append(f"{path}.style: {el['style']!r}")
    for key in ("wrap", "isSubtle", "bleed", "separator", "isVisible"):
        if key in el and not isinstance(el[key], bool):
            problems.append(f"{path}.{key}: expected a boolean")
    if el["type"] == "TextBlock" and not isinstance(el.get("text"), str):
        problems.append(f"{path}.text: expected a string")
    if el["type"] == "FactSet":
        facts = el.get("facts")
        if not isinstance(facts, list) or not facts:
            problems.append(f"{path}.facts: expected a non-empty list")
        for j, fact in enumerate(facts or []):
            if not (isinstance(fact, dict) and set(fact) == {"title", "value"}):
                problems.append(f"{path}.facts[{j}]: expected exactly title and value")
            elif not all(isinstance(v, str) for v in fact.values()):
                problems.append(f"{path}.facts[{j}]: title and value must be strings")
    for key in ("items", "columns"):
        for j, child in enumerate(el.get(key) or []):
            problems += _element(child, f"{path}.{key}[{j}]")
    for j, action in enumerate(el.get("actions") or []):
        problems += _action(action, f"{path}.actions[{j}]")
    return problems


def _action(action: Any, path: str) -> list[str]:
    if isinstance(action, dict) and action.get("type") == "Action.ShowCard":  # "Show evidence"
        problems = [f"{path}.{k}: unknown property" for k in set(action) - {"type", "title", "card", "id"}]
        card = action.get("card")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            return [*problems, f"{path}.card: expected an AdaptiveCard"]
        for j, el in enumerate(card.get("body") or []):
            problems += _element(el, f"{path}.card.body[{j}]")
        return problems
    if not isinstance(action, dict) or action.get("type") != "Action.OpenUrl":
        return [f"{path}: only Action.OpenUrl and Action.ShowCard are used"]
    problems = [f"{path}.{k}: unknown property" for k in set(action) - {"type", "title", "url", "id"}]
    if not isinstance(action.get("title"), str) or not action["title"]:
        problems.append(f"{path}.title: expected a string")
    if not isinstance(action.get("url"), str) or not action["url"].startswith("https://"):
        problems.append(f"{path}.url: expected an https URL")
    return problems


def check_envelope(payload: Any) -> None:
    assert payload["type"] == "message"
    assert len(payload["attachments"]) == 1
    attachment = payload["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "contentUrl" in attachment and attachment["contentUrl"] is None
    assert validate_card(attachment["content"]) == []
    assert len(teams.encode(payload)) <= teams.MAX_BYTES


# --- render -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", [s.value for s in Severity])
def test_golden(severity: str) -> None:
    payload = teams.render([golden_alerts()[severity]], config())
    check_golden_json(GOLDEN / f"{severity}.json", payload)
    check_envelope(payload)


def test_card_shows_severity_who_role_when_justification_and_links() -> None:
    cards = {s: card_of(teams.render([a], config())) for s, a in golden_alerts().items()}
    styles = {s: c["body"][0]["style"] for s, c in cards.items()}
    assert styles == {
        "critical": "attention",
        "high": "warning",
        "medium": "accent",
        "low": "emphasis",
        "info": "default",
    }
    header = cards["critical"]["body"][0]["items"][0]
    assert header["color"] == "attention" and "CRITICAL" in header["text"]

    medium = cards["medium"]
    facts = {f["title"]: f["value"] for f in medium["body"][2]["facts"]}
    assert facts["Who"] == "Adm Oliver (adm-oliver@contoso.com)"  # nothing Markdown acts on: unescaped
    assert facts["Role"] == "Global Administrator"
    assert facts["When"] == "2026-03-14 02:10:00 UTC"
    assert facts["Events"] == "1"
    assert "INC0042 — Exchange outage, approved by J. Doe" in list(texts(medium))
    urls = [a["url"] for a in medium["actions"] if a["type"] == "Action.OpenUrl"]
    oid = "0b5c8c8e-2c1e-4d6a-9a55-6a1f2b9d0c01"
    assert urls == [
        f"https://entra.microsoft.com/#view/Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~/overview/userId/{oid}",
        f"https://entra.microsoft.com/#view/Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~/AdministrativeRole/userId/{oid}",
        "https://entra.microsoft.com/#view/Microsoft_AAD_IAM/AuditLogList.ReactView",
        "https://entra.microsoft.com/#view/Microsoft_Azure_PIMCommon/CommonMenuBlade/~/quickStart",
    ]

    low = {f["title"]: f["value"] for f in cards["low"]["body"][2]["facts"]}
    assert low["Role"] == "Exchange Administrator, User Administrator"
    assert (low["First seen"], low["Last seen"], low["Events"]) == (
        "2026-03-14 09:00:00 UTC",
        "2026-03-14 09:05:30 UTC",
        "2",
    )
    assert cards["low"]["body"][0]["items"][1]["text"].endswith(" (2 events)")  # the title template

    # A principal without a UPN (an app) gets no user-profile links, only the tenant pages.
    assert [a["title"] for a in cards["info"]["actions"]] == ["Entra audit log", "PIM", "Show evidence"]


def test_portal_base_is_configurable() -> None:
    cfg = config(portal_base="https://entra.microsoft.com/contoso.onmicrosoft.com/")
    card = card_of(teams.render([golden_alerts()["medium"]], cfg))
    assert all(
        a["url"].startswith("https://entra.microsoft.com/contoso.onmicrosoft.com/#view/")
        for a in card["actions"]
        if a["type"] == "Action.OpenUrl"
    )


def test_injection_alert_is_inert_and_under_20_kb() -> None:
    payload = teams.render([injection_alert()], config())
    check_envelope(payload)
    size = len(teams.encode(payload))
    assert 5_000 < size <= 20_000
    card = card_of(payload)
    rendered = list(texts(card))
    everything = "\n".join(rendered)
    assert "[truncated" in everything  # fields cut with the visible marker
    assert "…[truncated: 21 more fields]" in everything  # context facts beyond the budget are counted
    for text in rendered:
        bare = unescaped(text)
        assert not re.search(r"\[[^\]]*\]\(", bare), text[:200]  # no Markdown link survives
        assert "<at>" not in bare and "<script" not in bare and "**" not in bare, text[:200]
        assert "\u202e" not in text  # bidi override neutralised
    title = card["body"][0]["items"][1]["text"]
    assert "\n" not in title and "\r" not in title
    assert "Zoë 日本 🙂" in everything  # non-ASCII kept as is
    # Untrusted text never becomes a link target: no principal links for a malformed object id.
    assert [a["title"] for a in card["actions"]] == ["Entra audit log", "PIM", "Show evidence"]
    assert all("evil" not in a["url"] for a in card["actions"] if a["type"] == "Action.OpenUrl")


def test_injection_alert_with_a_real_object_id_links_only_the_guid() -> None:
    evil = injection_alert(principal={"id": BG.upper(), "upn": EVIL, "name": EVIL})
    card = card_of(teams.render([evil], config()))
    assert card["actions"][0]["url"].endswith(f"/overview/userId/{BG}")
    assert all("evil" not in a["url"] for a in card["actions"] if a["type"] == "Action.OpenUrl")


def test_every_size_is_bounded() -> None:
    """Titles, contexts and names of any size, any content: always a valid card under 20 KB."""
    for n in (0, 10, 200, 1_000, 5_000, 30_000):
        for chunk in ("a", "[", "\\", "\x01", "日", "🙂"):
            text = chunk * n
            a = alert(
                Severity.HIGH,
                title=text,
                principal={"id": text, "upn": text, "name": text},
                context={"justification": text, "role": text, **{f"k{i}": text for i in range(30)}},
            )
            check_envelope(teams.render([a], config()))


def test_a_card_that_had_to_shrink_says_so() -> None:
    wide = "\\[" * 2_000  # each character costs 4 bytes once escaped and JSON-encoded
    a = alert(
        Severity.HIGH, title=wide, context={"justification": wide, **{f"k{i}": wide for i in range(30)}}
    )
    payload = teams.render([a], config())
    check_envelope(payload)
    last = card_of(payload)["body"][-1]
    assert last["text"].startswith("…[truncated: card shortened to fit the Teams size limit")
    assert a.id in last["text"] and last["color"] == "attention"
    small = card_of(teams.render([golden_alerts()["high"]], config()))
    assert "card shortened" not in "\n".join(texts(small))


def test_render_is_pure_and_takes_one_alert() -> None:
    a = golden_alerts()["high"]
    assert teams.render([a], config()) == teams.render([a], config())
    with pytest.raises(ValueError):
        teams.render([a, a], config())
    assert not getattr(teams, "BATCH", False)


# --- send -------------------------------------------------------------------------------------------


def pipeline_alert() -> Alert:
    return case_alerts(breakglass.CASES[0])[0]  # its one alert


def test_send_posts_the_rendered_json_and_202_is_accepted() -> None:
    a = pipeline_alert()
    with serve(Answer(202)) as server:
        cfg = config(server.url + PATH, timeout_seconds=2)
        rendered = teams.render([a], cfg)
        answer = deliver(teams, rendered, cfg)
    assert answer == "202 Accepted"
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.method == "POST"
    assert request.path == PATH  # the whole Workflows URL, sig included
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == rendered
    assert request.body == teams.encode(rendered) and len(request.body) <= teams.MAX_BYTES
    card = card_of(json.loads(request.body))
    assert validate_card(card) == []
    header = card["body"][0]["items"]
    assert "CRITICAL" in header[0]["text"] and "breakglass" in header[0]["text"]
    assert header[1]["text"].startswith("Break-glass account bg-admin01@contoso.onmicrosoft.com")
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Who"] == "Emergency Admin 01 (bg-admin01@contoso.onmicrosoft.com)"


def test_send_injection_alert_arrives_bounded() -> None:
    with serve(Answer(202)) as server:
        cfg = config(server.url + PATH, timeout_seconds=2)
        rendered = teams.render([injection_alert()], cfg)
        teams.send(rendered, cfg, Http())
    body = server.requests[0].body
    assert len(body) <= 20_000
    assert json.loads(body) == rendered


@pytest.mark.parametrize(
    ("answer", "error", "retry_after"),
    [  # the status table every sink follows is in test_conformance.py; these are Teams' own
        (Answer(400, b'{"error":{"code":"InvalidRequestContent"}}'), PermanentError, None),
        (Answer(503, headers={"Retry-After": "30"}), TransientError, 30.0),
        (
            Answer(200, b"Microsoft Teams endpoint returned HTTP error 429 with ContextId ..."),
            TransientError,
            None,
        ),
    ],
)
def test_status_handling(answer: Answer, error: type[SinkError], retry_after: float | None) -> None:
    with serve(answer) as server:
        cfg = config(server.url + PATH, timeout_seconds=0.3 if answer.delay else 10.0)  # load never decides
        with pytest.raises(error) as caught:
            deliver(teams, teams.render([golden_alerts()["high"]], cfg), cfg)
    assert len(server.requests) == 1
    message = str(caught.value)
    assert message.startswith("teams")
    assert SIG not in message and "127.0.0.1" not in message
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == retry_after


def test_oversized_rendered_payload_is_permanent_without_posting() -> None:
    with serve(Answer(202)) as server:
        cfg = config(server.url + PATH)
        huge = teams.envelope(
            {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "x" * 40_000}]}
        )
        with pytest.raises(PermanentError):
            teams.send(huge, cfg, Http())
    assert server.requests == []


# --- config -----------------------------------------------------------------------------------------


def test_config_validates_through_the_loader() -> None:
    url = f"https://prod-01.westeurope.logic.azure.com{PATH}"
    cfg = build(
        {"sinks": {"x": {"type": "teams", "webhook_url": "${TEAMS_URL}", "min_severity": "high"}}},
        discover(),
        "t",
        env={"TEAMS_URL": url},
    )
    sink = cfg.sinks["x"]
    assert isinstance(sink.config, teams.Config)
    assert sink.config.webhook_url.get_secret_value() == url
    assert sink.config.portal_base == "https://entra.microsoft.com"
    assert SIG not in repr(sink.config) and SIG not in str(sink.config)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"colour": "red"}, "sinks.x.colour: unknown key"),
        ({"webhook_url": None}, "sinks.x.webhook_url:"),
        (
            {"portal_base": "entra.microsoft.com"},
            "sinks.x.portal_base: Value error, expected an absolute https:// URL",
        ),
    ],
)
def test_config_problems_name_the_key(spec: dict[str, Any], problem: str) -> None:
    url = f"https://prod-01.westeurope.logic.azure.com{PATH}"
    raw = {"type": "teams", "webhook_url": "${TEAMS_URL}", **spec}
    if raw["webhook_url"] is None:
        del raw["webhook_url"]
    with pytest.raises(ConfigError) as caught:
        build({"sinks": {"x": raw}}, discover(), "t", env={"TEAMS_URL": url})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    assert SIG not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"https://contoso.webhook.office.com/webhookb2/abc/IncomingWebhook/{SIG}", "Office 365 connector"),
        (f"http://prod-01.westeurope.logic.azure.com{PATH}", "https"),
        (f"ftp://example.com/{SIG}", "https"),
        (SIG, "https"),
    ],
)
def test_bad_webhook_urls_are_refused_without_echoing_them(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build({"sinks": {"x": {"type": "teams", "webhook_url": "${U}"}}}, discover(), "t", env={"U": url})
    assert why in str(caught.value)
    assert SIG not in str(caught.value) and SIG not in repr(caught.value.problems)
    with pytest.raises(ValueError) as direct:  # pydantic's own message hides the input too
        teams.Config.model_validate({"type": "teams", "webhook_url": url})
    assert SIG not in str(direct.value)


def test_through_the_deliverer_one_card_per_alert_and_a_400_is_a_dead_letter() -> None:
    store = SqliteStore()
    good, bad = golden_alerts()["critical"], golden_alerts()["medium"]
    for a in (good, bad):
        store.merge_alert(a)
    with serve(Answer(202), Answer(400)) as server:
        cfg = config(server.url + PATH, timeout_seconds=2)
        deliverer = Deliverer(
            {"soc": LoadedSink("soc", cfg, teams)}, store, Policy(), Http(), sleep=lambda _: None
        )
        deliverer.enqueue(good, "new")
        deliverer.enqueue(bad, "new")
        outcome = deliverer.run()
        deliverer.http.close()
    assert len(server.requests) == 2  # not batched, and a 400 is not retried
    assert {card_of(json.loads(r.body))["body"][2]["facts"][-1]["value"] for r in server.requests} == {
        good.id,
        bad.id,
    }
    assert (outcome.sent, outcome.dead) == ({"soc": 1}, {"soc": 1})
    assert deliverer.enqueue(good, "resolved") == 0  # RESOLVES is off: a resolution is not posted

"""The sink toolkit (pimwatch/delivery/text.py, pimwatch/delivery/http.py) on its own, and ``pimwatch render``
printing what a target receives."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from pimwatch.cli import main
from pimwatch.delivery.sink import (
    MARK,
    TRUNCATED,
    PermanentError,
    TransientError,
    bounded,
    check_url,
    classify,
    clean,
    display_time,
    epoch_ms,
    epoch_seconds,
    json_text,
    md_escape,
    one_line,
    preview,
    rfc3339_ms,
    transport_error,
    truncate,
)

# --- Markdown: only what Markdown acts on -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "adm-eve@contoso.com",
        "T1078.004",
        "2026-03-14 02:10:00 UTC",
        "5e0a1b2c-3d4e-4f50-8a61-72b3c4d5e6f7",
        "adm_eve (Adm Eve) a - b, c. d! #42 e+f",
        "Zoë 日本 🙂",
    ],
)
def test_md_escape_leaves_ordinary_text_alone(text: str) -> None:
    assert md_escape(text) == text  # some Teams clients show every backslash literally


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("[x](http://evil)", r"\[x\](http://evil)"),
        ("![img](http://evil/p.png)", r"!\[img\](http://evil/p.png)"),
        ("**bold** *it*", r"\*\*bold\*\* \*it\*"),
        ("_it_ and __b__", r"\_it\_ and \_\_b\_\_"),
        ("`code`", r"\`code\`"),
        ("~~gone~~", r"\~\~gone\~\~"),
        ("<at>admin</at> <https://evil>", r"\<at>admin\</at> \<https://evil>"),
        ("a\\b", r"a\\b"),
        (
            "- item\n+ item\n> quote\n# head\n  1. one\n2) two",
            "\\- item\n\\+ item\n\\> quote\n\\# head\n  1\\. one\n2\\) two",
        ),
    ],
)
def test_md_escape_makes_markdown_inert(text: str, escaped: str) -> None:
    assert md_escape(text) == escaped


# --- cleaning, truncation, bounded JSON, encoding -------------------------------------------------------


def test_one_cleaner_for_every_unsafe_character() -> None:
    text = "a\x00b\x1bc\u0085d\u2028e\u202ef\u2066g\u200eh\u061ci\r\nj\ud800k"
    assert clean(text) == "a b c d e f g h i  j\ufffdk"
    assert clean(text, breaks=True) == "a b c d e f g h i\r\nj\ufffdk"
    assert clean("a\x07b", replacement="\ufffd") == "a\ufffdb"
    assert one_line("  x\r\n\u202e\ty  ") == "x y"
    assert one_line(None) == "" and clean(None) == ""


def test_truncate_marks_every_cut() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("x" * 100, 40)
    assert len(cut) == 40 and cut.endswith(TRUNCATED)
    assert truncate(None, 5) == ""


def test_bounded_cuts_strings_lists_mappings_depth_and_budget_with_the_marker() -> None:
    deep: dict[str, object] = {"v": "end"}
    for _ in range(10):
        deep = {"d": deep}
    value = {
        "s": "x" * 1000,
        "l": list(range(50)),
        "m": {f"k{i}": i for i in range(50)},
        "deep": deep,
        "odd": [float("nan"), 2**70, {3, 1, 2}, "\ud800"],
    }
    out = bounded(value, 100, 10, max_depth=4)
    assert out["s"] == truncate("x" * 1000, 100)
    assert out["l"][-1] == f"40 more items{TRUNCATED}" and len(out["l"]) == 11
    assert out["m"]["…"] == f"40 more keys{TRUNCATED}"
    assert "nested too deep" + TRUNCATED in json.dumps(out["deep"], ensure_ascii=False)
    assert out["odd"] == ["nan", str(2**70), [1, 2, 3], "\ufffd"]  # all JSON can hold
    json_text(out)  # strict JSON: no NaN
    huge = bounded(["y" * 1000] * 100_000, 1000, 100_000, budget=5000)
    assert len(huge) < 20 and huge[-1].endswith(TRUNCATED)  # the budget stops the walk early


def test_json_text_escapes_invisible_characters_and_keeps_the_value() -> None:
    value = {"t": "a\u202eb\u2028c\x85d\nZoë"}
    text = json_text(value)
    assert "\u202e" not in text and "\u2028" not in text and "\x85" not in text and "\n" not in text
    assert "\\u202e" in text and "Zoë" in text
    assert json.loads(text) == value


def test_time_formatters() -> None:
    iso = "2026-03-10T02:17:00.250000Z"
    assert display_time(iso) == "2026-03-10 02:17:00 UTC"
    assert display_time("2026-03-10T03:17:00+01:00") == "2026-03-10 02:17:00 UTC"
    assert display_time("not a time") == "not a time"
    assert epoch_seconds(iso) == 1773109020.25 and epoch_ms(iso) == "1773109020250"
    assert rfc3339_ms(iso) == "2026-03-10T02:17:00.250Z"
    assert epoch_seconds("x") is None and epoch_ms("x") == "" and rfc3339_ms("x") == "-"


# --- the URL check: one loopback rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/x",
        "http://localhost:8080/x",
        "http://127.0.0.1/x",
        "http://127.0.0.2/",
        "http://[::1]:9/",
    ],
)
def test_check_url_accepts_https_and_http_to_loopback(url: str) -> None:
    assert check_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url", ["http://example.com/tok-SECRET", "http://10.0.0.1/tok-SECRET", "ftp://x/tok-SECRET", "tok-SECRET"]
)
def test_check_url_refuses_clear_text_without_echoing_the_url(url: str) -> None:
    with pytest.raises(ValueError) as info:
        check_url(url)
    assert "SECRET" not in str(info.value)
    with pytest.raises(ValueError, match="no query"):
        check_url("https://example.com/?k=tok-SECRET", no_query=True)


# --- the classifier ----------------------------------------------------------------------------------


def test_classify_and_transport_errors() -> None:
    assert classify("s", 204) is None
    transient = classify("s", 503, "Service Unavailable", {"retry-after-ms": "1500"})
    assert isinstance(transient, TransientError) and transient.retry_after == 1.5
    assert str(transient) == "s: HTTP 503 Service Unavailable"
    assert isinstance(classify("s", 404, "Not Found", detail=" (x)"), PermanentError)
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as inner:
            raise ConnectionError("wrapped by a client library") from inner
    except ConnectionError as outer:
        wrapped = outer
    assert isinstance(transport_error("s", wrapped, 5), PermanentError)
    assert str(transport_error("s", TimeoutError(), 2.5)) == "s: timed out after 2.5 s"
    assert str(transport_error("s", ConnectionRefusedError("to http://x/?tok"), 1)) == (
        "s: connection failed (ConnectionRefusedError)"
    )


# --- what `pimwatch render` prints ----------------------------------------------------------------------


def test_preview_is_what_the_target_receives_as_text() -> None:
    assert preview([b"<134>1 msg one", b"<134>1 msg two"]) == "<134>1 msg one\n<134>1 msg two\n"
    assert preview(b"line\n") == "line\n"
    assert json.loads(preview({"a": [1]})) == {"a": [1]}


def test_render_of_the_syslog_sink_prints_the_cef_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sinks:\n  cef: {type: syslog, host: 127.0.0.1, hostname: collector01}\n")
    assert main(["render", "--config", str(cfg), "--sink", "cef", "--detector", "breakglass.signin"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<") and " collector01 pimwatch - - - CEF:0|pimwatch|pimwatch|" in out
    assert "b'" not in out and "\\\\" not in out and out.count("\n") == 1  # one message, as sent
    assert MARK not in out

"""The Functions host, as far as the tests stand in for it: the decorated functions of
``function_app.py`` (their user functions, as the Python worker calls them), Event Hub batches built
by ``azure.functions``' own trigger converter, app settings for a test, the HTTP and timer calls.

``get_functions()`` may run once per process (a second call raises), so every test module takes the
functions from here.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.meta import Datum
from azure.functions.timer import TimerRequest

import function_app
from pimwatch.hosting import runtime
from tests.streams import BREAK_GLASS

REPO = Path(__file__).resolve().parent.parent
# get_functions() once per process: a second call raises with blueprints registered (platform.md §2c).
APP = {str(f.get_function_name()): f for f in function_app.app.get_functions()}
FUNCTIONS: dict[str, Callable[..., Any]] = {name: f.get_user_function() for name, f in APP.items()}
PER_MESSAGE = 25  # records per Event Hub message ({"records": [...]}), as diagnostic settings batch them


def _config(tmp_path: Path, sink_url: str | None = None) -> Path:
    text = "break_glass:\n  accounts:\n" + "".join(f"    - {a}\n" for a in BREAK_GLASS)
    text += "delivery: {retries_in_run: 1, base_delay_seconds: 0.01, max_delay_seconds: 0.05}\n"
    if sink_url:
        text += (
            f"sinks:\n  soar: {{type: webhook, url: '{sink_url}', min_severity: high, timeout_seconds: 2}}\n"
        )
    cfg = tmp_path / "pimwatch.yaml"
    cfg.write_text(text)
    return cfg


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], Path]]:
    """App settings pointing at tmp paths; the worker's runtime is fresh for each test."""

    def setup(sink_url: str | None = None) -> Path:
        monkeypatch.setenv("PIMWATCH_CONFIG", str(_config(tmp_path, sink_url)))
        monkeypatch.setenv("PIMWATCH_STATE", str(tmp_path / "state.db"))
        monkeypatch.setenv("PIMWATCH_QUARANTINE_DIR", str(tmp_path / "quarantine"))
        return tmp_path

    runtime.reset_runtime()
    yield setup
    runtime.reset_runtime()


_SEQ = [1000]


def batch(
    bodies: Sequence[bytes], partition: str = "3", enqueued: str = "2026-03-10T12:00:00.123Z"
) -> list[func.EventHubEvent]:
    """A cardinality-many batch as the host hands it to the Python worker (``collection_bytes`` with
    ``SystemPropertiesArray`` and ``PartitionContext``), decoded by the library's trigger converter."""
    sysprops = []
    for _ in bodies:
        _SEQ[0] += 1
        sysprops.append(
            {
                "SequenceNumber": _SEQ[0],
                "Offset": str(_SEQ[0] * 1000),
                "PartitionKey": None,
                "EnqueuedTimeUtc": enqueued,
            }
        )
    metadata = {
        "SystemPropertiesArray": Datum(json.dumps(sysprops), "json"),
        "PropertiesArray": Datum(json.dumps([{}] * len(bodies)), "json"),
        "PartitionContext": Datum(
            json.dumps(
                {
                    "EventHubName": "entra-logs",
                    "ConsumerGroup": "pimwatch",
                    "FullyQualifiedNamespace": "ns.servicebus.windows.net",
                    "PartitionId": partition,
                }
            ),
            "json",
        ),
    }
    data = Datum(types.SimpleNamespace(bytes=list(bodies)), "collection_bytes")
    events = EventHubTriggerConverter.decode(data, trigger_metadata=metadata)
    assert isinstance(events, list) and all(isinstance(e, func.EventHubEvent) for e in events)
    return events


def messages(records: Sequence[dict[str, Any]]) -> list[bytes]:
    return [
        orjson.dumps({"records": list(records[i : i + PER_MESSAGE])})
        for i in range(0, len(records), PER_MESSAGE)
    ]


def health() -> tuple[int, dict[str, Any]]:
    resp = FUNCTIONS["health"](func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert isinstance(resp, func.HttpResponse)
    return resp.status_code, json.loads(resp.get_body())


def timer() -> None:
    FUNCTIONS["tick"](TimerRequest(past_due=False))

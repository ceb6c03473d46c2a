"""Azure Functions entry (Python v2 programming model): triggers only, each a few lines into
:mod:`pimwatch.hosting.runtime`. Settings, host.json values and the retry policy: ``docs/functions.md``.

Only ``azure.functions``, ``pimwatch.hosting.runtime``, ``pimwatch.detection.alerts`` and
``pimwatch.hosting.gcfreeze`` are imported here; the runtime (config, detectors, sinks, state) is
built on the first invocation (:func:`pimwatch.hosting.runtime.get_runtime`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import azure.functions as func

from pimwatch.detection.alerts import Severity
from pimwatch.hosting import gcfreeze
from pimwatch.hosting.runtime import get_runtime

gcfreeze.arm()  # the worker hosts this app: the collector is settled once the runtime is built
app = func.FunctionApp()
SEVERITIES = tuple(s.value for s in Severity)
log = logging.getLogger("pimwatch.functions")


# Raising is reserved for a failure of the state store (everything about the input is quarantined,
# every sink failure stays in the outbox). The host does not checkpoint until the retry policy is
# done with the batch, so the policy never gives up (-1): the partition stalls until the store is
# back instead of skipping a batch that was never recorded. Backoff 10 s doubling up to 5 min.
@app.function_name("entra_events")
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:10",
    maximum_interval="00:05:00",
)
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%PIMWATCH_EVENTHUB_NAME%",
    connection="PIMWATCH_EVENTHUB",
    consumer_group="%PIMWATCH_CONSUMER_GROUP%",
    cardinality=func.Cardinality.MANY,
    data_type=func.DataType.BINARY,
)
def entra_events(events: list[func.EventHubEvent]) -> None:
    partition = _partition(events)
    sources = [f"eventhub:{partition}/{e.sequence_number}" for e in events]
    report = get_runtime().handle(
        [e.get_body() for e in events],
        sources,
        partition=partition,
        enqueued=[e.enqueued_time for e in events],
    )
    log.info("pimwatch batch: %s", json.dumps(report.to_dict()))


@app.function_name("tick")
@app.timer_trigger(arg_name="timer", schedule="0 */1 * * * *", run_on_startup=False, use_monitor=False)
def tick(timer: func.TimerRequest) -> None:
    report = get_runtime().tick(datetime.now(UTC))
    log.info("pimwatch tick: %s", json.dumps(report.to_dict()))


# Posture (docs/graph.md): Graph reads, then the findings into the outbox. Every 6 hours; the Graph
# client (msgraph) is imported here only, never on the Event Hub path.
@app.function_name("posture")
@app.timer_trigger(arg_name="timer", schedule="0 0 */6 * * *", run_on_startup=False, use_monitor=True)
def posture(timer: func.TimerRequest) -> None:
    from pimwatch.graph.run import timer as run_posture

    log.info("pimwatch posture: %s", json.dumps(run_posture(get_runtime(), datetime.now(UTC))))


# Pull (docs/graph.md "Pull"): audit and sign-in records read from Graph, for tenants without Event
# Hub, every 5 minutes; does nothing unless graph.pull.enabled is true in the config.
@app.function_name("pull")
@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False, use_monitor=False)
def pull(timer: func.TimerRequest) -> None:
    from pimwatch.graph.pull import timer as run_pull

    log.info("pimwatch pull: %s", json.dumps(run_pull(get_runtime(), datetime.now(UTC))))


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body, status = get_runtime().health(), 200
    except Exception as exc:  # the store (or the settings) unusable: say so, without details
        log.exception("health check failed")
        body, status = {"status": "unavailable", "error": type(exc).__name__}, 503
    return _json(body, status)


@app.function_name("test_alert")
@app.route(route="test-alert", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def test_alert(req: func.HttpRequest) -> func.HttpResponse:
    """A synthetic alert to every sink, or to ``{"sink": "<name>"}``: each sink's answer or error."""
    try:
        ask = req.get_json() if req.get_body() else {}
    except ValueError:
        return _json({"error": 'expected a JSON body: {"sink": "<name>", "severity": "info"}'}, 400)
    sink, severity = (ask.get("sink"), ask.get("severity", "info")) if isinstance(ask, dict) else (0, 0)
    if not (sink is None or isinstance(sink, str)) or severity not in SEVERITIES:
        return _json({"error": f"sink must be a sink name, severity one of {', '.join(SEVERITIES)}"}, 400)
    try:
        answers = get_runtime().test_alert(sink, Severity(severity))
    except KeyError:
        return _json({"error": f"no sink named {sink!r} in the config"}, 404)
    except Exception as exc:
        log.exception("test alert failed")
        return _json({"status": "unavailable", "error": type(exc).__name__}, 503)
    failed = any(a.startswith("FAILED") for a in answers.values())
    return _json({"sinks": answers}, 502 if failed else 200)


def _json(body: object, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _partition(events: list[func.EventHubEvent]) -> str:
    """The partition id from the batch's shared metadata (``PartitionContext``), when the host gives it."""
    metadata = events[0].metadata if events else None
    context = metadata.get("PartitionContext") if metadata else None
    return str(context.get("PartitionId", "?")) if isinstance(context, dict) else "?"

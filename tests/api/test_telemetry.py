"""Telemetry of a request, read back from OpenTelemetry's in-memory span exporter and metric reader.

The service's own spans and instruments (shared/telemetry.py) are pointed at an SDK tracer provider
and meter provider with in-memory exporters; requests go through the app's functions as the host
routes them (``call``), or through a function with a Functions invocation context. What reaches a
real exporter over HTTP is in tests/system/test_telemetry_export.py.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import ROOT
from shared import telemetry
from shared.settings import Settings

SIMPLE = {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": "2015", "interpolator": "KNNImputer",
          "scheme": "MANUAL", "estimators": 10, "model": "rfr", "interval": "quantile", "dataset": "wdi",
          "manual_predictors": ["wdi-SP.URB.TOTL.IN.ZS"]}


class Recorded:
    def __init__(self):
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self, name: str | None = None) -> list:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list:
        """(attributes, data point) of every point of ``metric`` collected now."""
        found = []
        data = self.reader.get_metrics_data()
        for resource in (data.resource_metrics if data else []):
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found.extend((dict(p.attributes), p) for p in m.data.data_points)
        return found


@pytest.fixture
def otel():
    recorded = Recorded()
    telemetry.use(recorded.tracer_provider, recorded.meter_provider)
    yield recorded
    telemetry.stop()
    recorded.meter_provider.shutdown()


def test_a_request_is_one_server_span_with_its_request_id_and_a_duration_point(call, otel):
    reply = call("GET", "/twolvlImp/target_years", headers={"x-request-id": "look-up-1"})
    assert reply.status == 200
    (span,) = otel.finished()
    assert span.name == "GET /twolvlImp/target_years" and span.kind == SpanKind.SERVER
    assert span.attributes["request_id"] == reply.headers["x-request-id"] == "look-up-1"
    assert span.attributes["http.route"] == "/twolvlImp/target_years"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code != StatusCode.ERROR
    (labels, point), = [p for p in otel.points("sids.request.duration")
                        if p[0]["http.route"] == "/twolvlImp/target_years"]
    assert labels["http.response.status_code"] == 200 and labels["http.request.method"] == "GET"
    assert point.count == 1 and 0 < point.sum < 5


def test_predict_span_carries_the_form_options_cache_compute_and_queue_wait(call, otel, with_settings):
    with_settings(result_cache_size=4, max_concurrent_predictions=1)
    first = call("POST", "/twolvlImp/predict", SIMPLE)
    second = call("POST", "/twolvlImp/predict", SIMPLE)
    assert (first.status, second.status) == (200, 200)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    computed, cached = otel.finished("POST /twolvlImp/predict")
    for span in (computed, cached):
        assert (span.attributes["model"], span.attributes["scheme"], span.attributes["interpolator"],
                span.attributes["estimators"], span.attributes["interval"]) == ("rfr", "MANUAL", "KNNImputer", 10,
                                                                                 "quantile")
    assert computed.attributes["cache_hit"] is False and cached.attributes["cache_hit"] is True
    assert computed.attributes["compute_seconds"] == pytest.approx(float(first.headers["x-compute-seconds"]))
    assert computed.attributes["queue_wait_seconds"] >= 0 and "queue_wait_seconds" not in cached.attributes

    # metrics: request duration per model option, compute seconds, cache hit ratio, queue wait
    durations = [p for p in otel.points("sids.request.duration") if p[0]["http.route"] == "/twolvlImp/predict"]
    assert [(labels["model"], labels["scheme"], labels["interpolator"], point.count) for labels, point in durations] \
        == [("rfr", "MANUAL", "KNNImputer", 2)]
    cache = {labels["hit"]: point.value for labels, point in otel.points("sids.cache.requests")}
    assert cache == {True: 1, False: 1}
    (_, compute), = otel.points("sids.compute.duration")
    assert compute.count == 2
    (_, wait), = otel.points("sids.queue.wait")
    assert wait.count == 1
    assert [p.value for _, p in otel.points("sids.queue.depth")] == [0]
    dataset = otel.points("sids.dataset.load_seconds")
    assert len(dataset) == 1 and dataset[0][0]["version"] and dataset[0][1].value > 0


def test_a_500_records_the_exception_with_the_request_id(call, otel, monkeypatch, caplog):
    from models.twolvlimp import lookups

    def broken(ds):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(lookups, "target_years", broken)
    with caplog.at_level(logging.INFO, logger="sids"):
        reply = call("GET", "/twolvlImp/target_years")
    assert reply.status == 500
    request_id = reply.json()["detail"]["request_id"]
    assert request_id == reply.headers["x-request-id"] and "disk on fire" not in reply.body.decode()
    (span,) = otel.finished()
    assert span.attributes["request_id"] == request_id and span.attributes["http.response.status_code"] == 500
    assert span.status.status_code == StatusCode.ERROR and request_id in span.status.description
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError" and event.attributes["request_id"] == request_id
    # the exception's log record (exported as an exception with custom dimensions) names the request too
    (logged,) = [r for r in caplog.records if r.exc_info]
    assert logged.request_id == request_id and logged.route == "/twolvlImp/target_years"
    # and it is inside the request's trace
    summary = [r for r in caplog.records if r.name == "sids.http" and not r.exc_info][-1]
    assert summary.trace_id == format(span.context.trace_id, "032x") and summary.status == 500


def test_a_503_under_overload_is_counted_with_its_reason(call, otel, with_settings):
    runtime = with_settings( max_concurrent_predictions=1, max_queued_predictions=0)
    release, entered = threading.Event(), threading.Event()

    def hold():
        with runtime.slots.slot():
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert entered.wait(5)
    try:
        reply = call("POST", "/twolvlImp/predict", SIMPLE, headers={"x-request-id": "busy-1"})
        assert [p.value for _, p in otel.points("sids.compute.running")] == [1]
    finally:
        release.set()
        holder.join(5)
    assert reply.status == 503
    (span,) = otel.finished("POST /twolvlImp/predict")
    assert span.attributes["request_id"] == "busy-1" and span.attributes["error_type"] == "overloaded"
    assert span.attributes["http.response.status_code"] == 503 and span.status.status_code == StatusCode.ERROR
    (labels, point), = otel.points("sids.requests.refused")
    assert (labels["reason"], labels["http.response.status_code"], point.value) == ("overloaded", 503, 1)


def test_the_invocation_id_and_the_hosts_trace_context_link_the_request(app, otel, caplog):
    from shared.routing import app_routes, host_request

    (route,) = [r for r in app_routes(app) if r.template == "twolvlImp/target_years"]
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    context = SimpleNamespace(invocation_id="6a1c1ad0-64a4-4e4c-9c54-0d6f4c1c6f9e",
                              trace_context=SimpleNamespace(trace_parent=f"00-{trace_id}-{parent_id}-01",
                                                            trace_state="", attributes={}))
    req = host_request("GET", "http://localhost/twolvlImp/target_years", {}, "", b"", {})
    with caplog.at_level(logging.INFO, logger="sids.http"):
        resp = route.handler(req, context)
    # no x-request-id from the client: the invocation id is the request id the user sees
    assert resp.headers["x-request-id"] == context.invocation_id
    (span,) = otel.finished()
    assert format(span.context.trace_id, "032x") == trace_id and format(span.parent.span_id, "016x") == parent_id
    assert span.attributes["invocation_id"] == context.invocation_id
    (logged,) = [r for r in caplog.records if r.name == "sids.http"]
    assert (logged.invocation_id, logged.trace_id, logged.request_id) == (context.invocation_id, trace_id,
                                                                          context.invocation_id)
    assert f"trace_id={trace_id}" in logged.getMessage()


def test_without_telemetry_the_log_record_still_has_the_fields_and_no_span_is_made(call, caplog):
    telemetry.stop()
    with caplog.at_level(logging.INFO, logger="sids.http"):
        reply = call("POST", "/twolvlImp/estimate", {**SIMPLE, "model": "gbr"}, headers={"x-request-id": "est-1"})
    assert reply.status == 200
    (logged,) = [r for r in caplog.records if r.name == "sids.http"]
    assert (logged.request_id, logged.route, logged.status, logged.model, logged.estimators) == (
        "est-1", "/twolvlImp/estimate", 200, "gbr", 10)


def test_off_by_default_and_no_opentelemetry_import_without_a_connection_string():
    code = ("import sys, function_app\n"
            "from shared import telemetry\n"
            "print(telemetry.active(), sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))))")
    env = {"PATH": "/usr/bin:/bin", "WARM_MODEL_CODE": "0"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == ["False", "[]"]


def test_the_authentication_string_selects_the_managed_identity():
    from azure.identity import ManagedIdentityCredential

    assert telemetry._credential(None) is None
    assert telemetry._credential("") is None
    assert isinstance(telemetry._credential("Authorization=AAD"), ManagedIdentityCredential)
    assert isinstance(telemetry._credential("Authorization=AAD;ClientId=1b4c0a6e-0000-4000-8000-000000000001"),
                      ManagedIdentityCredential)


def test_telemetry_settings_are_secret_and_read_from_the_environment():
    s = Settings.from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=k-123;IngestionEndpoint=x",
                           "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
                           "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
                           "DATASET_BLOB_CONNECTION_STRING": "AccountName=a;AccountKey=key-456"})
    assert s.appinsights_connection_string.get_secret_value().startswith("InstrumentationKey=k-123")
    assert s.worker_telemetry is True
    for secret in ("k-123", "key-456"):  # SecretStr: hidden when printed, logged or dumped
        assert secret not in repr(s) and secret not in str(s) and secret not in json.dumps(s.model_dump(mode="json"))
    assert s.blob_connection_string.get_secret_value().endswith("key-456") and s.uses_blob
    off = Settings.from_env({})
    assert off.appinsights_connection_string is None and off.worker_telemetry is False
    assert telemetry.start(off) is None


def test_configuration_waits_until_the_instance_is_ready(monkeypatch):
    """The exporter's import (0.5-1 s) must not compete with the start: it begins once the dataset is loaded."""
    import time

    monkeypatch.setattr(telemetry, "_started", None)
    ready = threading.Event()
    thread = telemetry.start(Settings(worker_telemetry=True), after=ready)  # the worker's providers: no exporter here
    try:
        time.sleep(0.3)
        assert thread.is_alive() and not telemetry.active()
        ready.set()
        thread.join(10)
        assert telemetry.active()
    finally:
        telemetry.stop()


def test_the_app_starts_telemetry_after_the_warm_up_is_ready():
    source = (ROOT / "function_app.py").read_text()
    assert "start_telemetry(get_settings(), after=warm_up_ready)" in source

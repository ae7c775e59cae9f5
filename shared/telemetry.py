"""Telemetry: one OpenTelemetry trace per request, the service's metrics, structured log fields.

Off unless ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set: local runs and tests import no
OpenTelemetry and pay one small record per request (:class:`RequestRecord`, whose fields also go
into the request's log line). When it is set, :func:`start` configures the Azure Monitor
distro (``azure-monitor-opentelemetry``) on a background thread once the instance is ready (its
dataset loaded): the import takes 0.5-1 s, which must not delay the instance's first ``/health``;
requests served before it is configured are logged but not traced. With ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` the Functions Python
worker configures the distro itself (and links each invocation to the host's trace); then this
module only uses the providers the worker set up.

Per request (:func:`begin` / :func:`end`, called by ``shared/http.py``'s ``PathFunction``):

* a SERVER span ``METHOD /route``, child of the host's W3C trace (the invocation's
  ``traceparent``), with the request id (``x-request-id``), the Functions invocation id and the
  fields the request noted (:func:`note`: model, scheme, interpolator, estimators, cache hit,
  compute seconds, queue wait) as attributes, which Application Insights shows as custom dimensions;
  an unhandled exception is recorded on it with the request id;
* metrics: request duration per route, status and model option; compute seconds; queue wait;
  overload answers (503, 504, 422 over_time_budget) by reason; cache look-ups (hit or miss).
  Gauges read the compute queue's depth and the dataset's load time and version when collected.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("sids.telemetry")

# The request fields noted from a validated body or query (the twolvlImp form's options).
REQUEST_FIELDS = ("model", "scheme", "interpolator", "estimators", "interval", "method", "number_predictor")
# Fields a request may note that are low-cardinality enough to label metrics with ("model option").
METRIC_FIELDS = ("model", "scheme", "interpolator", "interval", "method")
# Error types (shared/http.py's MODEL_ERROR_ANSWERS) counted as refusals of work.
REFUSALS = ("overloaded", "time_budget_exceeded", "over_time_budget")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


@dataclass
class RequestRecord:
    """What one request is known by and what it noted; ``fields`` become span attributes and log fields."""

    method: str
    route: str  # "/twolvlImp/predict"
    request_id: str
    url: str = ""
    invocation_id: str | None = None
    trace_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    status: int = 500  # until the pipeline has an answer
    started: float = field(default_factory=time.perf_counter)
    _span: Any = None
    _token: Any = None
    _otel_token: Any = None

    def log_fields(self, status: int, seconds: float) -> dict[str, Any]:
        """The request's structured fields for its log record (``extra``: custom dimensions once exported)."""
        return {"request_id": self.request_id, "invocation_id": self.invocation_id, "trace_id": self.trace_id,
                "route": self.route, "http_method": self.method, "status": status,
                "duration_ms": round(seconds * 1000, 1), **self.fields}


_current: ContextVar[RequestRecord | None] = ContextVar("sids_request_record", default=None)


def note(**fields: Any) -> None:
    """Add fields to the current request's record (no-op outside a request); None values are dropped."""
    record = _current.get()
    if record is not None:
        record.fields.update({k: v for k, v in fields.items() if v is not None})


def current() -> RequestRecord | None:
    return _current.get()


def note_request(value: Any) -> None:
    """Note the model options of a validated request body or query (the fields in :data:`REQUEST_FIELDS`)."""
    if value is None or _current.get() is None:
        return
    found = {}
    for name in REQUEST_FIELDS:
        item = getattr(value, name, None)
        item = getattr(item, "value", item)  # an Enum choice: its value
        if isinstance(item, (str, int, float, bool)):
            found[name] = item
    note(**found)


def note_response(headers: Any) -> None:
    """Note what a response's headers say: ``x-cache`` (hit/miss) and ``x-compute-seconds``."""
    cache = headers.get("x-cache")
    seconds = headers.get("x-compute-seconds")
    try:
        note(cache_hit=None if cache is None else cache == "hit",
             compute_seconds=None if seconds is None else float(seconds))
    except ValueError:
        pass


def _trace_context(context: Any) -> tuple[str | None, str | None, str | None]:
    """(invocation id, traceparent, tracestate) of a Functions invocation context (None outside the host)."""
    if context is None:
        return None, None, None
    trace = getattr(context, "trace_context", None)
    parent = getattr(trace, "trace_parent", None) or None
    return getattr(context, "invocation_id", None) or None, parent, getattr(trace, "trace_state", None) or None


class _Otel:
    """The tracer and the instruments, made from a tracer provider and a meter provider."""

    def __init__(self, tracer_provider: Any, meter_provider: Any):
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.metrics import Observation
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.trace, self.context, self.Observation = trace, otel_context, Observation
        self.propagator = TraceContextTextMapPropagator()
        self.tracer = tracer_provider.get_tracer("sids")
        meter = meter_provider.get_meter("sids")
        self.duration = meter.create_histogram(
            "sids.request.duration", unit="s", description="Request duration by route, status and model option")
        self.compute = meter.create_histogram(
            "sids.compute.duration", unit="s", description="Seconds a model request computed (x-compute-seconds)")
        self.queue_wait = meter.create_histogram(
            "sids.queue.wait", unit="s", description="Seconds a request waited for a compute slot")
        self.refused = meter.create_counter(
            "sids.requests.refused", description="503 overloaded, 504 time_budget_exceeded, 422 over_time_budget")
        self.cache = meter.create_counter("sids.cache.requests", description="Result cache look-ups (hit: true/false)")
        meter.create_observable_gauge("sids.queue.depth", callbacks=[self._queue_depth],
                                      description="Requests waiting for a compute slot")
        meter.create_observable_gauge("sids.compute.running", callbacks=[self._running],
                                      description="Computations running")
        meter.create_observable_gauge("sids.dataset.load_seconds", unit="s", callbacks=[self._dataset],
                                      description="Load time of the dataset in service (attribute: its version)")

    def _queue_depth(self, options: Any = None) -> list:
        from shared.capacity import gates

        return [self.Observation(sum(g.waiting for g in gates()))]

    def _running(self, options: Any = None) -> list:
        from shared.capacity import gates

        return [self.Observation(sum(g.running for g in gates()))]

    def _dataset(self, options: Any = None) -> list:
        from shared.store import peek_store

        store = peek_store()
        status = store.status() if store is not None else {}
        if status.get("load_seconds") is None:
            return []
        return [self.Observation(status["load_seconds"], {"version": status["version"] or "",
                                                           "dataset_version": status["dataset_version"] or ""})]

    # -- per request ------------------------------------------------------------
    def open(self, record: RequestRecord, traceparent: str | None, tracestate: str | None) -> None:
        parent = None
        if traceparent and not self.trace.get_current_span().get_span_context().is_valid:
            carrier = {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}
            parent = self.propagator.extract(carrier)
        span = self.tracer.start_span(f"{record.method} {record.route}", context=parent,
                                      kind=self.trace.SpanKind.SERVER,
                                      attributes={"http.request.method": record.method, "http.route": record.route,
                                                  "url.full": record.url, "request_id": record.request_id,
                                                  **({"invocation_id": record.invocation_id}
                                                     if record.invocation_id else {})})
        record._span = span
        record._otel_token = self.context.attach(self.trace.set_span_in_context(span))
        span_context = span.get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")

    def close(self, record: RequestRecord, status: int, seconds: float) -> None:
        span = record._span
        try:
            if span is not None:
                span.set_attribute("http.response.status_code", status)
                for key, value in record.fields.items():
                    span.set_attribute(key, value if isinstance(value, (bool, int, float, str)) else str(value))
                if record.error is not None:
                    span.record_exception(record.error, attributes={"request_id": record.request_id})
                if status >= 500:
                    span.set_status(self.trace.Status(self.trace.StatusCode.ERROR,
                                                      f"HTTP {status} request_id={record.request_id}"))
                span.end()
            labels = {"http.route": record.route, "http.request.method": record.method,
                      "http.response.status_code": status,
                      **{k: str(record.fields[k]) for k in METRIC_FIELDS if k in record.fields}}
            self.duration.record(seconds, labels)
            if "compute_seconds" in record.fields:
                self.compute.record(float(record.fields["compute_seconds"]), labels)
            if "queue_wait_seconds" in record.fields:
                self.queue_wait.record(float(record.fields["queue_wait_seconds"]), {"http.route": record.route})
            if record.fields.get("error_type") in REFUSALS:
                self.refused.add(1, {"http.route": record.route, "reason": record.fields["error_type"],
                                     "http.response.status_code": status})
            if "cache_hit" in record.fields:
                self.cache.add(1, {"http.route": record.route, "hit": bool(record.fields["cache_hit"])})
        finally:
            if record._otel_token is not None:
                self.context.detach(record._otel_token)


_otel: _Otel | None = None
_lock = threading.Lock()
_started: threading.Thread | None = None


def use(tracer_provider: Any, meter_provider: Any) -> None:
    """Trace and measure with these providers from now on (the configured ones, or a test's in-memory ones)."""
    global _otel
    _otel = _Otel(tracer_provider, meter_provider)


def stop() -> None:
    """No more spans or metrics (tests)."""
    global _otel
    _otel = None


def active() -> bool:
    return _otel is not None


def begin(method: str, route: str, request_id: str, context: Any = None, url: str = "") -> RequestRecord:
    """Open the request's record (and span, when telemetry is on); always pair with :func:`end`."""
    invocation_id, traceparent, tracestate = _trace_context(context)
    record = RequestRecord(method=method, route=route, request_id=request_id, url=url, invocation_id=invocation_id)
    if traceparent:
        match = _TRACEPARENT.match(traceparent)
        record.trace_id = match.group(1) if match else None
    record._token = _current.set(record)
    otel = _otel
    if otel is not None:
        try:
            otel.open(record, traceparent, tracestate)
        except Exception:  # telemetry must never fail a request
            log.exception("could not open the request's span")
    return record


def end(record: RequestRecord) -> float:
    """Close the record: span attributes and status, metrics. Returns the request's seconds."""
    seconds = time.perf_counter() - record.started
    otel = _otel
    try:
        if otel is not None:
            otel.close(record, record.status, seconds)
    except Exception:
        log.exception("could not record the request's telemetry")
    finally:
        _current.reset(record._token)
    return seconds


# -- start-up -----------------------------------------------------------------------
def _credential(auth: str | None) -> Any:
    """A managed identity credential when APPLICATIONINSIGHTS_AUTHENTICATION_STRING asks for Entra ID
    ("Authorization=AAD", optionally ";ClientId=<user-assigned identity>"), else None (the connection string's key)."""
    parts = dict(p.split("=", 1) for p in (auth or "").split(";") if "=" in p)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("ClientId")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


AFTER_READY_MAX_WAIT = 30.0  # seconds telemetry's configuration waits for the instance to be ready
# then this long, so that the requests that waited for the data are answered first (the import holds the
# interpreter for long stretches: started at once, it delayed the first ok /health by ~0.5 s, as warm-up saw)
AFTER_READY_DELAY = 1.0


def _configure(connection_string: str | None, auth: str | None, by_worker: bool,
               after: threading.Event | None = None, sampler_chosen: bool = False) -> None:
    if after is not None:
        after.wait(AFTER_READY_MAX_WAIT)
        time.sleep(AFTER_READY_DELAY)
    started = time.perf_counter()
    try:
        from opentelemetry import metrics, trace

        if not by_worker:
            from azure.monitor.opentelemetry import configure_azure_monitor

            # Only our loggers ("sids.*") are exported; only the Azure SDK (blob storage) is instrumented.
            # Every request is traced (the distro's default samples 5 traces a second) unless the operator
            # chooses a sampler (OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG); log records (the
            # exceptions, each request's line) and metrics are never sampled.
            sampling = {} if sampler_chosen else {"sampling_ratio": 1.0}
            configure_azure_monitor(
                connection_string=connection_string, credential=_credential(auth), logger_name="sids",
                enable_live_metrics=False, **sampling,
                instrumentation_options={name: {"enabled": name == "azure_sdk"} for name in (
                    "azure_sdk", "django", "fastapi", "flask", "httpx", "psycopg2", "requests", "urllib", "urllib3")})
        use(trace.get_tracer_provider(), metrics.get_meter_provider())
    except Exception:
        log.exception("telemetry could not be configured; the service runs without it")
        return
    log.info("telemetry configured in %.2f s (%s)", time.perf_counter() - started,
             "by the Functions worker" if by_worker else "Azure Monitor distro")


def start(settings: Any, after: threading.Event | None = None) -> threading.Thread | None:
    """Configure telemetry once, on a background thread, when the settings ask for it (once ``after`` is
    set, if given: the instance's start comes first); the thread, or None."""
    global _started
    connection = settings.appinsights_connection_string
    connection_string = connection.get_secret_value() if connection is not None else None
    if not connection_string and not settings.worker_telemetry:
        return None
    with _lock:
        if _started is None:
            auth = settings.appinsights_authentication_string
            _started = threading.Thread(
                target=_configure, name="telemetry-start", daemon=True,
                args=(connection_string, auth.get_secret_value() if auth is not None else None,
                      settings.worker_telemetry, after, bool(settings.traces_sampler)))
            _started.start()
        return _started

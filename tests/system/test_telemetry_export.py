"""Telemetry for real: the local host with APPLICATIONINSIGHTS_CONNECTION_STRING pointing at a loopback
stand-in of the ingestion endpoint (scripts/ingestion_stub.py), which receives what the Azure Monitor
exporter sends: the request (with its request id as a custom dimension), its log line in the same
operation, and the service's metrics."""
from __future__ import annotations

import subprocess
import sys
import time

import httpx

from conftest import ROOT, start_local_host, stop_process
from scripts.ingestion_stub import IngestionStub, environment


def _wait(stub: IngestionStub, found, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        hit = found(stub.items())
        if hit:
            return hit
        time.sleep(0.2)
    raise AssertionError(f"not received in {timeout} s; got {[i.get('name') for i in stub.items()][:50]}")


def test_a_request_reaches_application_insights_as_one_operation_with_its_fields():
    stub = IngestionStub().start()
    proc, base, log = start_local_host({**environment(stub), "WARM_MODEL_CODE": "0"})
    try:
        _wait(stub, lambda items: [i for i in items if "telemetry configured" in
                                   str(i["data"]["baseData"].get("message", ""))])
        reply = httpx.get(base + "/twolvlImp/targets", params={"target_year": "2015", "dataset": "wdi"},
                          headers={"x-request-id": "export-abc"}, timeout=30)
        assert reply.status_code == 200 and reply.headers["x-request-id"] == "export-abc"

        def request_item(items):
            return [i for i in items if i["data"]["baseType"] == "RequestData"
                    and i["data"]["baseData"]["properties"].get("request_id") == "export-abc"]

        (request,) = _wait(stub, request_item)
        data = request["data"]["baseData"]
        assert data["name"] == "GET /twolvlImp/targets" and data["responseCode"] == "200" and data["success"]
        assert "/twolvlImp/targets?" in data["url"]
        operation = request["tags"]["ai.operation.id"]
        assert len(operation) == 32 and operation != "0" * 32

        def log_line(items):
            return [i for i in items if i["data"]["baseType"] == "MessageData"
                    and i["data"]["baseData"]["properties"].get("request_id") == "export-abc"]

        (line,) = _wait(stub, log_line)
        assert line["tags"]["ai.operation.id"] == operation  # the log line is inside the request's trace
        props = line["data"]["baseData"]["properties"]
        assert props["route"] == "/twolvlImp/targets" and props["status"] == "200" and props["trace_id"] == operation

        def duration_metric(items):
            return [i for i in items if i["data"]["baseType"] == "MetricData"
                    and any(m["name"] == "sids.request.duration" for m in i["data"]["baseData"]["metrics"])
                    and i["data"]["baseData"]["properties"].get("http.route") == "/twolvlImp/targets"]

        assert _wait(stub, duration_metric)
    finally:
        stop_process(proc)
        stub.stop()
    text = log.read_text()
    assert "telemetry configured" in text and "request_id=export-abc trace_id=" + operation in text


def test_every_request_is_traced_unless_the_operator_chooses_a_sampler():
    """The distro's default samples 5 traces a second: a 5xx beyond them would be lost; ours keeps all."""
    stub = IngestionStub().start()
    code = ("import os, sys\n"
            "from opentelemetry import trace\n"
            "from shared import telemetry\n"
            "from shared.settings import Settings\n"
            "telemetry.start(Settings.from_env()).join(60)\n"
            "print(trace.get_tracer_provider().sampler.get_description())\n")
    try:
        def sampler(**extra):
            env = {"PATH": "/usr/bin:/bin", **environment(stub), **extra}
            run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=120)
            assert run.returncode == 0, run.stderr[-2000:]
            return run.stdout.strip().splitlines()[-1]

        assert sampler() == "ApplicationInsightsSampler1.0"
        assert "RateLimited" in sampler(OTEL_TRACES_SAMPLER="microsoft.rate_limited", OTEL_TRACES_SAMPLER_ARG="2")
    finally:
        stub.stop()

"""An AI Mode run end to end: the real model, an Azurite queue, two local hosts as worker processes, one killed.

N messages (a few data/wdi indicators of slot 1, the slot's accuracy, one code that always fails) are
served by the app's queue-triggered function in two `python -m local_host` processes (the host.json queue
rules, a short lease). The first worker is killed (SIGKILL) while it computes a message: that message
comes back when its lease ends and the other worker completes it. The failing one is tried
maxDequeueCount times, reported in the status and left in the poison queue. The previous set serves
(manifest.json and current/) until the new manifest; then every other file is published and valid.
"""
from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from conftest import ROOT, start_local_host, stop_process
from test_aimode_queue import KEY, AzuriteQueues, wait_until

INDICATORS = ["wdi-AG.LND.EL5M.UR.ZS", "wdi-AG.LND.TOTL.UR.K2"]  # two years each to predict: a few seconds a message
FAILING = "wdi-EN.POP.DNST"  # in the data, but no SIDS-year to predict: the model refuses it, every time
LEASE = 6


@pytest.fixture
def queues():
    server = AzuriteQueues()
    yield server
    server.stop()


def test_queue_run_survives_a_killed_worker_and_reports_the_failing_indicator(tmp_path, queues, wdi):
    from models.twolvlimp import aimode
    from shared.runs import RunQueue

    out = tmp_path / "ai-mode"
    old = {"data": {"2015": {"ATG": -1}}}
    (out / "current/ml/model1/wdi").mkdir(parents=True)
    (out / f"current/ml/model1/wdi/{INDICATORS[0]}.json").write_text(json.dumps(old))
    (out / "manifest.json").write_text(json.dumps({"version": "previous", "dataset_version": "x", "base": "previous/",
                                                   "current_base": "current/", "published_at": "2026-12-01T00:00:00",
                                                   "messages": 1, "done": 1, "failed": [], "files": 1}))
    env = {"AzureWebJobsStorage": queues.connection_string, "AI_MODE_OUT": str(out), "LOCAL_FUNCTION_KEY": KEY,
           "LOCAL_QUEUE_LEASE_SECONDS": str(LEASE), "AI_MODE_ACCURACY_SAMPLE": "1"}
    first, first_base, first_log = start_local_host(env)
    second = None
    try:
        body = {"slots": [1], "indicators": [*INDICATORS, FAILING]}
        refused = httpx.post(f"{first_base}/aimode/runs", timeout=60, json=body)  # the local host asks for the key
        assert refused.status_code == 401 and refused.json()["detail"]["type"] == "unauthorized"
        assert not (out / "runs").exists()  # nothing started
        started = httpx.post(f"{first_base}/aimode/runs?code={KEY}", timeout=60, json=body)
        assert started.status_code == 202, started.text
        run = started.json()["run"]
        assert started.json()["total"] == len(INDICATORS) + 2  # + the failing one + the slot's accuracy
        # The first worker takes a message; kill it while it computes.
        wait_until(lambda: " started (dequeue 1)" in first_log.read_text(), timeout=60, every=0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_at = time.time()
        second, base, second_log = start_local_host(env)

        def state():
            body = httpx.get(f"{base}/aimode/status", params={"run": run}, timeout=30).json()
            if body["run"]["state"] != "published":  # the previous set serves until the manifest
                assert body["current"]["version"] == "previous"
                assert json.loads((out / f"current/ml/model1/wdi/{INDICATORS[0]}.json").read_text()) == old
            return body if body["run"]["state"] == "published" else None

        body = wait_until(state, timeout=240, every=0.5)
        st = body["run"]
        assert body["current"]["version"] == run and body["current"]["failed"] == [f"model1/{FAILING}"]
        assert st["done"] == len(INDICATORS) + 1 and st["total"] == len(INDICATORS) + 2 and st["remaining"] == 0
        [failure] = st["failed"]
        assert failure["key"] == f"model1/{FAILING}" and failure["dequeue_count"] == 3
        assert FAILING in failure["error"] and "cannot be published" in failure["error"]
        # the killed worker's message came back after its lease and the second worker completed it
        records = [json.loads(p.read_text()) for p in (out / "runs" / run / "done").rglob("*.json")]
        redelivered = [r for r in records if r["dequeue_count"] >= 2]
        assert redelivered, records
        assert time.time() - killed_at >= LEASE
        # the failing message is in the poison queue, once
        poisoned = [json.loads(t) for t in RunQueue("aimode", queues.connection_string).poisoned()]
        assert [m["key"] for m in poisoned] == [f"model1/{FAILING}"]
        # every other file published, valid, under the run's version and under current/
        for code in INDICATORS:
            doc = json.loads((out / "current" / aimode.file_path(1, code)).read_text())
            assert doc == json.loads((out / run / aimode.file_path(1, code)).read_text())
            assert aimode.file_problems(wdi, code, doc) == []
        assert not (out / "current" / aimode.file_path(1, FAILING)).exists()
        metadata = json.loads((out / "current" / aimode.METADATA_PATH).read_text())
        assert metadata["Model 1"]["accuracy"]["values"] > 0
        assert st["accuracy"] == {"Model 1": metadata["Model 1"]["accuracy"]}   # the status shows it too
        assert json.loads((out / "current/manifest.json").read_text())["version"] == run
        # the second worker logged progress
        assert "messages/s" in second_log.read_text()
    finally:
        if second is not None:
            stop_process(second)
        if first.poll() is None:
            stop_process(first)

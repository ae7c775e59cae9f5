"""Overload scenarios over the local host (issue 13): loopback only, bounded in requests and time.

One host with small limits (1 compute slot, 12 queued predictions, 4 MiB of request bodies):
* /health and a look-up answer promptly while heavy predictions are queued, and the queue is
  bounded (503 + Retry-After beyond it);
* a client that disconnects stops its work (the host's CPU goes quiet);
* a flood of large bodies is refused (503 + Retry-After) beyond the bytes the host may hold.

The latency bound asserted here (1 s) is loose on purpose: this 2-core machine is shared. The
figures measured with 50 queued predictions are in the README (load/overload.py measures them).
"""
from __future__ import annotations

import json
import threading
import time

import httpx
import psutil
import pytest

from conftest import start_local_host, stop_process

pytestmark = pytest.mark.slow

HEAVY = {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": "2001", "interpolator": "KNNImputer", "scheme": "AFS",
         "number_predictor": 10, "estimators": 100, "model": "rfr", "interval": "quantile", "dataset": "wdi"}
QUEUE = 12


@pytest.fixture(scope="module")
def host():
    proc, base, log = start_local_host({"MAX_CONCURRENT_PREDICTIONS": "1", "MAX_QUEUED_PREDICTIONS": str(QUEUE),
                                        "MAX_BUFFERED_BODY_BYTES": str(4 * 1024 * 1024)})
    try:
        warm = httpx.post(base + "/twolvlImp/predict", json=dict(HEAVY, estimators=5), timeout=120)
        assert warm.status_code == 200, warm.text  # the prepare phase (imputation, selection) is memoised now
        yield proc, base
    finally:
        stop_process(proc)


def cpu_seconds(proc) -> float:
    p = psutil.Process(proc.pid)
    return sum(t.user + t.system for t in [p.cpu_times()] + [c.cpu_times() for c in p.children(recursive=True)])


def wait_quiet(proc, idle: float = 0.15, window: float = 1.0, timeout: float = 60) -> None:
    """Until the host uses under ``idle`` CPU-seconds in a ``window``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = cpu_seconds(proc)
        time.sleep(window)
        if cpu_seconds(proc) - before < idle:
            return
    raise AssertionError("the host never went quiet")


def send_all(base: str, bodies: list[bytes], timeout: float) -> tuple[list, list[threading.Thread]]:
    replies: list = []
    lock = threading.Lock()

    def one(body):
        try:
            r = httpx.post(base + "/twolvlImp/predict", content=body, timeout=timeout,
                           headers={"Content-Type": "application/json"})
            out = (r.status_code, r.headers.get("retry-after"), r.content)
        except httpx.HTTPError as exc:
            out = (type(exc).__name__, None, b"")
        with lock:
            replies.append(out)

    threads = [threading.Thread(target=one, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    return replies, threads


def test_health_answers_while_heavy_predictions_queue_and_the_queue_is_bounded(host):
    proc, base = host
    n = QUEUE + 1 + 6  # one computing, QUEUE waiting, 6 over
    bodies = [json.dumps(dict(HEAVY, estimators=200 + i)).encode() for i in range(n)]
    # The clients give up after 6 s: their queued work is then dropped (see the disconnect test).
    replies, threads = send_all(base, bodies, timeout=6)
    time.sleep(0.5)
    latencies = {"/health": [], "/twolvlImp/target_years": []}
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(15):
            for path, values in latencies.items():
                t0 = time.perf_counter()
                assert http.get(path).status_code == 200
                values.append(time.perf_counter() - t0)
            time.sleep(0.1)
    for t in threads:
        t.join(30)
    refused = [r for r in replies if r[0] == 503]
    print({path: f"max {1000 * max(v):.0f} ms, median {1000 * sorted(v)[len(v) // 2]:.0f} ms"
           for path, v in latencies.items()}, "refused", len(refused))
    # Before the fix (8 host threads, all held by waiting predictions): /health took 13.5 s here.
    assert max(latencies["/health"]) < 1.0 and max(latencies["/twolvlImp/target_years"]) < 1.0
    assert len(refused) >= 3  # 6 over the bound; a few may have been admitted as others finished
    for status, retry_after, body in refused:
        assert retry_after is not None and int(retry_after) >= 1
        detail = json.loads(body)["detail"]
        assert detail["type"] == "overloaded" and "queued" in detail["msg"]
    assert all(r[0] in (200, 503, "ReadTimeout") for r in replies), replies
    wait_quiet(proc)


def test_a_disconnected_clients_work_is_cancelled(host):
    proc, base = host
    wait_quiet(proc)
    heavy = dict(HEAVY, model="all", estimators=400)  # about 11 CPU-seconds here when run to the end
    before = cpu_seconds(proc)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(base + "/twolvlImp/predict", json=heavy, timeout=1.0)
    left = cpu_seconds(proc)
    wait_quiet(proc)  # the fits already running finish; none starts after the disconnect
    after_leaving = cpu_seconds(proc) - left
    print(f"CPU-seconds: {left - before:.2f} before the client left, {after_leaving:.2f} after")
    # Before the fix the abandoned request ran to its end (11.4 CPU-seconds after leaving, measured).
    assert after_leaving < 4.0, f"the host used {after_leaving:.2f} CPU-seconds after the client left"
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/health").status_code == 200


def test_request_bodies_held_at_once_are_bounded(host):
    proc, base = host
    big = json.dumps(dict(HEAVY, padding="x" * (1024 * 1024 - 400))).encode()
    assert len(big) <= 1024 * 1024
    replies, threads = send_all(base, [big] * 40, timeout=60)
    for t in threads:
        t.join(60)
    statuses = [r[0] for r in replies]
    refused = [r for r in replies if r[0] == 503]
    assert refused, statuses  # 40 MiB of bodies against a 4 MiB bound
    for _, retry_after, body in refused:
        assert int(retry_after) >= 1 and json.loads(body)["detail"]["type"] == "overloaded"
    assert all(s in (200, 503) for s in statuses), statuses  # the admitted ones are served
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/health").status_code == 200

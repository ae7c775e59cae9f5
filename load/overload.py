"""Overload scenarios against a locally started host (loopback only, bounded in requests and time).

    .venv/bin/python load/overload.py queue  [--predictions 50] [--probe-seconds 8]
    .venv/bin/python load/overload.py flood  [--bodies 150] [--body-bytes 1048576]

queue: sends N different heavy predictions (AFS, 10 predictors, 60+ trees, --model rfr) at once, then
       probes GET /health and a look-up (GET /twolvlImp/target_years) every 50 ms while they are
       queued, and prints the probes' p50/p99/max latency and the predictions' status codes.
flood: while a few predictions run, sends N bodies of --body-bytes at once and samples the
       host's resident memory (RSS); prints its peak and the status codes.

Extra settings for the host can be given as NAME=VALUE arguments (--env MAX_QUEUED_PREDICTIONS=8).
Used for the README's reliability figures; tests/system/test_overload.py runs smaller versions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_load import percentile, start_host, stop_host  # noqa: E402

HEAVY = {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": "2001", "interpolator": "KNNImputer", "scheme": "AFS",
         "number_predictor": 10, "estimators": 100, "model": "rfr", "interval": "quantile", "dataset": "wdi"}


MODEL = {"name": "rfr"}


def heavy_request(i: int) -> dict:
    # all different: none is answered from the result cache
    return dict(HEAVY, estimators=60 + i, model=MODEL["name"])


def rss_mib(pid: int) -> float:
    import psutil

    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2 ** 20
    except psutil.NoSuchProcess:
        return float("nan")


def fire(base: str, bodies: list, statuses: Counter, timeout: float = 300, raw: bool = False) -> list[threading.Thread]:
    lock = threading.Lock()

    def one(body):
        try:
            if raw:
                r = httpx.post(base + "/twolvlImp/predict", content=body, timeout=timeout,
                               headers={"Content-Type": "application/json"})
            else:
                r = httpx.post(base + "/twolvlImp/predict", json=body, timeout=timeout)
            key = r.status_code
        except httpx.HTTPError as exc:
            key = type(exc).__name__
        with lock:
            statuses[key] += 1

    threads = [threading.Thread(target=one, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    return threads


def probe(base: str, seconds: float, every: float = 0.05) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"/health": [], "/twolvlImp/target_years": []}
    end = time.time() + seconds
    with httpx.Client(base_url=base, timeout=60) as http:
        while time.time() < end:
            for path in times:
                t0 = time.perf_counter()
                r = http.get(path)
                times[path].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (path, r.status_code)
            time.sleep(every)
    return times


def queue_scenario(base: str, n: int, probe_seconds: float) -> dict:
    httpx.post(base + "/twolvlImp/predict", json=heavy_request(-1), timeout=300)  # prepare phase memoised
    statuses: Counter = Counter()
    started = time.time()
    threads = fire(base, [heavy_request(i) for i in range(n)], statuses)
    time.sleep(0.5)
    times = probe(base, probe_seconds)
    for t in threads:
        t.join(timeout=600)
    out = {"predictions": n, "statuses": dict(statuses), "drain_seconds": round(time.time() - started, 1)}
    for path, values in times.items():
        out[path] = {"probes": len(values), "p50_ms": round(percentile(values, 50), 1),
                     "p99_ms": round(percentile(values, 99), 1), "max_ms": round(max(values), 1)}
    return out


def flood_scenario(base: str, pid: int, n: int, size: int) -> dict:
    idle = rss_mib(pid)
    running: Counter = Counter()
    busy = fire(base, [heavy_request(100 + i) for i in range(4)], running)
    time.sleep(0.3)
    body = json.dumps(dict(HEAVY, padding="x" * max(0, size - 300))).encode()[:size]
    statuses: Counter = Counter()
    peak = [idle]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    flood = fire(base, [body] * n, statuses, raw=True, timeout=120)
    for t in flood + busy:
        t.join(timeout=300)
    stop.set()
    sampler.join()
    return {"bodies": n, "body_bytes": size, "rss_idle_mib": round(idle, 1), "rss_peak_mib": round(peak[0], 1),
            "statuses": dict(statuses), "predictions": dict(running)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("queue", "flood"))
    parser.add_argument("--predictions", type=int, default=50)
    parser.add_argument("--probe-seconds", type=float, default=8)
    parser.add_argument("--bodies", type=int, default=150)
    parser.add_argument("--body-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--model", default="rfr", choices=("rfr", "etr", "gbr", "all"), help="of the heavy predictions")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the host")
    args = parser.parse_args(argv)
    env = dict(e.split("=", 1) for e in args.env)
    MODEL["name"] = args.model
    proc, base, log = start_host(1, env)
    try:
        if args.scenario == "queue":
            result = queue_scenario(base, args.predictions, args.probe_seconds)
        else:
            result = flood_scenario(base, proc.pid, args.bodies, args.body_bytes)
    finally:
        stop_host(proc)
    result["load_average"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

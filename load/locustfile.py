"""Locust scenarios for the SIDS ML backend (run them with ``load/run_load.py``).

SimpleUser -- the old service's load test, reproduced: 20 users sending the seed README's
    "simple request" (MANUAL, 1 predictor, 10 trees, rfr, quantile; with ``dataset`` as the
    dashboard now sends it), 400 requests in all. The embedded dataset has no
    EG.ELC.ACCS.ZS / AG.LND.AGRI.K2, so the nearest indicators stand in for them
    (wdi-EG.ELC.ACCS.UR.ZS, electricity access in urban areas; wdi-EN.POP.DNST, population
    density).
    LOAD_VARIANT=cached   -- the same request every time, as the old test did; after the
                             first one per instance it is answered from the result cache.
    LOAD_VARIANT=uncached -- every request a different (target, year, predictor), so every
                             one trains a model.

MixedUser -- closer to the dashboard: look-ups (/twolvlImp/targets, /twolvlImp/predictors,
    /params), simple predictions over varied targets and years, and a few AFS predictions
    (10 predictors, 100 trees). Predictions never repeat (uncached) unless LOAD_VARIANT=cached.

LOAD_REQUESTS bounds the number of requests (every user stops when they are used up);
``--run-time`` bounds the time. Traffic goes only to ``--host`` (the runner passes
127.0.0.1).
"""
from __future__ import annotations

import itertools
import os
import random
import sys

import gevent
from locust import FastHttpUser, between, constant, events, task
from locust.exception import StopUser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import requests_pool  # noqa: E402  (beside this file)

VARIANT = os.environ.get("LOAD_VARIANT", "cached")
LIMIT = int(os.environ.get("LOAD_REQUESTS", "0") or 0)  # 0: no limit but --run-time
DATASET, SIMPLE, AFS = requests_pool.DATASET, requests_pool.SIMPLE, requests_pool.AFS

_issued = itertools.count()
_done = itertools.count(1)
POOL: dict[str, list] = {"simple": [], "targets": [], "afs": []}


def ticket() -> None:
    """Take one request from the budget; stop this user when the budget is spent."""
    if LIMIT and next(_issued) >= LIMIT:
        raise StopUser()


@events.request.add_listener
def _count(**_kwargs):
    if LIMIT and next(_done) == LIMIT:
        runner = _env.runner if _env else None
        if runner is not None:
            gevent.spawn_later(0.1, runner.quit)


_env = None
# Every answer is recorded here (exact percentiles, not Locust's bucketed ones), and throughput is
# measured from the first request sent to the last answer received, not from Locust's own start
# (which includes building the request pool).
TIMING = {"first_start": None, "last_end": None, "times_ms": [], "failures": 0, "by_name": {}, "errors": []}


@events.request.add_listener
def _record(request_type="", name="", start_time=None, response_time=0, exception=None, **_kwargs):
    if start_time is None:
        return
    end = start_time + (response_time or 0) / 1000
    TIMING["first_start"] = start_time if TIMING["first_start"] is None else min(TIMING["first_start"], start_time)
    TIMING["last_end"] = end if TIMING["last_end"] is None else max(TIMING["last_end"], end)
    TIMING["times_ms"].append(response_time)
    entry = TIMING["by_name"].setdefault(name, {"times_ms": [], "failures": 0})
    entry["times_ms"].append(response_time)
    if exception is not None:
        TIMING["failures"] += 1
        entry["failures"] += 1
        if len(TIMING["errors"]) < 5:
            TIMING["errors"].append(f"{name}: {str(exception)[:300]}")


@events.quitting.add_listener
def _write_timing(**_kwargs):
    path = os.environ.get("LOAD_TIMING_FILE")
    if path:
        import json

        with open(path, "w") as out:
            json.dump(TIMING, out)


@events.init.add_listener
def _init(environment, **_kwargs):
    global _env
    _env = environment


@events.test_start.add_listener
def _pool(environment, **_kwargs):
    """The requests to send: from LOAD_POOL_FILE (run_load.py builds it before the run), else built now."""
    path = os.environ.get("LOAD_POOL_FILE")
    POOL.update(requests_pool.load(path) if path else requests_pool.build_pool(environment.host))
    print(f"load pool: {len(POOL['simple'])} simple combinations, {len(POOL['afs'])} AFS targets, "
          f"{len(POOL['targets'])} (year, target) pairs", flush=True)
    environment.stats.reset_all()  # what follows is the measured run


_next_simple = itertools.count()
_next_afs = itertools.count()


def simple_body() -> dict:
    if VARIANT == "cached":
        return SIMPLE
    target, year, predictor = POOL["simple"][next(_next_simple) % len(POOL["simple"])]
    return dict(SIMPLE, target=target, target_year=year, manual_predictors=[predictor])


def afs_body() -> dict:
    if VARIANT == "cached" or not POOL["afs"]:
        return dict(AFS, target=SIMPLE["target"])
    target, year = POOL["afs"][next(_next_afs) % len(POOL["afs"])]
    return dict(AFS, target=target, target_year=year)


class SimpleUser(FastHttpUser):
    """The old test: the simple request in a loop, no think time."""

    wait_time = constant(0)

    @task
    def predict_simple(self):
        ticket()
        self.client.post("/twolvlImp/predict", json=simple_body(), name="POST /twolvlImp/predict (simple)")


class MixedUser(FastHttpUser):
    """A dashboard user: mostly look-ups, some simple predictions, a few AFS ones."""

    wait_time = between(0, 0.2)

    @task(4)
    def targets(self):
        ticket()
        year, _ = random.choice(POOL["targets"])
        self.client.get("/twolvlImp/targets", params={"target_year": year, "dataset": DATASET},
                        name="GET /twolvlImp/targets")

    @task(4)
    def predictors(self):
        ticket()
        year, target = random.choice(POOL["targets"])
        self.client.post("/twolvlImp/predictors", json={"target_year": year, "dataset": DATASET, "target": target,
                                                        "scheme": "MANUAL"}, name="POST /twolvlImp/predictors")

    @task(1)
    def params(self):
        ticket()
        self.client.get("/params", name="GET /params")

    @task(4)
    def predict_simple(self):
        ticket()
        self.client.post("/twolvlImp/predict", json=simple_body(), name="POST /twolvlImp/predict (simple)")

    @task(1)
    def predict_afs(self):
        ticket()
        self.client.post("/twolvlImp/predict", json=afs_body(), name="POST /twolvlImp/predict (AFS)")

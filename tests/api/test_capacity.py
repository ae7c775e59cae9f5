"""Capacity of one instance: usable CPUs, compute slots with a bounded queue, time budgets, cancellation.

Through the app's functions (call fixture) and on the model and the shared pieces directly, no server;
the same behaviour over the local host is in tests/system/test_overload.py.
"""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from models.twolvlimp.tree_search import FitContext, fit_submitter
from shared.capacity import (Budget, ComputeGate, Overloaded, RequestCancelled, TimeBudgetExceeded, cancel_event,
                             run_cancellable)
from shared.http import model_error_response
from shared.settings import Settings, reset_settings


# ---------------------------------------------------------------------------------- usable CPUs
# joblib.cpu_count() (the service's count of usable CPUs) reads the cgroup files at fixed paths under
# /sys/fs/cgroup: in a container that is its own cgroup (cgroup namespace). These tests point those
# paths at a folder of their own and set the affinity, through the os module joblib's loky backend sees.
class _FakeOs:
    def __init__(self, root, affinity: int):
        self._root, self._affinity = root, affinity
        self.path = self

    def __getattr__(self, name):  # everything else: the real os / os.path
        return getattr(os.path, name) if hasattr(os.path, name) and not hasattr(os, name) else getattr(os, name)

    def _moved(self, name: str) -> str:
        return str(self._root / name.removeprefix("/sys/fs/cgroup/")) if name.startswith("/sys/fs/cgroup/") else name

    def exists(self, name):
        return os.path.exists(self._moved(name))

    def sched_getaffinity(self, pid):
        return set(range(self._affinity))

    def cpu_count(self):
        return 64


def _cpus(monkeypatch, tmp_path, files: dict[str, str], affinity: int) -> int:
    import builtins

    import joblib
    from joblib.externals.loky.backend import context

    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    fake = _FakeOs(root, affinity)
    monkeypatch.setattr(context, "os", fake)
    monkeypatch.setattr(context, "open", lambda name, *a, **k: builtins.open(fake._moved(name), *a, **k), raising=False)
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    return joblib.cpu_count()


@pytest.mark.parametrize("cpu_max, expected", [
    ("100000 100000\n", 1),    # an AKS pod with cpu: "1"
    ("150000 100000\n", 2),    # 1.5 CPUs: two threads can still make progress
    ("50000 100000\n", 1),     # half a CPU: at least one
    ("max 100000\n", 8),       # no limit: the affinity
    ("1600000 100000\n", 8),   # a limit above the affinity: the affinity
])
def test_usable_cpus_read_the_cgroup_v2_limit(monkeypatch, tmp_path, cpu_max, expected):
    assert _cpus(monkeypatch, tmp_path, {"cpu.max": cpu_max}, affinity=8) == expected


def test_usable_cpus_read_the_cgroup_v1_cfs_quota(monkeypatch, tmp_path):
    files = {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert _cpus(monkeypatch, tmp_path, files, affinity=4) == 1
    files = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert _cpus(monkeypatch, tmp_path / "unlimited", files, affinity=4) == 4


def test_usable_cpus_use_the_affinity_without_cgroup_files_or_with_garbled_ones(monkeypatch, tmp_path):
    assert _cpus(monkeypatch, tmp_path, {}, affinity=3) == 3
    assert _cpus(monkeypatch, tmp_path / "garbled", {"cpu.max": "garbage\n"}, affinity=2) == 2
    assert _cpus(monkeypatch, tmp_path / "none", {}, affinity=0) == 1


def test_usable_cpus_on_this_machine_and_the_operators_cap(monkeypatch):
    import joblib

    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    assert 1 <= joblib.cpu_count() <= (os.cpu_count() or 1)
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")  # joblib's own variable caps it further
    assert joblib.cpu_count() == 1


def test_compute_slots_and_fit_pool_are_sized_from_usable_cpus_not_the_machine(monkeypatch):
    import joblib

    from blueprints import twolvlimp

    monkeypatch.setattr(joblib, "cpu_count", lambda *a, **k: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    runtime = twolvlimp.build_runtime(Settings())
    try:
        assert runtime.slots.slots == 1
        assert runtime.fit_pool._max_workers == 1
    finally:
        runtime.close()
    runtime = twolvlimp.build_runtime(Settings(max_concurrent_predictions=3, max_queued_predictions=5,
                                               result_cache_size=7))
    try:
        assert (runtime.slots.slots, runtime.slots.max_queued, runtime.cache.size) == (3, 5, 7)
    finally:
        runtime.close()


def test_the_blueprint_serves_with_one_runtime_built_from_the_settings(call):
    from blueprints import twolvlimp

    old = twolvlimp.use_runtime(None)
    reset_settings(Settings(result_cache_size=3, max_queued_predictions=2))
    try:
        assert call("POST", "/twolvlImp/estimate", SIMPLE).status == 200
        built = twolvlimp.runtime()
        assert (built.cache.size, built.slots.max_queued) == (3, 2)
        assert call("POST", "/twolvlImp/predict", SIMPLE).headers["x-cache"] == "miss"
        assert twolvlimp.runtime() is built  # the same one, which now holds the answer:
        assert call("POST", "/twolvlImp/predict", SIMPLE).headers["x-cache"] == "hit"
        assert built.durations.measurements == 1
    finally:
        reset_settings(None)
        replaced = twolvlimp.use_runtime(old)
        if replaced is not None:
            replaced.close()


def test_fits_run_on_the_runtime_pool(wdi, monkeypatch):
    from models.twolvlimp import tree_search
    from models.twolvlimp.lookups import ImputationRequest
    from models.twolvlimp.runtime import TwoLevelRuntime

    threads, real = set(), tree_search._forest_fold

    def recorded(*args):
        threads.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(tree_search, "_forest_fold", recorded)
    runtime = TwoLevelRuntime(cache_size=0, concurrency=1, queue_length=0, fit_workers=2)
    try:
        runtime.predict_response(wdi, ImputationRequest(**SIMPLE))
    finally:
        runtime.close()
    assert threads and all(name.startswith("twolvlimp-fit") for name in threads), threads
    assert FitContext().pool is tree_search.ON_THIS_THREAD  # outside a runtime's computation, fits run on the caller


# ---------------------------------------------------------------------------------- budgets
class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_budget_stops_work_after_its_deadline_and_says_where():
    clock = FakeClock()
    budget = Budget(10, clock=clock)
    budget.check("fold 1")
    clock.now += 10.5
    with pytest.raises(TimeBudgetExceeded) as info:
        budget.check("fold 2")
    answer = model_error_response(info.value)
    assert answer.status_code == 504
    body = json.loads(answer.get_body())["detail"]
    assert body["type"] == "time_budget_exceeded" and "10 s" in body["msg"] and "fold 2" in body["msg"]
    assert body["context"]["budget_seconds"] == 10 and body["context"]["stage"] == "fold 2"


def test_cancellation_flag_reaches_the_fits_through_the_fit_context():
    """The host's flag reaches the handler's budget; the budget's check reaches every fit in the FitContext the
    runtime hands down (no context variable between the runtime and the fits)."""
    event = threading.Event()
    seen, ran = [], []

    def handler():
        seen.append(cancel_event())
        ctx = FitContext(check=Budget.for_request(60).check)
        ctx.check("a")  # not cancelled yet
        submit = fit_submitter(1000, ctx)
        assert submit("fold 1", ran.append, 1).result() is None
        event.set()
        with pytest.raises(RequestCancelled):
            ctx.check("b")
        with pytest.raises(RequestCancelled):   # a queued fit of a cancelled request never starts
            submit("fold 2", ran.append, 2).result()

    run_cancellable(event, handler)
    assert seen == [event] and ran == [1]
    assert cancel_event() is None  # reset outside
    FitContext().check("no budget: a no-op")


# ---------------------------------------------------------------------------------- compute gate
def _hold(gate: ComputeGate, release: threading.Event, entered: threading.Event):
    def run():
        with gate.slot():
            entered.set()
            release.wait(10)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert entered.wait(5)
    return t


def test_gate_refuses_beyond_its_queue_with_retry_after():
    gate = ComputeGate(slots=1, max_queued=1, poll=0.01)
    release, entered = threading.Event(), threading.Event()
    holder = _hold(gate, release, entered)
    queued_done = []
    waiter = threading.Thread(target=lambda: queued_done.append(gate.slot().__enter__() or True), daemon=True)
    waiter.start()
    deadline = time.time() + 5
    while gate.waiting < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert gate.waiting == 1
    with pytest.raises(Overloaded) as info:
        with gate.slot():
            pass
    err = model_error_response(info.value)
    assert err.status_code == 503 and err.headers["Retry-After"].isdigit() and int(err.headers["Retry-After"]) >= 1
    detail = json.loads(err.get_body())["detail"]
    assert detail["type"] == "overloaded" and detail["context"]["queued"] == 1
    release.set()
    holder.join(5)
    waiter.join(5)
    assert queued_done == [True]  # the queued one was served when the slot freed


def test_gate_wait_ends_with_the_budget_or_when_the_client_leaves():
    gate = ComputeGate(slots=1, max_queued=5, poll=0.01)
    release, entered = threading.Event(), threading.Event()
    holder = _hold(gate, release, entered)
    try:
        with pytest.raises(Overloaded) as info:
            with gate.slot(Budget(0.05)):
                pass
        assert "waited its whole time budget" in info.value.msg or "would not be served" in info.value.msg
        gone = threading.Event()
        threading.Timer(0.05, gone.set).start()
        with pytest.raises(RequestCancelled):
            with gate.slot(Budget(60, gone)):
                pass
        assert gate.waiting == 0 and gate.running == 1
    finally:
        release.set()
        holder.join(5)
    with gate.slot(Budget(1)):
        assert gate.running == 1


# ---------------------------------------------------------------------------------- /twolvlImp/predict
HEAVY = {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": "2001", "interpolator": "KNNImputer", "scheme": "AFS",
         "number_predictor": 10, "estimators": 300, "model": "all", "interval": "quantile", "dataset": "wdi"}
SIMPLE = {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": "2015", "interpolator": "KNNImputer",
          "scheme": "MANUAL", "estimators": 10, "model": "rfr", "interval": "quantile", "dataset": "wdi",
          "manual_predictors": ["wdi-SP.URB.TOTL.IN.ZS"]}


@pytest.fixture
def fold_fits(monkeypatch):
    """Counts the forest and boosting fold fits that actually run."""
    from models.twolvlimp import tree_search

    count, lock = [0], threading.Lock()
    for name in ("_forest_fold", "_boosting_fold"):
        real = getattr(tree_search, name)

        def counted(*args, _real=real):
            with lock:
                count[0] += 1
            return _real(*args)

        monkeypatch.setattr(tree_search, name, counted)
    return count


def test_predict_answers_503_with_retry_after_when_the_queue_is_full(call, with_settings):
    runtime = with_settings(max_concurrent_predictions=1, max_queued_predictions=0)
    release, entered = threading.Event(), threading.Event()
    holder = _hold(runtime.slots, release, entered)  # one heavy prediction computing
    try:
        reply = call("POST", "/twolvlImp/predict", SIMPLE)
        look_up = call("GET", "/twolvlImp/target_years")
        estimate = call("POST", "/twolvlImp/estimate", SIMPLE)
    finally:
        release.set()
        holder.join(5)
    assert reply.status == 503, reply.body
    assert int(reply.headers["retry-after"]) >= 1
    detail = reply.json()["detail"]
    assert detail["type"] == "overloaded" and "busy" in detail["msg"] and "Traceback" not in reply.body.decode()
    assert look_up.status == 200 and estimate.status == 200  # light endpoints never wait for a slot
    assert call("POST", "/twolvlImp/predict", SIMPLE).status == 200  # served once the slot is free


def test_predict_refuses_up_front_what_the_cost_model_says_overruns_the_budget(call, with_settings, monkeypatch):
    from models.twolvlimp import runtime as twolvlimp_runtime

    budget = 0.5
    with_settings(request_time_budget_seconds=budget)
    heavy = {**HEAVY, "estimators": 500, "interpolator": "IterativeImputer"}
    assert call("POST", "/twolvlImp/estimate", heavy).json() > budget
    monkeypatch.setattr(twolvlimp_runtime, "compute", lambda ds, r, ctx: pytest.fail("refused work must not start"))
    reply = call("POST", "/twolvlImp/predict", heavy)
    assert reply.status == 422, reply.body
    detail = reply.json()["detail"]
    assert detail["type"] == "over_time_budget" and "0.5 s" in detail["msg"] and "estimators=" in detail["msg"] and "fit" in detail["msg"]
    assert detail["context"]["estimate_seconds"] > budget and detail["context"]["budget_seconds"] == budget
    options = detail["context"]["options"]
    assert options
    for option in options:  # each named change does fit, by the same cost model /estimate uses
        changed = {**heavy, **option["change"]}
        assert call("POST", "/twolvlImp/estimate", changed).json() <= budget, option
    fewer = next(o["change"]["estimators"] for o in options if "estimators" in o["change"])
    assert 1 <= fewer < 500


def test_predict_stops_at_a_checkpoint_when_the_budget_runs_out(call, with_settings, monkeypatch, fold_fits):
    from models.twolvlimp import runtime as twolvlimp_runtime

    runtime = with_settings(request_time_budget_seconds=0.3)
    # The cost model can be wrong (a busy machine): the budget is also enforced during the work.
    monkeypatch.setattr(twolvlimp_runtime.DurationModel, "estimate", lambda self, w: 0.0)
    reply = call("POST", "/twolvlImp/predict", HEAVY)
    assert reply.status == 504, reply.body
    detail = reply.json()["detail"]
    assert detail["type"] == "time_budget_exceeded" and "0.3 s" in detail["msg"] and "stopped" in detail["msg"]
    assert fold_fits[0] < 15  # rfr, etr and gbr: 15 fold fits when the work runs to the end
    time.sleep(0.5)
    assert runtime.fit_pool._work_queue.qsize() == 0  # no fit of the stopped request is left queued


def test_cancelled_request_stops_its_fits(wdi, with_settings, fold_fits):
    from models.twolvlimp.lookups import ImputationRequest

    runtime = with_settings()
    runtime.predict_response(wdi, ImputationRequest(**{**HEAVY, "estimators": 20}))  # prepare phase memoised
    fold_fits[0] = 0
    gone = threading.Event()
    threading.Timer(0.2, gone.set).start()
    with pytest.raises(RequestCancelled):
        runtime.predict_response(wdi, ImputationRequest(**HEAVY), Budget(60, gone))
    assert fold_fits[0] < 15


def test_work_that_no_longer_fits_after_queueing_is_refused_before_it_starts(wdi, with_settings, monkeypatch):
    from models.twolvlimp import runtime as twolvlimp_runtime
    from models.twolvlimp.lookups import ImputationRequest

    runtime = with_settings(max_concurrent_predictions=1, max_queued_predictions=4)
    monkeypatch.setattr(twolvlimp_runtime.DurationModel, "estimate", lambda self, w: 0.5)  # fits a 0.8 s budget...
    monkeypatch.setattr(twolvlimp_runtime, "compute", lambda ds, r, ctx: pytest.fail("work that cannot fit must not start"))
    gate = runtime.slots
    gate._mean_hold = 0.01  # the queue looks short when the request arrives
    release, entered = threading.Event(), threading.Event()
    holder = _hold(gate, release, entered)
    threading.Timer(0.5, release.set).start()  # ... but the slot frees only after 0.5 s
    try:
        with pytest.raises(Overloaded) as info:
            runtime.predict_response(wdi, ImputationRequest(**SIMPLE), Budget(0.8))
    finally:
        release.set()
        holder.join(5)
    assert "no longer fit" in info.value.msg and info.value.retry_after_seconds >= 1


def test_overload_settings_are_read_and_checked():
    s = Settings.from_env({"MAX_QUEUED_PREDICTIONS": "3", "REQUEST_TIME_BUDGET_SECONDS": "12.5",
                           "MAX_BUFFERED_BODY_BYTES": "1000", "PYTHON_THREADPOOL_THREAD_COUNT": "40"})
    assert (s.max_queued_predictions, s.request_time_budget_seconds, s.max_buffered_body_bytes,
            s.threadpool_threads) == (3, 12.5, 1000, 40)
    d = Settings.from_env({})
    assert (d.max_queued_predictions, d.request_time_budget_seconds, d.threadpool_threads) == (64, 200.0, 1000)
    assert d.request_time_budget_seconds < 230  # the host's HTTP limit
    for bad in ("0", "-5", "nan", "soon"):
        with pytest.raises(ValueError, match="REQUEST_TIME_BUDGET_SECONDS"):
            Settings.from_env({"REQUEST_TIME_BUDGET_SECONDS": bad})


def test_local_host_pool_is_sized_like_the_functions_host():
    import azure.functions as func

    from local_host.asgi_server import FunctionAppServer

    def small_app():
        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @app.route(route="ping", methods=["GET"])
        def ping(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("pong")

        return app

    reset_settings(Settings())
    try:
        assert FunctionAppServer(small_app()).executor._max_workers == 1000  # the host's default, not 8
        reset_settings(Settings(threadpool_threads=16))
        assert FunctionAppServer(small_app()).executor._max_workers == 16
    finally:
        reset_settings(None)


def test_legacy_method_checks_the_budget_between_its_steps(wdi, with_settings):
    from models.twolvlimp.lookups import ImputationRequest

    runtime = with_settings()
    gone = threading.Event()
    timer = threading.Timer(0.2, gone.set)
    timer.start()
    legacy = {**HEAVY, "method": "legacy", "estimators": 50, "model": "rfr"}
    with pytest.raises(RequestCancelled) as info:
        runtime.predict_response(wdi, ImputationRequest(**legacy), Budget(60, gone))
    assert "legacy" in info.value.msg

#!/usr/bin/env python3
"""Measure the service's speed, scale and memory in one run, side by side with the old service.

    python scripts/benchmark.py [--quick] [--out bench-results/benchmark.json] [--markdown FILE]

What it measures (each in a fresh subprocess, so one figure cannot warm another):

* **embedded load**: loading ``data/wdi`` in a cold process (a new instance: the app is
  imported, the dataset store loads the folder); median of several processes;
* **requests on the embedded data**: the twolvlImp requests of the old service's reference figures
  (``docs/reference/benchmark-reference.json``, where every figure and target compared with says
  where it comes from), called through a real
  ``azure.functions.HttpRequest`` on the functions the app registered (the same path as
  the Functions host), on a warm instance: median of N runs after warm-up, each run
  bypassing the per-instance result cache; then the repeated identical request (a cache
  hit); and what ``/twolvlImp/estimate`` predicted before and after the runs;
* **platform scale**: a synthetic dataset of platform size (``make_synthetic.py``:
  3,000 indicators x 250 countries x 2000-2020) loaded on a cold instance from CSV and
  from Parquet, the AFS request on it, and the peak resident memory of that whole
  instance process (``getrusage`` ``ru_maxrss``, the process and any children);
* **start of an instance** (issue 12): seconds from starting the local host's process
  (``python -m local_host``, as ``make run``) to ``/health`` answering ok, on
  ``data/wdi``, the platform's real data (``--platform-data``; see below) and
  the synthetic data from CSV and from Parquet; median of several new processes, the
  datasets taken in turn.
* **telemetry's cost** (issue 20; ``--no-telemetry`` skips it): the start of an instance on ``data/wdi``
  and a simple request (a look-up, median of 50), with telemetry off and on (the Azure Monitor exporter
  sending to a loopback stand-in of the ingestion endpoint), new instances alternated.

* **IterativeImputer, first of its kind**: the AFS request with the iterative base imputer in a
  fresh instance (nothing memoised: the base imputation is paid), on ``data/wdi``, on the SIDS
  platform's real data (``--platform-data``) and on
  the synthetic data; beside it, in the same run, the same request with ``method: "legacy"`` (the
  old service's method and its scikit-learn ``IterativeImputer`` with extra trees) where that
  finishes in reasonable time (``data/wdi``; the platform data only with ``--legacy-on-platform``).

* **the dashboard's form, first of its kind** (``--heaviest``, ``--matrix``; both in the full run, neither in
  ``--quick``): the heaviest request its form can build (IterativeImputer, AFS, 20 predictors, 1000 trees, model
  ``all``, quantile) in a fresh instance on the SIDS platform data and on the synthetic data, with CPU seconds,
  peak memory and the cold ``/estimate``; the form's default request in a fresh instance; and its 72 option
  combinations (base imputer x scheme x model x interval, 10 predictors, 100 trees) on the SIDS platform data, in
  one instance that forgets every memo, cache and learned duration before each (slowest, median, and the worst
  factor between the cold ``/estimate`` and the measured seconds).

* **memory under load** (issue 19; ``--memory-requests``, 86 in the full run, none in ``--quick``): one local-host
  instance on ``data/wdi`` gets the heaviest form request for as many different targets/years, 8 at a time;
  its RSS before, at its peak, at the end and a minute later (:func:`memory_under_load`).

The SIDS platform's real data is not in this repository: ``--platform-data DIR`` names it; by
default a sibling checkout's ``../shared/data/sids-platform`` is used when present, and otherwise
its rows say that they were skipped and why.

It prints a markdown table and writes the figures, the machine and the load average
as JSON. Timings are wall-clock seconds on this machine; they vary with what else runs.
While it runs, a bar on stderr counts the measurements (worker processes and instance starts) done, their
rate and the time left (:mod:`progress`); the full run then draws ``docs/img/bench-latency.png`` and
``docs/img/bench-form-options.png`` (:mod:`plots`; ``--plots DIR`` elsewhere, or for any run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from progress import progress  # noqa: E402  (beside this file)

EMBEDDED = ROOT / "data" / "wdi"
DEFAULT_OUT = ROOT / "bench-results" / "benchmark.json"
PREFIX = "/twolvlImp"
MB = 1024 * 1024

# The figures measurements are compared with (the old service's, the issues' targets), each with its source.
REFERENCE_FILE = ROOT / "docs" / "reference" / "benchmark-reference.json"
# The SIDS platform's real data: a sibling checkout's folder, used by default only when it is there.
SIBLING_PLATFORM_DATA = ROOT.parent / "shared" / "data" / "sids-platform"
NO_PLATFORM_DATA = ("no SIDS platform data (give --platform-data DIR; ../shared/data/sids-platform is used "
                    "by default only when present)")


def load_reference(path: Path = REFERENCE_FILE) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} from the reference file (the sources stay in the file and in the JSON report)."""
    document = json.loads(Path(path).read_text())
    return {section: {key: entry["value"] for key, entry in entries.items()}
            for section, entries in document.items() if isinstance(entries, dict)}


REFERENCE = load_reference()
OLD = REFERENCE["old"]                        # the old service on this kind of machine
TARGET = REFERENCE["targets"]                 # issue 3 (seconds, bytes)
START_TARGET = REFERENCE["start_targets"]     # issue 12: process start to /health ok

WDI_TARGET = "wdi-EG.ELC.ACCS.UR.ZS"
BASE_REQUEST = {"target_year": "2015", "interpolator": "KNNImputer", "interval": "quantile"}
REQUESTS = {
    "simple": ("simple: MANUAL, 3 predictors, 10 trees, rfr",
               dict(BASE_REQUEST, target=WDI_TARGET, dataset="wdi", scheme="MANUAL", estimators=10, model="rfr",
                    manual_predictors=["wdi-EN.POP.DNST", "wdi-IQ.SPI.PIL1", "wdi-IQ.SPI.PIL3"])),
    "afs": ("AFS, 10 predictors, 100 trees, rfr",
            dict(BASE_REQUEST, target=WDI_TARGET, dataset="wdi", scheme="AFS", estimators=100, model="rfr",
                 number_predictor=10)),
    "all": ("AFS, 10 predictors, 100 trees, model all",
            dict(BASE_REQUEST, target=WDI_TARGET, dataset="wdi", scheme="AFS", estimators=100, model="all",
                 number_predictor=10)),
}
# On the synthetic data the target is chosen by rule in the worker (see choose_synthetic_target).
SYNTHETIC_REQUEST = dict(BASE_REQUEST, scheme="AFS", estimators=100, model="rfr", number_predictor=10)

# IterativeImputer, first request of its kind (fresh instance), on each dataset below.
ITERATIVE_REQUEST = dict(BASE_REQUEST, interpolator="IterativeImputer", scheme="AFS", estimators=100, model="rfr",
                         number_predictor=10)
ITERATIVE_TARGET = REFERENCE["iterative_targets"]
# Measured before the scalable iterative imputer: shown when the legacy run is not made beside it.
ITERATIVE_BEFORE = {key: (entry["value"], entry["note"]) for key, entry in
                    json.loads(REFERENCE_FILE.read_text())["iterative_before"].items()}  # (seconds, note)

# The dashboard's form (../shared/contracts/dashboard.md): its heaviest request and its option matrix, each first
# of its kind. The Functions host stops a request after 230 s; the goal is 10 s for any option, 2 s for the default.
HOST_LIMIT_SECONDS = 230.0
FORM_GOAL = {"heaviest": 10.0, "matrix_slowest": 10.0, "form_default": 2.0}
HEAVIEST_REQUEST = dict(BASE_REQUEST, interpolator="IterativeImputer", scheme="AFS", estimators=1000, model="all",
                        number_predictor=20, interval="quantile")
FORM_OPTIONS = {"interpolator": ("KNNImputer", "IterativeImputer", "SimpleImputer"), "scheme": ("MANUAL", "AFS", "PCA"),
                "model": ("rfr", "gbr", "etr", "all"), "interval": ("quantile", "bootstrap")}
MATRIX_SIZE = {"number_predictor": 10, "estimators": 100}
# Issue 19: under 8 concurrent heaviest requests (86 in all) the peak RSS of an instance, and a minute after
MEMORY_GOAL = {"peak_bytes": 1_000_000_000, "after_over_before": 1.5}  # MANUAL: the 10 most complete predictors
# The form's default as the contract shows it; a predictor the data lacks is replaced by its most complete one.
FORM_DEFAULT = {"target": "wdi-EG.ELC.ACCS.ZS", "interval": "quantile", "target_year": "2015",
                "interpolator": "KNNImputer", "scheme": "MANUAL", "estimators": 10, "model": "rfr", "dataset": "wdi",
                "manual_predictors": ["wdi-SP.URB.TOTL.IN.ZS"]}


# ----------------------------------------------------------------------------------------------
# helpers shared by the workers
# ----------------------------------------------------------------------------------------------
def peak_rss_bytes() -> dict[str, int]:
    """Peak resident set size of this process and of its largest finished child (Linux: KiB units)."""
    scale = 1 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return {"self": own, "children": children, "total": own + children}


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def import_app(dataset_path: Path):
    """Import the Functions app as an instance does; returns (app, import error or None)."""
    os.environ["DATASET_PATH"] = str(dataset_path)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        import function_app

        return function_app.app, None
    except Exception as exc:  # a half-written blueprint must not stop the loader figures
        return None, f"{type(exc).__name__}: {exc}"[:300]


class Client:
    """Calls the app's functions through the host's routing (shared.routing.dispatch), as the Functions host does."""

    def __init__(self, app):
        from shared.routing import app_routes

        self.routes = app_routes(app)

    def has(self, method: str, path: str) -> bool:
        from shared.routing import resolve

        route = resolve(self.routes, method, path)[0]
        return route is not None and not route.is_catch_all  # the platform's catch-all only answers 404

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None):
        from urllib.parse import urlencode

        from shared.routing import dispatch

        raw = json.dumps(body).encode() if body is not None else b""
        headers = {"content-type": "application/json", "content-length": str(len(raw))}
        started = time.perf_counter()
        reply, route = dispatch(self.routes, method, path, urlencode(params or {}), headers, raw)
        elapsed = time.perf_counter() - started
        if route is None:
            raise LookupError(f"no function serves {method} {path}")
        return reply.status, reply.body, elapsed


# ----------------------------------------------------------------------------------------------
# the result cache: how a benchmark run gets around it
# ----------------------------------------------------------------------------------------------
class CacheBypass:
    """Makes each timed run compute its result instead of reading the per-instance result cache.

    The twolvlImp service keeps a per-instance LRU of response bodies keyed by data version
    and request (the ``cache`` of the blueprint's runtime, ``blueprints.twolvlimp.runtime()``).
    Before each timed run the benchmark empties it with its ``clear()`` (which keeps the learned
    durations that ``/estimate`` uses). ``method`` says which way was used.
    """

    def __init__(self):
        self.method = "none (no result cache found)"
        self._clear = None
        try:
            from blueprints import twolvlimp
        except Exception:  # a half-written blueprint must not stop the other figures
            return
        runtime = getattr(twolvlimp, "runtime", None)
        if callable(runtime):
            self._clear = lambda: runtime().cache.clear()
            self.method = "blueprints.twolvlimp.runtime().cache.clear() before each timed run"

    def __call__(self) -> None:
        if self._clear is not None:
            self._clear()


# ----------------------------------------------------------------------------------------------
# workers (each runs in its own subprocess)
# ----------------------------------------------------------------------------------------------
def worker_load(args: dict) -> dict:
    """A cold instance: import the app, wait until the dataset store has loaded the folder."""
    started = time.perf_counter()
    app, import_error = import_app(Path(args["path"]))
    imported = time.perf_counter()
    from shared.store import get_store

    store = get_store()
    data = store.get()
    ready = time.perf_counter()
    status = store.status()
    return {
        "load_seconds": data.load_seconds, "import_seconds": imported - started, "ready_seconds": ready - started,
        "status": status["status"], "last_error": status["last_error"], "app_import_error": import_error,
        "countries": len(data.countries), "indicators": len(data.indicators), "years": len(data.years),
        "source_file": data.data_file,  # the file read (a Parquet file is read only when it is the CSV's copy)
        "peak_rss": peak_rss_bytes(), "rss_after_load": current_rss_bytes(),
    }


def start_to_health(dataset: Path, project: Path = ROOT, timeout: float = 120.0, env_extra: dict | None = None,
                    then=None) -> dict:
    """One new instance: seconds from starting the local host's process to ``/health`` answering ok.

    ``python -m local_host`` (as ``make run``) is started on a free port with
    ``DATASET_PATH=dataset``; ``/health`` is polled (every 10 ms while nothing listens) until
    it answers 200 with ``status: ok``; then the process is stopped. ``project`` is the
    folder whose code runs (another checkout, to compare two versions side by side). ``env_extra``: more
    environment; ``then(base_url)``: called once ``/health`` is ok, before the stop (its dict is merged in).
    """
    import urllib.error
    import urllib.request

    from processes import free_port, stop_process  # beside this file

    port = free_port()
    env = dict(os.environ, DATASET_PATH=str(dataset), PYTHONHASHSEED="0", **(env_extra or {}))
    url = f"http://127.0.0.1:{port}/health"
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        runner = ("local_host" if (project / "local_host").is_dir() or (project / "local_host.py").exists()
                  else "shared.local_host")  # an older checkout
        proc = subprocess.Popen([sys.executable, "-m", runner, "--port", str(port),
                                 "--log-level", "warning"], cwd=project, env=env, stdout=log, stderr=log)
        try:
            while True:
                elapsed = time.perf_counter() - started
                if proc.poll() is not None or elapsed > timeout:
                    log.seek(0)
                    why = "exited" if proc.poll() is not None else f"no ok /health in {timeout:.0f} s"
                    return {"error": f"{why}: {log.read().decode(errors='replace')[-400:]}"}
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as answer:
                        health = json.loads(answer.read())
                except (urllib.error.URLError, ConnectionError, OSError):
                    time.sleep(0.01)
                    continue
                if health.get("status") == "ok":
                    ready = time.perf_counter() - started
                    answer = {"seconds": ready, "load_seconds": health.get("load_seconds"),
                              "indicators": health.get("indicators"), "countries": health.get("countries")}
                    if then is not None:
                        answer.update(then(f"http://127.0.0.1:{port}"))
                    return answer
                time.sleep(0.01)
        finally:
            stop_process(proc, grace=30)


def choose_synthetic_target(data, year: int = 2015) -> dict:
    """The first indicator (by code) that is a sensible AFS target in ``year``.

    Rule: missing for 25-45% of all countries that year and for at least 5 SIDS (a third
    of the SIDS on small test data), so that there are many training rows and several SIDS
    to predict.
    """
    import numpy as np

    matrix = data.year_matrix(year)
    missing = np.isnan(matrix)
    share = missing.mean(axis=0)
    sids_missing = missing[data.sids_mask].sum(axis=0)
    enough = min(5, max(1, int(data.sids_mask.sum()) // 3))
    for j in np.argsort(np.asarray(data.indicators, dtype=object)):
        if 0.25 <= share[j] <= 0.45 and sids_missing[j] >= enough:
            code = str(data.indicators[j])
            return {"target": code, "dataset": str(data.indicator_meta.at[code, "Dataset"]),
                    "missing_share": round(float(share[j]), 3), "sids_missing": int(sids_missing[j])}
    raise LookupError(f"no indicator of the synthetic data is a suitable target in {year}")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


_TIMING_KEY = re.compile(r"(seconds|phases|_at)$")


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not _TIMING_KEY.search(str(k))}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _volatile_free(raw: bytes):
    """A response without its timing fields (``*seconds``, ``*phases``, ``*_at``), to compare two computations."""
    try:
        return _without_timings(json.loads(raw))
    except ValueError:
        return raw


def measure_request(client: Client, bypass, body: dict, runs: int, warmup: int, budget_seconds: float) -> dict:
    """Warm-up and timed runs (each uncached, each preceded by /estimate), then the cache hit.

    Before every run the result cache is cleared (``bypass``) and ``/estimate`` is asked
    what the run will take, so each estimate is compared with the run that follows it:
    the first one is the instance's cost model before it has measured this request, the
    later ones have learned from the runs before them.
    """
    out: dict[str, Any] = {"request": body}
    estimate_path = f"{PREFIX}/estimate"
    has_estimate = client.has("POST", estimate_path)

    def estimate() -> float | None:
        if not has_estimate:
            return None
        status, raw, _ = client.call("POST", estimate_path, body)
        value = json.loads(raw) if status == 200 else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    times: list[float] = []
    warm: list[float] = []
    estimates: list[float | None] = []
    first_body = None
    spent = 0.0
    for k in range(warmup + runs):
        bypass()
        estimates.append(estimate())
        status, raw, elapsed = client.call("POST", f"{PREFIX}/predict", body)
        spent += elapsed
        if status != 200:
            out["error"] = f"HTTP {status}: {raw[:300].decode(errors='replace')}"
            return out
        if first_body is None:
            first_body = raw
        (warm if k < warmup else times).append(elapsed)
        if spent > budget_seconds and k + 1 >= warmup + 1:
            out["stopped_early"] = f"time budget of {budget_seconds:.0f} s used up"
            break
    timed_estimates = estimates[len(warm):]
    if not times:  # the budget ran out during warm-up: report the warm-up figure
        times, timed_estimates = warm[-1:], estimates[len(warm) - 1:len(warm)]
        out["note"] = "no warm run fitted in the time budget; the figure is the warm-up run"
    out["warmup_seconds"] = [round(t, 4) for t in warm]
    out["runs_seconds"] = [round(t, 4) for t in times]
    out["seconds"] = _median(times)
    out["estimates_seconds"] = [None if e is None else round(e, 4) for e in estimates]
    out["estimate_cold"] = estimates[0]
    out["actual_cold"] = round((warm or times)[0], 4)
    learned = [e for e in timed_estimates if e is not None]
    out["estimate_learned"] = _median(learned)
    if estimates[0]:
        out["estimate_cold_ratio"] = round(out["actual_cold"] / estimates[0], 3)  # actual / estimate
    pairs = [(t, e) for t, e in zip(times, timed_estimates) if e]
    if pairs:
        factors = [max(t / e, e / t) for t, e in pairs]
        out["estimate_worst_factor"] = round(max(factors), 3)
        out["estimate_within_2x"] = max(factors) <= 2.0
    # the repeated identical request: answered from the result cache
    status, cached_first, _ = client.call("POST", f"{PREFIX}/predict", body)
    hits = []
    same = status == 200
    for _ in range(max(3, runs)):
        status, raw, elapsed = client.call("POST", f"{PREFIX}/predict", body)
        hits.append(elapsed)
        same = same and status == 200 and raw == cached_first
    out["cache_hit_seconds"] = _median(hits)
    out["cache_hit_same_bytes"] = same
    out["same_numbers_every_run"] = _volatile_free(first_body) == _volatile_free(cached_first)
    try:
        summary = json.loads(first_body)
        out["response"] = {k: summary.get(k) for k in ("rmse", "rmse_deviation", "model_feature_names")
                           if k in summary}
    except (ValueError, AttributeError):
        pass
    return out


def worker_requests(args: dict) -> dict:
    """A warm instance on one dataset: the requests named in ``args``, measured one after the other."""
    app, import_error = import_app(Path(args["path"]))
    result: dict[str, Any] = {"app_import_error": import_error, "requests": {}}
    from shared.store import get_store

    data = get_store().get()
    result["rss_after_load"] = current_rss_bytes()
    result["peak_rss_after_load"] = peak_rss_bytes()
    if app is None:
        result["error"] = f"the app could not be imported: {import_error}"
        return result
    client = Client(app)
    if not client.has("POST", f"{PREFIX}/predict"):
        result["error"] = "twolvlImp is not registered (blueprints/twolvlimp.py missing or not importable)"
        return result
    bypass = CacheBypass()
    result["cache_bypass"] = bypass.method
    for name in args["requests"]:
        body = dict(args["bodies"][name])
        if body.get("target") is None:
            try:
                chosen = choose_synthetic_target(data)
            except LookupError as exc:
                result["requests"][name] = {"error": str(exc)}
                continue
            result["synthetic_target"] = chosen
            body.update(target=chosen["target"], dataset=chosen["dataset"])
        try:
            result["requests"][name] = measure_request(client, bypass, body, args["runs"], args["warmup"],
                                                       args["budget_seconds"])
        except Exception as exc:  # report and go on with the next request
            result["requests"][name] = {"request": body, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["peak_rss"] = peak_rss_bytes()
    result["rss_at_end"] = current_rss_bytes()
    return result


def worker_first(args: dict) -> dict:
    """A fresh instance: /estimate, then one /predict of a request nothing has been memoised for."""
    app, import_error = import_app(Path(args["path"]))
    result: dict[str, Any] = {"app_import_error": import_error}
    from shared.store import get_store

    data = get_store().get()
    if app is None:
        result["error"] = f"the app could not be imported: {import_error}"
        return result
    client = Client(app)
    body = dict(args["body"])
    if body.get("target") is None:
        try:
            chosen = choose_synthetic_target(data)
        except LookupError as exc:
            result["error"] = str(exc)
            return result
        result["target"] = chosen
        body.update(target=chosen["target"], dataset=chosen["dataset"])
    result["request"] = body
    status, raw, _ = client.call("POST", f"{PREFIX}/estimate", body)
    value = json.loads(raw) if status == 200 else None
    result["estimate_cold"] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    cpu = time.process_time()
    status, raw, elapsed = client.call("POST", f"{PREFIX}/predict", body)
    result["cpu_seconds"] = round(time.process_time() - cpu, 3)
    if status != 200:
        result["error"] = f"HTTP {status}: {raw[:300].decode(errors='replace')}"
        return result
    answer = json.loads(raw)
    result["seconds"] = round(elapsed, 4)
    result["actual_cold"] = result["seconds"]
    result["compute_phases"] = answer.get("compute_phases")
    if result["estimate_cold"]:
        ratio = elapsed / result["estimate_cold"]
        result["estimate_cold_ratio"] = round(ratio, 3)
        result["estimate_worst_factor"] = round(max(ratio, 1 / ratio), 3)
        result["estimate_within_2x"] = max(ratio, 1 / ratio) <= 2.0
    result["response"] = {k: answer.get(k) for k in ("rmse", "rmse_deviation", "model_feature_names")}
    result["peak_rss"] = peak_rss_bytes()
    return result


def measure_first(path: Path, body: dict, legacy: bool, timeout: float) -> dict:
    """The request first of its kind, and (``legacy``) the old method's run of it, each in a fresh process."""
    out = run_worker("first", {"path": str(path), "body": body}, timeout)
    if legacy and "error" not in out:
        old = run_worker("first", {"path": str(path), "body": dict(out["request"], method="legacy")}, timeout)
        out["legacy"] = {k: old.get(k) for k in ("seconds", "cpu_seconds", "compute_phases", "error", "peak_rss",
                                                 "estimate_cold", "estimate_worst_factor", "estimate_within_2x")}
    return out


def most_complete_predictors(data, target: str, year: int, count: int) -> list[str]:
    """The ``count`` predictors valid in ``year`` with the fewest gaps among the target's training rows (by code)."""
    import numpy as np

    from models.twolvlimp.lookups import predictor_codes

    matrix = data.year_matrix(year)
    train = ~np.isnan(matrix[:, data.indicators.get_loc(target)])
    codes = [c for c in predictor_codes(data, year) if c != target]
    share = np.isnan(matrix[train][:, data.indicators.get_indexer(codes)]).mean(axis=0)
    return [codes[i] for i in sorted(range(len(codes)), key=lambda i: (share[i], codes[i]))[:count]]


def form_default_body(data) -> tuple[dict, str | None]:
    """The form's default request on this data, and a note when a predictor had to be replaced."""
    body = dict(FORM_DEFAULT)
    if body["target"] not in data.indicators:
        chosen = choose_synthetic_target(data)
        body.update(target=chosen["target"], dataset=chosen["dataset"])
    missing = [c for c in body["manual_predictors"] if c not in data.indicators]
    if not missing:
        return body, None
    body["manual_predictors"] = most_complete_predictors(data, body["target"], int(body["target_year"]), 1)
    return body, f"{', '.join(missing)} is not in this data: {body['manual_predictors'][0]} (its most complete) instead"


def forget_everything(data) -> None:
    """A fresh instance's state without a new process: the result cache, the learned durations and every
    per-data-version memo (imputations, selections, year look-ups) are dropped."""
    import blueprints.twolvlimp as twolvlimp

    twolvlimp.use_runtime(None)  # the next request builds a new runtime from the settings
    with data._memo_lock:
        data._memo.clear()


def worker_form_default(args: dict) -> dict:
    """A fresh instance: the form's default request, first of its kind (``worker_first`` with the body built here)."""
    import_app(Path(args["path"]))
    from shared.store import get_store

    body, note = form_default_body(get_store().get())
    out = worker_first(dict(args, body=body))
    if note:
        out["note"] = note
    return out


def worker_matrix(args: dict) -> dict:
    """Every option of the form at one size, each first of its kind, in one instance.

    One untimed request first pays the imports a warm instance has paid; before each combination the
    instance forgets everything it memoised (``forget_everything``), then /estimate and /predict are called.
    """
    app, import_error = import_app(Path(args["path"]))
    from shared.store import get_store

    data = get_store().get()
    if app is None:
        return {"error": f"the app could not be imported: {import_error}"}
    client = Client(app)
    chosen = choose_synthetic_target(data)
    year = int(BASE_REQUEST["target_year"])
    manual = most_complete_predictors(data, chosen["target"], year, MATRIX_SIZE["number_predictor"])
    base = dict(BASE_REQUEST, target=chosen["target"], dataset=chosen["dataset"], **MATRIX_SIZE)
    warm, _ = form_default_body(data)
    client.call("POST", f"{PREFIX}/predict", warm)
    runs = []
    from itertools import product

    for values in product(*FORM_OPTIONS.values()):
        body = dict(base, **dict(zip(FORM_OPTIONS, values)))
        if body["scheme"] == "MANUAL":
            body.pop("number_predictor")
            body["manual_predictors"] = manual
        forget_everything(data)
        status, raw, _ = client.call("POST", f"{PREFIX}/estimate", body)
        estimate = float(json.loads(raw)) if status == 200 else None
        cpu = time.process_time()
        status, raw, elapsed = client.call("POST", f"{PREFIX}/predict", body)
        run = {"options": dict(zip(FORM_OPTIONS, values)), "seconds": round(elapsed, 4),
               "cpu_seconds": round(time.process_time() - cpu, 3), "estimate_cold": estimate}
        if status != 200:
            run["error"] = f"HTTP {status}: {raw[:200].decode(errors='replace')}"
        else:
            run["compute_phases"] = json.loads(raw).get("compute_phases")
        runs.append(run)
    forget_everything(data)
    return {"target": chosen, "manual_predictors": manual, "size": MATRIX_SIZE, "runs": runs,
            "peak_rss": peak_rss_bytes(), "memo": "one process; forget_everything() before each combination"}


def summarise_matrix(result: dict) -> dict:
    """Slowest, median, and the worst factor between the cold estimate and the measured seconds."""
    runs = [r for r in result.get("runs", []) if "error" not in r]
    if not runs:
        return {"error": result.get("error") or "no combination ran"}
    slowest = max(runs, key=lambda r: r["seconds"])
    rated = [r for r in runs if r.get("estimate_cold")]
    worst = max(rated, key=lambda r: max(r["seconds"] / r["estimate_cold"], r["estimate_cold"] / r["seconds"]),
                default=None)
    out = {"combinations": len(result["runs"]), "failed": len(result["runs"]) - len(runs),
           "slowest": slowest, "median_seconds": round(statistics.median(r["seconds"] for r in runs), 4)}
    if worst:
        factor = max(worst["seconds"] / worst["estimate_cold"], worst["estimate_cold"] / worst["seconds"])
        out.update(estimate_worst=worst, estimate_worst_factor=round(factor, 3),
                   estimates_within_2x=sum(max(r["seconds"] / r["estimate_cold"], r["estimate_cold"] / r["seconds"])
                                           <= 2.0 for r in rated), estimates_rated=len(rated))
    return out


def measure_form(report: dict, options: argparse.Namespace, timeout: float) -> None:
    """The form's heaviest request (SIDS platform data, synthetic) and its option matrix (SIDS platform data)."""
    platform = options.platform_data
    absent = {"error": f"skipped: {NO_PLATFORM_DATA}"}
    if options.heaviest:
        report["heaviest_sids_platform"] = (measure_first(platform, dict(HEAVIEST_REQUEST, target=None), False,
                                                          timeout) if platform is not None else absent)
        if not options.skip_synthetic:
            folder = synthetic_folder(options)
            report["heaviest_synthetic"] = measure_first(folder, dict(HEAVIEST_REQUEST, target=None), False, timeout)
    if options.matrix:
        if platform is None:
            report["form_default"] = report["form_matrix"] = absent
            return
        report["form_default"] = run_worker("form_default", {"path": str(platform)}, timeout)
        matrix = run_worker("matrix", {"path": str(platform)}, max(timeout, 1800.0))
        matrix["summary"] = summarise_matrix(matrix)
        report["form_matrix"] = matrix


def add_form(add, report: dict) -> None:
    """The rows of ``measure_form``."""
    size = (report.get("synthetic") or {}).get("summary", {})
    for key, where in (("heaviest_sids_platform", "SIDS platform data (real)"),
                       ("heaviest_synthetic", f"synthetic ({size.get('indicators')} ind. x "
                                              f"{size.get('countries')} countries)")):
        if key not in report:
            continue
        r = report[key]
        peak = (r.get("peak_rss") or {}).get("total")
        add(key, f"heaviest form request (IterativeImputer, AFS, 20 predictors, 1000 trees, all, quantile), first of "
            f"its kind, on {where}", r.get("seconds"), "s", FORM_GOAL["heaviest"],
            note=r.get("error") or f"host limit {HOST_LIMIT_SECONDS:.0f} s",
            estimate_cold=r.get("estimate_cold"), actual_cold=r.get("actual_cold"),
            estimate_worst_factor=r.get("estimate_worst_factor"), estimate_within_2x=r.get("estimate_within_2x"),
            within_host_limit=None if r.get("seconds") is None else r["seconds"] < HOST_LIMIT_SECONDS,
            compute_phases=r.get("compute_phases"), cpu_seconds=r.get("cpu_seconds"),
            peak_rss_mib=round(peak / MB, 1) if peak else None, target_code=(r.get("request") or {}).get("target"))
    if "form_default" in report:
        r = report["form_default"]
        add("form_default", "the form's default request (KNNImputer, MANUAL, 1 predictor, 10 trees, rfr, quantile), "
            "first of its kind, fresh instance, SIDS platform data", r.get("seconds"), "s", FORM_GOAL["form_default"],
            note=r.get("error") or r.get("note"), estimate_cold=r.get("estimate_cold"), actual_cold=r.get("actual_cold"),
            estimate_worst_factor=r.get("estimate_worst_factor"), estimate_within_2x=r.get("estimate_within_2x"),
            cpu_seconds=r.get("cpu_seconds"), request=r.get("request"))
    if "form_matrix" not in report:
        return
    m = report["form_matrix"]
    s = m.get("summary") or {}
    what = (f"the form's {s.get('combinations', 72)} option combinations (imputer x scheme x model x interval, "
            f"{MATRIX_SIZE['number_predictor']} predictors, {MATRIX_SIZE['estimators']} trees), each first of its kind, "
            "SIDS platform data")
    how = "one process, every memo and cache cleared before each combination"
    slowest = s.get("slowest") or {}
    options = slowest.get("options")
    named = lambda o: ", ".join(str(v) for v in (o or {}).values())
    add("matrix_slowest", f"slowest of {what}: {named(options)}", slowest.get("seconds"), "s", FORM_GOAL["matrix_slowest"],
        note=m.get("error") or s.get("error") or f"{options}; {how}; {s.get('failed', 0)} failed",
        options=options, estimate_cold=slowest.get("estimate_cold"), actual_cold=slowest.get("seconds"),
        cpu_seconds=slowest.get("cpu_seconds"), compute_phases=slowest.get("compute_phases"))
    add("matrix_median", f"median of {what}", s.get("median_seconds"), "s", note=m.get("error") or s.get("error") or how)
    worst = s.get("estimate_worst") or {}
    add("matrix_estimate_worst", f"worst factor between the cold /estimate and the measured seconds, {what}: "
        f"{named(worst.get('options'))} ({worst.get('estimate_cold')} s estimated, {worst.get('seconds')} s measured; "
        f"{s.get('estimates_within_2x')} of {s.get('estimates_rated')} within 2x)",
        s.get("estimate_worst_factor"), "x", 2.0,
        note=m.get("error") or s.get("error") or (f"{worst.get('options')}: {worst.get('estimate_cold')} s estimated, "
                                                  f"{worst.get('seconds')} s measured; {s.get('estimates_within_2x')} "
                                                  f"of {s.get('estimates_rated')} within 2x"))


WORKERS = {"load": worker_load, "requests": worker_requests, "first": worker_first,
           "form_default": worker_form_default, "matrix": worker_matrix}


def run_worker(kind: str, args: dict, timeout: float) -> dict:
    """Run one worker in a fresh Python process and return its JSON answer (or the error)."""
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    _step(f"{kind} {Path(args.get('path', '')).name}".strip())
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        answer_file = Path(tmp) / "answer.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(args), str(answer_file)]
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"worker {kind} did not finish in {timeout:.0f} s"}
        finally:
            _step_done()
        wall = time.perf_counter() - started
        if proc.returncode != 0 or not answer_file.exists():
            return {"error": f"worker {kind} failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}"}
        answer = json.loads(answer_file.read_text())
    answer["process_wall_seconds"] = round(wall, 3)
    return answer


# ----------------------------------------------------------------------------------------------
# orchestration
# ----------------------------------------------------------------------------------------------
def machine() -> dict:
    import numpy
    import pandas
    import pyarrow
    import sklearn

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "ram_gib": ram,
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "numpy": numpy.__version__, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
        "scikit_learn": sklearn.__version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def ensure_synthetic(folder: Path, indicators: int, countries: int, years: tuple[int, int], seed: int) -> dict:
    """Generate the synthetic dataset once (CSV + Parquet) and a CSV-only twin of it (symlinks)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_synthetic

    manifest = folder / "synthetic.json"
    params = {"indicators": indicators, "countries": countries, "years": list(years), "seed": seed,
              "generator": make_synthetic.__file__ and Path(make_synthetic.__file__).stat().st_mtime_ns}
    facts: dict[str, Any] = {}
    if manifest.exists():
        try:
            facts = json.loads(manifest.read_text())
        except ValueError:
            facts = {}
    complete = all((folder / n).exists() for n in ("indicatorData.csv", "indicatorData.parquet",
                                                     "indicatorMeta.csv", "datasetMeta.csv", "countryMeta.csv"))
    if facts.get("params") != params or not complete:
        started = time.perf_counter()
        syn = make_synthetic.generate(indicators, countries, years, seed)
        make_synthetic.write(syn, folder, parquet=True)
        facts = {"params": params, "summary": make_synthetic.summary(syn),
                 "generated_seconds": round(time.perf_counter() - started, 1)}
        del syn
        manifest.write_text(json.dumps(facts, indent=1))
    csv_only = folder / "csv-only"
    csv_only.mkdir(exist_ok=True)
    for name in ("indicatorData.csv", "indicatorMeta.csv", "datasetMeta.csv", "countryMeta.csv"):
        link = csv_only / name
        if not link.exists():
            link.symlink_to(folder / name)
    facts["csv_bytes"] = (folder / "indicatorData.csv").stat().st_size
    facts["parquet_bytes"] = (folder / "indicatorData.parquet").stat().st_size
    facts["folder"] = str(folder)
    return facts


def repeat_load(path: Path, times: int, timeout: float) -> dict:
    answers = [run_worker("load", {"path": str(path)}, timeout) for _ in range(times)]
    good = [a for a in answers if "error" not in a and a.get("status") == "ok"]
    if not good:
        bad = answers[-1]
        return {"error": bad.get("error") or bad.get("last_error") or "load failed"}
    return {
        "seconds": _median([a["load_seconds"] for a in good]),
        "runs_seconds": [round(a["load_seconds"], 3) for a in good],
        "ready_seconds": _median([a["ready_seconds"] for a in good]),
        "peak_rss_bytes": max(a["peak_rss"]["total"] for a in good),
        "runs_peak_rss_bytes": [a["peak_rss"]["total"] for a in good],
        "rss_after_load_bytes": good[-1].get("rss_after_load"),
        "shape": [good[-1]["years"], good[-1]["countries"], good[-1]["indicators"]],
        "source_file": good[-1]["source_file"], "app_import_error": good[-1].get("app_import_error"),
    }


def synthetic_folder(options: argparse.Namespace) -> Path:
    years = options.synthetic_years
    return Path(options.synthetic_dir or (ROOT / "bench-results" / (
        f"synthetic-{options.synthetic_indicators}x{options.synthetic_countries}-{years[0]}-{years[1]}"
        f"-seed{options.seed}")))


def synthetic_facts(options: argparse.Namespace) -> dict:
    """The synthetic dataset of ``options`` (generated once) and its facts."""
    return ensure_synthetic(synthetic_folder(options), options.synthetic_indicators, options.synthetic_countries,
                            options.synthetic_years, options.seed)


# The progress bar of a run (run_with_progress): ticked by every worker process and every instance start.
_STEPS = None


def _step(what: str) -> None:
    if _STEPS is not None:
        _STEPS.set_postfix_str(what)


def _step_done() -> None:
    if _STEPS is not None:
        _STEPS.update(1)


def planned_steps(options: argparse.Namespace) -> int:
    """How many measurements ``run(options)`` makes (worker processes and instance starts): the bar's total.
    A worker that is skipped after an error (the old method beside a failed request) leaves it short."""
    model, platform = not options.no_model, options.platform_data is not None
    steps = 0
    if not options.form_only:
        steps += options.load_repeats + bool(model and [n for n in options.requests if n in REQUESTS])
        if model and not options.skip_iterative:
            steps += 1 + (not options.no_legacy_reference) + platform * (1 + options.legacy_on_platform)
        if not options.skip_synthetic:
            steps += 2 * options.load_repeats + model * (1 + (not options.skip_iterative))
        if not options.no_start:
            steps += options.start_repeats * (1 + platform + 2 * (not options.skip_synthetic))
        if not options.no_telemetry:
            steps += 2 * options.start_repeats   # measure_telemetry: an instance with telemetry off, one with it on
    if model or options.form_only:
        if options.heaviest:
            steps += platform + (not options.skip_synthetic)
        if options.matrix:
            steps += 2 * platform
    return steps


def run_with_progress(options: argparse.Namespace) -> dict:
    """``run(options)`` with a progress bar on stderr: measurements done, their rate, the time left."""
    global _STEPS
    _STEPS = progress(total=planned_steps(options), desc="benchmark", unit="step")
    try:
        return run(options)
    finally:
        _STEPS.close()
        _STEPS = None


def run(options: argparse.Namespace) -> dict:
    started = time.perf_counter()
    report: dict[str, Any] = {"schema": 1, "quick": options.quick, "machine": machine(),
                              "load_average_before": load_average(), "old": OLD, "targets": TARGET,
                              "reference_file": str(REFERENCE_FILE.relative_to(ROOT)),
                              "platform_data": str(options.platform_data) if options.platform_data else None,
                              "requested": options.requests}
    runs, warmup, repeats = options.runs, options.warmup, options.load_repeats
    timeout = options.worker_timeout
    if options.form_only:  # --heaviest and/or --matrix alone
        report["form_only"] = True
        if options.heaviest and not options.skip_synthetic:
            report["synthetic"] = synthetic_facts(options)
        measure_form(report, options, timeout)
        report["load_average_after"] = load_average()
        report["seconds_total"] = round(time.perf_counter() - started, 1)
        report["rows"] = rows(report)
        return report

    # (a) the embedded dataset, cold process
    report["embedded_load"] = repeat_load(EMBEDDED, repeats, timeout)

    # (b) the reference requests on the embedded data, warm instance
    names = [n for n in options.requests if n in REQUESTS]
    if names and not options.no_model:
        report["embedded_requests"] = run_worker("requests", {
            "path": str(EMBEDDED), "requests": names, "bodies": {n: REQUESTS[n][1] for n in names},
            "runs": runs, "warmup": warmup, "budget_seconds": options.request_budget}, timeout)

    # (b2) IterativeImputer first of its kind: the embedded data and the SIDS platform's real data
    if not options.no_model and not options.skip_iterative:
        report["iterative_wdi"] = measure_first(EMBEDDED, dict(ITERATIVE_REQUEST, target=WDI_TARGET, dataset="wdi"),
                                                not options.no_legacy_reference, timeout)
        if options.platform_data is not None:
            report["iterative_sids_platform"] = measure_first(options.platform_data,
                                                              dict(ITERATIVE_REQUEST, target=None),
                                                              options.legacy_on_platform, timeout)
        else:
            report["iterative_sids_platform"] = {"error": f"skipped: {NO_PLATFORM_DATA}"}

    # (c) platform scale: synthetic dataset
    folder = None
    if not options.skip_synthetic:
        folder = synthetic_folder(options)
        report["synthetic"] = synthetic_facts(options)
        report["synthetic_load_csv"] = repeat_load(Path(folder) / "csv-only", repeats, timeout)
        report["synthetic_load_parquet"] = repeat_load(Path(folder), repeats, timeout)
        if not options.no_model:
            report["synthetic_requests"] = run_worker("requests", {
                "path": str(folder), "requests": ["synthetic_afs"], "bodies": {"synthetic_afs": SYNTHETIC_REQUEST},
                "runs": max(1, min(runs, 3)), "warmup": warmup, "budget_seconds": options.request_budget}, timeout)
            if not options.skip_iterative:
                report["iterative_synthetic"] = measure_first(Path(folder), dict(ITERATIVE_REQUEST, target=None),
                                                              False, timeout)
    if not options.no_start:
        report["start"] = measure_starts(options, folder if "synthetic" in report else None)
    if not options.no_telemetry:
        report["telemetry"] = measure_telemetry(options)
    # (d) the dashboard's form: its heaviest request and its option matrix, first of their kind
    if not options.no_model:
        measure_form(report, options, timeout)
    # (e) memory of an instance under concurrent heaviest requests, and after them (issue 19)
    if not options.no_model and options.memory_requests:
        report["memory_load"] = memory_under_load(EMBEDDED, options.memory_requests, options.memory_concurrency,
                                                  options.memory_settle, timeout=options.worker_timeout)
    report["load_average_after"] = load_average()
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    report["rows"] = rows(report)
    return report


def _ok(value: float | None, target: float | None, below: bool = False) -> bool | None:
    if value is None or target is None:
        return None
    return value < target if below else value <= target


def _estimate_fields(r: dict) -> dict:
    keys = ("estimate_cold", "actual_cold", "estimate_learned", "estimate_worst_factor", "estimate_within_2x")
    return {k: r.get(k) for k in keys}


def add_iterative(add, report: dict, key: str, where: str) -> None:
    """The IterativeImputer first-of-its-kind row: old = the legacy run beside it, else the figure before."""
    r = report[key]
    legacy = r.get("legacy") or {}
    old, note = legacy.get("seconds"), r.get("error")
    if old is None and key in ITERATIVE_BEFORE:
        old, before = ITERATIVE_BEFORE[key]
        note = note or f"old: {before}, not side by side"
    elif old is not None:
        note = note or "old: method legacy (the old service's method and imputer), same run"
    phases = r.get("compute_phases") or {}
    peak = (r.get("peak_rss") or {}).get("total")
    add(key, f"IterativeImputer, AFS, 10 predictors, 100 trees, rfr, first of its kind, on {where}", r.get("seconds"),
        "s", ITERATIVE_TARGET[key], old, note=note, estimate_cold=r.get("estimate_cold"),
        actual_cold=r.get("actual_cold"), estimate_worst_factor=r.get("estimate_worst_factor"),
        estimate_within_2x=r.get("estimate_within_2x"), prepare_seconds=phases.get("prepare"),
        cpu_seconds=r.get("cpu_seconds"), peak_rss_mib=round(peak / MB, 1) if peak else None,
        target_code=(r.get("request") or {}).get("target"), legacy_seconds=legacy.get("seconds"),
        legacy_estimate_cold=legacy.get("estimate_cold"), legacy_estimate_worst_factor=legacy.get("estimate_worst_factor"))


def rows(report: dict) -> list[dict]:
    """The table: one row per figure, with its target, the old figure and the ratio."""
    out = []

    def add(key, label, value, unit, target=None, old=None, below=False, note=None, **extra):
        row = {"id": key, "label": label, "value": value, "unit": unit, "target": target, "old": old,
               "speedup_vs_old": round(old / value, 1) if (old and value) else None,
               "meets_target": _ok(value, target, below), "note": note}
        row.update(extra)
        out.append(row)

    if report.get("form_only"):  # --heaviest / --matrix alone: only their rows
        add_form(add, report)
        return out
    emb = report.get("embedded_load", {})
    add("embedded_load", "load embedded dataset (data/wdi), cold process", emb.get("seconds"), "s",
        TARGET["embedded_load"], note=emb.get("error"), ready_seconds=emb.get("ready_seconds"))
    reqs = report.get("embedded_requests", {})
    for name, (label, _) in REQUESTS.items():
        if "embedded_requests" not in report:
            break
        r = reqs.get("requests", {}).get(name)
        if r is None:
            if name in report.get("requested", list(REQUESTS)):
                add(name, label, None, "s", TARGET[name], OLD[name], note=reqs.get("error") or "not run")
            continue
        add(name, label, r.get("seconds"), "s", TARGET[name], OLD[name], note=r.get("error") or r.get("note"),
            **_estimate_fields(r), cache_hit_seconds=r.get("cache_hit_seconds"),
            cache_hit_same_bytes=r.get("cache_hit_same_bytes"))
    for key, where in (("iterative_wdi", "data/wdi"), ("iterative_sids_platform", "SIDS platform data (real)")):
        if key in report:
            add_iterative(add, report, key, where)
    if "synthetic" in report:
        s = report["synthetic"].get("summary", {})
        size = f"{s.get('indicators')} ind. x {s.get('countries')} countries"
        for key, fmt in (("synthetic_load_csv", "CSV"), ("synthetic_load_parquet", "Parquet")):
            r = report.get(key, {})
            add(key, f"load synthetic ({size}) from {fmt}, cold instance", r.get("seconds"), "s",
                TARGET["synthetic_load"], note=r.get("error"), ready_seconds=r.get("ready_seconds"))
        csv_peak = report.get("synthetic_load_csv", {}).get("peak_rss_bytes")
        if "synthetic_requests" in report:
            sr = report["synthetic_requests"]
            r = sr.get("requests", {}).get("synthetic_afs", {})
            # the old figure was taken on a 3,000 x 250 dataset: no ratio for other sizes
            reference_size = (s.get("indicators"), s.get("countries")) == (3000, 250)
            add("synthetic_afs", f"AFS, 10 predictors, 100 trees, rfr on synthetic ({size})", r.get("seconds"), "s",
                TARGET["synthetic_afs"], OLD["synthetic_afs"] if reference_size else None,
                note=r.get("error") or sr.get("error") or r.get("note"), **_estimate_fields(r),
                cache_hit_seconds=r.get("cache_hit_seconds"), cache_hit_same_bytes=r.get("cache_hit_same_bytes"))
            if csv_peak:
                add("synthetic_load_csv_peak_rss", "peak memory of a cold instance loading the synthetic CSV",
                    round(csv_peak / MB, 1), "MiB", round(TARGET["peak_rss_bytes"] / MB, 1), below=True)
            ran = "peak_rss" in sr and "seconds" in r
            peak = (sr.get("peak_rss") or sr.get("peak_rss_after_load") or {}).get("total")
            what = "synthetic load + AFS" if ran else "synthetic load only, AFS not run"
            add("synthetic_peak_rss", f"peak memory of the whole instance process ({what})",
                round(peak / MB, 1) if peak else None, "MiB", round(TARGET["peak_rss_bytes"] / MB, 1), below=True,
                note=sr.get("error"))
        if "iterative_synthetic" in report:
            add_iterative(add, report, "iterative_synthetic", f"synthetic ({size})")
        elif csv_peak:
            add("synthetic_load_csv_peak_rss", "peak memory of a cold instance loading the synthetic CSV",
                round(csv_peak / MB, 1), "MiB", round(TARGET["peak_rss_bytes"] / MB, 1), below=True)
    add_form(add, report)
    add_memory(add, report)
    out.extend(start_rows(report))
    out.extend(telemetry_rows(report))
    return out


def add_memory(add, report: dict) -> None:
    """Rows of :func:`memory_under_load`: peak RSS during the load, RSS after it against the RSS before."""
    r = report.get("memory_load")
    if r is None:
        return
    what = (f"{r.get('requests')} heaviest form requests (IterativeImputer, AFS, 20 predictors, 1000 trees, all), "
            f"{r.get('concurrency')} at a time, different targets/years, data/wdi, local host")
    add("memory_load_peak_rss", f"peak memory of the instance during {what}", r.get("rss_peak_mib"), "MiB",
        round(MEMORY_GOAL["peak_bytes"] / MB, 1), below=True, note=r.get("error"),
        rss_before_mib=r.get("rss_before_mib"), statuses=r.get("statuses"), seconds=r.get("seconds"))
    add("memory_load_after", f"memory {r.get('settle_seconds')} s after that load, as a multiple of before",
        r.get("after_over_before"), "x", MEMORY_GOAL["after_over_before"], below=True, note=r.get("error"),
        rss_before_mib=r.get("rss_before_mib"), rss_at_end_mib=r.get("rss_at_end_mib"),
        rss_after_mib=r.get("rss_after_mib"))


def measure_starts(options: argparse.Namespace, synthetic: Path | None) -> dict:
    """Issue 12's start of an instance: process start to /health ok (start_to_health), on each dataset.

    The runs alternate between the datasets (one start of each, then the next round), so that
    a change in the machine's load falls on all of them alike.
    """
    datasets = {"embedded": EMBEDDED}
    if options.platform_data is not None:
        datasets["platform_real"] = options.platform_data
    if synthetic is not None:
        datasets["synthetic_csv"] = Path(synthetic) / "csv-only"
        datasets["synthetic_parquet"] = Path(synthetic)
    runs: dict[str, list[dict]] = {name: [] for name in datasets}
    for _ in range(options.start_repeats):
        for name, path in datasets.items():
            _step(f"start {name}")
            runs[name].append(start_to_health(path, ROOT, options.worker_timeout))
            _step_done()
    out = {}
    for name, answers in runs.items():
        good = [a for a in answers if "error" not in a]
        out[name] = {"dataset": str(datasets[name]), "failed_runs": len(answers) - len(good)}
        if good:
            out[name].update(seconds=_median([a["seconds"] for a in good]),
                             runs_seconds=[round(a["seconds"], 3) for a in good],
                             load_seconds=_median([a["load_seconds"] for a in good if a.get("load_seconds")]),
                             shape=[good[-1]["countries"], good[-1]["indicators"]])
        else:
            out[name]["error"] = answers[-1]["error"]
    if options.platform_data is None:   # a row that says why there is no figure
        out["platform_real"] = {"dataset": None, "failed_runs": 0, "error": f"skipped: {NO_PLATFORM_DATA}"}
    return out


TELEMETRY_REQUEST = "/twolvlImp/target_years"  # a simple request: a look-up, no model code


def measure_telemetry(options: argparse.Namespace) -> dict:
    """Issue 20: what telemetry costs. New instances on data/wdi with telemetry off and on (the Azure Monitor
    exporter sending to a loopback stand-in of the ingestion endpoint, scripts/ingestion_stub.py), alternated:
    process start to /health ok, then (once the exporter is configured) the median of ``TELEMETRY_RUNS``
    round trips of a simple request."""
    import urllib.request

    from ingestion_stub import IngestionStub, environment  # beside this file

    def configured() -> int:
        return sum("telemetry configured" in str(i["data"]["baseData"].get("message", "")) for i in stub.items())

    def simple_requests(base: str) -> dict:
        deadline = time.perf_counter() + 30
        while telemetry_on and time.perf_counter() < deadline and configured() < len(runs["on"]) + 1:
            time.sleep(0.05)  # requests are traced once this instance's exporter is configured (after its start)
        times = []
        for _ in range(TELEMETRY_RUNS):
            t0 = time.perf_counter()
            with urllib.request.urlopen(base + TELEMETRY_REQUEST, timeout=30) as answer:
                answer.read()
            times.append(time.perf_counter() - t0)
        return {"request_seconds": _median(times)}

    stub = IngestionStub().start()
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        for _ in range(options.start_repeats):
            for telemetry_on in (False, True):
                env = environment(stub, prompt=False) if telemetry_on else {"APPLICATIONINSIGHTS_CONNECTION_STRING": ""}
                _step(f"start with telemetry {'on' if telemetry_on else 'off'}")
                runs["on" if telemetry_on else "off"].append(
                    start_to_health(EMBEDDED, ROOT, options.worker_timeout, {**env, "WARM_MODEL_CODE": "0"},
                                    then=simple_requests))
                _step_done()
    finally:
        stub.stop()
    out = {"received_items": len(stub.items())}
    for name, answers in runs.items():
        good = [a for a in answers if "error" not in a]
        out[name] = {"failed_runs": len(answers) - len(good)}
        if good:
            out[name].update(start_seconds=_median([a["seconds"] for a in good]),
                             request_seconds=_median([a["request_seconds"] for a in good]),
                             runs_start_seconds=[round(a["seconds"], 3) for a in good])
        else:
            out[name]["error"] = answers[-1]["error"]
    return out


TELEMETRY_RUNS = 50


def telemetry_rows(report: dict) -> list[dict]:
    """Start of an instance and a simple request with telemetry off and on, side by side."""
    out = []
    for name, what in (("off", "telemetry off"), ("on", "telemetry on (exporting to a loopback stub)")):
        r = report.get("telemetry", {}).get(name)
        if r is None:
            continue
        start = r.get("start_seconds")
        out.append({"id": f"telemetry_{name}_start", "label": f"start of an instance to /health ok, data/wdi, {what}",
                    "value": start, "unit": "s", "target": START_TARGET["embedded"], "old": None,
                    "speedup_vs_old": None, "meets_target": _ok(start, START_TARGET["embedded"]),
                    "note": r.get("error")})
        out.append({"id": f"telemetry_{name}_request",
                    "label": f"simple request (GET {TELEMETRY_REQUEST}, median of {TELEMETRY_RUNS}), {what}",
                    "value": r.get("request_seconds"), "unit": "s", "target": None, "old": None,
                    "speedup_vs_old": None, "meets_target": None, "note": r.get("error")})
    return out


def start_rows(report: dict) -> list[dict]:
    """The start-of-an-instance rows of the table (one per dataset measured)."""
    labels = {"embedded": ("start of an instance to /health ok: data/wdi", START_TARGET["embedded"]),
              "platform_real": ("start of an instance to /health ok: sids-platform (real data)",
                                START_TARGET["platform"]),
              "synthetic_csv": ("start of an instance to /health ok: synthetic data, CSV",
                                START_TARGET["platform"]),
              "synthetic_parquet": ("start of an instance to /health ok: synthetic data, Parquet",
                                    START_TARGET["platform"])}
    out = []
    for name, r in report.get("start", {}).items():
        label, target = labels[name]
        if r.get("shape"):
            label += f" ({r['shape'][1]} ind. x {r['shape'][0]} countries)"
        value = r.get("seconds")
        out.append({"id": f"start_{name}", "label": label, "value": value, "unit": "s", "target": target,
                    "old": None, "speedup_vs_old": None, "meets_target": _ok(value, target), "note": r.get("error"),
                    "load_seconds": r.get("load_seconds")})
    return out


def _fmt(value, digits=3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "| figure | this service | target | old service | old / new | /estimate before the runs | cache hit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        unit = r["unit"]
        value = f"{_fmt(r['value'])} {unit}" if r["value"] is not None else f"not measured ({r['note'] or '?'})"
        if r.get("ready_seconds") is not None:
            value += f" (ready {r['ready_seconds']:.1f} s after process start)"
        if r.get("cpu_seconds") is not None:
            value += f" (CPU {r['cpu_seconds']:.2f} s" + (f", peak {r['peak_rss_mib']:.0f} MiB)" if r.get("peak_rss_mib")
                                                         else ")")
        if r.get("load_seconds") is not None:
            value += f" (dataset load {r['load_seconds']:.2f} s of it)"
        target = ("< " if unit == "MiB" else "<= ") + f"{_fmt(r['target'], 2)} {unit}" if r["target"] else "-"
        if r["meets_target"] is not None:
            target += " ok" if r["meets_target"] else " MISSED"
        old = f"{_fmt(r['old'], 2)} s" if r["old"] else "-"
        speed = f"{r['speedup_vs_old']}x" if r["speedup_vs_old"] else "-"
        est = "-"
        if r.get("estimate_cold") is not None:
            est = f"{_fmt(r['estimate_cold'])} s for a {_fmt(r.get('actual_cold'))} s first run"
            if r.get("estimate_learned") is not None:
                est += f"; {_fmt(r['estimate_learned'])} s learned"
            if r.get("estimate_worst_factor") is not None:
                est += f" (worst {r['estimate_worst_factor']:.2f}x{'' if r.get('estimate_within_2x') else ', OVER 2x'})"
        hit = "-"
        if r.get("cache_hit_seconds") is not None:
            same = "" if r.get("cache_hit_same_bytes") else " (bytes differ)"
            hit = f"{r['cache_hit_seconds'] * 1000:.1f} ms{same}"
        lines.append(f"| {r['label']} | {value} | {target} | {old} | {speed} | {est} | {hit} |")
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gib']} GiB RAM, "
                 f"{m['os']}; Python {m['python']}, numpy {m['numpy']}, pandas {m['pandas']}, "
                 f"pyarrow {m['pyarrow']}, scikit-learn {m['scikit_learn']}; {m['date']}, commit {m['git_commit']}. "
                 f"Load average before/after: {report['load_average_before']} / {report['load_average_after']}."
                 + (" Quick run (smoke sizes, single runs): not the reference figures." if report["quick"] else ""))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny synthetic data, one run each (figures are not comparable)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument("--markdown", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--runs", type=int, help="timed runs per request (default 5; quick: 1)")
    parser.add_argument("--warmup", type=int, help="warm-up runs per request (default 1)")
    parser.add_argument("--load-repeats", type=int, help="cold processes per load figure (default 3; quick: 1)")
    parser.add_argument("--requests", default=",".join(REQUESTS),
                        help=f"which embedded-data requests to run (comma-separated from {','.join(REQUESTS)})")
    parser.add_argument("--no-model", action="store_true", help="loader figures only (no twolvlImp requests)")
    parser.add_argument("--skip-synthetic", action="store_true", help="no platform-scale figures")
    parser.add_argument("--skip-iterative", action="store_true",
                        help="no IterativeImputer first-of-its-kind figures (wdi, SIDS platform data, synthetic)")
    parser.add_argument("--no-legacy-reference", action="store_true",
                        help="do not run the old method beside the IterativeImputer request on data/wdi")
    parser.add_argument("--platform-data", type=Path,
                        help="the SIDS platform's real data (a dataset folder); default: "
                             f"{SIBLING_PLATFORM_DATA} when present, else those rows are skipped with a note")
    parser.add_argument("--no-platform-data", action="store_true", help="no rows on the SIDS platform's real data")
    parser.add_argument("--legacy-on-platform", action="store_true",
                        help="also run the old method on the SIDS platform data (minutes)")
    parser.add_argument("--heaviest", action="store_true",
                        help="only the form's heaviest request, first of its kind (SIDS platform data, synthetic); "
                             "part of the full run")
    parser.add_argument("--matrix", action="store_true",
                        help="only the form's default and its 72 option combinations, each first of its kind, on the "
                             "SIDS platform data; part of the full run")
    parser.add_argument("--skip-form", action="store_true", help="the full run without --heaviest and --matrix")
    parser.add_argument("--synthetic-dir", type=Path, help="where the synthetic dataset is kept (generated if absent)")
    parser.add_argument("--synthetic-indicators", type=int, help="default 3000 (quick: 150)")
    parser.add_argument("--synthetic-countries", type=int, help="default 250 (quick: 50)")
    parser.add_argument("--synthetic-years", default="2000-2020", help="first-last year of the synthetic data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--request-budget", type=float, default=120.0,
                        help="seconds one request's runs may take before the rest are skipped")
    parser.add_argument("--no-start", action="store_true", help="no start-of-an-instance figures")
    parser.add_argument("--no-telemetry", action="store_true", help="no telemetry on/off figures")
    parser.add_argument("--start-repeats", type=int, help="new instances started per dataset (default 5; quick: 1)")
    parser.add_argument("--memory-requests", type=int,
                        help="heaviest requests of the memory-under-load figure (default 86; quick: 0, not run)")
    parser.add_argument("--memory-concurrency", type=int, default=8, help="sent at once (default 8)")
    parser.add_argument("--memory-settle", type=float, default=60.0,
                        help="seconds after the load before the last RSS reading (default 60)")
    parser.add_argument("--from-json", type=Path, help="only print the table of an earlier run's JSON")
    parser.add_argument("--worker-timeout", type=float, default=420.0, help="seconds before a worker is stopped")
    parser.add_argument("--plots", type=Path, help="write the PNGs into this folder (the full run: docs/img)")
    options = parser.parse_args(argv)
    quick = options.quick
    options.runs = options.runs if options.runs is not None else (1 if quick else 5)
    options.warmup = options.warmup if options.warmup is not None else 1
    options.load_repeats = options.load_repeats if options.load_repeats is not None else (1 if quick else 3)
    options.start_repeats = options.start_repeats if options.start_repeats is not None else (1 if quick else 5)
    options.memory_requests = options.memory_requests if options.memory_requests is not None else (0 if quick else 86)
    options.synthetic_indicators = options.synthetic_indicators or (150 if quick else 3000)
    options.synthetic_countries = options.synthetic_countries or (50 if quick else 250)
    first, _, last = options.synthetic_years.partition("-")
    options.synthetic_years = (int(first), int(last or first))
    if options.no_platform_data:
        options.platform_data = None
    elif options.platform_data is None:
        options.platform_data = SIBLING_PLATFORM_DATA if SIBLING_PLATFORM_DATA.is_dir() else None
    elif not options.platform_data.is_dir():
        parser.error(f"--platform-data {options.platform_data}: not a folder")
    options.requests = [n.strip() for n in options.requests.split(",") if n.strip()]
    # --heaviest / --matrix alone run only those; the full run has both, the quick run neither (minutes each)
    options.form_only = options.heaviest or options.matrix
    if not options.form_only and not quick and not options.skip_form:
        options.heaviest = options.matrix = True
    unknown = [n for n in options.requests if n not in REQUESTS]
    if unknown:
        parser.error(f"unknown request(s) {', '.join(unknown)}; known: {', '.join(REQUESTS)}")
    return options


def queue_workers(indicators: int = 6, slot: int = 1, workers: tuple[int, ...] = (1, 2), timeout: float = 900.0) -> dict:
    """AI Mode on the Azurite queue: the same run (``slot``, the ``indicators`` publishable data/wdi indicators with
    the fewest years to predict, so that the messages are alike and short) served by the local host with 1 and then
    2 worker processes, side by side; messages per second from the POST to the published manifest (each worker
    process pays its own start: imports, year imputations). The host starts once its queue service answers (a worker
    whose first poll found no storage used to wait out the storage SDK's 15 s retry, in the one-process runs only,
    since the single process starts first). ``message_seconds_sum`` / ``busy_share``: the messages' own times and
    the share of the processes' wall time they fill; a mean message time higher with 2 processes than with 1 says the
    two did not get a core each.

        python scripts/benchmark.py --queue-workers [INDICATORS]
    """
    import httpx
    from azure.storage.queue import QueueServiceClient

    sys.path.insert(0, str(ROOT))
    from scripts.processes import free_port, stop_process

    from models.twolvlimp import aimode
    from shared.dataset import build_dataset

    data = build_dataset({p.name: str(p) for p in EMBEDDED.iterdir() if p.is_file()})
    codes = sorted(aimode.publishable_indicators(data), key=lambda c: (len(aimode.publishable_years(data, c)), c))
    codes = codes[:indicators]
    out: dict[str, Any] = {"indicators": codes, "slot": slot, "load_average_before": load_average(), "runs": {},
                           "years": sum(len(aimode.publishable_years(data, c)) for c in codes)}
    for n in workers:
        folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
        port, http_port = free_port(), free_port()
        azurite = subprocess.Popen([str(ROOT / "node_modules" / ".bin" / "azurite-queue"), "--queueHost", "127.0.0.1",
                                    "--queuePort", str(port), "--location", str(folder / "azurite"), "--silent",
                                    "--skipApiVersionCheck", "--loose"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        key = "bench-key"
        env = dict(os.environ, DATASET_PATH=str(EMBEDDED), AI_MODE_OUT=str(folder / "out"), LOCAL_FUNCTION_KEY=key,
                   AI_MODE_ACCURACY_SAMPLE="0",
                   AzureWebJobsStorage=("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
                                        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBe"
                                        f"ksoGMGw==;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"))
        deadline = time.time() + 60
        while True:  # the queue service answering before any worker polls it: both configurations start alike
            try:
                QueueServiceClient.from_connection_string(env["AzureWebJobsStorage"],
                                                          retry_total=0).get_service_properties()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        log = open(folder / "host.log", "wb")
        host = subprocess.Popen([sys.executable, "-m", "local_host", "--port", str(http_port), "--workers", str(n)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{http_port}"
        try:
            deadline = time.time() + 120
            while True:  # every worker process up: its queue listener too
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200 and \
                            (folder / "host.log").read_text().count("serving queue trigger") >= n:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError((folder / "host.log").read_text()[-2000:])
                time.sleep(0.2)
            time.sleep(3.0)  # let the warm-up imports finish in every process
            started = time.perf_counter()
            answer = httpx.post(f"{base}/aimode/runs", params={"code": key}, timeout=60,
                                json={"slots": [slot], "indicators": codes, "accuracy_sample": 0}).json()
            while True:
                status = httpx.get(f"{base}/aimode/status", params={"run": answer["run"]}, timeout=30).json()
                if status["run"]["state"] == "published":
                    break
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"run not published in {timeout} s: {status['run']}")
                time.sleep(0.25)
            seconds = time.perf_counter() - started
            done = folder / "out" / "runs" / answer["run"] / "done"
            records = [json.loads(p.read_text()) for p in done.rglob("*.json")]
            busy = sum(r["seconds"] for r in records)
            out["runs"][str(n)] = {"messages": answer["total"], "seconds": round(seconds, 2),
                                   "messages_per_second": round(answer["total"] / seconds, 4),
                                   "failed": len(status["run"]["failed"]),
                                   # the messages' own times: their sum, and the share of the processes' wall time
                                   # they fill (the rest: polling, the queue and storage calls, the finish)
                                   "message_seconds_sum": round(busy, 2),
                                   "message_seconds_mean": round(busy / len(records), 3) if records else None,
                                   "busy_share": round(busy / (n * seconds), 3),
                                   "host_log": str(folder / "host.log")}
        finally:
            stop_process(host)
            stop_process(azurite)
            log.close()
    if "1" in out["runs"] and "2" in out["runs"]:
        out["ratio_2_vs_1"] = round(out["runs"]["2"]["messages_per_second"] / out["runs"]["1"]["messages_per_second"], 2)
    out["load_average_after"] = load_average()
    return out
# ----------------------------------------------------------------------------------------------
# memory of an instance under concurrent heavy requests (issue 19), through the local host
# ----------------------------------------------------------------------------------------------
def settled_rss(read, window: float = 3.0, tolerance: int = 2 * MB, timeout: float = 60.0) -> int:
    """RSS (``read()``) once it has changed by less than ``tolerance`` over ``window`` seconds: an idle instance
    after its start-up work (the dataset load, the background import of the models' code)."""
    deadline = time.time() + timeout
    last = read()
    while True:
        time.sleep(window)
        now = read()
        if abs(now - last) < tolerance or time.time() > deadline:
            return now
        last = now


def memory_under_load(dataset: Path = EMBEDDED, total: int = 86, concurrency: int = 8, settle_seconds: float = 60.0,
                      project: Path = ROOT, timeout: float = 600.0, env: dict | None = None) -> dict:
    """Resident memory of one local-host instance (``python -m local_host`` from ``project``) before, at its
    peak during, at the end of, and ``settle_seconds`` after ``total`` heaviest form requests
    (:data:`HEAVIEST_REQUEST`) sent ``concurrency`` at a time, each with a different target or year (taken
    from the instance's own look-ups, spread over them; ``number_predictor`` capped at what the year allows, and
    targets that /estimate refuses skipped, as the form would), so that the result cache and the work memos fill. RSS is sampled
    every 50 ms from /proc; "before" is the idle instance once its start-up work has settled (:func:`settled_rss`).
    Goal (issue 19): peak <= 1.0 GB, and after the pause under 1.5x the RSS before."""
    import threading
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from processes import free_port, stop_process  # beside this file

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc_env = dict(os.environ, DATASET_PATH=str(dataset), PYTHONHASHSEED="0", **(env or {}))

    def rss() -> int:
        with open(f"/proc/{proc.pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def get(path: str):
        with urllib.request.urlopen(base + path, timeout=timeout) as answer:
            return json.loads(answer.read())

    def lookup_post(path: str, body: dict):
        """A look-up's answer, or None when it refuses the request."""
        request = urllib.request.Request(base + PREFIX + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError:
            return None

    def post(body: dict) -> str:
        """The answer's status, with the error's type for an error (e.g. ``503 overloaded``)."""
        request = urllib.request.Request(base + PREFIX + "/predict", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
                return str(answer.status)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail")
            except ValueError:
                detail = None
            kind = detail.get("type") if isinstance(detail, dict) else "validation" if detail else "?"
            return f"{exc.code} {kind}"
        except OSError as exc:
            return type(exc).__name__

    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "local_host", "--port", str(port), "--log-level", "warning"],
                                cwd=project, env=proc_env, stdout=log, stderr=log)
        try:
            deadline = time.time() + 120
            while True:
                try:
                    if get("/health").get("status") == "ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    return {"error": f"the instance did not start: {log.read().decode(errors='replace')[-400:]}"}
                time.sleep(0.05)
            candidates = []
            for year in get(PREFIX + "/target_years")[::-1]:
                for dataset_code in get(f"{PREFIX}/datasets?target_year={year}"):
                    for target in get(f"{PREFIX}/targets?target_year={year}&dataset={dataset_code}"):
                        candidates.append(dict(HEAVIEST_REQUEST, target=target, target_year=year,
                                               dataset=dataset_code))
            step = max(1, len(candidates) // total)
            bodies = []
            for body in candidates[::step] + [c for i, c in enumerate(candidates) if i % step]:
                if len(bodies) == total:
                    break
                # as the form builds it: at most the predictors that year allows, and a target /estimate accepts
                allowed = lookup_post("/predictors", {k: body[k] for k in ("target", "target_year", "dataset",
                                                                            "scheme")})
                if allowed and lookup_post("/estimate", body) is not None:
                    bodies.append(dict(body, number_predictor=min(body["number_predictor"], max(map(int, allowed)))))
            before = settled_rss(rss)
            peak = [before]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], rss())
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                statuses = list(pool.map(post, bodies))
            seconds = time.perf_counter() - started
            at_end = rss()
            time.sleep(settle_seconds)
            stop.set()
            sampler.join()
            after = rss()
        finally:
            stop_process(proc, grace=30)
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return {"requests": len(bodies), "concurrency": concurrency, "statuses": counts, "seconds": round(seconds, 1),
            "rss_before_mib": round(before / MB, 1), "rss_peak_mib": round(peak[0] / MB, 1),
            "rss_at_end_mib": round(at_end / MB, 1), "rss_after_mib": round(after / MB, 1),
            "settle_seconds": settle_seconds, "after_over_before": round(after / before, 2)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--queue-workers"]:  # AI Mode: 1 vs 2 worker processes on the Azurite queue (noisy, alone)
        print(json.dumps(queue_workers(*[int(a) for a in argv[1:2]]), indent=1))
        return 0
    if argv[:1] == ["--worker"]:
        answer = WORKERS[argv[1]](json.loads(argv[2]))
        Path(argv[3]).write_text(json.dumps(answer, default=str))
        return 0
    options = parse_args(argv)
    if options.from_json:  # print the table of an earlier run again (e.g. after a change of the table)
        report = json.loads(options.from_json.read_text())
        report["rows"] = rows(report)
        print(markdown(report))
        return 0
    report = run_with_progress(options)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=1, default=str))
    table = markdown(report)
    if options.markdown:
        options.markdown.parent.mkdir(parents=True, exist_ok=True)
        options.markdown.write_text(table + "\n")
    print(table)
    print(f"\nJSON: {options.out} ({report['seconds_total']} s)")
    # the full run draws the docs' pictures; a partial one (--quick, --heaviest, --matrix) only when asked
    plots_dir = options.plots or (ROOT / "docs" / "img" if not (options.quick or options.form_only or options.skip_form)
                                  else None)
    if plots_dir:
        from plots import bench_plots

        for path in bench_plots(report, plots_dir):
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

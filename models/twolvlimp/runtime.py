"""What the HTTP layer calls: predict (with the per-instance result cache) and estimate (learned durations).

:class:`TwoLevelRuntime` holds what an instance keeps between requests (result cache, compute
slots, fit pool, learned durations); the blueprint builds one from the settings, a test or the
evaluation script builds its own. Its ``predict_response`` is the one code path of
/twolvlImp/predict. Its answer is the response body as bytes: a repeated identical request on
the same data version is served from the cache with exactly the same bytes.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from models.twolvlimp.costs import DurationModel, UnitCosts
from models.twolvlimp.lookups import ImputationRequest, ResolvedRequest, resolve
from models.twolvlimp.tree_search import FitContext, fit_pool
from models.twolvlimp.imputers import one_blas_thread
from models.twolvlimp.legacy import plan_legacy, run_legacy
from models.twolvlimp.memo import LruCache, work_memo_has
from models.twolvlimp.method import imputation_key, manual_columns, plan_default, run_default
from models.twolvlimp.result import to_response
from models.twolvlimp.work import Job, WorkPlan, job
from shared.capacity import Budget, ComputeGate, Overloaded, OverTimeBudget
from shared.dataset import Dataset


ResultCache = LruCache  # response bodies keyed by (data version, request)


def plan_request(ds: Dataset, r: ResolvedRequest) -> WorkPlan:
    """The work this request needs on this data version now (what is memoised is not counted): the
    method's jobs, and the request's own (what :func:`compute` does around them)."""
    plan = plan_legacy(ds, r) if r.method == "legacy" else plan_default(ds, r)
    return dataclasses.replace(plan, jobs=plan.jobs + (Job("request", request_terms(ds)),))


def request_terms(ds: Dataset) -> dict[str, float]:
    return {"countries": float(ds.countries.size)}


# ------------------------------------------------------------------------------- runtime
@dataclass
class PredictOutcome:
    body: bytes
    cached: bool
    seconds: float


def compute(ds: Dataset, r: ResolvedRequest, ctx: FitContext = FitContext()) -> tuple[dict, dict]:
    """Run the imputation and build the response body (a JSON-safe dict); also its phase timings. ``ctx``: where
    its fits run and its budget's check (by default: on this thread, unbounded)."""
    started = time.perf_counter()
    with job("request", **request_terms(ds)):
        if r.method == "legacy":
            result = run_legacy(ds, r, ctx)
        else:
            # the ridge stages are many small SVDs (one per fold, per pattern of imputed predictors, and on every
            # candidate): with BLAS threads beside the fit threads they only contend (measured on 2 busy cores:
            # ridge on 125 rows x 2000 candidates 2.9 s with the default BLAS threads, 0.18 s with one)
            with one_blas_thread():
                result = run_default(ds, r, ctx)
        body = to_response(result, ds)
    total = time.perf_counter() - started
    timings = dict(result.timings) or {"prepare": 0.0, "model": total}
    timings["model"] = total - timings.get("prepare", 0.0)
    body["compute_seconds"] = round(total, 4)
    body["compute_phases"] = {k: round(v, 4) for k, v in timings.items()}
    return body, timings


class TwoLevelRuntime:
    """Everything twolvlImp keeps between requests on one instance, in one object.

    * ``cache``: the result cache (response bodies keyed by data version and request), bounded by entries
      and bytes (the work memos are bounded per data version: models/twolvlimp/memo.py);
    * ``slots``: how many imputations compute at once, and how many may wait (:class:`ComputeGate`).
      More fits than usable CPUs only slow each other down (and starve the light requests of the
      interpreter); extra requests wait there, in a bounded queue, without holding any CPU. Beyond
      ``queue_length`` waiting, a request is refused at once (Overloaded, saying when to retry);
    * ``fit_pool``: the threads the fold fits run on (one per usable CPU);
    * ``durations``: what /estimate and the time budget learn from measured computations.

    Built from sizes, not from settings: the blueprint builds the instance's one runtime from the
    settings (``blueprints.twolvlimp.runtime()``); a test or a script builds its own.
    """

    def __init__(self, *, cache_size: int, concurrency: int, queue_length: int, fit_workers: int,
                 cache_bytes: int | None = None):
        self.cache = ResultCache(cache_size, cache_bytes)
        self.slots = ComputeGate(concurrency, queue_length)
        self.fit_pool = fit_pool(fit_workers)
        self.durations = DurationModel(UnitCosts.load(), fit_workers)

    def close(self) -> None:
        """Let the fit threads end (fits already queued still run)."""
        self.fit_pool.shutdown(wait=False)

    def fit_context(self, budget: Budget | None) -> FitContext:
        """What one computation's fits are handed: this instance's fit pool, the request's budget check."""
        return FitContext(self.fit_pool) if budget is None else FitContext(self.fit_pool, budget.check)

    def predict_response(self, ds: Dataset, req: ImputationRequest, budget: Budget | None = None) -> PredictOutcome:
        """The /predict answer as JSON bytes, from the cache when this data version already answered it.

        With a ``budget`` (the request's deadline and cancellation flag), work the cost model expects
        to overrun it is refused before it starts (OverTimeBudget, naming what would fit), the wait
        for a compute slot ends when the budget does (Overloaded), and the computation checks it
        between fits (TimeBudgetExceeded, RequestCancelled). Cached answers are never refused.
        """
        started = time.perf_counter()
        r = resolve(ds, req)
        key = _cache_key(ds, r)

        def run() -> bytes:
            plan = plan_request(ds, r)
            if budget is not None and budget.seconds is not None:
                self.check_fits_budget(ds, r, plan, budget.seconds)
            gate = self.slots
            with gate.slot(budget):
                if budget is not None:
                    budget.check("start")
                    expected = self.durations.estimate(plan)
                    if budget.waited_for_slot(expected):
                        raise Overloaded(f"This instance is busy: after {budget.elapsed():.0f} s in the queue, the "
                                         f"{expected:.0f} s this request is expected to take no longer fit in its time "
                                         f"budget of {budget.seconds:g} s, so it was not started. Retry later.",
                                         retry_after_seconds=gate.retry_after())
                body, timings = compute(ds, r, self.fit_context(budget))
            raw = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
            self.durations.record(plan, timings.get("prepare", 0.0), timings["model"] + 0.0)
            return raw

        raw, cached = self.cache.get_or_compute(key, run)
        return PredictOutcome(body=raw, cached=cached, seconds=time.perf_counter() - started)

    def estimate_seconds(self, ds: Dataset, req: ImputationRequest) -> float:
        """Expected seconds for /predict with this request on this instance now."""
        r = resolve(ds, req)
        if self.cache.contains(_cache_key(ds, r)):
            return 0.002
        return float(round(self.durations.estimate(plan_request(ds, r)), 4))

    def check_fits_budget(self, ds: Dataset, r: ResolvedRequest, plan: WorkPlan, seconds: float) -> None:
        """Refuse up front a request the cost model expects to take longer than ``seconds``."""
        estimate = self.durations.estimate(plan)
        if estimate <= seconds:
            return
        options = _fitting_options(self.durations, ds, r, seconds)
        listed = "; ".join(" with ".join(f"{k}={v!r}" for k, v in o["change"].items()) for o in options)
        if len(options) > 1:
            advice = f"Any one of these changes is expected to fit: {listed}."
        elif options:
            advice = f"This change is expected to fit: {listed}."
        else:
            advice = "Nothing simpler is expected to fit on this instance: try scheme 'MANUAL' with a few predictors."
        raise OverTimeBudget(
            f"This request is expected to take about {estimate:.0f} s on this instance, more than the time budget of "
            f"{seconds:g} s per request, so it was not started. {advice}",
            estimate_seconds=round(estimate, 1), budget_seconds=seconds, options=options)


def _fitting_options(durations: DurationModel, ds: Dataset, r: ResolvedRequest, seconds: float) -> list[dict]:
    """Changes to the request after which the cost model (``durations``) expects it to fit in ``seconds``:
    each single change that is enough, or else one combination of them (each change re-planned)."""

    def estimate(q: ResolvedRequest) -> float:
        return durations.estimate(plan_request(ds, q))

    def most_trees(q: ResolvedRequest) -> int:  # the cost grows with the trees: the most that fit, 0 if none
        lo, hi = 0, q.estimators
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if estimate(dataclasses.replace(q, estimators=mid)) <= seconds else (lo, mid - 1)
        return lo

    steps: list[dict] = []
    if r.method == "legacy":
        steps.append({"method": "default"})
    if r.model == "all":
        steps.append({"model": "rfr"})
    if r.interpolator != "SimpleImputer" and not work_memo_has(ds, imputation_key(
            ds, r.year, r.interpolator, int(ds.indicators.get_loc(r.target)), manual_columns(ds, r))[0]):
        steps += [{"interpolator": i} for i in ("KNNImputer", "SimpleImputer") if i != r.interpolator]

    options = []
    for change in steps:
        q = dataclasses.replace(r, **change)
        if (e := estimate(q)) <= seconds:
            options.append({"change": change, "estimate_seconds": round(e, 1)})
    if (trees := most_trees(r)) >= 1:
        options.append({"change": {"estimators": trees},
                        "estimate_seconds": round(estimate(dataclasses.replace(r, estimators=trees)), 1)})
    if not options and steps:  # no single change is enough: all of them, with as many trees as fit
        change: dict = {}
        for step in steps:
            change.update(step)
        if "interpolator" in change:  # KNNImputer was tried first; SimpleImputer is the cheaper one
            change["interpolator"] = "SimpleImputer"
        q = dataclasses.replace(r, **change)
        trees = most_trees(q) if estimate(q) > seconds else q.estimators
        if trees >= 1:
            if trees < q.estimators:
                change["estimators"] = trees
            options.append({"change": change,
                            "estimate_seconds": round(estimate(dataclasses.replace(q, estimators=trees)), 1)})
    return options


def _cache_key(ds: Dataset, r: ResolvedRequest) -> tuple:
    # A dataset without a version tag (built in code) is only ever equal to itself.
    return (ds.version or f"unversioned-{id(ds)}", r.key())

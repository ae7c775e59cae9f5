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
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.errors import Overloaded, OverTimeBudget
from models.twolvlimp import data as lookups
from models.twolvlimp.data import ImputationRequest, ResolvedRequest, resolve
from models.twolvlimp.legacy import run_legacy
from models.twolvlimp.memo import LruCache, work_memo_has
from models.twolvlimp.method import imputation_key, run_default, selection_key
from models.twolvlimp.engine import BOOSTING_DEPTHS, BOOSTING_EARLY_STOPPING, N_FOLDS, fit_pool, fits_on
from models.twolvlimp.imputers import one_blas_thread
from models.twolvlimp.result import to_response
from models.twolvlimp.stacking import SKEW_LOG
from shared.capacity import Budget, ComputeGate
from shared.dataset import Dataset


ResultCache = LruCache  # response bodies keyed by (data version, request)


# ------------------------------------------------------------------------------- durations
@dataclass
class Workload:
    """What drives the compute time of one request, known before running it.

    A request has two phases: *prepare* (base imputation and predictor selection, memoised per
    data version, so only the first request of its kind pays it) and *model* (cross-validated
    trees, intervals, the response).
    """

    kinds: tuple[str, ...]
    trees: int
    n_train: int
    n_features: int
    n_submodels: int
    scheme: str
    n_candidates: int
    n_select: int
    legacy: bool
    imputation_cold: bool
    selection_cold: bool
    imputer: str
    n_countries: int
    n_predict: int = 0           # SIDS rows to predict
    gap_share: float = 0.0       # expected share of rows with an imputed cell among their predictors
    skewed_target: bool = False  # non-negative, right-skewed target: ridge on log(target) also competes
    reduced_fits: float | None = None  # reduced ridge models per fold (None: from gap_share and the row counts)

    @property
    def prepare_cold(self) -> bool:
        return self.imputation_cold or (self.selection_cold and self.scheme != "MANUAL")

    def model_group(self) -> str:
        return f"{'legacy' if self.legacy else 'model'}/{'+'.join(self.kinds)}"

    def prepare_group(self) -> str:
        return f"prepare/{self.imputer}/{self.scheme}"


# Seconds per unit of work on the reference machine (2 cores, wall clock), measured on the embedded,
# the SIDS platform and the synthetic platform-size data; each instance then corrects them with its own
# measurements. The *amount* of work is counted from what the method runs (prior_model_seconds).
_COST = {
    "base": 0.03,          # per request: stacking grid, conformal calibration, the response
    "tree": 0.8e-7,        # per fold tree x row x log2(row), forests ...
    "tree_feature": 3.5e-8,  # ... plus this per feature
    "etr": 0.75,           # extra trees relative to a random forest
    "fold_tree": 1e-4,     # default method: per forest tree of a fold (bootstrap, builder call, depth reader) ...
    "fold_tree_scale": 0.55,  # ... plus this share of the tree's cost above (grown on 4/5 of the rows)
    "gbr": 3.5e-8,         # per boosting stage x row x log2(row) x feature
    "ridge": 1e-3,         # per ridge fit (leave-one-out penalty over 15 values; one BLAS thread) ...
    "ridge_cell": 2e-7,    # ... plus this per row x feature
    "ridge_all": 1.5e-9,   # ridge on every candidate: per fold row^2 x candidate (one SVD)
    "inner_ridge": 0.015,  # AFS inner CV: one RidgeCV fit per fold and feature set
    "rfe": 2.6e-8,         # per RFE tree x row x log2(row) x feature considered, summed over rounds
    "knn": 3e-4,           # per candidate (scikit-learn's per-column loop) ...
    "knn_pairs": 4e-9,     # ... plus this per country^2 x candidate (distances)
    "iterative": 1.3e-4,   # per candidate x round (5 rounds at most): one ridge fit on its nearest features
    "iterative_pairs": 2.5e-10,  # per country x candidate^2: ranking the nearest features
    "legacy_fit": 0.015,   # scikit-learn overhead per GridSearchCV fit
    "legacy_iterative": 0.0077,  # legacy IterativeImputer: per column x round (10), fit + transform overhead ...
    "legacy_iterative_trees": 0.77,  # ... plus this times its 10-tree extra-trees fit (one thread)
}
# Gradient boosting stops early (engine.BOOSTING_EARLY_STOPPING): the stage count with the least validation
# loss is not known before the fit; this is its typical value at learning rate 0.1 (measured 2026-12-01: about
# 30 on the SIDS platform data and 40-60 on data/wdi, whether 100 or 1000 trees were asked for).
GBR_TYPICAL_BEST_STAGES = 40


def _tree_seconds(n: int, p: int) -> float:
    return n * math.log2(max(n, 2)) * (_COST["tree"] + _COST["tree_feature"] * max(p, 1))


def _boosting_depths_grown(n_fold: int) -> int:
    """Depth fits per fold: a depth is skipped when the shallower fit never reached its limit, and fully
    grown trees on n rows reach a depth of about 2 log2(n)."""
    reach = 2 * math.log2(max(n_fold, 2))
    limited = [d for d in BOOSTING_DEPTHS if d is not None]
    return min(len(BOOSTING_DEPTHS), sum(d < reach for d in limited) + 1)


def _boosting_stages(trees: int) -> int:
    """Stages one early-stopped fit grows: on 4/5 of the rows until ``n_iter_no_change`` stages without
    improvement after the best, then the refit on every row with the best count."""
    best = min(trees, GBR_TYPICAL_BEST_STAGES)
    if not BOOSTING_EARLY_STOPPING:
        return trees
    return min(trees, best + BOOSTING_EARLY_STOPPING["n_iter_no_change"]) + best


def _ridge_seconds(n: int, p: int, fits: float) -> float:
    return fits * (_COST["ridge"] + _COST["ridge_cell"] * n * max(p, 1))


def prior_model_seconds(w: Workload) -> float:
    n = max(w.n_train, 2)
    nlog = n * math.log2(n)
    if w.legacy:  # GridSearchCV: 5 depths x 5 folds + refit, one thread; RFE with 100-tree forests
        total = 0.25
        for kind in w.kinds:
            per_fit = w.trees * (_COST["gbr"] * nlog * max(w.n_features, 1) * 2 if kind == "gbr"
                                 else _tree_seconds(n, w.n_features) * (_COST["etr"] if kind == "etr" else 1.0))
            total += 26 * (_COST["legacy_fit"] + 1.7 * per_fit)
        if w.scheme == "AFS":
            p, k = w.n_candidates, max(w.n_select, 1)
            while p > k:
                total += 1.7 * 100 * _tree_seconds(n, p)
                p = max(k, p - k)
        if w.imputer == "IterativeImputer":  # scikit-learn's: every column, 10 rounds, 100 nearest features
            per_column = _COST["legacy_iterative"] + _COST["legacy_iterative_trees"] * 10 * _COST["etr"] * \
                _tree_seconds(n, min(100, max(w.n_candidates - 1, 1)))
            total += 10 * w.n_candidates * per_column
        return total
    # The default method (models.twolvlimp.stacking), per submodel, on the same N_FOLDS folds:
    folds, p = N_FOLDS, max(w.n_features, 1)
    n_fold = max(2, n * (folds - 1) // folds)
    trees = 0.0
    for kind in w.kinds:
        if kind == "gbr":  # per fold: the depth grid's fits, each early-stopped
            trees += folds * _boosting_depths_grown(n_fold) * _boosting_stages(w.trees) * \
                _COST["gbr"] * nlog * p
        else:  # per fold: one forest read at every depth
            per_tree = _COST["fold_tree"] + _COST["fold_tree_scale"] * _tree_seconds(n, p)
            trees += folds * w.trees * per_tree * (_COST["etr"] if kind == "etr" else 1.0)
    # ridge per fold: the full model and one reduced model per pattern of imputed predictors among the
    # fold's test rows and the rows to predict; again on log(target) for a skewed target
    reduced = w.gap_share * (n / folds + w.n_predict) if w.reduced_fits is None else w.reduced_fits
    ridge_fits = folds * (1 + reduced) * (2 if w.skewed_target else 1)
    ridge = _ridge_seconds(n_fold, p, ridge_fits)
    total = _COST["base"] + (trees + ridge) * w.n_submodels
    if w.scheme != "MANUAL" and w.n_candidates > p:  # ridge on every candidate (the cross-section model)
        total += folds * (_COST["ridge"] + _COST["ridge_all"] * n_fold ** 2 * w.n_candidates)
    return total


def prior_prepare_seconds(w: Workload) -> float:
    if w.legacy:
        return 0.0
    n = max(w.n_train, 2)
    total = 0.0
    if w.imputation_cold:
        total += 0.015
        if w.imputer == "IterativeImputer":
            total += _COST["iterative"] * w.n_candidates * 5
            total += _COST["iterative_pairs"] * w.n_countries * w.n_candidates ** 2
        elif w.imputer == "KNNImputer":
            total += (_COST["knn"] + _COST["knn_pairs"] * w.n_countries ** 2) * w.n_candidates
    if w.selection_cold and w.scheme == "AFS":
        p, k, work = w.n_candidates, max(w.n_select, 1), 0.0
        while p > k:
            work += p if p <= 30 else p * 0.5
            p = max(k, int(p * 0.6))
        total += _COST["rfe"] * 30 * n * math.log2(n) * work
        # RFE's and LARS's sets scored by inner CV: per set and fold, RidgeCV and a 30-tree forest
        k = min(max(w.n_select, 1), w.n_candidates)
        n_fold = max(2, n * (N_FOLDS - 1) // N_FOLDS)
        total += 2 * N_FOLDS * (_COST["inner_ridge"] + 30 * _tree_seconds(n_fold, k))
    return total


class DurationModel:
    """Learns, per phase and request group, the ratio of measured to prior seconds (exponentially
    weighted, in logs); before any measurement the prior cost model stands alone."""

    def __init__(self, smoothing: float = 0.5):
        self.smoothing = smoothing
        self._log_ratio: dict[str, float] = {}
        self._count = 0
        self._lock = threading.Lock()

    def _update(self, group: str, prior: float, seconds: float) -> None:
        if prior <= 0 or seconds <= 0:
            return
        r = math.log(seconds / prior)
        for key in (group, group.split("/")[0]):  # the group, and its phase as a fallback
            old = self._log_ratio.get(key)
            self._log_ratio[key] = r if old is None else (1 - self.smoothing) * old + self.smoothing * r

    def record(self, workload: Workload, prepare_seconds: float, model_seconds: float) -> None:
        with self._lock:
            if workload.legacy:
                self._update(workload.model_group(), prior_model_seconds(workload), prepare_seconds + model_seconds)
            else:
                self._update(workload.model_group(), prior_model_seconds(workload), model_seconds)
                if workload.prepare_cold:
                    self._update(workload.prepare_group(), prior_prepare_seconds(workload), prepare_seconds)
            self._count += 1

    def _ratio(self, group: str) -> float:
        r = self._log_ratio.get(group, self._log_ratio.get(group.split("/")[0]))
        return 1.0 if r is None else math.exp(r)

    def estimate(self, workload: Workload) -> float:
        with self._lock:
            total = prior_model_seconds(workload) * self._ratio(workload.model_group())
            if workload.prepare_cold and not workload.legacy:
                total += prior_prepare_seconds(workload) * self._ratio(workload.prepare_group())
        return total

    @property
    def measurements(self) -> int:
        with self._lock:
            return self._count


def workload(ds: Dataset, r: ResolvedRequest) -> Workload:
    info = lookups.year_info(ds, r.year)
    j = ds.indicators.get_loc(r.target)
    M = ds.year_matrix(r.year)
    column = M[:, j]
    train = ~np.isnan(column)
    n_train = int(train.sum())
    gaps_train = np.isnan(M[train]).mean(axis=0)
    candidates = gaps_train < lookups.PREDICTOR_MISSING_MAX
    n_cand = int(candidates.sum())
    n_features = len(r.manual_predictors) if r.scheme == "MANUAL" else min(r.number_predictor or 1, n_cand)
    kinds = ("rfr", "etr", "gbr") if r.model == "all" else (r.model,)
    n_sub = 1
    pred = ds.sids_mask & np.isnan(column)
    # a row has an imputed predictor with probability 1 - prod(1 - gap share) over its predictors (the
    # selected ones are not known yet: the candidates' mean share stands for each)
    if r.scheme == "MANUAL":
        shares = np.isnan(M[:, ds.indicators.get_indexer(list(r.manual_predictors))]).mean(axis=0)
    else:
        shares = np.full(n_features, float(np.isnan(M[:, candidates]).mean()) if n_cand else 0.0)
    gap_share = float(1 - np.prod(1 - shares)) if len(shares) else 0.0
    reduced_fits = None
    if r.scheme == "MANUAL":  # the predictors are known: count the distinct patterns of imputed cells
        def patterns(rows: np.ndarray) -> int:
            g = np.isnan(M[np.ix_(rows, ds.indicators.get_indexer(list(r.manual_predictors)))])
            g = g[g.any(axis=1)]
            return int(np.unique(g, axis=0).shape[0]) if g.size else 0
        # per fold: the prediction rows' patterns and, at most, those of a fifth of the training rows
        in_fold = min(patterns(np.flatnonzero(train)), gap_share * n_train / N_FOLDS)
        reduced_fits = patterns(np.flatnonzero(pred)) + in_fold
    y = column[train]
    skewed = False
    if r.method == "default":
        others = np.delete(ds.values[:, :, j], info.index, axis=0)
        has_own = ~np.isnan(others).all(axis=0)
        own = bool(np.any(pred & has_own))
        n_sub = max(1, int(own) + int(np.any(pred & ~has_own)))
        n_features += 3 if own else 0
        if y.size > 1 and y.min() >= 0 and y.std() > 0:
            skewed = float(np.mean(((y - y.mean()) / y.std()) ** 3)) > SKEW_LOG
    return Workload(kinds=kinds, trees=r.estimators, n_train=n_train, n_features=n_features, n_submodels=n_sub,
                    scheme=r.scheme, n_candidates=n_cand, n_select=r.number_predictor or 0,
                    legacy=r.method == "legacy",
                    imputation_cold=not work_memo_has(ds, imputation_key(ds, r)),
                    selection_cold=selection_key(r) is not None and not work_memo_has(ds, selection_key(r)),
                    imputer=r.interpolator,
                    n_countries=len(ds.countries), n_predict=int(pred.sum()), gap_share=gap_share,
                    skewed_target=skewed, reduced_fits=reduced_fits)


# ------------------------------------------------------------------------------- service
@dataclass
class PredictOutcome:
    body: bytes
    cached: bool
    seconds: float


def compute(ds: Dataset, r: ResolvedRequest) -> tuple[dict, dict]:
    """Run the imputation and build the response body (a JSON-safe dict); also its phase timings."""
    started = time.perf_counter()
    if r.method == "legacy":
        result = run_legacy(ds, r)
    else:
        # the ridge stages are many small SVDs (one per fold, per pattern of imputed predictors, and on every
        # candidate): with BLAS threads beside the fit threads they only contend (measured on 2 busy cores:
        # ridge on 125 rows x 2000 candidates 2.9 s with the default BLAS threads, 0.18 s with one)
        with one_blas_thread():
            result = run_default(ds, r)
    body = to_response(result, ds)
    total = time.perf_counter() - started
    timings = dict(result.timings) or {"prepare": 0.0, "model": total}
    timings["model"] = total - timings.get("prepare", 0.0)
    body["compute_seconds"] = round(total, 4)
    body["compute_phases"] = {k: round(v, 4) for k, v in timings.items()}
    return body, timings


class TwoLevelRuntime:
    """Everything twolvlImp keeps between requests on one instance, in one object.

    * ``cache``: the result cache (response bodies keyed by data version and request);
    * ``slots``: how many imputations compute at once, and how many may wait (:class:`ComputeGate`).
      More fits than usable CPUs only slow each other down (and starve the light requests of the
      interpreter); extra requests wait there, in a bounded queue, without holding any CPU. Beyond
      ``queue_length`` waiting, a request is refused at once (Overloaded, saying when to retry);
    * ``fit_pool``: the threads the fold fits run on (one per usable CPU);
    * ``durations``: what /estimate and the time budget learn from measured computations.

    Built from sizes, not from settings: the blueprint builds the instance's one runtime from the
    settings (``blueprints.twolvlimp.runtime()``); a test or a script builds its own.
    """

    def __init__(self, *, cache_size: int, concurrency: int, queue_length: int, fit_workers: int):
        self.cache = ResultCache(cache_size)
        self.slots = ComputeGate(concurrency, queue_length)
        self.fit_pool = fit_pool(fit_workers)
        self.durations = DurationModel()

    def close(self) -> None:
        """Let the fit threads end (fits already queued still run)."""
        self.fit_pool.shutdown(wait=False)

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
            load = workload(ds, r)
            if budget is not None and budget.seconds is not None:
                self.check_fits_budget(ds, r, load, budget.seconds)
            gate = self.slots
            with gate.slot(budget), (budget.active() if budget is not None else nullcontext()):
                if budget is not None:
                    budget.check("start")
                    expected = self.durations.estimate(load)
                    if budget.waited_for_slot(expected):
                        raise Overloaded(f"This instance is busy: after {budget.elapsed():.0f} s in the queue, the "
                                         f"{expected:.0f} s this request is expected to take no longer fit in its time "
                                         f"budget of {budget.seconds:g} s, so it was not started. Retry later.",
                                         retry_after_seconds=gate.retry_after())
                with fits_on(self.fit_pool):
                    body, timings = compute(ds, r)
            raw = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
            self.durations.record(load, timings.get("prepare", 0.0), timings["model"] + 0.0)
            return raw

        raw, cached = self.cache.get_or_compute(key, run)
        return PredictOutcome(body=raw, cached=cached, seconds=time.perf_counter() - started)

    def estimate_seconds(self, ds: Dataset, req: ImputationRequest) -> float:
        """Expected seconds for /predict with this request on this instance now."""
        r = resolve(ds, req)
        if self.cache.contains(_cache_key(ds, r)):
            return 0.002
        return float(round(self.durations.estimate(workload(ds, r)), 4))

    def check_fits_budget(self, ds: Dataset, r: ResolvedRequest, load: Workload, seconds: float) -> None:
        """Refuse up front a request the cost model expects to take longer than ``seconds``."""
        estimate = self.durations.estimate(load)
        if estimate <= seconds:
            return
        options = _fitting_options(self.durations, ds, r, load, seconds)
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


def _fitting_options(durations: DurationModel, ds: Dataset, r: ResolvedRequest, load: Workload,
                    seconds: float) -> list[dict]:
    """Changes to the request after which the cost model (``durations``) expects it to fit in ``seconds``:
    each single change that is enough, or else one combination of them."""

    def estimate(w: Workload) -> float:
        return round(durations.estimate(w), 1)

    def most_trees(w: Workload) -> int:  # the cost grows with the trees: the most that fit, 0 if none
        lo, hi = 0, w.trees
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if durations.estimate(dataclasses.replace(w, trees=mid)) <= seconds else (lo, mid - 1)
        return lo

    steps: list[tuple[dict, Callable[[Workload], Workload]]] = []
    if load.legacy:
        default = workload(ds, dataclasses.replace(r, method="default"))
        steps.append(({"method": "default"}, lambda w: dataclasses.replace(default, trees=w.trees)))
    if r.model == "all":
        steps.append(({"model": "rfr"}, lambda w: dataclasses.replace(w, kinds=("rfr",))))
    if load.imputation_cold and r.interpolator != "SimpleImputer":
        for imputer in ("KNNImputer", "SimpleImputer"):
            if imputer != r.interpolator:
                steps.append(({"interpolator": imputer}, lambda w, i=imputer: dataclasses.replace(w, imputer=i)))

    options = []
    for change, apply in steps:
        w = apply(load)
        if durations.estimate(w) <= seconds:
            options.append({"change": change, "estimate_seconds": estimate(w)})
    if (trees := most_trees(load)) >= 1:
        options.append({"change": {"estimators": trees},
                        "estimate_seconds": estimate(dataclasses.replace(load, trees=trees))})
    if not options and steps:  # no single change is enough: all of them, with as many trees as fit
        change, w = {}, load
        for step, apply in steps:
            if "interpolator" in step and "interpolator" in change:
                continue  # KNNImputer was tried first; SimpleImputer is the cheaper one
            change.update(step)
            w = apply(w)
        if "interpolator" in change:
            change["interpolator"], w = "SimpleImputer", dataclasses.replace(w, imputer="SimpleImputer")
        trees = most_trees(w) if durations.estimate(w) > seconds else w.trees
        if trees >= 1:
            if trees < w.trees:
                change["estimators"] = trees
            options.append({"change": change, "estimate_seconds": estimate(dataclasses.replace(w, trees=trees))})
    return options


def _cache_key(ds: Dataset, r: ResolvedRequest) -> tuple:
    # A dataset without a version tag (built in code) is only ever equal to itself.
    return (ds.version or f"unversioned-{id(ds)}", r.key())

"""Second level: the tree model, its depth chosen by 5-fold cross-validation, and its intervals.

:func:`fit_and_predict` runs the whole second level for one design matrix. For forests the
5 fold models are grown once to full depth and read at every depth of the grid (see
:class:`~models.twolvlimp.trees.DepthForest`), so the grid costs one fit per fold instead of
five; for gradient boosting a depth is skipped when the shallower fit never reached its limit
(the trees would be identical), and each boosting fit stops early: the requested number of trees is
the maximum number of stages (``BOOSTING_EARLY_STOPPING``). The out-of-fold predictions at the chosen depth give the
reported RMSE *and* calibrate the intervals, with no further fit.
"""
from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
from sklearn.model_selection import KFold

from models.twolvlimp.intervals import bootstrap_interval, quantile_interval
from models.twolvlimp.trees import BoostedTrees, DepthForest
from shared.capacity import current_check

FOREST_DEPTHS = (5, 10, 20, 100, None)
BOOSTING_DEPTHS = (3, 5, 10, 20, None)
N_FOLDS = 5
# Gradient boosting: the requested number of trees is the *maximum* number of stages. Each fold model
# holds out a fifth of its training rows, stops growing after 20 stages without a better validation
# loss, and is refitted on all its training rows with the best stage count (BoostedTrees).
BOOSTING_EARLY_STOPPING = {"n_iter_no_change": 20, "validation_fraction": 0.2}
LEVEL = 0.9
KINDS = ("rfr", "etr", "gbr")
SHRINK_GRID = tuple(i / 10 for i in range(11))
ESTIMATOR_NAMES = {"rfr": "RandomForestRegressor", "etr": "ExtraTreesRegressor", "gbr": "GradientBoostingRegressor"}


def fit_pool(workers: int) -> ThreadPoolExecutor:
    """A pool for the fold fits, with ``workers`` threads: one per CPU this process may use (its
    cgroup limit, not the machine's cores; the caller knows it). Tree building releases the GIL,
    and more threads than CPUs only contend. Threads start on first use."""
    return ThreadPoolExecutor(max_workers=max(1, int(workers)), thread_name_prefix="twolvlimp-fit")


class _OnThisThread(Executor):
    """Runs each job at once on the calling thread (fits outside a runtime: tests, notebooks)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


_ON_THIS_THREAD = _OnThisThread()
_active_pool: ContextVar[Executor | None] = ContextVar("twolvlimp_fit_pool", default=None)


@contextmanager
def fits_on(executor: Executor) -> Iterator[Executor]:
    """Run the fits of the computation in this block (on this thread) on ``executor``: the runtime
    that computes a request hands its pool down this way, past the method's code."""
    token = _active_pool.set(executor)
    try:
        yield executor
    finally:
        _active_pool.reset(token)


def pool() -> Executor:
    """Where this computation's fits run: the pool given by :func:`fits_on` (the runtime's, see
    :class:`models.twolvlimp.service.TwoLevelRuntime`), else the calling thread, one fit after another."""
    return _active_pool.get() or _ON_THIS_THREAD


def _checked(check: Callable[[str], None], stage: str, fn, *args):
    """A fit job that first checks the request's budget: queued fits of a stopped request never start."""
    check(stage)
    return fn(*args)


def _cancel_all(jobs: dict[object, list[Future]]) -> None:
    """Drop the fits not started yet (after one failed or the request was stopped)."""
    for fold_jobs in jobs.values():
        for job in fold_jobs:
            job.cancel()


def balanced_weights(is_sids: np.ndarray) -> np.ndarray:
    """Inverse class frequency (SIDS vs non-SIDS), scaled to mean 1."""
    is_sids = np.asarray(is_sids, dtype=bool)
    n, k = is_sids.size, int(is_sids.sum())
    if k == 0 or k == n:
        return np.ones(n)
    w = np.where(is_sids, 1.0 / k, 1.0 / (n - k))
    return w * (n / w.sum())


@dataclass
class FitResult:
    kind: str
    depth: int | None
    params: dict
    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    oof: np.ndarray
    importances: np.ndarray
    rmse: float
    rmse_weighted: float
    rmse_sids: float | None
    cv_rmse_by_depth: dict
    interval_info: dict
    candidates: dict = field(default_factory=dict)
    rmse_before_shrinkage: float | None = None


def _depth_key(depth) -> str:
    return "None" if depth is None else str(depth)


@dataclass
class _Fold:
    """One fold model read at every depth of the grid: out-of-fold and prediction-row outputs."""

    oof: dict            # depth -> (n_trees, n_test) per-tree predictions (forests) or (n_test,) (boosting)
    pred: dict           # depth -> same for the prediction rows
    importances: dict    # depth -> importances (boosting), or the forest to read them from
    stages: dict = field(default_factory=dict)   # boosting: depth -> stages kept (after early stopping)


def _forest_fold(kind: str, X, y, w, train, test, Xp, n_estimators: int, seed: int) -> _Fold:
    forest = DepthForest("rf" if kind == "rfr" else "et", n_estimators=n_estimators, random_state=seed)
    forest.fit(X[train], y[train], w[train])
    leaves_test, leaves_pred = forest.leaves(X[test]), forest.leaves(Xp)
    oof, pred = {}, {}
    for d in FOREST_DEPTHS:
        # a depth at or beyond the trees' own depth reads the full trees: compute those once
        same = d is not None and d >= forest.tree_max_depth_
        if same and None in oof:
            oof[d], pred[d] = oof[None], pred[None]
            continue
        oof[d] = forest.tree_predictions(depth=d, leaves=leaves_test)
        pred[d] = forest.tree_predictions(depth=d, leaves=leaves_pred)
        if same:
            oof[None], pred[None] = oof[d], pred[d]
    return _Fold(oof, pred, forest)


def _boosting_fold(X, y, w, train, test, Xp, n_estimators: int, seed: int,
                   check: Callable[[str], None] | None = None) -> _Fold:
    oof, pred, imp, stages = {}, {}, {}, {}
    previous = None
    for d in BOOSTING_DEPTHS:
        if check is not None and previous is not None:
            check(f"gbr fold, depth {d}")  # one fold fits up to 5 depths: the longest job of a request
        if previous is not None and previous[1] < (previous[0] if previous[0] is not None else np.inf):
            # the shallower fit never reached its depth limit: a deeper one grows the same trees
            d0 = previous[0]
            oof[d], pred[d], imp[d], stages[d] = oof[d0], pred[d0], imp[d0], stages[d0]
            continue
        model = BoostedTrees(n_estimators=n_estimators, max_depth=d, random_state=seed,
                             **BOOSTING_EARLY_STOPPING).fit(X[train], y[train], w[train])
        oof[d], pred[d], imp[d] = model.predict(X[test]), model.predict(Xp), model.feature_importances_
        stages[d] = model.n_estimators_
        previous = (d, model.tree_max_depth_)
    return _Fold(oof, pred, imp, stages)


def _boosting_quantile(X, y, w, train, test, Xp, n_estimators: int, depth, seed: int, alpha: float):
    model = BoostedTrees(n_estimators=n_estimators, max_depth=depth, loss="quantile", alpha=alpha,
                         random_state=seed, **BOOSTING_EARLY_STOPPING).fit(X[train], y[train], w[train])
    return model.predict(X[test]), model.predict(Xp)


def _wmse(y, pred, w) -> float:
    return float(np.average((y - pred) ** 2, weights=w))


def search_trees(X, y, w, Xp, kinds: list[str], n_estimators: int, folds, seed: int,
                 check: Callable[[str], None]) -> dict[str, dict]:
    """The cross-validated search of each tree kind: its fold models (each also predicting ``Xp``), the
    out-of-fold error at every depth of its grid, and the best depth. Fits run on :func:`pool`, each
    after ``check``; a failed or stopped fit cancels the ones not started."""
    n = X.shape[0]
    ex = pool()
    jobs = {}
    for kind in kinds:  # boosting first: its folds are the longest jobs
        if kind == "gbr":
            jobs[kind] = [ex.submit(_checked, check, "gbr fold", _boosting_fold, X, y, w, tr, te, Xp, n_estimators,
                                    seed, check) for tr, te in folds]
    for kind in kinds:
        if kind != "gbr":
            jobs[kind] = [ex.submit(_checked, check, f"{kind} fold", _forest_fold, kind, X, y, w, tr, te, Xp,
                                    n_estimators, seed) for tr, te in folds]
    summaries = {}
    for kind in kinds:
        try:
            outs: list[_Fold] = [job.result() for job in jobs[kind]]
        except BaseException:
            _cancel_all(jobs)
            raise
        depths = BOOSTING_DEPTHS if kind == "gbr" else FOREST_DEPTHS
        scores, oofs = {}, {}
        for d in depths:
            oof = np.empty(n)
            for (_, te), out in zip(folds, outs):
                oof[te] = out.oof[d] if kind == "gbr" else out.oof[d].mean(axis=0)
            oofs[d] = oof
            scores[d] = _wmse(y, oof, w)
        best = min(depths, key=lambda d: (scores[d], depths.index(d)))
        summaries[kind] = {"best": best, "score": scores[best], "scores": scores, "oof": oofs[best], "folds": outs}
    return summaries


def fit_and_predict(X: np.ndarray, y: np.ndarray, is_sids: np.ndarray, Xp: np.ndarray, model: str,
                    n_estimators: int, interval: str, seed: int, level: float = LEVEL,
                    check: Callable[[str], None] | None = None) -> FitResult:
    """Cross-validate the depth (and the model kind for ``all``) and predict ``Xp`` with intervals.

    The 5 fold models (each trained on 4/5 of the rows, with ``n_estimators`` trees) are also the
    final model: their average predicts the new rows (a cross-validation ensemble, as in CV+),
    so nothing is refitted after the search.

    ``check(stage)`` (default: the active request budget's) is called before every fold fit and
    between phases; it raises to stop the work (deadline passed, client gone).
    """
    check = check or current_check()
    check("model fit")
    n = X.shape[0]
    w = balanced_weights(is_sids)
    kinds = list(KINDS) if model == "all" else [model]
    folds = list(KFold(n_splits=min(N_FOLDS, n), shuffle=True, random_state=seed).split(X))
    summaries = search_trees(X, y, w, Xp, kinds, n_estimators, folds, seed, check)

    kind = min(kinds, key=lambda k: (summaries[k]["score"], kinds.index(k)))
    s = summaries[kind]
    depth, oof, outs = s["best"], s["oof"], s["folds"]
    if kind == "gbr":
        prediction = np.mean([out.pred[depth] for out in outs], axis=0)
    else:
        pred_trees = np.concatenate([out.pred[depth] for out in outs], axis=0)
        prediction = pred_trees.mean(axis=0)
    importances = np.mean([out.importances[depth] if kind == "gbr" else out.importances.importances(depth)
                           for out in outs], axis=0)
    if importances.sum() > 0:
        importances = importances / importances.sum()
    raw_rmse = float(np.sqrt(np.mean((y - oof) ** 2)))

    # Shrinkage toward the (SIDS-balanced) mean of the target, its weight chosen on the out-of-fold
    # predictions: where the trees do not generalise to SIDS (heavy tails), this limits the damage.
    centre = float(np.average(y, weights=w))
    shrink_scores = {lam: _wmse(y, lam * oof + (1 - lam) * centre, w) for lam in SHRINK_GRID}
    lam = min(SHRINK_GRID, key=lambda v: (shrink_scores[v], -v))

    def shrink(a):  # affine, so it maps quantiles to quantiles
        return lam * a + (1 - lam) * centre

    oof = shrink(oof)
    prediction = shrink(prediction)
    sids = np.asarray(is_sids, bool)
    sids_w = float(w[sids][0]) if sids.any() else 1.0
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    if interval == "bootstrap":
        lower, upper, info = bootstrap_interval(y - oof, w, prediction, seed=seed, level=level)
    elif kind == "gbr":
        check("quantile fits")
        ex = pool()
        qjobs = {a: [ex.submit(_checked, check, "quantile fold", _boosting_quantile, X, y, w, tr, te, Xp,
                               n_estimators, depth, seed, a) for tr, te in folds]
                 for a in (lo_q, hi_q)}
        bands = {}
        for a, fold_jobs in qjobs.items():
            oof_q, pred_q = np.empty(n), []
            for (_, te), job in zip(folds, fold_jobs):
                try:
                    oof_part, pred_part = job.result()
                except BaseException:
                    _cancel_all(qjobs)
                    raise
                oof_q[te] = oof_part
                pred_q.append(pred_part)
            bands[a] = (shrink(oof_q), shrink(np.mean(pred_q, axis=0)))
        lower, upper, info = quantile_interval(y, bands[lo_q][0], bands[hi_q][0], w, prediction,
                                               bands[lo_q][1], bands[hi_q][1], sids_w, level)
        info["band"] = "quantile-loss gradient boosting at 5% and 95%"
    else:
        oof_lo, oof_hi = np.empty(n), np.empty(n)
        for (_, te), out in zip(folds, outs):
            oof_lo[te] = np.quantile(out.oof[depth], lo_q, axis=0)
            oof_hi[te] = np.quantile(out.oof[depth], hi_q, axis=0)
        lower, upper, info = quantile_interval(
            y, shrink(oof_lo), shrink(oof_hi), w, prediction,
            shrink(np.quantile(pred_trees, lo_q, axis=0)), shrink(np.quantile(pred_trees, hi_q, axis=0)),
            sids_w, level)
        info["band"] = "5% and 95% quantiles of the single-tree predictions"

    params = {"estimator": ESTIMATOR_NAMES[kind], "n_estimators": int(n_estimators), "max_depth": depth,
              "random_state": seed, "cv_folds": len(folds), "final_model": f"average of the {len(folds)} fold models",
              "shrinkage": {"weight_on_model": lam, "toward": centre}}
    if kind == "gbr":
        params.update({"learning_rate": 0.1, "loss": "squared_error",
                       "early_stopping": dict(BOOSTING_EARLY_STOPPING, max_stages=int(n_estimators),
                                              stages_kept_by_fold=[int(out.stages[depth]) for out in outs])})
    else:
        params.update({"bootstrap": kind == "rfr", "max_features": 1.0})
    return FitResult(
        kind=kind, depth=depth, params=params, prediction=prediction, lower=lower, upper=upper, oof=oof,
        importances=np.asarray(importances, dtype=np.float64),
        rmse=float(np.sqrt(np.mean((y - oof) ** 2))),
        rmse_weighted=float(np.sqrt(_wmse(y, oof, w))),
        rmse_sids=float(np.sqrt(np.mean((y[sids] - oof[sids]) ** 2))) if sids.any() else None,
        cv_rmse_by_depth={_depth_key(d): float(np.sqrt(v)) for d, v in s["scores"].items()},
        interval_info=info,
        candidates={k: float(np.sqrt(v["score"])) for k, v in summaries.items()},
        rmse_before_shrinkage=raw_rmse,
    )

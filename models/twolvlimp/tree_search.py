"""Second level's trees: each kind's depth chosen by 5-fold cross-validation, on the request's fit pool.

:func:`search_trees` fits the fold models the stacked second level (``models.twolvlimp.stacking``)
reads. For forests the
5 fold models are grown once to full depth and read at every depth of the grid (see
:class:`~models.twolvlimp.trees.DepthForest`), so the grid costs one fit per fold instead of
five; for gradient boosting a depth is skipped when the shallower fit never reached its limit
(the trees would be identical), and each boosting fit stops early: the requested number of trees is
the maximum number of stages (``BOOSTING_EARLY_STOPPING``). The out-of-fold predictions at the chosen
depth feed the stack and its interval calibration, with no further fit.
"""
from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from models.twolvlimp.trees import BoostedTrees, DepthForest
from models.twolvlimp.work import job, nlog, tree_terms

FOREST_DEPTHS = (5, 10, 20, 100, None)
BOOSTING_DEPTHS = (3, 5, 10, 20, None)
N_FOLDS = 5
# Gradient boosting: the requested number of trees is the *maximum* number of stages. Each fold model
# holds out a fifth of its training rows, stops growing after 20 stages without a better validation
# loss, and is refitted on all its training rows with the best stage count (BoostedTrees).
BOOSTING_EARLY_STOPPING = {"n_iter_no_change": 20, "validation_fraction": 0.2}
# The stage count with the least validation loss is not known before the fit; this is its typical value at
# learning rate 0.1 (measured 2026-12-01: about 30 on the SIDS platform data and 40-60 on data/wdi, whether
# 100 or 1000 trees were asked for). Only the work plan (the /estimate) uses it.
BOOSTING_TYPICAL_BEST_STAGES = 40
LEVEL = 0.9
PARALLEL_FIT_MIN_ROWS = 100   # fewer training rows: the fold fits run one after another (fits_in_parallel)
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


ON_THIS_THREAD = _OnThisThread()


def unchecked(stage: str = "") -> None:
    """A budget check that never stops the work (a computation without a request's budget)."""
    return None


@dataclass(frozen=True)
class FitContext:
    """What one computation takes from whoever runs it, handed down explicitly from the runtime to every fit:
    where its fits run (``pool``: the runtime's fit pool; by default the calling thread, one fit after another)
    and its budget's ``check`` (raises when the deadline has passed or the client has gone:
    :meth:`shared.capacity.Budget.check`), called between steps and before each queued fit starts.
    :class:`models.twolvlimp.runtime.TwoLevelRuntime` builds one per request."""

    pool: Executor = ON_THIS_THREAD
    check: Callable[[str], None] = unchecked


def _checked(check: Callable[[str], None], stage: str, fn, *args):
    """A fit job that first checks the request's budget: queued fits of a stopped request never start."""
    check(stage)
    return fn(*args)


def fit_submitter(n_rows: int, ctx: FitContext) -> Callable[..., Future]:
    """``submit(stage, fn, *args)`` for the fit jobs of a computation on ``n_rows`` training rows: on the
    context's pool when :func:`fits_in_parallel`, else at once on this thread; each job checks the request's
    budget first and runs in a copy of this context (the request's work tally, if any, follows it)."""
    ex = ctx.pool if fits_in_parallel(n_rows) else ON_THIS_THREAD

    def submit(stage: str, fn, *args) -> Future:
        return ex.submit(copy_context().run, _checked, ctx.check, stage, fn, *args)
    return submit


def results_of(jobs: list[Future], siblings: list[Future] = ()) -> list:
    """The jobs' results in order; when one failed or the request was stopped, the jobs not started yet
    (these and their ``siblings``) are dropped and the error raised."""
    try:
        return [future.result() for future in jobs]
    except BaseException:
        for future in [*jobs, *siblings]:
            future.cancel()
        raise


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
    models: dict = field(default_factory=dict)   # boosting: depth -> the fitted model (to read other rows later)


def forest_fold_terms(n_estimators: int, n_train: int, n_features: int, n_read: int) -> dict[str, float]:
    """One fold's forest: grown once on ``n_train`` rows, read at every depth for ``n_read`` rows."""
    return {**tree_terms(n_estimators, n_train, n_features),
            "reads": float(n_estimators * n_read * len(FOREST_DEPTHS))}


def boosting_fold_terms(fits: float, stages_per_fit: float, n_train: int, n_features: int) -> dict[str, float]:
    """One fold's boosting fits (one per depth grown), each ``stages_per_fit`` stages (early-stopped fit
    and refit together) on ``n_train`` rows."""
    return {"fits": float(fits), "stage_cells": fits * stages_per_fit * nlog(n_train) * max(n_features, 1)}


def boosting_depths_expected(n_train: int) -> int:
    """Depth fits expected per fold: a depth is skipped when the shallower fit never reached its limit,
    and fully grown trees on n rows reach a depth of about 2 log2(n)."""
    reach = 2 * np.log2(max(n_train, 2))
    limited = [d for d in BOOSTING_DEPTHS if d is not None]
    return min(len(BOOSTING_DEPTHS), sum(d < reach for d in limited) + 1)


def boosting_stages_expected(n_estimators: int) -> int:
    """Stages one early-stopped fit is expected to grow: until ``n_iter_no_change`` stages without
    improvement after the best, then the refit on every row with the best count."""
    best = min(n_estimators, BOOSTING_TYPICAL_BEST_STAGES)
    if not BOOSTING_EARLY_STOPPING:
        return n_estimators
    return min(n_estimators, best + BOOSTING_EARLY_STOPPING["n_iter_no_change"]) + best


def fits_in_parallel(n_rows: int) -> bool:
    """Whether a search on ``n_rows`` training rows runs its fold fits on the fit pool (else one after
    another on the request's thread). On few rows a tree is mostly interpreter work, which holds the
    GIL: two fit threads then only contend (measured on the reference machine, 2 cores: the SIDS
    platform data's ~45 rows 15-30% slower with 2 fit threads than with 1; data/wdi's ~150 rows equal
    or up to 12% faster; the synthetic data's ~200 rows 15-35% faster)."""
    return n_rows >= PARALLEL_FIT_MIN_ROWS


def _forest_fold(kind: str, X, y, w, train, test, Xp, n_estimators: int, seed: int) -> _Fold:
    with job(f"forest_fold_{kind}", parallel=fits_in_parallel(X.shape[0]),
             **forest_fold_terms(n_estimators, train.size, X.shape[1], test.size + Xp.shape[0])):
        return _grow_and_read_forest(kind, X, y, w, train, test, Xp, n_estimators, seed)


def _grow_and_read_forest(kind: str, X, y, w, train, test, Xp, n_estimators: int, seed: int) -> _Fold:
    forest = DepthForest("rf" if kind == "rfr" else "et", n_estimators=n_estimators, random_state=seed)
    forest.fit(X[train], y[train], w[train])
    # each tree reads the held-out rows and the rows to predict in one call (a call costs more than a few rows)
    both = forest.leaves(np.concatenate([X[test], Xp]))
    oof, pred = {}, {}
    for d in FOREST_DEPTHS:
        # a depth at or beyond the trees' own depth reads the full trees: compute those once
        same = d is not None and d >= forest.tree_max_depth_
        if same and None in oof:
            oof[d], pred[d] = oof[None], pred[None]
            continue
        read = forest.tree_predictions(depth=d, leaves=both)
        oof[d], pred[d] = np.ascontiguousarray(read[:, :test.size]), np.ascontiguousarray(read[:, test.size:])
        if same:
            oof[None], pred[None] = oof[d], pred[d]
    return _Fold(oof, pred, forest)


def _boosting_fold(X, y, w, train, test, Xp, n_estimators: int, seed: int,
                   check: Callable[[str], None] | None = None) -> _Fold:
    with job("boosting_fold", parallel=fits_in_parallel(X.shape[0])) as terms:
        out, grown = _boost_every_depth(X, y, w, train, test, Xp, n_estimators, seed, check)
        terms.update(boosting_fold_terms(len(grown), np.mean(grown) if grown else 0.0, train.size, X.shape[1]))
    return out


def _boost_every_depth(X, y, w, train, test, Xp, n_estimators: int, seed: int,
                       check: Callable[[str], None] | None) -> tuple[_Fold, list[int]]:
    oof, pred, imp, stages, grown, models = {}, {}, {}, {}, [], {}
    previous = None
    for d in BOOSTING_DEPTHS:
        if check is not None and previous is not None:
            check(f"gbr fold, depth {d}")  # one fold fits up to 5 depths: the longest job of a request
        if previous is not None and previous[1] < (previous[0] if previous[0] is not None else np.inf):
            # the shallower fit never reached its depth limit: a deeper one grows the same trees
            d0 = previous[0]
            oof[d], pred[d], imp[d], stages[d], models[d] = oof[d0], pred[d0], imp[d0], stages[d0], models[d0]
            continue
        model = BoostedTrees(n_estimators=n_estimators, max_depth=d, random_state=seed,
                             **BOOSTING_EARLY_STOPPING).fit(X[train], y[train], w[train])
        oof[d], pred[d], imp[d] = model.predict(X[test]), model.predict(Xp), model.feature_importances_
        stages[d], models[d] = model.n_estimators_, model
        grown.append(model.stages_grown_)
        previous = (d, model.tree_max_depth_)
    return _Fold(oof, pred, imp, stages, models), grown


def _wmse(y, pred, w) -> float:
    return float(np.average((y - pred) ** 2, weights=w))


def search_trees(X, y, w, Xp, kinds: list[str], n_estimators: int, folds, seed: int,
                 ctx: FitContext) -> dict[str, dict]:
    """The cross-validated search of each tree kind: its fold models (each also predicting ``Xp``), the
    out-of-fold error at every depth of its grid, and the best depth. Fits run on the context's pool (on enough
    rows: :func:`fits_in_parallel`), each after its budget check; a failed or stopped fit cancels the ones not started.
    ``X`` and ``Xp`` may also be lists, one matrix per fold (each fold's own predictors)."""
    n = len(y)
    submit = fit_submitter(n, ctx)
    jobs = {}
    fold_X = X if isinstance(X, list) else [X] * len(folds)
    fold_Xp = Xp if isinstance(Xp, list) else [Xp] * len(folds)

    for kind in kinds:  # boosting first: its folds are the longest jobs
        if kind == "gbr":
            jobs[kind] = [submit("gbr fold", _boosting_fold, Xf, y, w, tr, te, Xpf, n_estimators, seed, ctx.check)
                          for (tr, te), Xf, Xpf in zip(folds, fold_X, fold_Xp)]
    for kind in kinds:
        if kind != "gbr":
            jobs[kind] = [submit(f"{kind} fold", _forest_fold, kind, Xf, y, w, tr, te, Xpf, n_estimators, seed)
                          for (tr, te), Xf, Xpf in zip(folds, fold_X, fold_Xp)]
    summaries = {}
    for kind in kinds:
        outs: list[_Fold] = results_of(jobs[kind], [future for kind_jobs in jobs.values() for future in kind_jobs])
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

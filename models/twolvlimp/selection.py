"""Predictor selection schemes: MANUAL (given list), AFS (recursive feature elimination), PCA."""
from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator

from models.twolvlimp.trees import DepthForest
from models.twolvlimp.work import job, svd_cells, tree_terms


class GeometricRFE(BaseEstimator):
    """Recursive feature elimination with a random forest, dropping a fixed share of the features per round.

    The old service removed ``n_features_to_select`` features per round with a 100-tree forest, so
    its cost grew with the number of candidates times the rounds; here each round keeps
    ``keep`` (60%) of the survivors, ranked by the impurity importances of a cheaper forest
    (``n_estimators`` trees, ``max_features`` share of the features per split), so a few
    thousand candidates need about ten rounds on ever smaller matrices.
    """

    def __init__(self, n_features_to_select: int = 10, keep: float = 0.6, n_estimators: int = 30,
                 max_features: float = 0.5, random_state: int | None = None):
        self.n_features_to_select = n_features_to_select
        self.keep = keep
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        X = np.asarray(X, dtype=np.float64)
        p = X.shape[1]
        alive = np.arange(p)
        dropped_in: list[np.ndarray] = []
        for n_keep in self.schedule(p):
            forest = DepthForest("rf", n_estimators=self.n_estimators, max_features=self._max_features(alive.size),
                                 random_state=self.random_state)
            forest.fit(X[:, alive], y, sample_weight)
            imp = forest.importances(None)
            order = np.argsort(-imp, kind="stable")
            dropped_in.append(alive[order[n_keep:]])
            alive = np.sort(alive[order[:n_keep]])
        rounds = len(dropped_in)
        ranking = np.ones(p, dtype=int)
        for r, dropped in enumerate(dropped_in):
            ranking[dropped] = rounds - r + 1
        self.support_ = np.zeros(p, dtype=bool)
        self.support_[alive] = True
        self.n_rounds_ = rounds
        self.ranking_ = ranking
        return self

    def schedule(self, p: int) -> list[int]:
        """The features kept after each round, starting from ``p``."""
        k, alive, kept = min(self.n_features_to_select, p), p, []
        while alive > k:
            alive = max(k, math.floor(alive * self.keep))
            kept.append(alive)
        return kept

    def _max_features(self, alive: int) -> float:
        # small matrices: consider every feature at each split, as the old forest did
        return 1.0 if alive <= 30 else self.max_features

    def work_terms(self, n: int, p: int) -> dict[str, float]:
        """The size of :meth:`fit` on ``n`` rows x ``p`` features (a job of :mod:`models.twolvlimp.work`):
        each round's forest on the surviving features, a share ``max_features`` of them tried per split."""
        terms: dict[str, float] = {}
        alive = p
        for n_keep in self.schedule(p):
            for term, value in tree_terms(self.n_estimators, n, alive * self._max_features(alive)).items():
                terms[term] = terms.get(term, 0.0) + value
            alive = n_keep
        return terms


def pca_select(X: np.ndarray, k: int, standardize: bool = True) -> np.ndarray:
    """Indices of ``k`` features that load most on the leading principal components.

    Walks the components in order of explained variance and takes, from each, the feature with the
    largest absolute loading not taken yet (cycling through the components again if ``k`` exceeds
    their number). ``standardize=False`` reproduces the old service (raw, centred values, where
    indicators with large units dominate).
    """
    X = np.asarray(X, dtype=np.float64)
    p = X.shape[1]
    k = min(k, p)
    Z = X - X.mean(axis=0)
    if standardize:
        sd = Z.std(axis=0)
        Z = Z / np.where(sd > 0, sd, 1.0)
    from models.twolvlimp.imputers import one_blas_thread

    with one_blas_thread(), job("pca", "prepare", svd=svd_cells(*Z.shape)):
        # one small LAPACK call: BLAS threads only contend (measured 0.2 s vs 5-10 ms)
        _, _, vt = np.linalg.svd(Z, full_matrices=False)
    chosen: list[int] = []
    comp = 0
    while len(chosen) < k:
        loadings = np.abs(vt[comp % vt.shape[0]]).copy()
        loadings[chosen] = -1.0
        chosen.append(int(np.argmax(loadings)))
        comp += 1
    return np.asarray(chosen, dtype=int)


def lars_select(X: np.ndarray, y: np.ndarray, k: int, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """The first ``k`` features to enter the least-angle regression path (standardised columns, weighted rows).

    Forward selection for *linear* relevance: a feature enters when it is the most correlated with
    what the features already in do not explain, so a feature that matters only jointly does; a
    (near-)duplicate (|correlation| > 0.999) of a feature already taken is skipped.
    """
    from sklearn.linear_model import lars_path

    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    k = min(k, p)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    w = w / w.mean()
    mean = np.average(X, axis=0, weights=w)
    sd = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    ok = sd > 0
    Z = (X[:, ok] - mean[ok]) / sd[ok] * np.sqrt(w)[:, None]
    t = (y - np.average(y, weights=w)) * np.sqrt(w)
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (collinear) columns are dropped by the path itself
        _, active, _ = lars_path(Z, t, method="lar", max_iter=min(Z.shape[1], 3 * k))
    # in path order, skipping (near-)duplicates of a column already taken: the path itself may let a
    # copy in, since it is exactly as correlated with the residual as the original
    chosen, taken = [], []
    norms = np.linalg.norm(Z, axis=0)
    for a in np.asarray(active, dtype=int):
        if len(chosen) >= k:
            break
        if taken and np.max(np.abs(Z[:, taken].T @ Z[:, a]) / (norms[taken] * norms[a] + 1e-300)) > 0.999:
            continue
        taken.append(int(a))
        chosen.append(int(np.flatnonzero(ok)[a]))
    if len(chosen) < k:  # the path stopped early (fewer informative columns): fill by |correlation|
        with np.errstate(all="ignore"):
            corr = np.nan_to_num(np.abs(Z.T @ t) / (np.linalg.norm(Z, axis=0) * np.linalg.norm(t) + 1e-300))
        for c in np.flatnonzero(ok)[np.argsort(-corr, kind="stable")]:
            if len(chosen) >= k:
                break
            if c not in chosen:
                chosen.append(int(c))
        for c in range(p):
            if len(chosen) >= k:
                break
            if c not in chosen:
                chosen.append(c)
    return np.sort(np.asarray(chosen, dtype=int))


def cv_error(X: np.ndarray, y: np.ndarray, w: np.ndarray, random_state: int, n_trees: int = 30) -> dict:
    """Weighted 5-fold out-of-fold MSE of a ridge regression and of a small random forest on ``X``."""
    import warnings

    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    n = X.shape[0]
    folds = KFold(n_splits=min(5, n), shuffle=True, random_state=random_state).split(X)
    lin, rf = np.empty(n), np.empty(n)
    for tr, te in folds:
        mean, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((X[tr] - mean) / sd, y[tr], sample_weight=w[tr])
        lin[te] = ridge.predict((np.clip(X[te], X[tr].min(0), X[tr].max(0)) - mean) / sd)
        forest = DepthForest("rf", n_estimators=n_trees, random_state=random_state).fit(X[tr], y[tr], w[tr])
        rf[te] = forest.predict(X[te], depth=None)
    return {"ridge": float(np.average((y - lin) ** 2, weights=w)), "forest": float(np.average((y - rf) ** 2, weights=w))}


def afs_terms(n: int, p: int, k: int, n_estimators: int) -> dict[str, dict[str, float]]:
    """The jobs of :func:`afs_select` on ``n`` rows x ``p`` candidates (the inner CV runs only when
    the two selections differ)."""
    rfe = GeometricRFE(n_features_to_select=k, n_estimators=n_estimators)
    return {"afs_rfe": rfe.work_terms(n, p), "afs_lars": lars_terms(n, p, k),
            "afs_inner_cv": inner_cv_terms(n, min(k, p), n_estimators)}


def lars_terms(n: int, p: int, k: int) -> dict[str, float]:
    return {"cells": float(n * p * min(p, 3 * k))}


def inner_cv_terms(n: int, k: int, n_estimators: int) -> dict[str, float]:
    """Two feature sets, each scored by 5-fold ridge and forest fits."""
    n_fold = n - n // min(5, max(n, 2))
    return {"fits": 10.0, **{t: 10 * v for t, v in tree_terms(n_estimators, n_fold, k).items()}}


def afs_select(X: np.ndarray, y: np.ndarray, k: int, sample_weight: np.ndarray, random_state: int,
               n_estimators: int = 30, parallel: bool = False) -> tuple[np.ndarray, dict]:
    """AFS: forest RFE (non-linear relevance) or the LARS path (linear relevance), chosen by inner CV.

    Both give ``k`` features; each set is scored by the better of a ridge regression and a small
    forest, 5-fold out of fold on the training rows, and the set with the lower error is kept.
    ``parallel``: this selection runs on the fit pool beside others (how its jobs are declared).
    """
    rfe = GeometricRFE(n_features_to_select=k, n_estimators=n_estimators, random_state=random_state)
    with job("afs_rfe", "prepare", parallel, **rfe.work_terms(*X.shape)):
        by_rfe = np.flatnonzero(rfe.fit(X, y, sample_weight).support_)
    with job("afs_lars", "prepare", parallel, **lars_terms(*X.shape, k)):
        by_lars = lars_select(X, y, k, sample_weight)
    if np.array_equal(by_rfe, by_lars):
        return by_rfe, {"chosen": "forest RFE and LARS agree"}
    with job("afs_inner_cv", "prepare", parallel, **inner_cv_terms(X.shape[0], min(k, X.shape[1]), n_estimators)):
        scores = {name: cv_error(X[:, cols], y, sample_weight, random_state, n_estimators)
                  for name, cols in (("forest_rfe", by_rfe), ("lars", by_lars))}
    best = {name: min(s.values()) for name, s in scores.items()}
    name = min(best, key=lambda v: (best[v], v != "forest_rfe"))
    info = {"chosen": name, "cv_rmse": {k_: float(np.sqrt(v)) for k_, v in best.items()}}
    return (by_rfe if name == "forest_rfe" else by_lars), info

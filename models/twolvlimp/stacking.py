"""Second level of the default method: the user's tree learner and a regularised linear model, combined
by cross-validation inside the request, with locally adaptive conformal intervals.

This module holds the numeric work of the stack's members; the members themselves (one class each) are in
:mod:`models.twolvlimp.members`, and their combination (grid, tie-break, intervals, report) in
:mod:`models.twolvlimp.stack`.

Why: trees cannot extrapolate and average toward the mean of their leaves, so on targets that are
near-linear in the predictors, and for SIDS that are unlike most training rows, they collapse toward
the mean; a ridge regression on the standardised predictors does not, but misses non-linear and
sub-group structure. Neither is best everywhere, and which one is best for a request is decided on
that request's own data:

1. **Trees** (``rfr``, ``etr``, ``gbr``, or the best of the three for ``all``): the same 5-fold search
   over ``max_depth`` as before (:mod:`models.twolvlimp.tree_search`'s fold models), which also gives
   their out-of-fold predictions.
2. **Ridge** on the same folds: per fold, columns that are non-negative and strongly right-skewed
   are log-transformed (and, for such a target, ridge on log(target) replaces ridge on the target when
   its out-of-fold error is lower), every column is standardised on the fold's training rows, and the penalty
   is chosen by the closed-form leave-one-out error, with the SIDS-balancing weights. A predictor
   the base imputer filled for a row is left out for that row (a reduced ridge per pattern of
   missing predictors). Rows unlike the training rows are extrapolated linearly, but no further
   than half the training range beyond it (inputs are clipped there; the final prediction is also
   clipped to a plausible range: :func:`models.twolvlimp.method.plausible_range`), and their intervals widen with the ridge leverage. For AFS/PCA a second ridge on the candidate
   predictors also competes: per fold, the candidates most correlated with the target on the fold's
   training rows, their count (5 to 100, or every candidate) and the log of skewed columns (or not)
   chosen by leave-one-out error (wider linear screening than the selected predictors).
   For AFS/PCA a **chained linear** member competes too (:func:`_chained_linear`, what makes iterative
   imputation with a linear model strong for a country that never reported the target): per fold, the
   candidates most correlated with the target, *unimputed* (not the base imputer's values), and the
   target (kept on the fold's training rows only) are filled by chained linear equations over every
   country's row; the target of the held-out rows and of the rows to predict is read from the result.
   Each column stays within its observed range widened by half of it (so the chain cannot diverge); the
   chain runs on the columns as they are and, for a skewed target (the rule of the ridge's target
   transform), also with skewed columns in logs, the lower out-of-fold error kept.
3. **Stacking**: the weights (multiples of 0.1 summing to 1: 1,001 combinations) of ridge, trees, ridge on
   every candidate, the chained linear member and the constant (the fold's SIDS-balanced training mean)
   that minimise the weighted out-of-fold squared error. The prediction moves toward the mean only when that wins out of fold (heavy-tailed
   targets where neither model generalises); otherwise the weight on the mean is 0.
4. The final prediction averages the 5 fold models (as in CV+), so the out-of-fold errors describe it.
5. When AFS chose the predictors among more candidates than there are training rows (``fold_columns``,
   :func:`models.twolvlimp.method.reselects_in_folds`), the out-of-fold predictions of ridge and trees,
   and so the stack's weights, the trees' kind and depth and the intervals, come from fold models on
   predictors chosen on each fold's training rows alone: predictors chosen on every row fit those rows
   partly by chance, and models on them look better out of fold than on a country they never saw. The
   predictions still come from fold models on the predictors chosen on every row (the ones reported).

Intervals (90%), calibrated on the out-of-fold residuals of the stacked prediction with the
finite-sample weighted conformal quantile (SIDS weighted as much as all other countries); for those
residuals each fold's stacking weights are chosen without that fold's rows (:func:`models.twolvlimp.stack._nested_stack_oof`):

* ``quantile``: normalised (locally adaptive) conformal: ``|y - oof| / s(x)`` with ``s(x)`` one of: a
  constant; the spread of the single-tree predictions plus ``b`` times its median (``b`` in 0.5, 1, 2;
  forests in the stack); ``sqrt(1 + leverage)`` of the ridge (ridge in the stack); the one with the
  narrowest calibrated intervals out of fold is used.
* ``bootstrap``: the residual bootstrap of :func:`models.twolvlimp.intervals.bootstrap_interval`
  (the same offsets for every country).

Per pattern of missing inputs (``masking``, :class:`Masking`; Zaffran et al., *Conformal prediction with
missing values*, ICML 2023, CP-MDA nested): a row to predict that lacks some of the inputs that matter most
(:func:`pattern_columns`, at most MAX_PATTERNS patterns: :func:`patterns_of`) gets its interval, either kind,
and (PATTERN_WEIGHTS) its stacking weights from each fold's held-out rows masked to its pattern, refilled
from the other rows (:func:`refill`) and read by every member's fold model: residuals of rows that lack at
least what it lacks, instead of rows that had its missing relatives. A member may instead be fitted again
per pattern on what the pattern's rows have (``MemberFit.refits``: the screened ridge, whose substitutes for
the missing relatives are the next candidates in its ranking).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold

from models.twolvlimp.tree_search import KINDS, N_FOLDS, FitContext, _depth_key, _wmse, search_trees
from models.twolvlimp.imputers import NearestFeatureIterativeImputer, ScaledKNNImputer, one_blas_thread
from models.twolvlimp.intervals import weighted_conformal_quantile
from models.twolvlimp.work import job, svd_cells

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
SKEW_LOG = 2.0                      # log-transform non-negative columns more skewed than this
SCALE_MIX = (0.5, 1.0, 2.0, None)
EXTRAPOLATE = 0.5                   # ridge inputs are clipped to the training range widened by this share
SCREEN_COUNTS = (5, 10, 20, 30, 50, 100)   # candidate counts tried by the screened ridge (plus every one)
CHAINED_COLUMNS = 30               # candidates (most correlated with the target) in the chained linear member
CHAINED_ITER = 10                  # at most this many rounds of chained equations per fold
CHAINED_EXTRAPOLATE = EXTRAPOLATE  # chained values may leave each column's observed range by this share of it
CHAINED_SHAPES = ("none", "log")    # chains on the columns as they are; and in logs (skewed targets only)
CHAINED_MIN_OVERLAP = 5            # a candidate needs this many training rows with a value to be ranked
# model "all" with many trees: the out-of-fold error that ranks the three kinds settles long before 1000 trees,
# so the kind is chosen on fits of this many trees and only the chosen kind is grown with all of them (the
# heaviest request the form can build, 1000 trees: about 40% less tree work)
KIND_SCREEN_TREES = 100
MAX_PATTERNS = 8                   # distinct patterns of missing inputs calibrated apart (more: coarsened)
PATTERN_SCREENED = 10              # besides the selected predictors, the candidates most correlated with the target
PATTERN_WEIGHTS = True             # per pattern, the stack's weights chosen on the masked out-of-fold predictions
MONDRIAN_MIN = 19                  # SIDS rows needed to calibrate on them alone (finite 90% quantile)   # s(x) = spread(x) + b * median(spread); None = constant scale


@dataclass
class _Trees:
    kind: str
    depth: object
    oof: np.ndarray
    prediction: np.ndarray
    spread_oof: np.ndarray | None
    spread_pred: np.ndarray | None
    importances: np.ndarray
    scores: dict
    candidates: dict
    kind_chosen_with: int | None = None   # model "all": the kind was chosen on fits of this many trees
    folds: list | None = None             # the fold models the out-of-fold predictions came from


def read_trees(trees: _Trees, fold: int, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Fold ``fold``'s tree model (the one its out-of-fold predictions came from) on other rows:
    (prediction, single-tree spread or None for boosting)."""
    out = trees.folds[fold]
    if trees.kind == "gbr":
        return out.models[trees.depth].predict(X), None
    per_tree = out.importances.tree_predictions(X, depth=trees.depth)
    return per_tree.mean(axis=0), per_tree.std(axis=0)


def tree_rounds(model: str, n_estimators: int) -> list[tuple[tuple[str, ...] | None, int]]:
    """The tree searches of one stack, in order: (kinds, trees). ``all`` with more than KIND_SCREEN_TREES
    trees chooses the kind on fits of KIND_SCREEN_TREES trees, then fits only the chosen one (None: not
    known before the first search) with every tree asked for."""
    if model != "all":
        return [((model,), n_estimators)]
    if n_estimators <= KIND_SCREEN_TREES:
        return [(KINDS, n_estimators)]
    return [(KINDS, KIND_SCREEN_TREES), (None, n_estimators)]


def tree_search_rounds(model: str, n_estimators: int, in_folds: bool) -> list[tuple[tuple[str, ...] | None, int]]:
    """Every tree search of one stack: :func:`tree_rounds`; with predictors selected in the folds, the searches
    on those with at most KIND_SCREEN_TREES trees (the out-of-fold error that ranks kinds and depths settles
    by then, and the single-tree spread does not depend on the count), then the chosen kind (None: known
    after the first) with every tree asked for on the predictors selected on every row."""
    if not in_folds:
        return tree_rounds(model, n_estimators)
    return tree_rounds(model, min(n_estimators, KIND_SCREEN_TREES)) + [(None if model == "all" else (model,),
                                                                          n_estimators)]


def _trees(X, y, w, Xp, model: str, n_estimators: int, folds, seed: int, in_folds=None,
           ctx: FitContext = FitContext()) -> _Trees:
    """The depth (and kind, for ``all``) search (:mod:`models.twolvlimp.tree_search`), keeping what stacking needs.

    ``in_folds`` (each fold's own predictors, selected on its training rows: ``(X, Xp)`` lists): the kind,
    the depth and the out-of-fold predictions come from fold models on those; the predictions from fold
    models on ``X`` (the predictors selected on every row), the chosen kind and depth only."""
    n = len(y)
    rounds = tree_search_rounds(model, n_estimators, in_folds is not None)
    if in_folds is not None:
        rounds = rounds[:-1]   # the last: the predictions, below
    kinds, trees = rounds[0]
    searched_X, searched_Xp = in_folds if in_folds is not None else (X, Xp)
    summaries = search_trees(searched_X, y, w, searched_Xp, list(kinds), trees, folds, seed, ctx)
    kind = min(kinds, key=lambda k: (summaries[k]["score"], kinds.index(k)))
    candidates = {k: float(np.sqrt(v["score"])) for k, v in summaries.items()}
    if len(rounds) > 1:   # the chosen kind again, with every tree asked for
        summaries = search_trees(searched_X, y, w, searched_Xp, [kind], rounds[1][1], folds, seed, ctx)
    s = summaries[kind]
    depth, outs = s["best"], s["folds"]
    chosen_with = trees if model == "all" and n_estimators > trees else None
    final = outs if in_folds is None else search_trees(X, y, w, Xp, [kind], n_estimators, folds, seed,
                                                       ctx)[kind]["folds"]
    spread_oof = spread_pred = None
    if kind == "gbr":
        prediction = np.mean([out.pred[depth] for out in final], axis=0)
        importances = np.mean([out.importances[depth] for out in final], axis=0)
    else:
        pred_trees = np.concatenate([out.pred[depth] for out in final], axis=0)
        prediction = pred_trees.mean(axis=0)
        spread_pred = pred_trees.std(axis=0)
        spread_oof = np.empty(n)
        for (_, te), out in zip(folds, outs):
            spread_oof[te] = out.oof[depth].std(axis=0)
        importances = np.mean([out.importances.importances(depth) for out in final], axis=0)
    importances = np.asarray(importances, dtype=np.float64)
    if importances.sum() > 0:
        importances = importances / importances.sum()
    return _Trees(kind=kind, depth=depth, oof=s["oof"], prediction=prediction, spread_oof=spread_oof,
                  spread_pred=spread_pred, importances=importances,
                  scores={_depth_key(d): float(np.sqrt(v)) for d, v in s["scores"].items()},
                  candidates=candidates, kind_chosen_with=chosen_with, folds=outs)


def _skewed(col: np.ndarray) -> bool:
    if col.min() < 0:
        return False
    sd = col.std()
    if sd == 0:
        return False
    return float(np.mean(((col - col.mean()) / sd) ** 3)) > SKEW_LOG


def _skewed_columns(X: np.ndarray) -> np.ndarray:
    """:func:`_skewed` of every column at once (the same sums, row by row of the transpose: the same numbers)."""
    T = np.ascontiguousarray(X.T)
    mean = T.mean(axis=1, keepdims=True)
    sd = T.std(axis=1, keepdims=True)
    ok = (T.min(axis=1) >= 0) & (sd[:, 0] != 0)
    out = np.zeros(T.shape[0], dtype=bool)
    if ok.any():
        out[ok] = np.mean(((T[ok] - mean[ok]) / sd[ok]) ** 3, axis=1) > SKEW_LOG
    return out


def _positive_floors(X: np.ndarray) -> np.ndarray:
    """Each column's small positive offset for log(x + offset): a tenth of its smallest positive value (or 1)."""
    smallest = np.where(X > 0, X, np.inf).min(axis=0)
    return np.where(np.isfinite(smallest), smallest / 10, 1.0)


def log_target_competes(y: np.ndarray) -> bool:
    """A non-negative, strongly right-skewed target: ridge on log(target) also competes."""
    return bool(y.min() >= 0 and _skewed(y))


class LinearStage:
    """Ridge on log-transformed (when skewed), standardised columns; penalty by leave-one-out CV."""

    def __init__(self, log: bool = True):
        self.log = log

    def fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> "LinearStage":
        X = np.asarray(X, dtype=np.float64)
        if self.log and X.shape[1]:
            self.log_ = _skewed_columns(X)
            self.offset_ = np.where(self.log_, _positive_floors(X), 0.0) if self.log_.any() else np.zeros(X.shape[1])
        else:
            self.log_, self.offset_ = np.zeros(X.shape[1], dtype=bool), np.zeros(X.shape[1])
        Z = self._transform(X)
        # rows to predict may lie beyond the training rows (SIDS often do): extrapolate, but at most half
        # the training range beyond it, so one extreme predictor value cannot produce a wild prediction
        top, bottom = Z.max(axis=0), Z.min(axis=0)
        span = top - bottom
        self.lo_, self.hi_ = bottom - EXTRAPOLATE * span, top + EXTRAPOLATE * span
        self.mean_ = np.average(Z, axis=0, weights=w)
        sd = np.sqrt(np.average((Z - self.mean_) ** 2, axis=0, weights=w))
        self.sd_ = np.where(sd > 0, sd, 1.0)
        self.coef_, self.intercept_, self.alpha_, self.gram_ = ridge_loo((Z - self.mean_) / self.sd_, y, w, RIDGE_ALPHAS)
        self.loo_ = self.gram_[4]
        return self

    def leverage(self, X: np.ndarray) -> np.ndarray:
        """x' (A'A + alpha I)^-1 x (+ the intercept's 1/n) for new rows: how far a row is from the
        training rows in the directions the model uses; the classical interval factor is sqrt(1 + h)."""
        zm, Vt, denom, total_w, _ = self.gram_
        Z = (np.clip(self._transform(np.asarray(X, dtype=np.float64)), self.lo_, self.hi_) - self.mean_) / self.sd_
        return ((Z - zm) @ Vt.T) ** 2 @ (1 / denom) + 1 / total_w

    def _transform(self, X):
        if not self.log_.any():
            return X
        X = X.copy()
        X[:, self.log_] = np.log(np.maximum(X[:, self.log_], 0) + self.offset_[self.log_])
        return X

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = np.clip(self._transform(np.asarray(X, dtype=np.float64)), self.lo_, self.hi_)
        return (Z - self.mean_) / self.sd_ @ self.coef_ + self.intercept_

    @property
    def importances(self) -> np.ndarray:
        return np.abs(self.coef_)


def ridge_loo(Z: np.ndarray, y: np.ndarray, w: np.ndarray, alphas) -> tuple[np.ndarray, float, float]:
    """Weighted ridge with intercept, its penalty chosen by the closed-form leave-one-out error
    (one SVD for every penalty, as RidgeCV's efficient LOO): (coefficients, intercept, penalty)."""
    w = np.asarray(w, dtype=np.float64)
    sw = np.sqrt(w / w.mean())
    ym = float(np.average(y, weights=w))
    zm = np.average(Z, axis=0, weights=w)
    A = (Z - zm) * sw[:, None]
    t = (y - ym) * sw
    U, sv, Vt = np.linalg.svd(A, full_matrices=False)
    Ut = U.T @ t
    s2, h0 = sv ** 2, sw ** 2 / (sw ** 2).sum()
    # every penalty at once (columns): the shrinkage of each component, the fit, the leverage (including the
    # intercept's) and the leave-one-out residuals
    alphas = np.asarray(alphas, dtype=np.float64)
    D = s2[:, None] / (s2[:, None] + alphas[None, :])
    fitted = U @ (D * Ut[:, None])
    h = (U ** 2) @ D + h0[:, None]
    loo = (t[:, None] - fitted) / np.maximum(1 - h, 1e-6)
    best = None
    for alpha, err in zip(alphas.tolist(), np.mean(loo ** 2, axis=0).tolist()):
        if best is None or err < best[0] - 1e-15:
            best = (err, alpha)
    alpha = best[1]
    coef = Vt.T @ (sv / (sv ** 2 + alpha) * Ut)
    return coef, ym - float(zm @ coef), float(alpha), (zm, Vt, sv ** 2 + alpha, (sw ** 2).sum(), best[0])


def _reduced_predict(X_tr, y_tr, w_tr, full: LinearStage, X_new, missing, models: dict) -> np.ndarray:
    """Ridge predictions where a row's own missing predictors are left out (a *reduced model* per pattern)
    instead of read from their imputed values; rows without gaps use the full model."""
    out = full.predict(X_new)
    lev = full.leverage(X_new)
    if missing is None or not missing.any():
        return out, lev
    patterns, inverse = np.unique(missing, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    for k, pattern in enumerate(patterns):
        if not pattern.any():
            continue
        rows = np.flatnonzero(inverse == k)
        key = pattern.tobytes()
        if key not in models:
            keep = ~pattern
            models[key] = (keep, LinearStage().fit(X_tr[:, keep], y_tr, w_tr) if keep.any() else None)
        keep, stage = models[key]
        if stage is None:
            out[rows], lev[rows] = np.average(y_tr, weights=w_tr), 1 / y_tr.size
        else:
            out[rows], lev[rows] = stage.predict(X_new[rows][:, keep]), stage.leverage(X_new[rows][:, keep])
    return out, lev


def ridge_terms(fit_shapes) -> dict[str, float]:
    """The size of ridge fits on matrices of the given (rows, columns) (a job of :mod:`models.twolvlimp.work`)."""
    return {"fits": float(len(fit_shapes)), "svd": float(sum(svd_cells(n, p) for n, p in fit_shapes))}


def _linear(X, y, w, Xp, folds, missing=None, missing_pred=None, in_folds=None, extra=None, extra_in_folds=None):
    """Ridge fold models: (out-of-fold predictions, predictions, importances, penalties, leverages, extra).
    ``in_folds`` (each fold's own predictors, selected on its training rows, and their gap flags: lists
    ``(X, missing)``): the out-of-fold predictions and leverages come from fold models on those instead.
    ``extra`` / ``extra_in_folds``: per fold, other rows ``(X, missing)`` (the fold's held-out rows masked to
    a pattern) read by the model that gives the out-of-fold predictions: ``extra`` = per fold (predictions,
    leverages), or None."""
    with job("ridge") as terms:
        out, shapes, ext = _linear_folds(X, y, w, Xp, folds, missing, missing_pred, extra)
        terms.update(ridge_terms(shapes))
    if in_folds is None:
        return (*out, ext)
    oof, oof_lev = np.empty(len(y)), np.empty(len(y))
    ext = None if extra_in_folds is None else []
    with job("ridge") as terms:
        shapes = []
        for f, ((tr, te), Xf, mf) in enumerate(zip(folds, *in_folds)):
            (fold_oof, _, _, _, (fold_lev, _)), fold_shapes, fold_ext = _linear_folds(
                Xf, y, w, Xf[:0], [(tr, te)], mf, mf[:0], None if extra_in_folds is None else [extra_in_folds[f]])
            oof[te], oof_lev[te] = fold_oof[te], fold_lev[te]
            shapes += fold_shapes
            if ext is not None:
                ext += fold_ext
        terms.update(ridge_terms(shapes))
    return oof, out[1], out[2], out[3], (oof_lev, out[4][1]), ext


def _linear_folds(X, y, w, Xp, folds, missing, missing_pred, extra=None):
    n = X.shape[0]
    oof, oof_lev = np.empty(n), np.empty(n)
    preds, levs, imps, alphas, shapes, ext = [], [], [], [], [], []
    for f, (tr, te) in enumerate(folds):
        stage = LinearStage().fit(X[tr], y[tr], w[tr])
        models: dict = {}
        oof[te], oof_lev[te] = _reduced_predict(X[tr], y[tr], w[tr], stage, X[te],
                                                None if missing is None else missing[te], models)
        p, lev = _reduced_predict(X[tr], y[tr], w[tr], stage, Xp, missing_pred, models)
        shapes += [(tr.size, X.shape[1])] + [(tr.size, int(keep.sum())) for keep, m in models.values() if m is not None]
        if extra is not None:   # (the reduced fits these need are work of the pattern calibration: not counted here)
            ext.append(_reduced_predict(X[tr], y[tr], w[tr], stage, extra[f][0], extra[f][1], models))
        preds.append(p)
        levs.append(lev)
        imps.append(stage.importances)
        alphas.append(stage.alpha_)
    imp = np.mean(imps, axis=0)
    imp = imp / imp.sum() if imp.sum() > 0 else imp
    return (oof, np.mean(preds, axis=0), imp, alphas, (oof_lev, np.mean(levs, axis=0))), shapes, \
        (ext if extra is not None else None)


def _screen_order(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Columns by decreasing |weighted correlation| with the target (constant columns last)."""
    xm = np.average(X, axis=0, weights=w)
    ym = float(np.average(y, weights=w))
    cov = np.average((X - xm) * (y - ym)[:, None], axis=0, weights=w)
    sx = np.sqrt(np.average((X - xm) ** 2, axis=0, weights=w))
    sy = np.sqrt(np.average((y - ym) ** 2, weights=w))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.abs(cov / (sx * sy)))
    return np.argsort(-corr, kind="stable")


def screen_counts(p: int) -> list[int]:
    """The candidate counts the screened ridge tries among ``p`` candidates."""
    return sorted({min(c, p) for c in SCREEN_COUNTS} | {p})


def screened_terms(train_sizes, p: int, counts: list[int] | None = None) -> dict[str, float]:
    """The size of :func:`_screened_linear` on ``p`` candidates, folds of the given training sizes: a
    ranking of the candidates and two ridge fits (log or not) per count, per fold; ``counts``: one count
    per fold, fitted once (the member fitted again per pattern of missing inputs, each fold's count kept)."""
    if counts is None:
        svd = sum(2 * svd_cells(n, c) for n in train_sizes for c in screen_counts(p))
    else:
        svd = sum(svd_cells(n, min(c, p)) for n, c in zip(train_sizes, counts))
    return {"folds": float(len(train_sizes)), "rank": float(sum(n * p for n in train_sizes)), "svd": float(svd)}


def _screened_linear(X, y, w, Xp, folds, extra=None):
    with job("screened_ridge", **screened_terms([tr.size for tr, _ in folds], X.shape[1])):
        return _screened_linear_folds(X, y, w, Xp, folds, extra)


def _screened_linear_folds(X, y, w, Xp, folds, extra=None, fixed=None):
    """Ridge on the candidates most correlated with the target: per fold, the candidates are ranked by
    |correlation| on the fold's training rows and the count (SCREEN_COUNTS, or every candidate), with or
    without the log of skewed columns, is the one with the least leave-one-out error on those rows (``fixed``:
    per fold, the count and log choice to use instead); the held-out rows score the whole procedure."""
    n, p = X.shape
    oof, oof_lev = np.empty(n), np.empty(n)
    preds, levs, alphas, chosen, ext = [], [], [], [], []
    for f, (tr, te) in enumerate(folds):
        Xtr, ytr, wtr = X[tr], y[tr], w[tr]
        order = _screen_order(Xtr, ytr, wtr)
        best = None
        for c in (screen_counts(p) if fixed is None else [min(fixed[f][0], p)]):
            cols = order[:c]
            for log in ((True, False) if fixed is None else (fixed[f][1],)):   # skewed columns in logs or not
                if not log and fixed is None and not stage.log_.any():
                    break   # no skewed column: the same fit again
                stage = LinearStage(log).fit(Xtr[:, cols], ytr, wtr)
                if best is None or stage.loo_ < best[0] - 1e-15:
                    best = (stage.loo_, cols, stage)
        _, cols, stage = best
        oof[te], oof_lev[te] = stage.predict(X[te][:, cols]), stage.leverage(X[te][:, cols])
        preds.append(stage.predict(Xp[:, cols]))
        levs.append(stage.leverage(Xp[:, cols]))
        alphas.append(stage.alpha_)
        chosen.append((int(cols.size), bool(stage.log)))
        if extra is not None:
            ext.append((stage.predict(extra[f][:, cols]), stage.leverage(extra[f][:, cols])))
    return oof, np.mean(preds, axis=0), alphas, chosen, (oof_lev, np.mean(levs, axis=0)), \
        (ext if extra is not None else None)


def _nan_screen_order(R: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """As :func:`_screen_order` on a matrix with gaps: |weighted correlation| with the target over the rows
    where each column has a value (columns with fewer than CHAINED_MIN_OVERLAP such rows, or constant, last)."""
    O = ~np.isnan(R)
    W = O * w[:, None]
    sw = W.sum(axis=0)
    R0 = np.where(O, R, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (W * R0).sum(axis=0) / sw
        ym = (W * y[:, None]).sum(axis=0) / sw
        D = np.where(O, R0 - xm, 0.0)
        E = np.where(O, y[:, None] - ym, 0.0)
        cov = (W * D * E).sum(axis=0)
        corr = np.abs(cov / np.sqrt((W * D * D).sum(axis=0) * (W * E * E).sum(axis=0)))
    corr = np.where(O.sum(axis=0) >= CHAINED_MIN_OVERLAP, np.nan_to_num(corr), -1.0)
    return np.argsort(-corr, kind="stable")


def _chained_linear(R, y, w, Rp, R_other, folds, extra=None):
    """The target imputed by chained linear equations with its most correlated candidates, as iterative
    imputation does, but scored out of fold and bounded.

    Per fold: the CHAINED_COLUMNS candidates most correlated with the target on the fold's training rows
    (pairwise over the rows where each has a value) are taken *unimputed* for every row (training rows, the
    fold's held-out rows, the rows to predict and the other countries), the target is kept on the fold's
    training rows only, and :class:`~models.twolvlimp.imputers.NearestFeatureIterativeImputer` fills the
    matrix (every column with gaps regressed on the others by ridge with its penalty by generalised
    cross-validation, on standardised columns, in rounds until the imputed values settle or CHAINED_ITER
    rounds): the predictors of a row are filled from the other predictors *and* the target where it is
    known, and the target of the held-out rows and the rows to predict is read from the filled matrix.
    Imputed values stay within each column's observed range widened by CHAINED_EXTRAPOLATE of it, so the
    chain cannot diverge (scikit-learn's iterative imputer with BayesianRidge can, on raw magnitudes).
    The chain runs on the columns as they are; for a non-negative, strongly right-skewed target (the rule of
    the ridge's target transform) also with skewed non-negative columns in logs, and the one with the lower
    (weighted) out-of-fold error is kept.

    Work: folds x (1, or 2 for a skewed target) chains, each (columns with gaps, at most CHAINED_COLUMNS + 1) x
    (rounds, at most CHAINED_ITER) ridge fits on at most CHAINED_COLUMNS inputs over the rows where the
    column has a value (up to every country), plus one pass of pairwise correlations.
    """
    n, n_pred = R.shape[0], Rp.shape[0]
    full = np.vstack([R, Rp] + ([R_other] if R_other is not None and R_other.size else []))
    # as the ridge's target transform: the chain in logs competes only for a non-negative, strongly
    # right-skewed target (in logs, a skewed target's chain can blow up the rows it extrapolates)
    skewed = log_target_competes(y)
    sizes = [tr.size for tr, _ in folds]
    with job("chained_linear", **chained_terms(sizes, R.shape[1], full.shape[0], skewed)) as terms, one_blas_thread():
        # (one BLAS-thread limit for every chain: each imputer would otherwise set and restore it)
        orders = [_nan_screen_order(R[tr], y[tr], w[tr])[:CHAINED_COLUMNS] for tr, _ in folds]
        *out, fits = _chains(full, n, n_pred, y, w, folds, orders, CHAINED_SHAPES if skewed else CHAINED_SHAPES[:1],
                             extra)
        terms.update(chained_terms(sizes, R.shape[1], full.shape[0], skewed, fits=fits))
    return tuple(out)


def chained_terms(train_sizes, p: int, n_rows: int, skewed: bool, fits: float | None = None) -> dict[str, float]:
    """The size of :func:`_chained_linear`: ranking the ``p`` candidates on each fold's training rows, and
    ``fits`` ridge fits (at most: per fold and chain, each of the CHAINED_COLUMNS + 1 columns in each of
    CHAINED_ITER rounds) on up to ``n_rows`` rows x CHAINED_COLUMNS inputs."""
    k = min(CHAINED_COLUMNS, p)
    if fits is None:
        fits = len(train_sizes) * (2 if skewed else 1) * (k + 1) * CHAINED_ITER
    return {"rank": float(sum(n * p for n in train_sizes)), "fits": float(fits), "gram": float(fits * n_rows * k * k)}


def _chains(full, n, n_pred, y, w, folds, orders, shapes, extra=None):
    """The chains of :func:`_chained_linear`; ``extra`` (per fold, other rows of candidates with gaps: the
    fold's held-out rows masked to a pattern) are filled by the fold's fitted chain (its column models)."""
    best, fits = None, 0
    for shape in shapes:
        oof = np.empty(n)
        preds, rounds, ext = [], [], []
        for f, ((tr, te), order) in enumerate(zip(folds, orders)):
            target = np.full(full.shape[0], np.nan)
            target[tr] = y[tr]
            imputer = NearestFeatureIterativeImputer(n_nearest_features=CHAINED_COLUMNS, max_iter=CHAINED_ITER,
                                                     extrapolate=CHAINED_EXTRAPOLATE, shape=shape, random_state=0)
            filled = imputer.fit_transform(np.column_stack([full[:, order], target]))
            oof[te] = filled[te, -1]
            preds.append(filled[n:n + n_pred, -1])
            if extra is not None:
                E = extra[f][:, order]
                ext.append(imputer.transform(np.column_stack([E, np.full(E.shape[0], np.nan)]))[:, -1]
                           if E.shape[0] else np.empty(0))
            rounds.append(int(imputer.n_iter_))
            fits += imputer.n_features_modelled_ * imputer.n_iter_
        pred = np.mean(preds, axis=0)
        ok = np.isfinite(oof)
        err = _wmse(y[ok], oof[ok], w[ok]) if ok.any() else np.inf
        if best is None or err < best[0]:
            best = (err, oof, pred, shape, rounds, ext if extra is not None else None)
    _, oof, pred, shape, rounds, ext = best
    return oof, pred, [int(o.size) for o in orders], rounds, shape, ext, fits


def _normalised_interval(y, oof, w, prediction, spread_oof, spread_pred, test_weight, level, leverage=None):
    """Locally adaptive split-conformal band: the scale with the narrowest calibrated band out of fold.

    Scales: constant; the single-tree spread + b x its median (when trees are in the stack);
    sqrt(1 + ridge leverage) (when ridge is: wider for rows unlike the training rows)."""
    resid = np.abs(y - oof)
    scales = [("constant", np.ones_like(oof), np.ones_like(prediction))]
    if spread_oof is not None and float(np.median(spread_oof)) > 0:
        base = float(np.median(spread_oof))
        scales += [(f"single-tree spread + {b} x its median", spread_oof + b * base, spread_pred + b * base)
                   for b in SCALE_MIX if b is not None]
    if leverage is not None:
        scales.append(("sqrt(1 + ridge leverage)", np.sqrt(1 + leverage[0]), np.sqrt(1 + leverage[1])))
    best = None
    for name, s_oof, s_pred in scales:
        q = weighted_conformal_quantile(resid / s_oof, w, level, test_weight)
        width = float(np.average(2 * q * s_oof, weights=w))
        if best is None or width < best[0] - 1e-12:
            best = (width, name, q, s_pred)
    _, name, q, s_pred = best
    half = q * s_pred
    return prediction - half, prediction + half, {
        "calibration": "normalised split-conformal on out-of-fold residuals of the stacked prediction",
        "scale": name, "adjustment": q}


# ------------------------------------------------------------------ intervals valid per pattern of missing inputs
@dataclass(frozen=True)
class Masking:
    """What the calibration per pattern of missing inputs needs beside the fit's matrices: every country's
    candidate predictors as the data has them (``raw``, NaN where no value) and as the base imputer filled
    them (``filled``), which rows of those the fit trains on and predicts (in the order of ``X`` / ``Xp``),
    the candidates ``X``'s first columns are (any further columns of ``X`` are never missing: the own-series
    features), and the base imputer's name."""

    raw: np.ndarray
    filled: np.ndarray
    train_rows: np.ndarray
    pred_rows: np.ndarray
    selected: np.ndarray
    interpolator: str


def pattern_columns(masking: Masking, y: np.ndarray, w: np.ndarray, fold_columns=None,
                    screened: bool = False) -> np.ndarray:
    """The candidates whose absence defines a row's pattern, most relevant first: the selected predictors
    (and each fold's), and for AFS/PCA the PATTERN_SCREENED candidates most correlated with the target
    (what the screened ridge and the chained member lean on most); ranked by |correlation| with the target
    on the training rows."""
    R = masking.raw[masking.train_rows]
    cols = set(np.asarray(masking.selected, int).tolist())
    for c in fold_columns or []:
        cols |= set(np.asarray(c, int).tolist())
    if screened:
        cols |= set(_nan_screen_order(R, y, w)[:PATTERN_SCREENED].tolist())
    cols = np.asarray(sorted(cols), dtype=int)
    return cols[_nan_screen_order(R[:, cols], y, w)] if cols.size else cols


def patterns_of(gaps: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct patterns (which of ``columns`` are missing) among rows with gaps ``gaps`` (rows x
    candidates): (columns kept, patterns as candidate masks, each row's pattern or -1 for none). At most
    MAX_PATTERNS: while there are more, the least relevant column is dropped from every pattern (coarser
    patterns, each still a subset of what its rows lack)."""
    cols = np.asarray(columns, int)
    while True:
        P = gaps[:, cols]
        has = P.any(axis=1)
        distinct, inverse = (np.unique(P[has], axis=0, return_inverse=True) if has.any()
                             else (np.zeros((0, cols.size), bool), np.zeros(0, int)))
        if len(distinct) <= MAX_PATTERNS or cols.size <= 1:
            break
        cols = cols[:-1]
    row_pattern = np.full(gaps.shape[0], -1)
    row_pattern[has] = np.asarray(inverse).reshape(-1)
    masks = np.zeros((len(distinct), gaps.shape[1]), bool)
    for k, pattern in enumerate(distinct):
        masks[k, cols[pattern]] = True
    return cols, masks, row_pattern


def refill(interpolator: str, donors: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``rows`` (candidates with gaps) filled as the base imputer would, fitted on the ``donors`` rows only
    (a fold-local imputation: never on the rows being filled): KNN on every candidate (distances as the base
    imputation's), the donors' mean, or chained equations on the ``columns`` that matter (the iterative
    imputer on every candidate would cost a base imputation per fold). Cells no donor has: the donors' mean, or 0."""
    out = rows.copy()
    if not np.isnan(rows).any():
        return out
    if interpolator == "KNNImputer":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = ScaledKNNImputer(n_neighbors=5).fit(donors).transform(rows)
    elif interpolator == "IterativeImputer" and len(columns):
        imputer = NearestFeatureIterativeImputer(random_state=0).fit(donors[:, columns])
        out[:, columns] = imputer.transform(rows[:, columns])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(donors, axis=0))
    return np.where(np.isnan(out), mean, out)


def pattern_terms(n: int, n_patterns: int, n_candidates: int, n_rows: int) -> dict[str, float]:
    """The size of the calibration per pattern (one job per stacked fit): each held-out row refilled once
    per pattern from the other rows (rows x donors x candidates), and read by every member's fold model."""
    return {"patterns": float(n_patterns), "rows": float(n * n_patterns),
            "pair_columns": float(n * n_patterns * n_rows * n_candidates)}


def _masked_rows(masking: Masking, X: np.ndarray, folds, masks: np.ndarray, refill_columns: np.ndarray) -> list[dict]:
    """Per fold, its held-out rows once per pattern, the pattern's cells blanked and filled again from the
    other rows (:func:`refill`): ``R`` candidates with gaps, ``Z`` filled, ``X`` the fit's columns, ``missing``
    the fit's gap flags."""
    p = len(masking.selected)
    out = []
    everyone = np.arange(masking.raw.shape[0])
    for tr, te in folds:
        rows = masking.train_rows[te]
        R = np.vstack([np.where(m, np.nan, masking.raw[rows]) for m in masks])
        donors = masking.raw[np.setdiff1d(everyone, rows)]
        # only the pattern's cells are filled again (the rows' own gaps keep the base imputer's values: filling
        # them again would cost a pass over every candidate column with a gap, for values that stay close)
        filled = np.vstack([masking.filled[rows]] * len(masks))
        blanked = np.vstack([np.broadcast_to(m, (rows.size, m.size)) for m in masks])
        Z = np.where(blanked, refill(masking.interpolator, donors, np.where(blanked, np.nan, filled), refill_columns),
                     filled)
        Xe = np.column_stack([Z[:, masking.selected], np.vstack([X[te, p:]] * len(masks))])
        miss = np.column_stack([np.isnan(R[:, masking.selected]), np.zeros((Xe.shape[0], X.shape[1] - p), bool)])
        out.append({"R": R, "Z": Z, "X": Xe, "missing": miss})
    return out


def stack_folds(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (training, test) rows of the N_FOLDS folds every part of the stack is fitted on."""
    return list(KFold(n_splits=min(N_FOLDS, n), shuffle=True, random_state=seed).split(np.empty((n, 1))))

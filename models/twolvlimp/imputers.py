"""The base imputers: the first level, which fills gaps in the predictor columns.

``IterativeImputer`` in the default method is :class:`NearestFeatureIterativeImputer`, a
multivariate iterative imputer that scales to the platform's thousands of indicators; the
``legacy`` method keeps scikit-learn's ``IterativeImputer`` with extra trees, as the old service.
"""
from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers IterativeImputer)
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.metrics import pairwise_distances_chunked
from sklearn.utils.validation import validate_data

from models.twolvlimp.lookups import INTERPOLATORS
from models.twolvlimp.work import job


def _is_nan(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


class _KNNImputer(KNNImputer):
    """scikit-learn's ``KNNImputer`` (uniform weights), with each column's average of its donors taken on plain
    arrays instead of masked ones (``np.ma`` took most of a platform-size imputation's time), and ``transform``
    visiting only the columns with gaps (scikit-learn's visits every column: most of the time of the calibration's
    refills, hundreds of candidates of which a pattern blanks a few): the same distances, donors and sums in the
    same order, so the same numbers (``tests/unit/test_twolvlimp_imputers.py`` compares the two)."""

    def transform(self, X):
        if (self.weights not in (None, "uniform") or self.metric != "nan_euclidean" or self.add_indicator
                or not self.keep_empty_features or not _is_nan(self.missing_values)):
            return super().transform(X)
        X = validate_data(self, X, dtype=np.float64, force_writeable=True, ensure_all_finite="allow-nan",
                          copy=True, reset=False)
        missing, fit_missing, valid = np.isnan(X), self._mask_fit_X, self._valid_mask
        gaps = missing & valid
        rows = np.flatnonzero(gaps.any(axis=1))
        fit_X, donors_of = self._fit_X, {}

        def fill(distances: np.ndarray, start: int) -> None:
            """One chunk of the rows with gaps: each of their columns with a gap from its nearest donors."""
            chunk = rows[start:start + distances.shape[0]]
            for col in np.flatnonzero(gaps[chunk].any(axis=0)).tolist():
                if col not in donors_of:
                    donors_of[col] = np.flatnonzero(~fit_missing[:, col])
                donors = donors_of[col]
                takers = np.flatnonzero(missing[chunk, col])
                D = distances[takers][:, donors]
                far = np.isnan(D).all(axis=1)
                if far.any():   # no donor shares a value with the row: the column's mean, as scikit-learn
                    X[chunk[takers[far]], col] = np.ma.array(fit_X[:, col], mask=fit_missing[:, col]).mean()
                    if far.all():
                        continue
                    takers, D = takers[~far], D[~far]
                X[chunk[takers], col] = self._calc_impute(D, min(self.n_neighbors, donors.size), fit_X[donors, col],
                                                          fit_missing[donors, col])

        if rows.size:
            # the same distances in the same chunks as scikit-learn's transform
            for _ in pairwise_distances_chunked(X[rows], fit_X, metric=self.metric, missing_values=np.nan,
                                                ensure_all_finite="allow-nan", reduce_func=fill):
                pass
        X[:, ~valid] = 0
        return X

    def _calc_impute(self, dist_pot_donors, n_neighbors, fit_X_col, mask_fit_X_col):
        if self.weights not in (None, "uniform"):
            return super()._calc_impute(dist_pot_donors, n_neighbors, fit_X_col, mask_fit_X_col)
        donors_idx = np.argpartition(dist_pot_donors, n_neighbors - 1, axis=1)[:, :n_neighbors]
        donors_dist = np.take_along_axis(dist_pot_donors, donors_idx, axis=1)
        use = ~(np.isnan(donors_dist) | mask_fit_X_col.take(donors_idx))
        count = use.sum(axis=1)
        total = np.where(use, fit_X_col.take(donors_idx), 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count


class ScaledKNNImputer(TransformerMixin, BaseEstimator):
    """KNN imputation (5 neighbours) on min-max scaled columns, returned in the original units."""

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.min_ = np.where(np.isnan(X).all(axis=0), 0.0, np.nanmin(np.where(np.isnan(X), np.inf, X), axis=0))
        top = np.where(np.isnan(X).all(axis=0), 1.0, np.nanmax(np.where(np.isnan(X), -np.inf, X), axis=0))
        span = top - self.min_
        self.scale_ = np.where(span > 0, span, 1.0)
        self.knn_ = _KNNImputer(n_neighbors=self.n_neighbors, keep_empty_features=True).fit(self._scale(X))
        return self

    def _scale(self, X):
        return (X - self.min_) / self.scale_

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        if not np.isnan(X).any():
            return X.copy()
        return self.knn_.transform(self._scale(X)) * self.scale_ + self.min_


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


def _release_blas_control() -> None:
    """threadpoolctl lets only one thread (the first to set a limit, until released) change
    OpenBLAS's process-wide pool and silently ignores the others: release it, so that the request
    thread that sets or restores the limit below is the one whose call takes effect."""
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


@contextmanager
def one_blas_thread():
    """Run many small linear-algebra calls with one BLAS thread: on a shared 2-core instance BLAS
    threads only add contention to them (measured: the ranking of nearest features 3-9x faster,
    the whole imputation about 2x). OpenBLAS's pool is process-wide, so the limit is counted
    across threads: the first imputation sets it, the last one to end restores the original."""
    global _blas_users, _blas_limiter
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _release_blas_control()
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
            _release_blas_control()
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _release_blas_control()
                _blas_limiter.restore_original_limits()
                _release_blas_control()
                _blas_limiter = None


# Ridge penalties tried for each column's regression, per fitting row (inputs are standardised).
_ALPHAS = np.logspace(-3, 2, 11)
_sum = np.add.reduce


try:
    from numpy.linalg._umath_linalg import eigh_lo as _EIGH_LOWER   # what np.linalg.eigh calls (UPLO="L")
except ImportError:   # a numpy that moved it: the public function (the same numbers)
    _EIGH_LOWER = None


def _symmetric_eigh(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh(G)`` of a real symmetric matrix: the same LAPACK routine (numpy's own), called without the
    argument checks and error-state context that cost a tenth of a 30 x 30 decomposition."""
    if _EIGH_LOWER is None:
        return np.linalg.eigh(G)
    s2, V = _EIGH_LOWER(G, signature="d->dd")
    if s2.size and not s2[-1] == s2[-1]:   # (NaN: LAPACK did not converge)
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    return s2, V


def _ridge_gcv(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge regression of ``b`` on ``A`` (with intercept), its penalty chosen by generalised
    cross-validation over ``_ALPHAS``; one eigendecomposition of the small Gram matrix serves
    every penalty (no large LAPACK call: nothing for BLAS threads to contend over).

    Called thousands of times per request on arrays of a few dozen rows, so written for few numpy
    calls: ``np.add.reduce(x) / m`` is what ``x.mean()`` computes, without its Python layers."""
    m = A.shape[0]
    a_mean, b_mean = _sum(A, axis=0) / m, float(_sum(b)) / m
    Ac, bc = A - a_mean, b - b_mean
    s2, V = _symmetric_eigh(Ac.T @ Ac)
    keep = s2 > 1e-12 * max(float(s2[-1]) if s2.size else 0.0, 1e-300)
    s2, V = s2[keep], V[:, keep]
    if s2.size == 0:
        return np.zeros(A.shape[1]), b_mean
    s = np.sqrt(s2)
    c = (V.T @ (Ac.T @ bc)) / s                                           # b on A's principal axes
    shrink = s2 / (s2 + (_ALPHAS * m)[:, None])                           # penalties x components
    outside = max(float(bc @ bc - c @ c), 0.0)                            # residual outside A's span
    resid = outside + _sum(((1.0 - shrink) * c) ** 2, axis=1)
    dof = (m - 1) - _sum(shrink, axis=1)
    if (dof > 0).all():   # (as a rule: the general form below gives the same numbers, with more calls)
        gcv = resid / dof ** 2
    else:
        gcv = np.where(dof > 0, resid / np.where(dof > 0, dof, 1.0) ** 2, np.inf)
    best = int(np.argmin(gcv)) if np.isfinite(gcv).any() else len(_ALPHAS) - 1
    coef = V @ (shrink[best] / s * c)
    return coef, b_mean - float(a_mean @ coef)


class NearestFeatureIterativeImputer(TransformerMixin, BaseEstimator):
    """Multivariate iterative imputation (chained equations) that scales with the number of columns.

    Every column with gaps is modelled from the other columns: a ridge regression (penalty chosen
    by generalised cross-validation) on its ``n_nearest_features`` nearest columns, the ones most
    correlated with it on the rows where both are observed (weighted by how many of its observed
    rows they share). Gaps start at the column mean; then, in rounds, the columns are re-fitted
    in order of increasing missingness on the current values of their neighbours, until the
    imputed values move by less than ``tol`` standard deviations of their columns (root mean
    square over the imputed cells), or ``max_iter`` rounds. Skewed non-negative columns are
    modelled in logs (``shape="log"``; ``"none"`` keeps every column as it is). Imputed values
    stay within the range the column takes where observed (widened on both sides by ``extrapolate``
    times that range, in the modelling scale: logs for logged columns); observed values are returned as given.

    Work: at most (columns with gaps) x ``max_iter`` regressions on at most ``n_nearest_features``
    inputs each, plus one pass of pairwise correlations; memory a few copies of the matrix.
    Deterministic: no random step (``random_state`` is accepted for the common imputer interface).
    """

    def __init__(self, n_nearest_features: int = 10, max_iter: int = 5, tol: float = 0.05,
                 min_overlap: int = 5, shape: str = "log", extrapolate: float = 0.0, random_state: int | None = 0):
        self.shape = shape
        self.extrapolate = extrapolate
        self.n_nearest_features = n_nearest_features
        self.max_iter = max_iter
        self.tol = tol
        self.min_overlap = min_overlap
        self.random_state = random_state

    # -- neighbours -----------------------------------------------------------------------------
    def _nearest(self, Z0: np.ndarray, observed: np.ndarray, targets: np.ndarray) -> list[np.ndarray]:
        """For each target column, the indices of its nearest columns (best first)."""
        O = observed.astype(np.float32)   # single precision: only the ranking of the scores is used
        Z0 = Z0.astype(np.float32)
        Z2 = Z0 * Z0
        count = observed.sum(axis=0)
        usable = count >= self.min_overlap
        k = max(0, int(self.n_nearest_features))
        out: list[np.ndarray] = []
        for start in range(0, targets.size, 256):   # blocks of target columns bound the memory
            t = targets[start:start + 256]
            Ot, Zt = O[:, t], Z0[:, t]
            n = Ot.T @ O
            with np.errstate(divide="ignore", invalid="ignore"):
                sx, sy = Zt.T @ O, Ot.T @ Z0
                cov = Zt.T @ Z0 - sx * sy / n
                vx = (Zt * Zt).T @ O - sx * sx / n
                vy = Ot.T @ Z2 - sy * sy / n
                r = cov / np.sqrt(vx * vy)
                score = np.abs(r) * np.sqrt(n / count[t][:, None])
            valid = (n >= self.min_overlap) & usable[None, :] & (vx > 1e-6) & (vy > 1e-6) & np.isfinite(score)
            valid[np.arange(t.size), t] = False
            score = np.where(valid, score, -1.0)
            kk = min(k, score.shape[1])
            if kk == 0:
                out.extend(np.empty(0, dtype=np.intp) for _ in t)
                continue
            top = (np.argpartition(-score, kk - 1, axis=1)[:, :kk] if kk < score.shape[1]
                   else np.broadcast_to(np.arange(kk), score.shape).copy())
            best = np.take_along_axis(score, top, axis=1)
            order = np.argsort(-best, axis=1, kind="stable")
            top, best = np.take_along_axis(top, order, axis=1), np.take_along_axis(best, order, axis=1)
            out.extend(row[b > 0] for row, b in zip(top, best))
        return out

    # -- fitting --------------------------------------------------------------------------------
    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def _reshape(self, X: np.ndarray) -> np.ndarray:
        if self.shape == "none" or not self.log_.any():
            return X
        X = X.copy()
        X[:, self.log_] = np.log(X[:, self.log_] + self.shift_[self.log_])
        return X

    def _unshape(self, X: np.ndarray) -> np.ndarray:
        if self.shape == "none" or not self.log_.any():
            return X
        X[:, self.log_] = np.exp(X[:, self.log_]) - self.shift_[self.log_]
        return X

    def _choose_shape(self, X: np.ndarray, missing: np.ndarray) -> None:
        """Skewed non-negative columns are modelled in logs (levels, counts, money: multiplicative)."""
        p = X.shape[1]
        self.log_ = np.zeros(p, dtype=bool)
        self.shift_ = np.zeros(p)
        if self.shape == "none" or p == 0:
            return
        count = (~missing).sum(axis=0)
        V = np.where(missing, 0.0, X)
        mean = V.sum(axis=0) / np.maximum(count, 1)
        D = np.where(missing, 0.0, X - mean)
        sd = np.sqrt((D * D).sum(axis=0) / np.maximum(count, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            skew = (D ** 3).sum(axis=0) / np.maximum(count, 1) / sd ** 3
        low = np.where(missing, np.inf, X).min(axis=0)
        self.log_ = (count >= 3) & (low >= 0) & (sd > 0) & (skew > 1.0)
        smallest_positive = np.where(missing | (X <= 0), np.inf, X).min(axis=0)
        self.shift_ = np.where(low > 0, 0.0, np.where(np.isfinite(smallest_positive), smallest_positive, 1.0))
        self.shift_ = np.where(self.log_, self.shift_, 0.0)

    def fit_transform(self, X, y=None):
        with one_blas_thread():
            return self._fit_transform(np.asarray(X, dtype=np.float64))

    def _fit_transform(self, X: np.ndarray) -> np.ndarray:
        original = X
        missing = np.isnan(X)
        self._choose_shape(X, missing)
        X = self._reshape(X)
        observed = ~missing
        count = observed.sum(axis=0)
        empty = count == 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # all-missing columns
            mean = np.where(empty, 0.0, np.nanmean(np.where(empty, 0.0, X), axis=0))
            sd = np.where(empty, 1.0, np.nanstd(np.where(empty, 0.0, X), axis=0))
            low = np.where(empty, 0.0, np.nanmin(np.where(empty, 0.0, X), axis=0))
            high = np.where(empty, 0.0, np.nanmax(np.where(empty, 0.0, X), axis=0))
        self.mean_ = mean
        self.scale_ = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        span = (high - low) * float(self.extrapolate)
        self.low_, self.high_ = self._standardise(low - span), self._standardise(high + span)
        Z = np.where(missing, 0.0, self._standardise(np.where(missing, 0.0, X)))   # gaps at the mean

        gaps = missing.sum(axis=0)
        targets = np.flatnonzero((gaps > 0) & (count >= 2))
        targets = targets[np.argsort(gaps[targets], kind="stable")]   # fewest gaps first
        nearest = self._nearest(Z, observed, targets) if targets.size else []
        models: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        self.n_iter_ = 0
        self.changes_ = []
        n_holes = max(int(missing[:, targets].sum()), 1)
        # each modelled column's cells, as flat indices into Z once (the same cells every round; taking them
        # flat costs a third of indexing rows x columns, in a loop of thousands of small steps)
        Z = np.ascontiguousarray(Z)
        cells = Z.reshape(-1)   # a view: writing it writes Z
        p = Z.shape[1]
        steps = []
        for j, inputs in zip(targets.tolist(), nearest):
            if inputs.size:
                rows, holes = np.flatnonzero(observed[:, j]) * p, np.flatnonzero(missing[:, j]) * p
                steps.append((j, inputs, rows[:, None] + inputs, rows + j, holes[:, None] + inputs, holes + j,
                              self.low_[j], self.high_[j]))
        for _ in range(max(1, int(self.max_iter))):
            moved = 0.0   # sum of squared moves of the imputed values, in standard deviations
            for j, inputs, fit_cells, fit_target, hole_cells, hole_target, low, high in steps:
                coef, intercept = _ridge_gcv(cells.take(fit_cells), cells.take(fit_target))
                new = np.minimum(np.maximum(cells.take(hole_cells) @ coef + intercept, low), high)   # np.clip's
                step = new - cells.take(hole_target)
                moved += float(_sum(step * step))
                cells[hole_target] = new
                models[j] = (inputs, coef, intercept)
            self.n_iter_ += 1
            change = float(np.sqrt(moved / n_holes))
            self.changes_.append(change)
            if change <= self.tol:
                break
        self.models_ = models
        self.order_ = np.asarray([j for j in targets.tolist() if j in models], dtype=np.intp)
        self.n_features_modelled_ = len(models)
        self.n_features_in_ = X.shape[1]
        out = np.where(missing, self._unshape(Z * self.scale_ + self.mean_), original)   # observed: as given
        out[:, empty] = np.nan   # nothing to fill them from (the caller decides)
        return out

    def transform(self, X):
        """Fill other rows with the fitted column models (mean first, then the same rounds)."""
        with one_blas_thread():
            return self._transform(np.asarray(X, dtype=np.float64))

    def _transform(self, X: np.ndarray) -> np.ndarray:
        original = X
        missing = np.isnan(X)
        X = self._reshape(np.where(missing, np.nan, np.maximum(X, np.where(self.log_, 0.0, -np.inf))))
        missing = np.isnan(X)
        Z = np.where(missing, 0.0, self._standardise(np.where(missing, 0.0, X)))
        order = [j for j in self.order_.tolist() if missing[:, j].any()]
        n_holes = max(int(sum(missing[:, j].sum() for j in order)), 1)
        for _ in range(max(1, int(self.max_iter))):
            moved = 0.0
            for j in order:
                inputs, coef, intercept = self.models_[j]
                holes = np.flatnonzero(missing[:, j])
                new = np.clip(Z[holes[:, None], inputs] @ coef + intercept, self.low_[j], self.high_[j])
                moved += float(np.sum((new - Z[holes, j]) ** 2))
                Z[holes, j] = new
            if np.sqrt(moved / n_holes) <= self.tol:
                break
        return np.where(missing, self._unshape(Z * self.scale_ + self.mean_), original)


def make_base_imputer(name: str, random_state: int = 0):
    """The old service's base imputers (the ``legacy`` method): KNN (5 neighbours, min-max scaled),
    column mean, or scikit-learn's iterative imputer with 10-tree extra trees and 100 nearest features."""
    if name == "KNNImputer":
        return ScaledKNNImputer(n_neighbors=5)
    if name == "SimpleImputer":
        return SimpleImputer(strategy="mean", keep_empty_features=True)
    if name == "IterativeImputer":
        return IterativeImputer(
            estimator=ExtraTreesRegressor(n_estimators=10, random_state=random_state),
            n_nearest_features=100, random_state=random_state, keep_empty_features=True)
    raise ValueError(f"unknown interpolator {name!r}; use one of {', '.join(INTERPOLATORS)}")


def imputation_terms(name: str, X: np.ndarray, rounds: int | None = None) -> dict[str, float]:
    """The size of imputing ``X`` with the default method's imputer ``name`` (a job of
    :mod:`models.twolvlimp.work`); ``rounds`` of the iterative imputer: at most ``max_iter``."""
    n, p = X.shape
    if name == "IterativeImputer":
        missing = np.isnan(X)
        gaps = missing.sum(axis=0)
        modelled = int(((gaps > 0) & (n - gaps >= 2)).sum())
        rounds = NearestFeatureIterativeImputer().max_iter if rounds is None else rounds
        return {"column_rounds": float(modelled * rounds), "pair_columns": float(n * modelled * p)}
    if name == "KNNImputer":
        return {"columns": float(p), "pair_columns": float(n * n * p)}
    return {"cells": float(n * p)}


def needs_imputation(X_fit: np.ndarray, X_apply: np.ndarray | None = None) -> bool:
    """Whether :func:`impute` has anything to fill (if not, it returns a copy at once)."""
    target = X_fit if X_apply is None else X_apply
    return X_fit.shape[1] > 0 and bool(np.isnan(X_fit).any() or np.isnan(target).any())


def impute(name: str, X_fit: np.ndarray, X_apply: np.ndarray | None = None, random_state: int = 0) -> np.ndarray:
    """Fit the base imputer on ``X_fit`` and fill ``X_apply`` (default: ``X_fit`` itself).

    The default method's imputers: KNN and mean as :func:`make_base_imputer`, iterative as
    :class:`NearestFeatureIterativeImputer`. A job of the request's work (``impute_<name>``, phase prepare).
    """
    X_fit = np.asarray(X_fit, dtype=np.float64)
    target = X_fit if X_apply is None else np.asarray(X_apply, dtype=np.float64)
    if not needs_imputation(X_fit, target):
        return target.copy()
    with job(f"impute_{name}", "prepare", **imputation_terms(name, X_fit)) as terms:
        if name == "IterativeImputer":
            model = NearestFeatureIterativeImputer(random_state=random_state)
            out = model.fit_transform(X_fit) if X_apply is None else model.fit(X_fit).transform(target)
            terms.update(imputation_terms(name, X_fit, rounds=model.n_iter_))
            return np.where(np.isnan(out), 0.0, out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = make_base_imputer(name, random_state).fit(X_fit)
            out = np.asarray(model.transform(target), dtype=np.float64)
    # A column with no value at all among the fitting rows cannot be filled from them.
    return np.where(np.isnan(out), 0.0, out)

"""The base imputers: the first level, which fills gaps in the predictor columns."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers IterativeImputer)
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

INTERPOLATORS = ("KNNImputer", "IterativeImputer", "SimpleImputer")


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
        self.knn_ = KNNImputer(n_neighbors=self.n_neighbors, keep_empty_features=True).fit(self._scale(X))
        return self

    def _scale(self, X):
        return (X - self.min_) / self.scale_

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        if not np.isnan(X).any():
            return X.copy()
        return self.knn_.transform(self._scale(X)) * self.scale_ + self.min_


def make_base_imputer(name: str, random_state: int = 0):
    """KNN (5 neighbours, min-max scaled), column mean, or iterative with extra trees (as the old service)."""
    if name == "KNNImputer":
        return ScaledKNNImputer(n_neighbors=5)
    if name == "SimpleImputer":
        return SimpleImputer(strategy="mean", keep_empty_features=True)
    if name == "IterativeImputer":
        return IterativeImputer(
            estimator=ExtraTreesRegressor(n_estimators=10, random_state=random_state),
            n_nearest_features=100, random_state=random_state, keep_empty_features=True)
    raise ValueError(f"unknown interpolator {name!r}; use one of {', '.join(INTERPOLATORS)}")


def impute(name: str, X_fit: np.ndarray, X_apply: np.ndarray | None = None, random_state: int = 0) -> np.ndarray:
    """Fit the base imputer on ``X_fit`` and fill ``X_apply`` (default: ``X_fit`` itself)."""
    X_fit = np.asarray(X_fit, dtype=np.float64)
    target = X_fit if X_apply is None else np.asarray(X_apply, dtype=np.float64)
    if X_fit.shape[1] == 0:
        return target.copy()
    if not np.isnan(X_fit).any() and not np.isnan(target).any():
        return target.copy()
    with warnings.catch_warnings():
        # IterativeImputer may stop at max_iter before its tolerance: the old service's settings, kept
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_base_imputer(name, random_state).fit(X_fit)
        out = np.asarray(model.transform(target), dtype=np.float64)
    # A column with no value at all among the fitting rows cannot be filled from them.
    return np.where(np.isnan(out), 0.0, out)

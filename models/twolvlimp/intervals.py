"""Prediction intervals calibrated on cross-validated (out-of-fold) predictions.

Both methods use the out-of-fold predictions that the depth search has already computed, so
calibration costs no extra model fit, and both weigh SIDS and non-SIDS rows equally (the same
inverse-frequency weights as the model), since the intervals are for SIDS.

* ``quantile``: conformalised quantile regression. The 5% and 95% quantiles of the single-tree
  predictions (or of two quantile-loss boosting models) give a locally adaptive band; the
  band is widened (or narrowed) by the conformal quantile of how far the true values fell
  outside their out-of-fold band.
* ``bootstrap``: residual bootstrap. The out-of-fold residuals are resampled (seeded, weighted)
  and the 5% / 95% residual quantiles, with the finite-sample conformal correction, are averaged
  over the resamples and added to the prediction: a band of the same width for every country.

The old service's uncalibrated versions live in :mod:`models.twolvlimp.legacy`.
"""
from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 500


def weighted_conformal_quantile(scores: np.ndarray, weights: np.ndarray, level: float, test_weight: float) -> float:
    """Weighted split-conformal quantile: the ``level`` quantile of the scores with a point mass at +inf
    carrying the test point's weight (Tibshirani et al., 2019). Falls back to the largest score."""
    scores = np.asarray(scores, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    cum = np.cumsum(weights[order]) / (weights.sum() + test_weight)
    idx = int(np.searchsorted(cum, level - 1e-12, side="left"))
    if idx >= scores.size:
        return float(scores[order][-1])
    return float(scores[order][idx])


def _contain(prediction: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.minimum(lower, prediction), np.maximum(upper, prediction)


def quantile_interval(y: np.ndarray, oof_low: np.ndarray, oof_high: np.ndarray, weights: np.ndarray,
                      prediction: np.ndarray, low: np.ndarray, high: np.ndarray, test_weight: float,
                      level: float = 0.9) -> tuple[np.ndarray, np.ndarray, dict]:
    """CQR: [low - q, high + q] with q the conformal quantile of max(low - y, y - high) out of fold."""
    scores = np.maximum(oof_low - y, y - oof_high)
    q = weighted_conformal_quantile(scores, weights, level, test_weight)
    lower, upper = _contain(prediction, low - q, high + q)
    return lower, upper, {"calibration": "conformalized quantile regression on out-of-fold predictions",
                          "adjustment": q}


def bootstrap_interval(residuals: np.ndarray, weights: np.ndarray, prediction: np.ndarray, seed: int,
                       level: float = 0.9, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[np.ndarray, np.ndarray, dict]:
    """prediction + [mean 5% residual quantile, mean 95% residual quantile] over weighted bootstrap resamples."""
    residuals = np.asarray(residuals, dtype=np.float64)
    n = residuals.size
    alpha = 1.0 - level
    rng = np.random.default_rng(seed)
    p = weights / weights.sum()
    draws = residuals[rng.choice(n, size=(resamples, n), replace=True, p=p)]
    draws.sort(axis=1)
    # Finite-sample (conformal) ranks: the ceil((n+1)(1-alpha/2))-th smallest, and symmetrically.
    hi_rank = min(n, math.ceil((n + 1) * (1 - alpha / 2))) - 1
    lo_rank = max(1, math.floor((n + 1) * (alpha / 2))) - 1
    lo = float(draws[:, lo_rank].mean())
    hi = float(draws[:, hi_rank].mean())
    lower, upper = _contain(prediction, prediction + lo, prediction + hi)
    return lower, upper, {"calibration": "weighted residual bootstrap of out-of-fold residuals",
                          "residual_low": lo, "residual_high": hi, "resamples": resamples}

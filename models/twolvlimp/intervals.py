"""Building blocks of the prediction intervals, calibrated on cross-validated (out-of-fold) predictions.

Both use the out-of-fold predictions the stack has already computed, so calibration costs no extra
model fit, and both can weigh SIDS and non-SIDS rows equally, since the intervals are for SIDS.

* :func:`weighted_conformal_quantile`: the finite-sample conformal quantile of out-of-fold scores;
  the ``quantile`` interval (normalised split-conformal, in :mod:`models.twolvlimp.stacking`) is
  built on it.
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

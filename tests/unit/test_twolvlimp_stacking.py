"""The default method's second level (models/twolvlimp/stacking.py) and AFS by inner CV, without HTTP."""
from __future__ import annotations

import numpy as np
import pytest

from models.twolvlimp.selection import afs_select, lars_select
from models.twolvlimp.stack import StackData, StackOptions, fit_stacked
from models.twolvlimp.stacking import LinearStage, ridge_loo, stack_folds


def stack_of(X, y, is_sids, Xp, model, n_estimators, interval, seed, linear=True, **data):
    """One stack on these matrices (:class:`StackData`'s optional fields as keywords)."""
    return fit_stacked(StackData(X, y, is_sids, Xp, **data), StackOptions(model, n_estimators, interval, seed,
                                                                          linear=linear))


def linear_problem(seed=0, n=200, shift=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    sids = rng.random(n) < 0.25
    X[sids, 0] += shift                      # SIDS unlike the other rows
    y = 3 * X[:, 0] - 2 * X[:, 1] + 0.3 * rng.normal(size=n)
    return X, y, sids


def test_ridge_loo_is_weighted_ridge():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    Z, w = rng.normal(size=(60, 4)), rng.uniform(0.5, 2, 60)
    y = Z @ [1.0, -2.0, 0.0, 0.5] + rng.normal(size=60)
    coef, intercept, alpha, _ = ridge_loo(Z, y, w, (0.1, 1.0, 10.0))
    ref = Ridge(alpha=alpha).fit(Z, y, sample_weight=w / w.mean())
    assert np.allclose(coef, ref.coef_) and np.isclose(intercept, ref.intercept_)


def test_linear_target_outside_the_training_range_is_extrapolated_not_collapsed():
    X, y, sids = linear_problem(shift=0.0)
    rng = np.random.default_rng(5)
    Xp = rng.normal(size=(40, 6))
    Xp[:, 0] += 2.5                          # rows to predict beyond most training rows
    truth = 3 * Xp[:, 0] - 2 * Xp[:, 1]
    stacked = stack_of(X, y, sids, Xp, "rfr", 30, "quantile", seed=7)
    trees = stack_of(X, y, sids, Xp, "rfr", 30, "quantile", seed=7, linear=False)
    err = lambda f: float(np.sqrt(np.mean((f.prediction - truth) ** 2)))  # noqa: E731
    assert stacked.params["stack"]["weight_ridge"] > 0.5
    assert err(stacked) < 0.5 * err(trees)
    assert np.std(stacked.prediction) / np.std(truth) > 0.9          # not collapsed toward the mean
    assert stacked.params["stack"]["weight_mean"] == 0


def test_the_mean_wins_only_when_nothing_generalises():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 5))
    y = rng.normal(size=150)                 # no relation at all
    fit = stack_of(X, y, rng.random(150) < 0.3, X[:10], "rfr", 30, "quantile", seed=7)
    assert fit.params["stack"]["weight_mean"] >= 0.5


def test_imputed_predictors_are_left_out_of_the_ridge_for_that_row():
    X, y, sids = linear_problem()
    Xp = np.array([[1.0, 0.5, 0, 0, 0, 0], [1.0, 0.5, 0, 0, 0, 0]])
    Xp_other = Xp.copy()
    Xp_other[:, 1] = 40.0                    # a wild imputed value in column 1
    missing = np.zeros((len(y), 6), bool)
    missing_pred = np.zeros((2, 6), bool)
    missing_pred[:, 1] = True
    a = stack_of(X, y, sids, Xp, "rfr", 20, "quantile", seed=7, linear=True, missing=missing,
                    missing_pred=missing_pred)
    b = stack_of(X, y, sids, Xp_other, "rfr", 20, "quantile", seed=7, linear=True, missing=missing,
                    missing_pred=missing_pred)
    w = a.params["stack"]["weight_ridge"]
    assert w == 1.0                          # a linear target: ridge alone
    assert np.allclose(a.prediction, b.prediction)


@pytest.mark.parametrize("interval", ["quantile", "bootstrap"])
def test_conformal_intervals_cover_new_sids_rows(interval):
    rng = np.random.default_rng(3)
    n = 400
    X = rng.normal(size=(n, 4))
    sids = rng.random(n) < 0.3
    noise = np.where(X[:, 2] > 0, 1.5, 0.3)  # heteroscedastic
    y = 2 * X[:, 0] + np.sin(2 * X[:, 1]) + noise * rng.normal(size=n)
    Xt = rng.normal(size=(3000, 4))
    yt = 2 * Xt[:, 0] + np.sin(2 * Xt[:, 1]) + np.where(Xt[:, 2] > 0, 1.5, 0.3) * rng.normal(size=3000)
    fit = stack_of(X, y, sids, Xt, "rfr", 40, interval, seed=7)
    coverage = float(np.mean((yt >= fit.lower) & (yt <= fit.upper)))
    assert 0.85 <= coverage <= 0.97, coverage
    assert np.all(fit.lower <= fit.prediction) and np.all(fit.prediction <= fit.upper)
    assert fit.interval_info["calibrated_on"].startswith("the SIDS rows")


def test_lars_selection_finds_linear_features_and_skips_duplicates():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 30))
    X[:, 7] = X[:, 3]                        # an exact duplicate
    y = 2 * X[:, 3] - 1.5 * X[:, 11] + X[:, 20] + 0.2 * rng.normal(size=120)
    chosen = set(lars_select(X, y, 3).tolist())
    assert {11, 20} <= chosen and len(chosen & {3, 7}) == 1
    cols, info = afs_select(X, y, 3, np.ones(120), random_state=7)
    assert {11, 20} <= set(cols.tolist()) and len(set(cols.tolist()) & {3, 7}) == 1
    assert info["chosen"]


def test_skewed_columns_are_log_transformed():
    rng = np.random.default_rng(6)
    X = np.column_stack([np.exp(2 * rng.normal(size=200)), rng.normal(size=200)])
    stage = LinearStage().fit(X, np.log(X[:, 0]) + X[:, 1], np.ones(200))
    assert stage.log_.tolist() == [True, False]


def test_ridge_on_candidates_screens_the_few_relevant_ones_among_many():
    # few rows (as on SIDS-only data), hundreds of candidates, the target linear in one column that the
    # selected predictors miss: the screened ridge keeps few candidates and carries the stack
    rng = np.random.default_rng(8)
    n, p = 45, 400
    X_all = rng.normal(size=(n + 10, p))
    y_all = 2 * X_all[:, 7] + 0.1 * rng.normal(size=n + 10)
    X = X_all[:, 100:104]                    # selected predictors without the relevant column
    fit = stack_of(X[:n], y_all[:n], np.ones(n, bool), X[n:], "rfr", 30, "quantile", seed=7,
                      X_all=X_all[:n], Xp_all=X_all[n:])
    stack = fit.params["stack"]
    assert max(stack["ridge_all_candidates"]["count_by_fold"]) <= 20
    assert stack["weight_ridge_all_candidates"] >= 0.8
    assert np.sqrt(np.mean((fit.prediction - y_all[n:]) ** 2)) < 0.3 * np.std(y_all)


def test_chained_linear_member_fills_the_predictors_a_row_lacks_from_the_others():
    # the target is linear in a candidate that is missing for many rows and correlated with two others:
    # the chained linear member (unimputed candidates, chained equations over every row) recovers
    # it, is reported in the stack, stays finite and within a bounded range; every step is deterministic
    rng = np.random.default_rng(9)
    n, m, p = 60, 12, 40
    R = rng.normal(size=(n + m + 20, p))
    R[:, 1] = R[:, 0] + 0.5 * rng.normal(size=R.shape[0])
    R[:, 2] = R[:, 0] + 0.5 * rng.normal(size=R.shape[0])
    y_all = 3 * R[:, 0] + 0.1 * rng.normal(size=R.shape[0])
    raw = R.copy()
    raw[rng.random(R.shape[0]) < 0.4, 0] = np.nan          # the relevant candidate has gaps
    imputed = np.where(np.isnan(raw), 0.0, raw)              # a poor base imputer: the column mean
    X = imputed[:, 20:24]                                    # selected predictors without the relevant columns
    args = (X[:n], y_all[:n], np.ones(n, bool), X[n:n + m], "rfr", 20, "quantile")
    kw = dict(seed=7, X_all=imputed[:n], Xp_all=imputed[n:n + m], R_all=raw[:n], Rp_all=raw[n:n + m],
              R_other=raw[n + m:])
    fit = stack_of(*args, **kw)
    again = stack_of(*args, **kw)
    stack = fit.params["stack"]
    assert stack["weight_chained_linear"] >= 0.5
    assert stack["cv_rmse"]["chained_linear"] < stack["cv_rmse"]["ridge_all_candidates"]
    assert stack["chained_linear"]["columns_by_fold"] == [30] * 5
    assert np.all(np.isfinite(fit.prediction))
    assert np.sqrt(np.mean((fit.prediction - y_all[n:n + m]) ** 2)) < 0.3 * np.std(y_all)
    assert np.array_equal(fit.prediction, again.prediction)
    # without the unimputed candidates the member is absent and reported as such
    plain = stack_of(*args, seed=7, X_all=imputed[:n], Xp_all=imputed[n:n + m])
    assert plain.params["stack"]["weight_chained_linear"] == 0 and plain.params["stack"]["chained_linear"] is None


def test_predictors_chosen_on_every_row_are_chosen_again_in_each_fold_for_the_out_of_fold_error():
    """Ten of 300 noise candidates, chosen on 40 rows, fit those rows by chance: out of fold on the same
    predictors they look useful. With AFS redone on each fold's training rows the stack sees that nothing
    predicts, and its intervals cover new rows."""
    rng = np.random.default_rng(5)
    n, p = 40, 300
    Z, y = rng.normal(size=(n, p)), rng.normal(size=n)
    Zp, yp = rng.normal(size=(500, p)), rng.normal(size=500)
    sids, w = np.ones(n, bool), np.ones(n)
    chosen = afs_select(Z, y, 10, w, random_state=7)[0]
    in_folds = [afs_select(Z[tr], y[tr], 10, w[tr], random_state=7)[0] for tr, _ in stack_folds(n, 7)]

    def fit(fold_columns):
        return stack_of(Z[:, chosen], y, sids, Zp[:, chosen], "rfr", 30, "quantile", seed=7, X_all=Z, Xp_all=Zp,
                           R_all=Z, Rp_all=Zp, fold_columns=fold_columns)

    flattered, honest = fit(None), fit(in_folds)
    cv = lambda f: f.params["stack"]["cv_rmse"]                  # noqa: E731
    assert cv(flattered)["ridge"] < 0.9 * cv(flattered)["mean"]  # the chosen predictors look useful...
    assert cv(honest)["ridge"] > 0.95 * cv(honest)["mean"]       # ...chosen without the held-out rows, they are not
    assert cv(honest)["trees"] > 0.95 * cv(honest)["mean"]
    coverage = lambda f: float(np.mean((yp >= f.lower) & (yp <= f.upper)))   # noqa: E731
    assert coverage(honest) >= 0.85 > coverage(flattered) + 0.05, (coverage(honest), coverage(flattered))
    assert np.allclose(honest.prediction, stack_of(
        Z[:, chosen], y, sids, Zp[:, chosen], "rfr", 30, "quantile", seed=7, X_all=Z, Xp_all=Zp, R_all=Z, Rp_all=Zp,
        fold_columns=in_folds).prediction)                       # seeded: the same again


def _rows_lacking_their_best_predictor(seed=3, n=200, m=120):
    """y = 3 x0 - x1 + noise; the rows to predict lack x0 (the data has no value, the base imputer filled
    the column mean), the training rows have it: what a SIDS that did not report the target's relative sees."""
    from models.twolvlimp.stacking import Masking

    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n + m, 5))
    y_all = 3 * raw[:, 0] - raw[:, 1] + 0.3 * rng.normal(size=n + m)
    raw[n:, 0] = np.nan
    filled = np.where(np.isnan(raw), np.nanmean(raw, axis=0), raw)
    masking = Masking(raw=raw, filled=filled, train_rows=np.arange(n), pred_rows=np.arange(n, n + m),
                      selected=np.arange(5), interpolator="SimpleImputer")
    return filled, y_all, n, np.isnan(raw), masking


@pytest.mark.parametrize("interval", ["quantile", "bootstrap"])
def test_intervals_hold_for_rows_lacking_the_inputs_the_calibration_rows_had(interval):
    """Nested calibration per pattern (CP-MDA): calibrated on held-out rows that have x0, the 90% intervals of
    rows lacking it cover far less than 90%; calibrated on held-out rows masked to lack it, they cover."""
    X, y_all, n, gaps, masking = _rows_lacking_their_best_predictor()
    args = (X[:n], y_all[:n], np.zeros(n, bool), X[n:], "rfr", 30, interval)
    kw = dict(seed=7, missing=gaps[:n], missing_pred=gaps[n:])
    truth = y_all[n:]
    plain = stack_of(*args, **kw)
    masked = stack_of(*args, **kw, masking=masking)
    cover = lambda f: float(np.mean((truth >= f.lower) & (truth <= f.upper)))  # noqa: E731
    assert cover(plain) < 0.6
    assert 0.85 <= cover(masked) <= 0.97
    assert masked.interval_info["patterns"][0]["rows"] == truth.size
    # and no wider than needed: close to the width the true error of a model without x0 calls for
    sd_without_x0 = np.sqrt(9 + 0.09)
    assert np.mean(masked.upper - masked.lower) < 2 * 1.645 * sd_without_x0 * 1.25


def test_linear_stage_tests_every_column_at_once_as_one_by_one():
    """LinearStage.fit logs the columns the per-column rule calls skewed (non-negative, skewness > SKEW_LOG) with
    the offset a tenth of the smallest positive value (1 without one), computed for every column at once."""
    from models.twolvlimp.stacking import SKEW_LOG, LinearStage, _skewed

    rng = np.random.default_rng(5)
    n, p = 60, 12
    X = np.exp(rng.normal(size=(n, p)) * np.linspace(0.1, 2.5, p))   # from symmetric to strongly skewed
    X[:, 0] = X[:, -1]
    X[0, 0] = -1e-3           # as skewed as the last column, but one value is negative: never logged
    X[:, 1] = 4.0             # constant: never logged
    X[:, 2] = 0.0
    X[:3, 2] = (100.0, 250.0, 400.0)   # zeros and a long tail: skewed, offset a tenth of 100
    X[:, 3] = 0.0             # all zero: not skewed, offset 1 if it were
    stage = LinearStage().fit(X, rng.normal(size=n), np.ones(n))
    one_by_one = np.array([_skewed(X[:, k]) for k in range(p)])
    assert np.array_equal(stage.log_, one_by_one)
    assert stage.log_.sum() >= 3 and not stage.log_[[0, 1, 3]].any() and stage.log_[2] and stage.offset_[2] == 10.0
    for k in np.flatnonzero(stage.log_):
        assert stage.offset_[k] == X[X[:, k] > 0, k].min() / 10
    assert (stage.offset_[~stage.log_] == 0).all()
    assert not LinearStage(log=False).fit(X, rng.normal(size=n), np.ones(n)).log_.any()
    assert SKEW_LOG > 0


def test_rows_lacking_the_targets_relative_get_the_screened_ridge_on_a_substitute():
    """y = 3 x0 - x1; x6 (not selected) is x0 plus a little noise; the rows to predict lack x0. Per pattern, the
    screened ridge ranked among the candidates those rows have puts x6 in x0's place: far better predictions
    than reading x0's imputed value, and the pattern's weights lean on it."""
    from models.twolvlimp.members import MEMBERS, ScreenedRidgeMember
    from models.twolvlimp.stacking import Masking

    rng = np.random.default_rng(11)
    n, m = 200, 120
    raw = rng.normal(size=(n + m, 8))
    raw[:, 6] = raw[:, 0] + 0.2 * rng.normal(size=n + m)
    y_all = 3 * raw[:, 0] - raw[:, 1] + 0.3 * rng.normal(size=n + m)
    raw[n:, 0] = np.nan
    Z = np.where(np.isnan(raw), np.nanmean(raw, axis=0), raw)
    selected = np.arange(5)
    masking = Masking(raw=raw, filled=Z, train_rows=np.arange(n), pred_rows=np.arange(n, n + m),
                      selected=selected, interpolator="SimpleImputer")
    data = StackData(Z[:n, selected], y_all[:n], np.zeros(n, bool), Z[n:, selected],
                     missing=np.isnan(raw[:n, selected]), missing_pred=np.isnan(raw[n:, selected]),
                     X_all=Z[:n], Xp_all=Z[n:], masking=masking)
    truth = y_all[n:]

    def rmse(per_pattern: bool):
        members = tuple(ScreenedRidgeMember(per_pattern) if isinstance(mb, ScreenedRidgeMember) else mb
                        for mb in MEMBERS)
        fit = fit_stacked(data, StackOptions("rfr", 30, "quantile", 7), members=members)
        return float(np.sqrt(np.mean((fit.prediction - truth) ** 2))), fit

    without, _ = rmse(False)
    with_substitute, fit = rmse(True)
    assert with_substitute < 0.5 * without
    pattern = fit.interval_info["patterns"][0]
    assert pattern["members_fitted_again"] == ["ridge_all_candidates"]
    assert pattern["weights"][3] > 0.5   # the screened ridge carries the pattern
    covered = float(np.mean((truth >= fit.lower) & (truth <= fit.upper)))
    assert 0.85 <= covered <= 0.98

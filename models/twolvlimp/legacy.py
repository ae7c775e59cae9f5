"""``method: "legacy"``: the old service's method, for comparison.

Same steps as the old code, with scikit-learn's own estimators and ``GridSearchCV``, except for
its defects (which are bugs, not method): every random step is seeded (7), ``interval:
bootstrap`` really bootstraps, MANUAL predictors that are too sparse among the training rows
are imputed instead of crashing, and the response is built by the same code as the default.
It ignores the target's other years, and its intervals are uncalibrated: the 5-95% spread of
the single trees (or two quantile-loss boosting models), or the mean 5%/95% quantiles of 100
bootstrap draws of 3-fold residuals.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.feature_selection import RFE
from sklearn.model_selection import GridSearchCV, cross_val_predict
from sklearn.pipeline import Pipeline

from models.twolvlimp.lookups import PREDICTOR_MISSING_MAX, SEED, ResolvedRequest
from models.twolvlimp.tree_search import ESTIMATOR_NAMES, FitContext
from models.twolvlimp.imputers import make_base_imputer
from models.twolvlimp.method import absent_sids
from models.twolvlimp.result import ImputationResult, Submodel, correlation_split
from models.twolvlimp.selection import pca_select
from models.twolvlimp.work import Job, WorkPlan, job, nlog, tree_terms
from shared.dataset import Dataset

LEVEL = 0.9


def _impute(name: str, train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    # writable copies: the dataset's values are read-only, and scikit-learn's IterativeImputer writes into its input
    model = make_base_imputer(name, random_state=0).fit(np.array(train.to_numpy(), dtype=float))
    fill = lambda frame: pd.DataFrame(
        np.nan_to_num(np.asarray(model.transform(np.array(frame.to_numpy(), dtype=float)), dtype=float)),
        index=frame.index, columns=frame.columns)
    return fill(train), fill(test)


def _grid(model: str, n_estimators: int, interval: str) -> list[dict]:
    kinds = ["rfr", "etr", "gbr"] if model == "all" else [model]
    grid = []
    for kind in kinds:
        if kind == "rfr":
            grid.append({"regressor": [RandomForestRegressor(random_state=SEED)],
                         "regressor__n_estimators": [n_estimators], "regressor__max_depth": [5, 10, 20, 100, None]})
        elif kind == "etr":
            grid.append({"regressor": [ExtraTreesRegressor(random_state=SEED)],
                         "regressor__n_estimators": [n_estimators], "regressor__max_depth": [5, 10, 20, 100, None]})
        else:
            entry = {"regressor": [GradientBoostingRegressor(random_state=SEED)],
                     "regressor__n_estimators": [n_estimators], "regressor__max_depth": [3, 5, 10, 20, None]}
            if interval == "quantile":  # the old service trained the median, not the mean, in this case
                entry.update({"regressor__loss": ["quantile"], "regressor__alpha": [0.5]})
            grid.append(entry)
    return grid


# ----------------------------------------------------------------------------- the work it needs
GRID_FITS = 5 * 5 + 1      # GridSearchCV: 5 depths x 5 folds, and the refit
RFE_FOREST_TREES = 100     # scikit-learn's default forest in the old RFE


def _imputation_terms(name: str, X_fit: np.ndarray, n_apply: int) -> dict[str, float]:
    n, p = X_fit.shape
    if name == "KNNImputer":
        return {"columns": float(p), "pair_columns": float(n * (n + n_apply) * p)}
    if name == "IterativeImputer":   # scikit-learn's: each column with gaps, 10 rounds, 10-tree extra trees
        gaps = int(np.isnan(X_fit).any(axis=0).sum())
        return {"column_rounds": 10.0 * gaps, **tree_terms(10 * 10 * gaps, n, min(100, max(p - 1, 1)))}
    return {"cells": float((n + n_apply) * p)}


def _rfe_terms(n: int, p: int, k: int) -> dict[str, float]:
    terms: dict[str, float] = {}
    while p > k:   # step k: k features dropped per round, each round a 100-tree forest
        for term, value in tree_terms(RFE_FOREST_TREES, n, p).items():
            terms[term] = terms.get(term, 0.0) + value
        p = max(k, p - k)
    return terms


def _grid_terms(model: str, n_estimators: int, n: int, p: int) -> dict[str, float]:
    kinds = ["rfr", "etr", "gbr"] if model == "all" else [model]
    terms: dict[str, float] = {}
    for kind in kinds:
        sizes = {f"{kind}_tree_cells": GRID_FITS * n_estimators * nlog(n) * max(p, 1),
                 f"{kind}_trees": float(GRID_FITS * n_estimators)}
        terms.update(sizes)
    return terms


def plan_legacy(ds: Dataset, r: ResolvedRequest) -> WorkPlan:
    """The jobs :func:`run_legacy` will run (one phase: the old method memoises nothing)."""
    frame_cols = ds.year_matrix(r.year)
    j = int(ds.indicators.get_loc(r.target))
    train = ~np.isnan(frame_cols[:, j])
    n_test = int((np.asarray(ds.sids_mask, bool) & ~train).sum())
    X = np.delete(frame_cols[train], j, axis=1)
    complete = np.isnan(X).mean(axis=0) < PREDICTOR_MISSING_MAX
    others = [c for c in ds.indicators if c != r.target]
    extra = [c for c in r.manual_predictors if not complete[others.index(c)]]
    X_fit = np.column_stack([X[:, complete]] + [X[:, [others.index(c)]] for c in extra])
    n, p = X_fit.shape
    jobs = [Job(f"legacy_impute_{r.interpolator}", _imputation_terms(r.interpolator, X_fit, n_test))]
    if r.scheme == "AFS":
        jobs.append(Job("legacy_rfe", _rfe_terms(n, p, r.number_predictor)))
    k = len(r.manual_predictors) if r.scheme == "MANUAL" else min(r.number_predictor, p)
    jobs.append(Job("legacy_grid", _grid_terms(r.model, r.estimators, n, k)))
    kinds = ("rfr", "etr", "gbr") if r.model == "all" else (r.model,)
    return WorkPlan(tuple(jobs), group=f"legacy/{'+'.join(kinds)}")


def run_legacy(ds: Dataset, r: ResolvedRequest, ctx: FitContext = FitContext()) -> ImputationResult:
    """The old service's method; ``ctx.check`` (the request's budget: deadline, client gone) between its long steps."""
    frame = ds.year_frame(r.year)
    sids = pd.Index(sorted(ds.sids))
    target = frame[r.target]
    X_train = frame[target.notna()].drop(columns=[r.target])
    X_test = frame[target.isna() & frame.index.isin(sids)].drop(columns=[r.target])
    y_train = target[target.notna()]

    share = X_train.isna().mean()
    rank = pd.DataFrame({"column_name": X_train.columns, "percent_missing": share.to_numpy() * 100})
    rank = rank.sort_values(["percent_missing", "column_name"])
    complete = list(rank[rank.percent_missing < PREDICTOR_MISSING_MAX * 100]["column_name"])
    extra = [c for c in r.manual_predictors if c not in complete]
    with job(f"legacy_impute_{r.interpolator}",
             **_imputation_terms(r.interpolator, X_train[complete + extra].to_numpy(), len(X_test))):
        X_train, X_test = _impute(r.interpolator, X_train[complete + extra], X_test[complete + extra])
    ctx.check("legacy selection")

    if r.scheme == "AFS":
        k = r.number_predictor
        selector = RFE(RandomForestRegressor(random_state=SEED), n_features_to_select=k, step=k)
        with job("legacy_rfe", **_rfe_terms(*X_train.shape, k)):
            features = list(X_train.columns[selector.fit(X_train, y_train).support_])
    elif r.scheme == "PCA":
        cols = list(X_train[complete].columns)
        features = [cols[i] for i in pca_select(X_train[complete].to_numpy(), r.number_predictor, standardize=False)]
    else:
        features = list(r.manual_predictors)
    X_train, X_test = X_train[features], X_test[features]

    is_sids = X_train.index.isin(sids)
    n_sids, total = int(is_sids.sum()), len(X_train)
    weights = np.where(is_sids, 1.0 / max(n_sids, 1), 1.0 / max(total - n_sids, 1))
    grid = _grid(r.model, r.estimators, r.interval)
    pipeline = Pipeline([("regressor", grid[0]["regressor"][0])])
    gs = GridSearchCV(pipeline, grid, cv=5, scoring="neg_mean_squared_error", refit=True, n_jobs=1)
    ctx.check("legacy grid search")
    with job("legacy_grid", **_grid_terms(r.model, r.estimators, *X_train.shape)):
        gs.fit(X_train, y_train, regressor__sample_weight=weights)
    rmse = float(np.sqrt(-gs.best_score_))
    best = gs.best_estimator_["regressor"]
    prediction = gs.predict(X_test)
    ctx.check("legacy intervals")

    if r.interval == "bootstrap":
        residuals = (y_train - cross_val_predict(best, X_train, y_train, cv=3)).to_numpy()
        rng = np.random.RandomState(SEED)
        draws = np.asarray([rng.choice(residuals, size=residuals.shape) for _ in range(100)])
        q = np.quantile(draws, q=[0.05, 0.95], axis=0)
        lower, upper = prediction + q[0].mean(), prediction + q[1].mean()
        info = {"calibration": "none (legacy): mean 5%/95% quantiles of 100 bootstrap draws of 3-fold residuals"}
    elif isinstance(best, GradientBoostingRegressor):
        bounds = {}
        for alpha in (0.05, 0.95):
            gbr = GradientBoostingRegressor(loss="quantile", alpha=alpha, max_depth=gs.best_params_["regressor__max_depth"],
                                            n_estimators=r.estimators, random_state=SEED)
            bounds[alpha] = gbr.fit(X_train, y_train).predict(X_test)
        lower, upper = bounds[0.05], bounds[0.95]
        info = {"calibration": "none (legacy): quantile-loss gradient boosting at 5% and 95%"}
    else:
        per_tree = np.stack([tree.predict(X_test.to_numpy()) for tree in best.estimators_]) if len(X_test) else \
            np.zeros((len(best.estimators_), 0))
        lower, upper = np.quantile(per_tree, 0.05, axis=0), np.quantile(per_tree, 0.95, axis=0)
        info = {"calibration": "none (legacy): 5%-95% spread of the single-tree predictions"}

    kind = {RandomForestRegressor: "rfr", ExtraTreesRegressor: "etr", GradientBoostingRegressor: "gbr"}[type(best)]
    params = {"estimator": ESTIMATOR_NAMES[kind], "n_estimators": r.estimators,
              "max_depth": gs.best_params_["regressor__max_depth"], "random_state": SEED}
    if kind == "gbr":
        params["loss"] = best.loss
    scores = {}
    for params_i, score in zip(gs.cv_results_["params"], gs.cv_results_["mean_test_score"]):
        name = {RandomForestRegressor: "rfr", ExtraTreesRegressor: "etr",
                GradientBoostingRegressor: "gbr"}[type(params_i["regressor"])]
        scores[name] = min(scores.get(name, np.inf), float(np.sqrt(-score)))
    by_depth = {str(p["regressor__max_depth"]): float(np.sqrt(-s))
                for p, s in zip(gs.cv_results_["params"], gs.cv_results_["mean_test_score"])
                if type(p["regressor"]) is type(best)}
    column = frame[r.target]
    known = [c for c in sids if c in column.index and pd.notna(column[c])]
    submodel = Submodel(
        role="legacy", countries=list(X_test.index), feature_names=features,
        importances=[float(v) for v in best.feature_importances_], kind=kind, params=params, rmse=rmse,
        rmse_weighted=None, rmse_sids=None, n_train=total, n_train_sids=n_sids, cv_rmse_by_depth=by_depth,
        candidates=scores, interval_info=info, y_mean=float(y_train.mean()), y_min=float(y_train.min()),
        y_max=float(y_train.max()))
    return ImputationResult(
        target=r.target, year=r.year, dataset=r.dataset, method="legacy", interval=r.interval, level=LEVEL,
        interpolator=r.interpolator, scheme=r.scheme, predictors=features, countries=[str(c) for c in X_test.index],
        prediction=np.asarray(prediction, dtype=float), lower=np.asarray(lower, dtype=float),
        upper=np.asarray(upper, dtype=float), observed={c: float(column[c]) for c in known},
        correlation=correlation_split(X_train.to_numpy(), features), submodels=[submodel], primary=0,
        notes=list(r.notes), not_predicted=absent_sids(ds), seed=SEED)

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

from models.twolvlimp.data import PREDICTOR_MISSING_MAX, SEED, ResolvedRequest
from models.twolvlimp.engine import ESTIMATOR_NAMES
from models.twolvlimp.imputers import make_base_imputer
from models.twolvlimp.method import absent_sids
from models.twolvlimp.result import ImputationResult, Submodel, correlation_split
from models.twolvlimp.selection import pca_select
from shared.capacity import checkpoint
from shared.dataset import Dataset

LEVEL = 0.9


def _impute(name: str, train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    model = make_base_imputer(name, random_state=0).fit(train.to_numpy())
    fill = lambda frame: pd.DataFrame(np.nan_to_num(np.asarray(model.transform(frame.to_numpy()), dtype=float)),
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


def run_legacy(ds: Dataset, r: ResolvedRequest) -> ImputationResult:
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
    X_train, X_test = _impute(r.interpolator, X_train[complete + extra], X_test[complete + extra])
    checkpoint("legacy selection")  # the request's budget (deadline, client gone), between the long steps

    if r.scheme == "AFS":
        k = r.number_predictor
        selector = RFE(RandomForestRegressor(random_state=SEED), n_features_to_select=k, step=k)
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
    checkpoint("legacy grid search")
    gs.fit(X_train, y_train, regressor__sample_weight=weights)
    rmse = float(np.sqrt(-gs.best_score_))
    best = gs.best_estimator_["regressor"]
    prediction = gs.predict(X_test)
    checkpoint("legacy intervals")

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

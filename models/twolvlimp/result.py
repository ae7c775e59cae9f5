"""The outcome of one imputation, and its JSON form (the dashboard's ModelResponse plus diagnostics)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.dataset import Dataset

OWN_SERIES_CATEGORY = "Own series of the target"


@dataclass
class Submodel:
    role: str                      # "own_series" | "cross_section" | "legacy"
    countries: list[str]
    feature_names: list[str]
    importances: list[float]
    kind: str
    params: dict
    rmse: float
    rmse_weighted: float | None
    rmse_sids: float | None
    n_train: int
    n_train_sids: int
    cv_rmse_by_depth: dict
    candidates: dict
    interval_info: dict
    y_mean: float
    y_min: float
    y_max: float


@dataclass
class ImputationResult:
    target: str
    year: int
    dataset: str
    method: str
    interval: str
    level: float
    interpolator: str
    scheme: str
    predictors: list[str]                 # selected predictor codes, in model order
    countries: list[str]                  # predicted SIDS
    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    observed: dict[str, float]            # SIDS with a value that year
    correlation: dict
    submodels: list[Submodel]
    primary: int = 0
    notes: list[str] = field(default_factory=list)
    not_predicted: list[dict] = field(default_factory=list)
    seed: int = 7
    timings: dict = field(default_factory=dict)
    value_range: tuple | None = None


def clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def correlation_split(X: np.ndarray, codes: list[str]) -> dict:
    """pandas ``split`` layout of the correlation matrix; an undefined correlation (constant column) is 0."""
    if X.shape[1] == 0:
        return {"index": [], "columns": [], "data": []}
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(X, rowvar=False) if X.shape[1] > 1 else np.ones((1, 1))
    corr = np.atleast_2d(np.nan_to_num(corr, nan=0.0))
    np.fill_diagonal(corr, 1.0)
    return {"index": list(codes), "columns": list(codes), "data": corr.tolist()}


def rmse_deviation(rmse: float, mean: float, lo: float, hi: float) -> float:
    """RMSE / mean of the target, or / its range when that ratio is outside [0, 1] (as the old service)."""
    ratio = rmse / mean if mean != 0 else math.inf
    if not (0 <= ratio <= 1):
        span = hi - lo
        ratio = rmse / span if span > 0 else 0.0
    return float(ratio)


def _meta(ds: Dataset, code: str, column: str) -> str:
    if code in ds.indicator_meta.index:
        value = ds.indicator_meta.at[code, column]
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return ""


def to_response(result: ImputationResult, ds: Dataset) -> dict:
    """The response body: every field the dashboard reads (both layouts) plus what a data scientist needs."""
    main = result.submodels[result.primary]
    year = str(result.year)
    names = list(main.feature_names)
    importances = [float(v) for v in main.importances]
    categories: dict[str, float] = {}
    for name, imp in zip(names, importances):
        cat = _meta(ds, name, "Category") or OWN_SERIES_CATEGORY
        categories[cat] = categories.get(cat, 0.0) + imp
    rmse_dev = rmse_deviation(main.rmse, main.y_mean, main.y_min, main.y_max)

    pred = {c: float(v) for c, v in zip(result.countries, result.prediction)}
    lower = {c: float(v) for c, v in zip(result.countries, result.lower)}
    upper = {c: float(v) for c, v in zip(result.countries, result.upper)}
    data = dict(result.observed)
    data.update(pred)
    data = {c: data[c] for c in sorted(data)}

    predictors = [{"code": c, "name": _meta(ds, c, "Indicator"), "dimension": _meta(ds, c, "Dimension"),
                   "category": _meta(ds, c, "Category")} for c in result.predictors]
    submodels = []
    for i, sm in enumerate(result.submodels):
        submodels.append({
            "role": sm.role, "primary": i == result.primary, "countries": sm.countries,
            "model": sm.kind, "params": sm.params, "rmse": sm.rmse, "rmse_sids": sm.rmse_sids,
            "rmse_weighted": sm.rmse_weighted,
            "rmse_deviation": rmse_deviation(sm.rmse, sm.y_mean, sm.y_min, sm.y_max),
            "n_train": sm.n_train, "n_train_sids": sm.n_train_sids, "feature_names": sm.feature_names,
            "feature_importance": sm.importances, "cv_rmse_by_depth": sm.cv_rmse_by_depth,
            "cv_rmse_by_model": sm.candidates, "interval": sm.interval_info,
        })

    body = {
        # -- what the dashboard reads ------------------------------------------------------
        "rmse": main.rmse,
        "rmse_deviation": rmse_dev,
        "model_feature_names": names,
        "model_feature_importance": importances,
        "feature_importance_pie": {"category": list(categories), "value": list(categories.values())},
        "correlation": result.correlation,
        "prediction": {"Country Code": list(result.countries), "prediction": result.prediction,
                       "lower": result.lower, "upper": result.upper},
        "indicatorJson": {
            "data": {year: data},
            "upperIntervals": {year: upper},
            "lowerIntervals": {year: lower},
            "featureImportances": {year: dict(zip(names, importances))},
            "categoryImportances": {year: categories},
            "correlation": {year: result.correlation},
            "rmse": {year: main.rmse},
            "rmse_deviation": {year: rmse_dev},
            "imputed": {year: list(result.countries)},
        },
        # -- diagnostics ---------------------------------------------------------------------
        "sample_size": main.n_train,
        "target": {"code": result.target, "name": _meta(ds, result.target, "Indicator"),
                   "dimension": _meta(ds, result.target, "Dimension"), "dataset": result.dataset,
                   "year": year},
        "method": result.method,
        "model": {"name": main.kind, "params": main.params, "cv_rmse_by_depth": main.cv_rmse_by_depth,
                  "cv_rmse_by_model": main.candidates},
        "n_train": main.n_train,
        "n_train_sids": main.n_train_sids,
        "rmse_sids": main.rmse_sids,
        "interpolator": result.interpolator,
        "scheme": result.scheme,
        "predictors": predictors,
        "interval": {"method": result.interval, "level": result.level, **main.interval_info,
                     **({"clipped_to": list(result.value_range)} if result.value_range else {})},
        "submodels": submodels,
        "not_predicted": result.not_predicted,
        "notes": result.notes,
        "seed": result.seed,
        "data_version": ds.version,
    }
    return clean(body)

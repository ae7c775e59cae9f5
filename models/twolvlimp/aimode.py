"""AI Mode: the dashboard's precomputed prediction files, one per indicator and model slot.

Pure model code (no HTTP, no storage, no settings): what ``scripts/ai_mode.py`` (``make ai-mode``) and the AI
Mode queue worker call. The format is the page's (``../shared/contracts/ai-mode.md``)::

    {"data": {"2010": {"ATG": 98.6, ...}}, "upperIntervals": {...}, "lowerIntervals": {...},
     "featureImportances": {...}, "categoryImportances": {...}}

* :data:`SLOTS`: the page's four panels ("Model 1".."Model 4") and what each really runs;
* :func:`indicator_file`: one indicator's file for one slot, every year the page shows (2000-2022) in which
  some SIDS lacks a value, each year by the default two-level method (``method.run_default``, what
  ``/twolvlImp/predict`` runs), with the slot's settings;
* :func:`file_problems`: every rule a published file must follow ([] = valid);
* :func:`publishable_indicators`, :func:`file_path`: what to publish, and where;
* :func:`accuracy_sample`, :func:`holdout_accuracy`, :func:`combine_accuracy`, :func:`model_metadata`: the
  measured accuracy of each slot (masked holdout) and ``ML Model Metadata.json``.

Shared work: the year's candidates are imputed once per data version, year and process for every target
(:func:`year_imputation`, handed to the method under the key it looks up); the look-ups are memoised per data
version. The slots use scheme PCA, not AFS: on the SIDS platform data AFS is redone in each stack fold (hundreds of
candidates, ~40 rows) and costs about three times as much, and on a 30-case holdout its coverage was 0.83 against
PCA's 0.93 (NRMSE 0.220 vs 0.228).
"""
from __future__ import annotations

import math
import threading
import zlib
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from models.errors import ModelInputError
from models.twolvlimp.lookups import (TARGET_MISSING_MAX, ImputationError, ImputationRequest, max_number_predictor,
                                      resolve, resolve_code, year_info)
from models.twolvlimp.result import OWN_SERIES_CATEGORY
from shared.dataset import Dataset

FIRST_YEAR, LAST_YEAR = 2000, 2022     # the years the page shows (it runs 2000-2019/2020; the data reach 2022)
FILE_KEYS = ("data", "upperIntervals", "lowerIntervals", "featureImportances", "categoryImportances")
METADATA_FIELDS = ("Modelling Approach", "Model Name", "Parameters", "Model Description", "Model Advantage",
                   "Model Drawback")
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Slot:
    """One of the page's panels ("Model <number>") and the configuration of the two-level method it publishes."""

    number: int
    label: str                  # the page's hard-coded label for the panel
    model: str                  # the method's ``model`` option (tree learner in the stack)
    estimators: int             # trees per tree model (boosting: maximum stages, early-stopped)
    number_predictor: int       # PCA (or AFS): predictors kept (at most the valid ones that year)
    interpolator: str = "KNNImputer"
    scheme: str = "PCA"
    interval: str = "quantile"
    description: str = ""
    advantage: str = ""
    drawback: str = ""

    def request(self, code: str, year: int, top: int) -> ImputationRequest:
        """The /predict request this slot runs for one target-year (``top``: most predictors allowed)."""
        return ImputationRequest(target=code, target_year=str(year), interpolator=self.interpolator,
                                 scheme=self.scheme, estimators=self.estimators, model=self.model,
                                 interval=self.interval, number_predictor=min(self.number_predictor, top))

    @property
    def parameters(self) -> str:
        return (f"model={self.model}, estimators={self.estimators}, scheme={self.scheme} "
                f"(number_predictor={self.number_predictor}), interpolator={self.interpolator}, "
                f"interval={self.interval} (90%, conformal); tree depth chosen by 5-fold cross-validation")


_COMMON = ("Run year by year with the service's two-level method (what /twolvlImp/predict runs, scheme PCA): the "
           "year's candidate predictors imputed by KNN, 10 predictors kept by their loadings on the leading principal "
           "components, then {trees} stacked with ridge regressions (on those 10, and on the candidates most "
           "correlated with the target), a chained linear imputation and the mean, weights chosen out of fold; SIDS "
           "with values in other years are predicted from their own series corrected by the model. 90% conformal "
           "intervals calibrated on out-of-fold errors.")
_DRAWBACK = ("Trees cannot extrapolate beyond the training countries (the stack's linear members can, within half the "
             "observed range); few SIDS report many indicators, so predictions for small territories lean on the "
             "imputed predictors.")

SLOTS: dict[int, Slot] = {s.number: s for s in (
    Slot(1, "Extratree Regressor", "etr", 100, 10,
         description=_COMMON.format(trees="extremely randomised trees (extra-trees)"),
         advantage="Fast; averaging many randomised trees controls over-fitting.", drawback=_DRAWBACK),
    Slot(2, "Random Forest Regressor", "rfr", 100, 10,
         description=_COMMON.format(trees="a random forest"),
         advantage="Robust to noisy predictors; bootstrap averaging reduces over-fitting.", drawback=_DRAWBACK),
    Slot(3, "Gradient boost Regressor", "gbr", 200, 10,
         description=_COMMON.format(trees="gradient-boosted trees (early-stopped on held-out rows)"),
         advantage="Often the most accurate point estimate on structured data.",
         drawback=_DRAWBACK + " Boosting can over-fit noisy targets (early stopping limits it)."),
    Slot(4, "LGBM Regressor", "all", 100, 10,
         description=_COMMON.format(trees="the best of random forest, extra-trees and gradient boosting (chosen by "
                                          "cross-validation per indicator-year; LightGBM itself is not used)"),
         advantage="Chooses the tree learner per indicator-year by out-of-fold error.",
         drawback=_DRAWBACK + " Costs about three times the other slots."),
)}


def dataset_folder(code: str) -> str:
    """The page's ``<dataset>`` part of the path: the code before its first ``-``."""
    return code.split("-", 1)[0]


def file_path(slot: int, code: str) -> str:
    """Where the page reads one file, relative to ``<base>``: ``ml/model<N>/<dataset>/<code>.json``."""
    return f"ml/model{slot}/{dataset_folder(code)}/{code}.json"


METADATA_PATH = "ml/ML Model Metadata.json"


# ------------------------------------------------------------------------------------ what to publish
def _years(ds: Dataset) -> list[int]:
    return [y for y in ds.years if FIRST_YEAR <= y <= LAST_YEAR]


def _publishable_mask(ds: Dataset, year: int) -> np.ndarray:
    """Indicators that are valid targets that year (missing for some but fewer than 80% of the countries) with
    some SIDS to predict."""
    def compute():
        info = year_info(ds, year)
        sids_missing = np.isnan(ds.year_matrix(year)[ds.sids_mask]).any(axis=0)
        return info.target_mask & sids_missing & (_has_predictor(ds, year))
    return ds.memo(("aimode", "publishable", year), compute)


def _has_predictor(ds: Dataset, year: int) -> np.ndarray:
    """Indicators with at least one valid predictor other than themselves that year."""
    info = year_info(ds, year)
    n = int(info.predictor_mask.sum())
    return (n - info.predictor_mask.astype(int)) >= 1


def publishable_years(ds: Dataset, code: str) -> list[int]:
    """The years (2000-2022) in which the indicator has some SIDS to predict."""
    j = ds.indicators.get_loc(code)
    return [y for y in _years(ds) if _publishable_mask(ds, y)[j]]


def publishable_indicators(ds: Dataset) -> list[str]:
    """Indicator codes with some SIDS-year (2000-2022) to predict, sorted."""
    def compute():
        any_year = np.zeros(ds.indicators.size, bool)
        for y in _years(ds):
            any_year |= _publishable_mask(ds, y)
        return sorted(str(c) for c in ds.indicators[any_year])
    return ds.memo(("aimode", "publishable indicators"), compute)


def _code(ds: Dataset, code: str) -> str:
    resolved, _ = resolve_code(ds, code)
    if resolved not in ds.indicators:
        raise ModelInputError(f"unknown indicator {code!r}: it is not in the dataset (version {ds.version!r})")
    return resolved


# ------------------------------------------------------------------------------------ one file
def _normalised(values: dict[str, float]) -> dict[str, float]:
    clean = {k: max(float(v), 0.0) if math.isfinite(float(v)) else 0.0 for k, v in values.items()}
    total = sum(clean.values())
    if total <= 0:
        return {k: 1.0 / len(clean) for k in clean} if clean else {}
    return {k: v / total for k, v in clean.items()}


def _category(ds: Dataset, name: str) -> str:
    if name in ds.indicator_meta.index:
        value = ds.indicator_meta.at[name, "Category"]
        if isinstance(value, str) and value.strip():
            return value.strip()
        return "Uncategorised"
    return OWN_SERIES_CATEGORY


YEAR_COLUMNS_MISSING_MAX = 0.8   # the year's shared imputation covers the indicators missing for fewer countries


def year_imputation(ds: Dataset, year: int, interpolator: str) -> tuple[np.ndarray, np.ndarray]:
    """The year's indicators missing for fewer than 80% of the countries, imputed together once (columns, matrix):
    every target's candidates are among them (candidates are missing for fewer than 30% of the target's training
    rows) unless the target is reported by few countries; memoised per data version, year and imputer."""
    from models.twolvlimp.imputers import impute

    def compute():
        M = ds.year_matrix(year)
        cols = np.flatnonzero(np.isnan(M).mean(axis=0) < YEAR_COLUMNS_MISSING_MAX)
        filled = impute(interpolator, M[:, cols], random_state=0)
        filled.setflags(write=False)
        return cols, filled
    return ds.memo(("aimode", "year imputation", year, interpolator), compute)


def share_year_imputation(ds: Dataset, year: int, interpolator: str, j: int) -> bool:
    """Give the method the target's candidate matrix from the year's shared imputation (under the key
    ``method.candidate_matrix`` looks up), instead of an imputation of its own. False when some candidate is
    outside the shared columns (the method then imputes as /predict does)."""
    from models.twolvlimp.memo import work_memo_has, work_memo_put
    from models.twolvlimp.method import imputation_key

    key, cols = imputation_key(ds, year, interpolator, j)
    if work_memo_has(ds, key):
        return True
    shared, filled = year_imputation(ds, year, interpolator)
    pos = np.searchsorted(shared, cols)
    if cols.size and (pos.max() >= shared.size or not np.array_equal(shared[pos], cols)):
        return False
    Z = filled[:, pos]
    Z.setflags(write=False)
    work_memo_put(ds, key, (cols, Z))
    return True


def batch_view(ds: Dataset) -> Dataset:
    """The dataset as the batch uses it: the same values, with work memos of its own. The year's shared
    imputation is handed to the method under the key /predict looks up; in ``ds``'s own memo it would answer a
    later /predict on the same data version with other numbers than that request computes by itself."""
    return ds.memo(("aimode", "batch view"), lambda: replace(ds, _memo={}, _memo_lock=threading.Lock()))


def year_result(ds: Dataset, code: str, year: int, slot: Slot):
    """The default method's result for one target-year with the slot's settings (``ImputationResult``), on the
    year's shared imputation, with :func:`separate_ties` applied."""
    from models.twolvlimp.imputers import one_blas_thread
    from models.twolvlimp.method import run_default

    ds = batch_view(ds)
    r = resolve(ds, slot.request(code, year, max_number_predictor(ds, year, code)))
    with one_blas_thread():
        share_year_imputation(ds, year, r.interpolator, int(ds.indicators.get_loc(r.target)))
        result = run_default(ds, r)
    return separate_ties(ds, result)


def _own_estimates(ds: Dataset, j: int, year: int) -> np.ndarray:
    from models.twolvlimp.temporal import own_series

    return own_series(ds.values[:, :, j], ds.years, ds.years.index(year)).estimate


def unexplained_ties(ds: Dataset, j: int, year: int, countries: Sequence[str], values: Sequence[float]) -> list[list[str]]:
    """Groups of countries sharing one prediction (exactly) that nothing in their inputs explains. A shared value is
    explained when it is a bound of the plausible range (predictions clipped there: 0 for a quantity never negative,
    100 for a share), when the countries' own series give the same estimate for the year, or when their inputs are
    identical (every other indicator that year and the target in every year)."""
    from models.twolvlimp.method import plausible_range

    low, high = plausible_range(ds.values[:, :, j])
    own = _own_estimates(ds, j, year)
    row = {str(c): i for i, c in enumerate(ds.countries)}
    groups: dict[float, list[str]] = {}
    for c, v in zip(countries, values):
        groups.setdefault(float(v), []).append(str(c))
    out = []
    for value, same in groups.items():
        if len(same) < 2 or value in (low, high):
            continue
        estimates = own[[row[c] for c in same]]
        if not np.isnan(estimates).any() and np.all(estimates == estimates[0]):
            continue
        first = row[same[0]]
        if all(_inputs_identical(ds, j, year, first, row[c]) for c in same[1:]):
            continue
        out.append(same)
    return out


NEIGHBOURS = 5


def nearest_estimate(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``y`` for ``rows`` from the 5 nearest countries that have it: NaN-Euclidean distance on the min-max scaled
    columns of ``X`` both report (as scikit-learn's KNNImputer), mean weighted by inverse distance; the mean of
    ``y`` for a row that shares no reported column with any of them."""
    from sklearn.metrics.pairwise import nan_euclidean_distances

    donors = np.flatnonzero(~np.isnan(y))
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    span = np.where(np.isfinite(hi - lo) & (hi > lo), hi - lo, 1.0)
    Z = (X - np.where(np.isfinite(lo), lo, 0.0)) / span
    distance = nan_euclidean_distances(Z[rows], Z[donors])
    out = np.full(rows.size, float(np.mean(y[donors])))
    for k in range(rows.size):
        d = distance[k]
        ok = np.flatnonzero(np.isfinite(d))
        if not ok.size:
            continue
        near = ok[np.argsort(d[ok], kind="stable")[:NEIGHBOURS]]
        if (d[near] == 0).any():    # as KNNImputer: a neighbour at distance 0 takes the whole weight
            out[k] = float(np.mean(y[donors[near[d[near] == 0]]]))
        else:
            out[k] = float(np.average(y[donors[near]], weights=1 / d[near]))
    return out


def separate_ties(ds: Dataset, result):
    """Countries the model cannot tell apart get one prediction: a predicted SIDS with no value of the target in
    another year and none of the selected predictors (all filled by the base imputer) is predicted by the fold
    models' intercept, the same for all such SIDS (and when the stack chooses the mean, every country of a submodel
    gets it). That is the old files' defect (AIA, COK, MSR and NIU with one prediction and one interval in
    key-wdi-EG.ELC.ACCS.ZS, 2015). Such groups (:func:`unexplained_ties`) are instead predicted from what each of
    those countries does report that year: the target estimated from the 5 nearest countries on the candidates
    (min-max scaled, distance-weighted), with the stacked interval's offsets moved with the prediction, clipped to
    the plausible range. ``result.notes`` names them."""
    from models.twolvlimp.method import plausible_range, training_candidates

    j = int(ds.indicators.get_loc(result.target))
    ties = unexplained_ties(ds, j, result.year, result.countries, result.prediction)
    if not ties:
        return result
    at = {c: i for i, c in enumerate(result.countries)}
    tied = np.asarray(sorted(at[c] for group in ties for c in group))
    rows = np.asarray([ds.countries.get_loc(result.countries[i]) for i in tied])
    M = ds.year_matrix(result.year)
    estimate = nearest_estimate(M[:, training_candidates(ds, result.year, j)], M[:, j], rows)
    low, high = plausible_range(ds.values[:, :, j])
    prediction, lower, upper = (np.array(a, dtype=float) for a in (result.prediction, result.lower, result.upper))
    shift = estimate - prediction[tied]
    prediction[tied] = np.clip(estimate, low, high)
    lower[tied] = np.clip(np.minimum(lower[tied] + shift, prediction[tied]), low, high)
    upper[tied] = np.clip(np.maximum(upper[tied] + shift, prediction[tied]), low, high)
    result.prediction, result.lower, result.upper = prediction, lower, upper
    result.notes = list(result.notes) + [
        f"{', '.join(result.countries[i] for i in tied)}: one shared prediction that nothing in their inputs explains; "
        "predicted instead by the 5 nearest countries on the candidates each reports"]
    return result


def _importances(result) -> dict[str, float]:
    """Feature importances of the whole year: each submodel's normalised importances, weighted by the number of
    countries it predicts; normalised to sum 1."""
    total: dict[str, float] = {}
    n = sum(len(sm.countries) for sm in result.submodels) or 1
    for sm in result.submodels:
        share = len(sm.countries) / n
        for name, value in _normalised(dict(zip(sm.feature_names, sm.importances))).items():
            total[name] = total.get(name, 0.0) + share * value
    return _normalised(total)


def indicator_file(ds: Dataset, code: str, slot: int, years: Sequence[int] | None = None) -> dict:
    """The page's JSON object for one indicator and slot: every year (2000-2022, or those of ``years``) with some
    SIDS to predict. Raises :class:`ModelInputError` (saying why) for an indicator that cannot be published."""
    if slot not in SLOTS:
        raise ModelInputError(f"unknown model slot {slot!r}: the slots are {', '.join(map(str, SLOTS))}")
    s = SLOTS[slot]
    code = _code(ds, code)
    wanted = publishable_years(ds, code)
    if years is not None:
        asked = {int(y) for y in years}
        wanted = [y for y in wanted if y in asked]
    if not wanted:
        raise ModelInputError(
            f"indicator {code!r} cannot be published: no year {FIRST_YEAR}-{LAST_YEAR}"
            f"{' among those asked' if years is not None else ''} has a SIDS without a value while the indicator is "
            f"reported for at least {1 - TARGET_MISSING_MAX:.0%} of the countries")
    from models.twolvlimp.imputers import one_blas_thread

    out: dict[str, dict] = {k: {} for k in FILE_KEYS}
    sids = [str(c) for c in ds.countries[ds.sids_mask]]
    with one_blas_thread():   # set once for every year (each year_result's own use is then a counter)
        for year in wanted:
            try:
                result = year_result(ds, code, year, s)
            except ImputationError as exc:
                raise ModelInputError(f"indicator {code!r}, {year}: {exc.msg}") from exc
            y = str(year)
            predicted = {c: float(v) for c, v in zip(result.countries, result.prediction)}
            data = {c: float(v) for c, v in result.observed.items()}
            data.update(predicted)
            out["data"][y] = {c: data[c] for c in sids if c in data}
            out["upperIntervals"][y] = {c: float(v) for c, v in zip(result.countries, result.upper)}
            out["lowerIntervals"][y] = {c: float(v) for c, v in zip(result.countries, result.lower)}
            features = _importances(result)
            out["featureImportances"][y] = features
            categories: dict[str, float] = {}
            for name, value in features.items():
                cat = _category(ds, name)
                categories[cat] = categories.get(cat, 0.0) + value
            out["categoryImportances"][y] = _normalised(categories)
    return out


# ------------------------------------------------------------------------------------ checking a file
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _inputs_identical(ds: Dataset, j: int, year: int, a: int, b: int) -> bool:
    """Whether two countries' inputs to the target-year are the same: the year's values of every other indicator
    and the target's own series in every year (NaN equal to NaN)."""
    M = ds.year_matrix(year)
    row_a, row_b = np.delete(M[a], j), np.delete(M[b], j)
    series_a, series_b = ds.values[:, a, j], ds.values[:, b, j]
    return bool(np.array_equal(row_a, row_b, equal_nan=True) and np.array_equal(series_a, series_b, equal_nan=True))


def file_problems(ds: Dataset, code: str, doc: dict) -> list[str]:
    """Every rule a published file breaks ([] = valid), checked against the data it was made from:
    the page's keys, years as strings, every SIDS of the data in every published year, reported values as the data
    has them, intervals for exactly the predicted SIDS with lower <= prediction <= upper, values in the method's
    plausible range, importances non-negative and summing to 1 (categories: the features' ``Category`` sums), and
    no two SIDS with the identical prediction unless their inputs are identical."""
    from models.twolvlimp.method import plausible_range

    problems: list[str] = []
    if not isinstance(doc, dict):
        return [f"the file is a {type(doc).__name__}, not an object"]
    keys = set(doc)
    if keys != set(FILE_KEYS):
        missing, extra = sorted(set(FILE_KEYS) - keys), sorted(keys - set(FILE_KEYS))
        problems.append(f"keys: missing {missing}, unexpected {extra}")
    parts = {k: doc.get(k) if isinstance(doc.get(k), dict) else {} for k in FILE_KEYS}
    for k in FILE_KEYS:
        if k in doc and not isinstance(doc[k], dict):
            problems.append(f"{k} is not an object")
        for y, v in parts[k].items():
            if not isinstance(v, dict):
                problems.append(f"{k}[{y}] is not an object")
    parts = {k: {y: v for y, v in p.items() if isinstance(v, dict)} for k, p in parts.items()}
    years = list(parts["data"])
    if not years:
        problems.append("data has no year")
    for k in FILE_KEYS[1:]:
        if set(parts[k]) != set(years):
            problems.append(f"{k} has years {sorted(parts[k])}, data has {sorted(years)}")
    try:
        j = ds.indicators.get_loc(_code(ds, code))
    except ModelInputError as exc:
        return problems + [exc.msg]
    low, high = plausible_range(ds.values[:, :, j])
    sids = [str(c) for c in ds.countries[ds.sids_mask]]
    row = {str(c): i for i, c in enumerate(ds.countries)}
    for y in years:
        try:
            year = int(y)
        except ValueError:
            problems.append(f"year {y!r} is not a year")
            continue
        if not ds.has_year(year):
            problems.append(f"year {y} is not in the data")
            continue
        column = ds.year_matrix(year)[:, j]
        data, upper, lower = parts["data"][y], parts["upperIntervals"].get(y, {}), parts["lowerIntervals"].get(y, {})
        absent = [c for c in sids if c not in data]
        if absent:
            problems.append(f"{y}: SIDS missing from data: {', '.join(absent)}")
        extra = sorted(set(data) - set(sids))
        if extra:
            problems.append(f"{y}: data has countries that are not SIDS of the data: {', '.join(extra)}")
        bad = sorted(c for part in (data, upper, lower) for c, v in part.items() if not _is_number(v))
        if bad:
            problems.append(f"{y}: values that are not finite numbers for {', '.join(sorted(set(bad)))}")
        predicted = sorted(c for c in sids if c in data and math.isnan(column[row[c]]))
        reported = [c for c in sids if c in data and not math.isnan(column[row[c]])]
        changed = [c for c in reported if _is_number(data[c]) and not math.isclose(data[c], column[row[c]],
                                                                                  rel_tol=1e-9, abs_tol=1e-12)]
        if changed:
            problems.append(f"{y}: reported values differ from the data for {', '.join(changed)}")
        for name, part in (("upperIntervals", upper), ("lowerIntervals", lower)):
            if sorted(part) != predicted:
                problems.append(f"{y}: {name} should hold exactly the predicted SIDS {predicted}, has {sorted(part)}")
        for c in predicted:
            p, lo, hi = data.get(c), lower.get(c), upper.get(c)
            if not all(_is_number(v) for v in (p, lo, hi)):
                continue
            if not lo <= p <= hi:
                problems.append(f"{y}: {c}: not lower <= prediction <= upper ({lo}, {p}, {hi})")
            outside = [v for v in (p, lo, hi) if not low - 1e-9 * max(1.0, abs(low)) <= v <= high + 1e-9 * max(1.0, abs(high))]
            if outside:
                problems.append(f"{y}: {c}: values outside the plausible range [{low:g}, {high:g}]: {outside}")
        numeric = [c for c in predicted if _is_number(data.get(c))]
        for same in unexplained_ties(ds, j, year, numeric, [float(data[c]) for c in numeric]):
            problems.append(f"{y}: identical prediction {data[same[0]]:g} for SIDS whose inputs differ: "
                            f"{', '.join(same)}")
        features, categories = parts["featureImportances"].get(y, {}), parts["categoryImportances"].get(y, {})
        for name, part in (("featureImportances", features), ("categoryImportances", categories)):
            values = list(part.values())
            if not values:
                problems.append(f"{y}: {name} is empty")
                continue
            if not all(_is_number(v) and v >= 0 for v in values):
                problems.append(f"{y}: {name} has values that are not non-negative numbers")
                continue
            if abs(sum(values) - 1) > SUM_TOLERANCE:
                problems.append(f"{y}: {name} sums to {sum(values):g}, not 1")
        if features and all(_is_number(v) for v in features.values()):
            expected: dict[str, float] = {}
            for name, value in features.items():
                cat = _category(ds, name)
                expected[cat] = expected.get(cat, 0.0) + value
            if set(expected) != set(categories) or any(
                    not _is_number(categories.get(k)) or abs(categories[k] - v) > 1e-6 for k, v in expected.items()):
                problems.append(f"{y}: categoryImportances are not the features' Category sums")
    return problems


# ------------------------------------------------------------------------------------ measured accuracy
HOLDOUT_SHARE = 0.2   # of the reported SIDS hidden per sampled indicator-year


def accuracy_sample(ds: Dataset, n: int, random_state: int = 0) -> list[tuple[str, int]]:
    """``n`` published indicator-years (drawn with ``random_state``) with enough reported SIDS to hide some: at
    least 10 SIDS with a value that year, and the indicator still a valid target (reported by at least 20% of the
    countries) once :func:`holdout_accuracy` hides its share."""
    cases = []
    countries = ds.countries.size
    for year in _years(ds):
        M = ds.year_matrix(year)
        known = (~np.isnan(M[ds.sids_mask])).sum(axis=0)
        hidden = np.maximum(2, np.round(HOLDOUT_SHARE * known))
        # still a valid target once the hidden values are gone
        still_valid = (np.isnan(M).sum(axis=0) + hidden) < TARGET_MISSING_MAX * countries
        cases += [(str(c), year) for c in ds.indicators[_publishable_mask(ds, year) & (known >= 10) & still_valid]]
    cases.sort()
    if n >= len(cases):
        return cases
    rng = np.random.RandomState(random_state)
    picked = rng.choice(len(cases), size=n, replace=False)
    return [cases[i] for i in sorted(picked)]


def masked_copy(ds: Dataset, j: int, year: int, rows: np.ndarray, tag: str) -> Dataset:
    """A copy of the data (a new version) with the target-year's values of ``rows`` hidden."""
    values = ds.values.copy()
    values[ds.years.index(year), rows, j] = np.nan
    for twin in copies_of(ds, j):   # the same series under another code would give the hidden values away
        values[ds.years.index(year), rows, twin] = np.nan
    return Dataset(values=values, years=ds.years, countries=ds.countries, indicators=ds.indicators,
                   indicator_meta=ds.indicator_meta, dataset_meta=ds.dataset_meta, country_meta=ds.country_meta,
                   sids=ds.sids, version=tag, source=ds.source)


def copies_of(ds: Dataset, j: int) -> list[int]:
    """Other indicators with the target's values (the platform publishes some series under two codes, e.g.
    ``key-wdi-...`` and ``wdi-...``): equal on at least 90% of the cells where the target has a value."""
    target = ds.values[:, :, j]
    known = ~np.isnan(target)
    if not known.any():
        return []
    with np.errstate(invalid="ignore"):
        same = (np.isclose(ds.values, target[:, :, None], rtol=1e-6, atol=0) & known[:, :, None]).sum(axis=(0, 1))
    hits = np.flatnonzero(same >= 0.9 * known.sum())
    return [int(k) for k in hits if k != j]


HOLDOUT_PROTOCOL = (f"masked holdout: in each sampled indicator-year {HOLDOUT_SHARE:.0%} of the reported SIDS (at least 2) "
                    "hidden and predicted from the rest; NRMSE = RMSE of the hidden values / the target's std that "
                    "year over every country with a value, pooled over the sample; coverage = share of hidden values "
                    "inside their 90% interval")


def _holdout_case(ds: Dataset, s: Slot, code: str, year: int, random_state: int) -> dict | None:
    """One sampled indicator-year: the hidden SIDS (drawn from the case and ``random_state`` alone, so a sample split
    over processes gives the same figures), their squared normalised errors and whether each was covered."""
    j = ds.indicators.get_loc(code)
    column = ds.year_matrix(year)[:, j]
    known = np.flatnonzero(ds.sids_mask & ~np.isnan(column))
    k = max(2, int(round(HOLDOUT_SHARE * known.size)))
    spread = float(np.nanstd(column))
    if known.size - k < 2 or not spread > 0:
        return None
    rng = np.random.RandomState([random_state, zlib.crc32(f"{code}|{year}".encode())])
    rows = np.sort(rng.choice(known, size=k, replace=False))
    masked = masked_copy(ds, j, year, rows, f"{ds.version}|holdout|{code}|{year}|{random_state}")
    result = year_result(masked, code, year, s)
    at = {c: i for i, c in enumerate(result.countries)}
    errors, inside = [], []
    for i in rows:
        p = at[str(ds.countries[i])]
        truth = column[i]
        errors.append(float(((result.prediction[p] - truth) / spread) ** 2))
        inside.append(bool(result.lower[p] <= truth <= result.upper[p]))
    return {"squared_errors": errors, "inside": inside}


def holdout_accuracy(ds: Dataset, slot: int, sample: Sequence[tuple[str, int]], random_state: int = 0) -> dict:
    """Masked holdout of one slot on ``sample`` (indicator-years, :func:`accuracy_sample`): in each, 20% of the
    reported SIDS (at least 2, drawn with ``random_state``) are hidden (also in any copy of the series under another
    code, :func:`copies_of`) and predicted by the slot's method on the rest (:data:`HOLDOUT_PROTOCOL`). The counts
    (``sum_squared``, ``inside``, ``values``, ``indicator_years``) let :func:`combine_accuracy` pool parts of a
    sample computed apart."""
    s = SLOTS[slot]
    sums, failed = dict.fromkeys(_SUMS, 0.0), []
    for code, year in sample:
        try:
            case = _holdout_case(ds, s, code, int(year), random_state)
        except ModelInputError as exc:
            failed.append({"indicator": code, "year": int(year), "error": exc.msg})
            continue
        if case is None:
            continue
        squared, inside, n = sum(case["squared_errors"]), sum(case["inside"]), len(case["inside"])
        for key, value in (("sum_squared", squared), ("inside", inside), ("values", n), ("indicator_years", 1),
                           ("inside_sq", inside * inside), ("inside_n", inside * n), ("n_sq", n * n),
                           ("squared_sq", squared * squared), ("squared_n", squared * n)):
            sums[key] += value
    return _accuracy(sums, failed)


# Sums over the sample's indicator-years that parts computed apart add up to (:func:`combine_accuracy`): the pooled
# figures, and the cross-products their standard errors need.
_SUMS = ("sum_squared", "inside", "values", "indicator_years", "inside_sq", "inside_n", "n_sq", "squared_sq",
         "squared_n")


def _ratio_se(ratio: float, sums: dict, a: str, cases: float) -> float | None:
    """Standard error of a pooled ratio sum(a_i) / sum(n_i) over the sampled indicator-years i, with the
    indicator-year as the unit (the values hidden in one indicator-year are not independent: one model, one
    interval width): sqrt(m / (m - 1) * sum((a_i - ratio * n_i)^2)) / sum(n_i), m indicator-years."""
    if cases < 2 or not sums["values"]:
        return None
    spread = sums[f"{a}_sq"] - 2 * ratio * sums[f"{a}_n"] + ratio * ratio * sums["n_sq"]
    return math.sqrt(max(spread, 0.0) * cases / (cases - 1)) / sums["values"]


def _accuracy(sums: dict, failed: list) -> dict:
    values, cases = sums["values"], sums["indicator_years"]
    coverage = sums["inside"] / values if values else None
    mse = sums["sum_squared"] / values if values else None
    nrmse = math.sqrt(mse) if mse is not None else None
    coverage_se = _ratio_se(coverage, sums, "inside", cases) if values else None
    mse_se = _ratio_se(mse, sums, "squared", cases) if values else None
    nrmse_se = mse_se / (2 * nrmse) if mse_se is not None and nrmse else None   # delta method: d sqrt(x) = dx / 2 sqrt(x)
    return {"nrmse": nrmse, "coverage90": coverage,
            "nrmse_se": nrmse_se, "coverage90_se": coverage_se,
            **{k: (int(v) if k not in ("sum_squared", "squared_sq", "squared_n") else v) for k, v in sums.items()},
            "failed": failed, "protocol": HOLDOUT_PROTOCOL}


def combine_accuracy(parts: Sequence[dict]) -> dict:
    """One slot's accuracy from parts of its sample (each a :func:`holdout_accuracy` answer)."""
    return _accuracy({k: sum(p.get(k, 0) for p in parts) for k in _SUMS}, [f for p in parts for f in p["failed"]])


ACCURACY_FIGURES = ("nrmse", "nrmse_se", "coverage90", "coverage90_se", "indicator_years", "values")


def _pm(se: float | None) -> str:
    return f" ± {se:.3f}" if se is not None else ""


def model_metadata(accuracy_by_slot: dict[int, dict]) -> dict:
    """``ML Model Metadata.json``: "Model <N>" -> the page's fields (what the slot really runs) plus its measured
    accuracy (``Measured Accuracy``: a sentence; ``accuracy``: the figures)."""
    out = {}
    for number, s in SLOTS.items():
        acc = accuracy_by_slot.get(number)
        entry = {
            "Modelling Approach": "year-by-year",
            "Model Name": s.label,
            "Parameters": s.parameters,
            "Model Description": s.description,
            "Model Advantage": s.advantage,
            "Model Drawback": s.drawback,
        }
        if acc:
            entry["Measured Accuracy"] = (
                f"NRMSE {acc['nrmse']:.3f}{_pm(acc.get('nrmse_se'))}, 90% interval coverage {acc['coverage90']:.3f}"
                f"{_pm(acc.get('coverage90_se'))} on {acc['values']} hidden values of {acc['indicator_years']} "
                f"indicator-years (± one standard error, the indicator-year as the unit; {acc['protocol']})"
                if acc.get("nrmse") is not None else "not measured (no usable indicator-year in the sample)")
            entry["accuracy"] = {k: acc.get(k) for k in ACCURACY_FIGURES}
        out[f"Model {number}"] = entry
    return out

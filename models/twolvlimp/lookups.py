"""What the data allows: target years, datasets, targets, predictors, and checking a request against them.

Everything here depends only on the dataset version (and the year), so it is computed once per
version through :meth:`shared.dataset.Dataset.memo` and shared by all requests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np

from models.errors import ModelInputError
from shared.dataset import Dataset

TARGET_MISSING_MAX = 0.80     # a target is missing for fewer than 80% of the countries that year
PREDICTOR_MISSING_MAX = 0.30  # a predictor is missing for fewer than 30% of them
MAX_PREDICTORS = 50
MAX_ESTIMATORS = 1000         # the dashboard's form offers 10, 100, 500 and 1000 trees
SEED = 7                      # the old service's seed, now used by every random step
LEGACY_PREFIX = "key-"        # the old platform's codes: "key-wdi-EG.ELC.ACCS.ZS" is "wdi-EG.ELC.ACCS.ZS"
LEGACY_DATASET = "key"

# The allowed values of a request's choices, in one place: the HTTP layer's enums (blueprints/twolvlimp.py)
# are built from these, and resolve checks a request against them.
INTERPOLATORS = ("KNNImputer", "IterativeImputer", "SimpleImputer")
SCHEMES = ("MANUAL", "AFS", "PCA")
MODELS = ("rfr", "gbr", "etr", "all")
INTERVALS = ("quantile", "bootstrap")
METHODS = ("default", "legacy")


class ImputationError(ModelInputError):
    """A request the data cannot serve; ``msg`` says what is allowed instead."""


@dataclass(frozen=True)
class ImputationRequest:
    """One /predict request, as plain values (what the HTTP layer validated)."""

    target: str
    target_year: str
    interpolator: str = "KNNImputer"
    scheme: str = "MANUAL"
    estimators: int = 100
    model: str = "rfr"
    interval: str = "quantile"
    dataset: str | None = None
    manual_predictors: tuple[str, ...] | None = None
    number_predictor: int | None = None
    method: str = "default"


@dataclass(frozen=True)
class ResolvedRequest:
    """A request checked against one dataset version, with aliases resolved and defaults filled in."""

    target: str
    year: int
    dataset: str
    interpolator: str
    scheme: str
    estimators: int
    model: str
    interval: str
    method: str
    manual_predictors: tuple[str, ...] = ()
    number_predictor: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    def key(self) -> tuple:
        """Everything that determines the response (together with the data version)."""
        return (self.method, self.target, self.year, self.dataset, self.interpolator, self.scheme, self.estimators,
                self.model, self.interval, self.manual_predictors, self.number_predictor, self.notes)


@dataclass(frozen=True)
class YearInfo:
    year: int
    index: int
    missing: np.ndarray          # share of countries missing, per indicator
    target_mask: np.ndarray      # 0 < missing < 80%, and missing for at least one SIDS (what resolve accepts)
    predictor_mask: np.ndarray   # missing < 30%

    @property
    def predictor_idx(self) -> np.ndarray:
        return np.flatnonzero(self.predictor_mask)


def _missing_by_year(ds: Dataset) -> np.ndarray:
    def compute():
        n = max(len(ds.countries), 1)
        return np.isnan(ds.values).sum(axis=1) / n  # years x indicators
    return ds.memo(("twolvlimp", "missing"), compute)


def _targets_by_year(ds: Dataset) -> np.ndarray:
    """years x indicators: a valid target (missing for some but fewer than 80% of the countries, and for at
    least one SIDS: a target with every SIDS value present has nothing to impute, and resolve refuses it)."""
    def compute():
        miss = _missing_by_year(ds)
        sids_missing = np.isnan(ds.values[:, ds.sids_mask, :]).any(axis=1)  # False everywhere without SIDS
        return (miss > 0) & (miss < TARGET_MISSING_MAX) & sids_missing
    return ds.memo(("twolvlimp", "targets_by_year"), compute)


def year_info(ds: Dataset, year: int) -> YearInfo:
    def compute():
        idx = ds.years.index(year)
        miss = _missing_by_year(ds)[idx]
        return YearInfo(year=year, index=idx, missing=miss, target_mask=_targets_by_year(ds)[idx],
                        predictor_mask=miss < PREDICTOR_MISSING_MAX)
    return ds.memo(("twolvlimp", "year", year), compute)


def target_years(ds: Dataset) -> list[str]:
    """Years in which at least one indicator is a valid target."""
    def compute():
        ok = _targets_by_year(ds).any(axis=1)
        return [str(y) for y, good in zip(ds.years, ok) if good]
    return ds.memo(("twolvlimp", "target_years"), compute)


def _dataset_of(ds: Dataset) -> np.ndarray:
    return ds.memo(("twolvlimp", "dataset_of"), lambda: ds.indicator_meta["Dataset"].astype(str).to_numpy())


def _dataset_name(ds: Dataset, code: str) -> str:
    if code in ds.dataset_meta.index:
        return str(ds.dataset_meta.at[code, "Dataset Name"])
    return code


def is_legacy_dataset_alias(ds: Dataset, dataset: str | None) -> bool:
    """The old platform's ``key`` stood for the target's own dataset, unless the data has a ``key`` dataset
    of its own (the platform's "SIDS Key Indicators")."""
    return dataset == LEGACY_DATASET and LEGACY_DATASET not in set(_dataset_of(ds))


def check_year(ds: Dataset, target_year: str | int) -> int:
    years = target_years(ds)
    text = str(target_year).strip()
    if text not in years:
        span = f"{years[0]} to {years[-1]}" if years else "none"
        raise ImputationError(f"target_year {text!r} is not supported: the data has targets for the years "
                              f"{span} (see /twolvlImp/target_years)", allowed=years)
    return int(text)


def datasets(ds: Dataset, year: int) -> dict[str, str]:
    def compute():
        info = year_info(ds, year)
        codes = sorted(set(_dataset_of(ds)[info.target_mask]))
        return {c: _dataset_name(ds, c) for c in codes}
    return ds.memo(("twolvlimp", "datasets", year), compute)


def check_dataset(ds: Dataset, year: int, dataset: str) -> str:
    options = datasets(ds, year)
    if dataset not in options:
        raise ImputationError(f"dataset {dataset!r} has no valid targets in {year}; datasets with targets that "
                              f"year: {', '.join(options) or 'none'}", allowed=list(options))
    return dataset


def dataset_for(ds: Dataset, year: int, dataset: str | None, target: str | None, *, lookup: bool = False) -> str:
    """The dataset a request is about, by one rule for :func:`resolve` (/predict, /estimate) and the look-ups.

    ``dataset`` when given (checked against the year by :func:`check_dataset`), unless it is the old platform's
    ``key`` (:func:`is_legacy_dataset_alias`); otherwise the dataset of ``target``, given by one of its codes
    (``key-`` codes accepted) or, in a look-up (``lookup``), also by its indicator name, as /dimensions takes it.
    When the target does not tell: "unknown target" for a request, "dataset is required here" for a look-up.
    A dataset read from the target is not checked against the year.
    """
    if dataset and not is_legacy_dataset_alias(ds, dataset):
        return check_dataset(ds, year, dataset)
    code, _ = resolve_code(ds, target or "")
    if code in ds.indicators:
        return str(_dataset_of(ds)[ds.indicators.get_loc(code)])
    if not lookup:
        raise ImputationError(f"unknown target {target!r}: see /twolvlImp/targets for the valid targets")
    if target:
        meta = ds.indicator_meta
        named = meta.index[meta["Indicator"].astype(str) == str(target).strip()]
        if len(named):
            return str(meta.at[named[0], "Dataset"])
    options = datasets(ds, year)
    raise ImputationError(f"dataset is required here; datasets with targets in {year}: {', '.join(options)}",
                          allowed=list(options))


def targets(ds: Dataset, year: int, dataset: str) -> dict[str, str]:
    def compute():
        info = year_info(ds, year)
        mask = info.target_mask & (_dataset_of(ds) == dataset)
        codes = ds.indicators[mask]
        return {str(c): ds.indicator_name(c) for c in codes}
    return ds.memo(("twolvlimp", "targets", year, dataset), compute)


def resolve_code(ds: Dataset, code: str) -> tuple[str, bool]:
    """The indicator code, accepting the old platform's ``key-`` prefix. Returns (code, alias_used)."""
    code = str(code).strip()
    if code in ds.indicators:
        return code, False
    if code.startswith(LEGACY_PREFIX) and code[len(LEGACY_PREFIX):] in ds.indicators:
        return code[len(LEGACY_PREFIX):], True
    return code, False


def check_distinct(predictors: Iterable[str]) -> None:
    """Raise :class:`ImputationError` naming the predictors given more than once, in the order they repeat."""
    seen: set[str] = set()
    repeated: list[str] = []
    for code in predictors:
        if code in seen and code not in repeated:
            repeated.append(code)
        seen.add(code)
    if repeated:
        raise ImputationError(f"manual_predictors must be distinct; repeated: {', '.join(repeated)}",
                              repeated=repeated)


def check_target(ds: Dataset, year: int, dataset: str, target: str) -> str:
    code, _ = resolve_code(ds, target)
    if code not in ds.indicators:
        raise ImputationError(f"unknown target {target!r}: see /twolvlImp/targets?target_year={year}&dataset={dataset} "
                              "for the valid targets")
    j = ds.indicators.get_loc(code)
    own = _dataset_of(ds)[j]
    if own != dataset:
        raise ImputationError(f"target {code!r} belongs to dataset {own!r}, not {dataset!r}")
    miss = float(year_info(ds, year).missing[j])
    if miss <= 0:
        raise ImputationError(f"target {code!r} has a value for every country in {year}: nothing to impute")
    if miss >= TARGET_MISSING_MAX:
        raise ImputationError(f"target {code!r} is missing for {miss:.0%} of the countries in {year}; a target must "
                              f"be missing for fewer than {TARGET_MISSING_MAX:.0%} (see /twolvlImp/targets)")
    return code


def dimensions(ds: Dataset, year: int, dataset: str, target: str) -> list[dict]:
    """The dimensions of an indicator (given by its name, or by one of its codes) that are valid targets."""
    code, _ = resolve_code(ds, target)
    name = ds.indicator_name(code) if code in ds.indicators else str(target).strip()
    valid = targets(ds, year, dataset)
    meta = ds.indicator_meta
    out = []
    for c in meta.index[meta["Indicator"].astype(str) == name]:
        if c in valid:
            out.append({"label": str(meta.at[c, "Dimension"]), "value": str(c)})
    if not out:
        raise ImputationError(f"no indicator named or coded {target!r} is a valid target in {year} for dataset "
                              f"{dataset!r} (see /twolvlImp/targets)")
    return out


def predictor_codes(ds: Dataset, year: int) -> list[str]:
    return ds.memo(("twolvlimp", "predictor_codes", year),
                   lambda: [str(c) for c in ds.indicators[year_info(ds, year).predictor_mask]])


def manual_predictor_options(ds: Dataset, year: int, target: str) -> dict[str, str]:
    """{code: "Indicator-Dimension"} of the predictors valid that year, without the target itself."""
    def compute():
        meta = ds.indicator_meta
        return {c: f"{meta.at[c, 'Indicator']}-{meta.at[c, 'Dimension']}" for c in predictor_codes(ds, year)}
    every = ds.memo(("twolvlimp", "predictor_names", year), compute)
    return {c: name for c, name in every.items() if c != target}


def max_number_predictor(ds: Dataset, year: int, target: str) -> int:
    codes = predictor_codes(ds, year)
    return min(MAX_PREDICTORS, len(codes) - (1 if target in codes else 0))


def number_predictor_options(ds: Dataset, year: int, target: str) -> dict[int, int]:
    top = max_number_predictor(ds, year, target)
    return {i: i for i in range(1, top + 1)}


def target_sample_size(ds: Dataset) -> int:
    return math.ceil(len(ds.countries) * (1 - TARGET_MISSING_MAX))


def predictor_sample_size(ds: Dataset) -> int:
    return math.ceil(len(ds.countries) * (1 - PREDICTOR_MISSING_MAX))


TYPICAL_NUMBER_PREDICTOR = 10


def complete_for_estimate(ds: Dataset, req: ImputationRequest) -> ImputationRequest:
    """A complete request standing in for a half-filled form: the parts not chosen (or not valid) yet are
    replaced by typical ones, so that its cost can be estimated. Raises only when the data has no target."""
    years = target_years(ds)
    if not years:
        raise ImputationError("the data has no year with a valid target")
    year = str(req.target_year).strip() if str(req.target_year).strip() in years else years[-1]
    options = datasets(ds, int(year))
    target, _ = resolve_code(ds, req.target or "")
    dataset = req.dataset
    # A dataset chosen after the target (the form keeps the target when the dataset is switched) is the
    # newer choice: the target must be one of its own, else a typical one of it stands in.
    chosen = dataset if dataset in options else None
    valid_targets = {c for d in ([chosen] if chosen else options) for c in targets(ds, int(year), d)}
    if target not in valid_targets:
        wanted = chosen or next(iter(options))
        target, dataset = next(iter(targets(ds, int(year), wanted))), wanted
    elif dataset and dataset not in options and not is_legacy_dataset_alias(ds, dataset):
        dataset = None
    valid = [c for c in predictor_codes(ds, int(year)) if c != target]
    chosen = [c for c in (resolve_code(ds, p)[0] for p in (req.manual_predictors or ())) if c in valid]
    manual = tuple(dict.fromkeys(chosen))[:MAX_PREDICTORS] or tuple(valid[:1])
    top = max_number_predictor(ds, int(year), target)
    number = min(req.number_predictor or TYPICAL_NUMBER_PREDICTOR, max(top, 1))
    return replace(req, target=target, target_year=year, dataset=dataset,
                   manual_predictors=manual if req.scheme == "MANUAL" else None,
                   number_predictor=None if req.scheme == "MANUAL" else number,
                   estimators=min(max(int(req.estimators), 1), MAX_ESTIMATORS))


def resolve(ds: Dataset, req: ImputationRequest) -> ResolvedRequest:
    """Check a request against the data and the allowed choices; raise :class:`ImputationError` saying what
    is allowed."""
    for name, allowed in (("interpolator", INTERPOLATORS), ("scheme", SCHEMES), ("model", MODELS),
                          ("interval", INTERVALS), ("method", METHODS)):
        if getattr(req, name) not in allowed:
            raise ImputationError(f"{name} must be one of {', '.join(allowed)}", allowed=list(allowed))
    notes = []
    if not ds.sids_mask.any():  # before the year: without SIDS no year has a target (see _targets_by_year)
        raise ImputationError("the data has no SIDS country (countryMeta.csv marks none), so there is nothing "
                              "for this model to impute")
    year = check_year(ds, req.target_year)
    target, alias = resolve_code(ds, req.target)
    if alias:
        notes.append(f"target {req.target!r} is the old platform's code for {target!r}")
    given = req.dataset.strip() if req.dataset else None
    dataset = dataset_for(ds, year, given, req.target)
    if req.dataset and dataset != given:
        notes.append(f"dataset {req.dataset!r} (old platform) read as the target's dataset {dataset!r}")
    check_dataset(ds, year, dataset)  # dataset_for checks a given dataset, not one read from the target
    target = check_target(ds, year, dataset, target)
    if not 1 <= int(req.estimators) <= MAX_ESTIMATORS:
        raise ImputationError(f"estimators must be between 1 and {MAX_ESTIMATORS}")

    j = ds.indicators.get_loc(target)
    column = ds.year_matrix(year)[:, j]
    if not np.isnan(column[ds.sids_mask]).any():
        raise ImputationError(f"every SIDS in the data has a value for {target!r} in {year}: nothing to impute; "
                              "choose another year or target (see /twolvlImp/targets)")

    manual: tuple[str, ...] = ()
    number = None
    if req.scheme == "MANUAL":
        given = list(req.manual_predictors or ())
        if not 1 <= len(given) <= MAX_PREDICTORS:
            raise ImputationError(f"manual_predictors must list 1 to {MAX_PREDICTORS} predictors")
        resolved = []
        for code in given:
            c, was_alias = resolve_code(ds, code)
            if was_alias:
                notes.append(f"predictor {code!r} is the old platform's code for {c!r}")
            resolved.append(c)
        check_distinct(resolved)  # after the key- aliases: key-X and X are one predictor
        if target in resolved:
            raise ImputationError(f"the target {target!r} cannot be one of its own predictors")
        valid = set(predictor_codes(ds, year))
        invalid = [c for c in resolved if c not in valid]
        if invalid:
            raise ImputationError(
                f"invalid predictor(s) for {year}: {', '.join(invalid)}. A predictor must be an indicator missing "
                f"for fewer than {PREDICTOR_MISSING_MAX:.0%} of the countries that year; POST /twolvlImp/predictors "
                "lists them", invalid=invalid)
        manual = tuple(resolved)
    else:
        top = max_number_predictor(ds, year, target)
        if req.number_predictor is None or not 1 <= int(req.number_predictor) <= top:
            raise ImputationError(f"number_predictor must be between 1 and {top} for {year} (the number of valid "
                                  "predictors that year, at most 50)", allowed_max=top)
        number = int(req.number_predictor)
    return ResolvedRequest(target=target, year=year, dataset=dataset, interpolator=req.interpolator,
                           scheme=req.scheme, estimators=int(req.estimators), model=req.model,
                           interval=req.interval, method=req.method, manual_predictors=manual,
                           number_predictor=number, notes=tuple(notes))


"""Time-series interpolation: fill the missing years of one indicator for one SIDS country.

Pure functions over a :class:`shared.dataset.Dataset` (pandas/scipy, no HTTP).

Semantics (also in docs/adding-a-model.md's example and the endpoint descriptions):

* The series is the indicator's value for the country in every year of the dataset.
* **Interior gaps** (missing years between the first and the last observed year) are
  filled with the chosen method's interpolant through the observed years
  (``pandas.Series.interpolate`` with ``limit_area="inside"``; ``spline`` is an exact
  interpolating spline of the given order, ``polynomial`` a piecewise polynomial of
  that order through the points).
* **Edges** (years before the first or after the last observation) are outside the
  data: there is nothing to interpolate between. ``direction`` says which edges are
  filled: ``forward`` the years after the last observation, ``backward`` the years
  before the first, ``both`` both. They take the nearest observed value (last value
  carried forward, first value carried backward) whatever the method, because
  extrapolating a cubic or a spline beyond a few points diverges quickly.
  Interior gaps are filled in every direction.
* A method needs a minimum number of observed years (:func:`min_points`); a series
  with fewer is refused with a message saying how many are needed.
* The service is for SIDS: countries outside the dataset's SIDS list are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd

from shared.dataset import Dataset
from models.errors import ModelInputError, did_you_mean


class ImputeMethod(str, Enum):
    linear = "linear"
    nearest = "nearest"
    zero = "zero"
    slinear = "slinear"
    quadratic = "quadratic"
    cubic = "cubic"
    spline = "spline"
    polynomial = "polynomial"
    pchip = "pchip"
    akima = "akima"


class ImputeDirection(str, Enum):
    forward = "forward"
    backward = "backward"
    both = "both"


ORDERED_METHODS = (ImputeMethod.spline, ImputeMethod.polynomial)
MAX_ORDER = 5
_FIXED_MIN_POINTS = {
    ImputeMethod.linear: 2, ImputeMethod.nearest: 2, ImputeMethod.zero: 2, ImputeMethod.slinear: 2,
    ImputeMethod.quadratic: 3, ImputeMethod.cubic: 4, ImputeMethod.pchip: 2, ImputeMethod.akima: 2,
}


def min_points(method: ImputeMethod | str, order: int | None = None) -> int:
    """Observed years a method needs: 2 for piecewise methods, degree + 1 for quadratic, cubic, spline, polynomial."""
    method = ImputeMethod(method)
    if method in ORDERED_METHODS:
        if order is None:
            raise ModelInputError(f"method {method.value} needs an order (1 to {MAX_ORDER})")
        return int(order) + 1
    return _FIXED_MIN_POINTS[method]


# ---------------------------------------------------------------------------- look-ups
def sids_codes(data: Dataset) -> list[str]:
    return [str(c) for c in data.countries[data.sids_mask]]




def resolve_target(data: Dataset, target: str) -> str:
    """The indicator code as spelled in the dataset (exact, else case-insensitive), or a 422."""
    target = target.strip()
    if target in data.indicators:
        return target
    lowered = {str(c).lower(): str(c) for c in data.indicators}
    if target.lower() in lowered:
        return lowered[target.lower()]
    raise ModelInputError(f"Unknown indicator {target!r}; GET /statimpute/targets lists the indicators."
                           + did_you_mean(target, data.indicators), field="target")


def resolve_sids_country(data: Dataset, country: str) -> str:
    code = country.strip().upper()
    if code not in data.countries:
        raise ModelInputError(f"Unknown country code {country!r}; use an ISO 3166-1 alpha-3 code of a SIDS "
                               f"(GET /statimpute/countries?target=... lists them)." + did_you_mean(code, sids_codes(data)),
                               field="country")
    if code not in data.sids:
        raise ModelInputError(f"{code} ({data.country_name(code)}) is not a Small Island Developing State; "
                               f"this model serves the {len(sids_codes(data))} SIDS in the dataset.", field="country")
    return code


def _sids_counts(data: Dataset) -> pd.DataFrame:
    """Observed years per SIDS (rows) and indicator (columns); computed once per dataset version."""
    def compute():
        observed = ~np.isnan(data.values[:, data.sids_mask, :])      # year x sids x indicator
        return pd.DataFrame(observed.sum(axis=0), index=sids_codes(data), columns=list(data.indicators))
    return data.memo(("statimpute", "sids_counts"), compute)


def targets(data: Dataset, dataset: str | None = None) -> list[dict]:
    """Indicators with at least one SIDS value, with their names and how many SIDS have data."""
    def compute():
        counts = _sids_counts(data)
        with_data = (counts > 0).sum(axis=0)
        meta = data.indicator_meta
        out = []
        for code in data.indicators:
            n = int(with_data[code])
            if n:
                out.append({"code": str(code), "name": data.indicator_name(code),
                            "dataset": str(meta.at[code, "Dataset"]), "category": str(meta.at[code, "Category"]),
                            "countries": n})
        return out
    found = data.memo(("statimpute", "targets"), compute)
    if dataset is None:
        return found
    if dataset not in data.dataset_meta.index:
        known = ", ".join(str(d) for d in data.dataset_meta.index)
        raise ModelInputError(f"Unknown dataset {dataset!r}; known datasets: {known} (GET /datasets).",
                               field="dataset")
    return [t for t in found if t["dataset"] == dataset]


def countries_with_data(data: Dataset, target: str) -> list[dict]:
    """SIDS with at least one observed year of ``target``, with names, observed/missing counts and year span."""
    code = resolve_target(data, target)

    def compute():
        frame = data.indicator_series(code).loc[data.sids_mask]
        years = np.array(data.years)
        out = []
        for country, row in frame.iterrows():
            observed = row.notna().to_numpy()
            if not observed.any():
                continue
            out.append({"code": str(country), "name": data.country_name(country), "observed": int(observed.sum()),
                        "missing": int((~observed).sum()), "first_year": int(years[observed][0]),
                        "last_year": int(years[observed][-1])})
        return out
    return data.memo(("statimpute", "countries", code), compute)


# ---------------------------------------------------------------------------- imputation
@dataclass(frozen=True)
class Imputation:
    target: str
    country: str
    years: list[int]
    values: list[float | None]      # after filling (None where still missing)
    observed: list[bool]
    filled_years: list[int]


def interpolate(series: pd.Series, method: ImputeMethod | str, direction: ImputeDirection | str = ImputeDirection.both,
                order: int | None = None) -> pd.Series:
    """Fill the missing values of ``series`` (indexed by year) as described in the module docstring.

    Raises :class:`ModelInputError` when the series has fewer observed years than the method needs.
    """
    method, direction = ImputeMethod(method), ImputeDirection(direction)
    series = pd.Series(series, dtype="float64").sort_index()
    if method in ORDERED_METHODS:
        if order is None or not 1 <= int(order) <= MAX_ORDER:
            raise ModelInputError(f"method {method.value} needs an order between 1 and {MAX_ORDER}", field="order")
    needed = min_points(method, order)
    observed = series.notna()
    n = int(observed.sum())
    if n < needed:
        what = f"{method.value} interpolation" + (f" of order {order}" if method in ORDERED_METHODS else "")
        raise ModelInputError(f"{what} needs at least {needed} observed years; the series has {n}.",
                               needed=needed, observed=n, method=method.value)
    if n == len(series):
        return series.copy()

    filled = series.copy()
    if n >= 2:
        kwargs: dict = {}
        if method is ImputeMethod.linear:
            pandas_method = "index"        # weigh by the actual years, not by position
        else:
            pandas_method = method.value
            if method in ORDERED_METHODS:
                kwargs["order"] = int(order)
            if method is ImputeMethod.spline:
                kwargs["s"] = 0            # an interpolating spline (through every observed year), not a smoothing one
        try:
            filled = series.interpolate(method=pandas_method, limit_area="inside", **kwargs)
        except ValueError as exc:          # scipy refuses a degenerate configuration
            raise ModelInputError(f"{method.value} interpolation is not possible on this series: {exc}") from None
    first, last = observed.idxmax(), observed[::-1].idxmax()
    if direction in (ImputeDirection.forward, ImputeDirection.both):
        filled[filled.index > last] = series[last]
    if direction in (ImputeDirection.backward, ImputeDirection.both):
        filled[filled.index < first] = series[first]
    filled[~np.isfinite(filled.to_numpy(dtype="float64", na_value=np.nan))] = np.nan
    filled[observed] = series[observed]    # observed years are never changed
    return filled


def impute(data: Dataset, target: str, country: str, method: ImputeMethod | str,
           direction: ImputeDirection | str = ImputeDirection.both, order: int | None = None) -> Imputation:
    """Interpolate one SIDS country's series of one indicator over the dataset's years."""
    code = resolve_target(data, target)
    iso = resolve_sids_country(data, country)
    series = data.indicator_series(code).loc[iso]
    if series.notna().sum() == 0:
        raise ModelInputError(f"{iso} ({data.country_name(iso)}) has no data for {code}; "
                               f"GET /statimpute/countries?target={code} lists the SIDS that do.",
                               field="country")
    method = ImputeMethod(method)
    if method not in ORDERED_METHODS or order is not None:
        needed, n = min_points(method, order), int(series.notna().sum())
        if n < needed:
            what = f"{method.value} interpolation" + (f" of order {order}" if method in ORDERED_METHODS else "")
            raise ModelInputError(f"{what} needs at least {needed} observed years; {iso} has {n} for {code} "
                                   f"(GET /statimpute/countries?target={code} shows each SIDS' count).",
                                   needed=needed, observed=n, method=method.value)
    filled = interpolate(series, method, direction, order)
    observed = series.notna().to_numpy()
    values = [None if np.isnan(v) else float(v) for v in filled.to_numpy(dtype="float64", na_value=np.nan)]
    years = [int(y) for y in filled.index]
    filled_years = [y for y, v, o in zip(years, values, observed) if v is not None and not o]
    return Imputation(target=code, country=iso, years=years, values=values, observed=[bool(o) for o in observed],
                      filled_years=filled_years)

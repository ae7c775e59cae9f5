"""Features from a country's own series of the target, in the years other than the target year.

For every country: the nearest earlier and later years with a value, and an estimate for the
target year from them (linear interpolation between the two, or the nearest value when there is
only one side). The target year's own value is never used, so the features are the same for
a country whose value is known (training) and one whose value is missing (prediction).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_VALUE_GAP = 99.0  # "years to the nearest value" when there is none on that side

OWN_FEATURES = ("own_estimate", "years_since_previous", "years_until_next")


@dataclass(frozen=True)
class OwnSeries:
    estimate: np.ndarray        # (countries,) NaN where the country has no other year
    previous_gap: np.ndarray    # years back to the previous value, NO_VALUE_GAP if none
    next_gap: np.ndarray        # years forward to the next value, NO_VALUE_GAP if none

    @property
    def available(self) -> np.ndarray:
        return ~np.isnan(self.estimate)

    def features(self) -> np.ndarray:
        return np.column_stack([self.estimate, self.previous_gap, self.next_gap])


def own_series(series: np.ndarray, years: tuple[int, ...] | np.ndarray, year_index: int) -> OwnSeries:
    """``series`` is years x countries for one indicator; the row ``year_index`` is ignored."""
    years = np.asarray(years, dtype=np.float64)
    n_countries = series.shape[1]
    year = years[year_index]
    before, after = series[:year_index], series[year_index + 1:]
    prev_val = np.full(n_countries, np.nan)
    prev_year = np.full(n_countries, np.nan)
    next_val = np.full(n_countries, np.nan)
    next_year = np.full(n_countries, np.nan)
    cols = np.arange(n_countries)
    if before.shape[0]:
        known = ~np.isnan(before)
        has = known.any(axis=0)
        last = before.shape[0] - 1 - np.argmax(known[::-1], axis=0)
        prev_val[has] = before[last[has], cols[has]]
        prev_year[has] = years[:year_index][last[has]]
    if after.shape[0]:
        known = ~np.isnan(after)
        has = known.any(axis=0)
        first = np.argmax(known, axis=0)
        next_val[has] = after[first[has], cols[has]]
        next_year[has] = years[year_index + 1:][first[has]]
    both = ~np.isnan(prev_val) & ~np.isnan(next_val)
    estimate = np.where(np.isnan(prev_val), next_val, prev_val)
    share = np.where(both, (year - prev_year) / np.where(both, next_year - prev_year, 1.0), 0.0)
    estimate = np.where(both, prev_val + share * (next_val - prev_val), estimate)
    prev_gap = np.where(np.isnan(prev_year), NO_VALUE_GAP, year - prev_year)
    next_gap = np.where(np.isnan(next_year), NO_VALUE_GAP, next_year - year)
    return OwnSeries(estimate=estimate, previous_gap=prev_gap, next_gap=next_gap)

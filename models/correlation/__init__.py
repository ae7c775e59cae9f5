"""Country similarity: correlation between countries, and k-means clusters of SIDS.

Pure functions over a :class:`shared.dataset.Dataset` (numpy/scikit-learn, no HTTP).

The profile of a country is its values, in one year, for the indicators of one
dataset and category. Indicators have unrelated units (dollars, percentages,
counts), so each is **standardised across the comparison group** that year
(z-score: minus the group mean, over the group standard deviation, both taken over
the countries with a value). An indicator is used only when at least
``MIN_COUNTRIES_PER_INDICATOR`` countries of the group have it and its values are not
all equal.

* **Correlate**: Pearson correlation between two countries' standardised profiles,
  over the indicators *both* have (pairwise deletion: nothing is imputed). A pair is
  ranked only when it shares at least ``min_overlap`` indicators (default 5, never
  fewer than 3, for which a correlation is a meaningless +-1) and neither profile
  is constant over the shared indicators; the others are reported as skipped.
* **Cluster**: SIDS with at least ``min_observed`` of the usable indicators are
  clustered by k-means on the standardised profiles. Missing values are handled
  iteratively: they start at the indicator mean (0 after standardising), k-means
  runs, each missing value is replaced by its cluster centroid's value, and k-means
  runs again from the previous centroids, until the labels stop changing
  (``MAX_ITERATIONS`` at most). The first run uses k-means++ with ``N_INIT`` restarts
  from ``seed``, so the same request always gives the same answer. Labels are then
  renumbered in order of first appearance in the alphabetical list of countries.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd

from shared.cache import memo_table
from shared.dataset import Dataset
from models.errors import ModelInputError, did_you_mean

MIN_COUNTRIES_PER_INDICATOR = 3
DEFAULT_MIN_OVERLAP = 5
MAX_ITERATIONS = 50
N_INIT = 10
PROFILE_ENTRIES = 4096  # profiles kept per data version (and at most WORK_MEMO_BYTES of them)


class CompareWith(str, Enum):
    """Which countries a profile is compared with (and standardised over)."""

    sids = "sids"
    all = "all"


# ---------------------------------------------------------------------------- look-ups


def resolve_dataset(data: Dataset, dataset: str) -> str:
    known = [str(d) for d in data.dataset_meta.index]
    if dataset in known:
        return dataset
    lowered = {d.lower(): d for d in known}
    if dataset.strip().lower() in lowered:
        return lowered[dataset.strip().lower()]
    raise ModelInputError(f"Unknown dataset {dataset!r}; known datasets: {', '.join(known)} (GET /datasets).",
                           field="dataset")


def categories(data: Dataset, dataset: str) -> list[dict]:
    """The categories of a dataset, with their number of indicators."""
    code = resolve_dataset(data, dataset)

    def compute():
        meta = data.indicator_meta
        counts = meta.loc[meta["Dataset"] == code, "Category"].value_counts()
        return [{"category": str(c), "indicators": int(n)} for c, n in sorted(counts.items())]
    return data.memo(("correlation", "categories", code), compute)


def resolve_category(data: Dataset, dataset: str, category: str) -> tuple[str, str]:
    code = resolve_dataset(data, dataset)
    known = [c["category"] for c in categories(data, code)]
    if category in known:
        return code, category
    lowered = {c.lower(): c for c in known}
    if category.strip().lower() in lowered:
        return code, lowered[category.strip().lower()]
    raise ModelInputError(f"Unknown category {category!r} in dataset {code}; its categories: {', '.join(known)} "
                           f"(GET /correlation/categories?dataset={code})." + did_you_mean(category, known),
                           field="category")


def category_indicators(data: Dataset, dataset: str, category: str) -> list[str]:
    meta = data.indicator_meta
    return [str(c) for c in meta.index[(meta["Dataset"] == dataset) & (meta["Category"] == category)]]


def _group_mask(data: Dataset, group: CompareWith) -> np.ndarray:
    if CompareWith(group) is CompareWith.sids:
        return np.asarray(data.sids_mask)
    return np.ones(len(data.countries), dtype=bool)


@dataclass(frozen=True)
class Profiles:
    """Standardised profiles of a comparison group for one dataset, category and year."""

    dataset: str
    category: str
    year: int
    countries: list[str]          # the group, alphabetical
    indicators: list[str]         # usable indicators
    z: np.ndarray                 # countries x indicators, NaN = missing

    def observed(self) -> np.ndarray:
        """Usable indicators each country has."""
        return np.sum(~np.isnan(self.z), axis=1)

    def count_for(self, code: str) -> int:
        return int(self.observed()[self.countries.index(code)]) if code in self.countries else 0


def profiles(data: Dataset, dataset: str, category: str, year: int,
             group: CompareWith | str = CompareWith.sids) -> Profiles:
    """The standardised country x indicator matrix (memoised per dataset version)."""
    dataset, category = resolve_category(data, dataset, category)
    if not data.has_year(year):
        raise ModelInputError(f"No year {year} in the dataset; years run from {data.years[0]} to {data.years[-1]}.",
                               field="year")
    group = CompareWith(group)

    def compute() -> Profiles:
        codes = category_indicators(data, dataset, category)
        frame = data.year_frame(year).loc[_group_mask(data, group), codes]
        x = frame.to_numpy(dtype="float64", copy=True)
        counts = np.sum(~np.isnan(x), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)       # all-NaN columns
            mean = np.nanmean(x, axis=0)
            std = np.nanstd(x, axis=0)
        usable = (counts >= MIN_COUNTRIES_PER_INDICATOR) & np.isfinite(std) & (std > 0)
        z = (x[:, usable] - mean[usable]) / std[usable]
        z.setflags(write=False)
        return Profiles(dataset=dataset, category=category, year=int(year), countries=[str(c) for c in frame.index],
                        indicators=[c for c, u in zip(codes, usable) if u], z=z)

    # request-dependent and as large as the data over every year: in a byte-bounded table (shared/cache.py)
    table = memo_table(data, ("correlation", "profiles"), PROFILE_ENTRIES)
    found = table.get_or_compute((dataset, category, int(year), group.value), compute)[0]
    if not found.indicators:
        where = "SIDS" if group is CompareWith.sids else "countries"
        raise ModelInputError(
            f"No indicator of {dataset} / {category} has values for at least {MIN_COUNTRIES_PER_INDICATOR} {where} in "
            f"{year}; GET /correlation/years?dataset={dataset}&category={category} lists the years with data.",
            field="year")
    return found


def years(data: Dataset, dataset: str, category: str, group: CompareWith | str = CompareWith.sids) -> list[dict]:
    """Years in which the category has usable indicators for the group, with counts."""
    dataset, category = resolve_category(data, dataset, category)
    group = CompareWith(group)

    def compute():
        out = []
        for year in data.years:
            p = profiles_or_none(data, dataset, category, year, group)
            if p is not None:
                out.append({"year": int(year), "indicators": len(p.indicators),
                            "countries": int(np.count_nonzero(p.observed() > 0))})
        return out
    return data.memo(("correlation", "years", dataset, category, group.value), compute)


def profiles_or_none(data: Dataset, dataset: str, category: str, year: int, group: CompareWith) -> Profiles | None:
    try:
        return profiles(data, dataset, category, year, group)
    except ModelInputError:
        return None


def countries(data: Dataset, dataset: str, category: str, year: int,
              group: CompareWith | str = CompareWith.sids) -> list[dict]:
    """Countries of the group with at least one usable indicator that year, with how many they have."""
    p = profiles(data, dataset, category, year, group)
    return [{"code": c, "name": data.country_name(c), "indicators": int(n)}
            for c, n in zip(p.countries, p.observed()) if n > 0]


def resolve_country(data: Dataset, country: str, group: CompareWith) -> str:
    code = country.strip().upper()
    if code not in data.countries:
        raise ModelInputError(f"Unknown country code {country!r}; use an ISO 3166-1 alpha-3 code."
                               + did_you_mean(code, data.countries), field="country")
    if CompareWith(group) is CompareWith.sids and code not in data.sids:
        raise ModelInputError(f"{code} ({data.country_name(code)}) is not a Small Island Developing State; "
                               f"set compare_with to \"all\" to compare it with every country.", field="country")
    return code


# ---------------------------------------------------------------------------- correlate
@dataclass(frozen=True)
class Correlation:
    dataset: str
    category: str
    year: int
    country: str
    indicators: list[str]                 # usable indicators the country has
    ranking: list[tuple[str, float, int]]  # (country, correlation, overlap), best first
    skipped: list[tuple[str, int]]        # (country, overlap) not ranked


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two equal-length vectors; None when either is constant."""
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = np.sqrt(np.dot(dx, dx)), np.sqrt(np.dot(dy, dy))
    if sx <= 1e-12 * max(1.0, np.abs(x).max()) or sy <= 1e-12 * max(1.0, np.abs(y).max()):
        return None
    return float(np.clip(np.dot(dx, dy) / (sx * sy), -1.0, 1.0))


def correlate(data: Dataset, dataset: str, category: str, country: str, year: int,
              group: CompareWith | str = CompareWith.sids, min_overlap: int = DEFAULT_MIN_OVERLAP) -> Correlation:
    """Rank the group's other countries by correlation with ``country``'s profile."""
    group = CompareWith(group)
    if min_overlap < 3:
        raise ModelInputError("min_overlap must be at least 3: a correlation over 2 points is always +1 or -1.",
                               field="min_overlap")
    p = profiles(data, dataset, category, year, group)
    code = resolve_country(data, country, group)
    i = p.countries.index(code)
    mine = ~np.isnan(p.z[i])
    have = int(mine.sum())
    if have < min_overlap:
        good = [y for y in data.years
                if (q := profiles_or_none(data, p.dataset, p.category, y, group)) is not None
                and q.count_for(code) >= min_overlap]
        hint = (f" Years where it has at least {min_overlap}: {', '.join(map(str, good))}." if good
                else f" It has at least {min_overlap} in no year.")
        raise ModelInputError(
            f"{code} ({data.country_name(code)}) has values for {have} of the {len(p.indicators)} usable "
            f"{p.category} indicators in {year}; at least {min_overlap} are needed.{hint}",
            field="country", observed=have, needed=min_overlap)
    ranking, skipped = [], []
    has_data = p.observed() > 0
    for j, other in enumerate(p.countries):
        if j == i or not has_data[j]:
            continue                      # itself, or no data at all that year: not a candidate
        both = mine & ~np.isnan(p.z[j])
        n = int(both.sum())
        r = pearson(p.z[i, both], p.z[j, both]) if n >= min_overlap else None
        if r is None:
            skipped.append((other, n))
        else:
            ranking.append((other, r, n))
    ranking.sort(key=lambda t: (-t[1], t[0]))
    return Correlation(dataset=p.dataset, category=p.category, year=p.year,
                       country=code, indicators=[c for c, m in zip(p.indicators, mine) if m],
                       ranking=ranking, skipped=sorted(skipped))


# ---------------------------------------------------------------------------- cluster
@dataclass(frozen=True)
class Clustering:
    dataset: str
    category: str
    year: int
    k: int
    countries: list[str]
    labels: list[int]
    indicators: list[str]
    excluded: list[tuple[str, int]]       # (country, observed indicators) left out
    iterations: int
    converged: bool
    inertia: float


def _renumber(labels: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in labels], dtype=int)


def kmeans_missing(x: np.ndarray, k: int, seed: int = 0, max_iterations: int = MAX_ITERATIONS,
                   n_init: int = N_INIT) -> tuple[np.ndarray, np.ndarray, int, bool, float]:
    """k-means on a matrix with NaNs: impute, cluster, re-impute missing cells from the centroids, repeat.

    Returns (labels, filled matrix, iterations, converged, inertia). Deterministic for a given seed.
    """
    from sklearn.cluster import KMeans

    missing = np.isnan(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)           # a column with no value at all
        col_mean = np.nan_to_num(np.nanmean(x, axis=0))
    filled = np.where(missing, col_mean, x)
    labels = None
    centroids = None
    converged = False
    inertia = float("nan")
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        if centroids is None:
            model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
        else:
            model = KMeans(n_clusters=k, init=centroids, n_init=1, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # ConvergenceWarning when fewer distinct points than k
            new_labels = model.fit_predict(filled)
        centroids = model.cluster_centers_
        inertia = float(model.inertia_)
        filled[missing] = centroids[new_labels][missing]
        if labels is not None and np.array_equal(labels, new_labels):
            converged = True
            labels = new_labels
            break
        labels = new_labels
        if not missing.any():
            converged = True
            break
    return labels, filled, iterations, converged, inertia


def cluster(data: Dataset, dataset: str, category: str, year: int, k: int, seed: int = 0,
            min_observed: int = 3) -> Clustering:
    """Cluster the SIDS on the category's standardised indicators that year."""
    p = profiles(data, dataset, category, year, CompareWith.sids)
    observed = p.observed()
    keep = observed >= min_observed
    excluded = [(c, int(n)) for c, n, kept in zip(p.countries, observed, keep) if not kept]
    kept_countries = [c for c, kept in zip(p.countries, keep) if kept]
    if k > len(kept_countries):
        raise ModelInputError(
            f"k={k} clusters but only {len(kept_countries)} SIDS have at least {min_observed} of the "
            f"{len(p.indicators)} usable {p.category} indicators in {p.year}; "
            f"choose k <= {len(kept_countries)}, a lower min_observed, or another year.",
            field="k", countries=len(kept_countries))
    x = p.z[keep]
    columns = ~np.all(np.isnan(x), axis=0)            # indicators none of the kept SIDS has carry nothing
    x = x[:, columns]
    distinct = len({tuple(np.round(np.nan_to_num(row, nan=np.inf), 9)) for row in x})
    if distinct < k:
        raise ModelInputError(f"k={k} clusters but the SIDS' profiles take only {distinct} distinct values in "
                               f"{p.year}; choose k <= {distinct}.", field="k")
    labels, _, iterations, converged, inertia = kmeans_missing(x, k, seed)
    return Clustering(dataset=p.dataset, category=p.category, year=p.year, k=k, countries=kept_countries,
                      labels=[int(v) for v in _renumber(labels)],
                      indicators=[c for c, used in zip(p.indicators, columns) if used], excluded=excluded,
                      iterations=iterations, converged=converged, inertia=inertia)

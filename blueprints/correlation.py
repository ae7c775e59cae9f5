"""Country similarity (/correlation): countries ranked by correlation, and k-means clusters of SIDS."""
from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from models import correlation
from models.correlation import DEFAULT_MIN_OVERLAP, CompareWith
from shared.http import ApiBlueprint
from shared.imports import import_model_code
from shared.store import get_dataset
from shared.validation import ApiModel, Lookup

blueprint = ApiBlueprint(
    "correlation", label="Country similarity",
    description=("Compares countries on the indicators of one dataset category in one year. Each indicator is "
                 "standardised across the compared countries (z-score); `correlate` ranks countries by the Pearson "
                 "correlation of their profiles over the indicators both have, `cluster` groups the SIDS with a "
                 "seeded k-means that fills missing values from the cluster centroids."))

# Imported by /correlation/cluster on first use; shared/warmup.py imports it after the dataset load.
MODEL_CODE = ("sklearn.cluster",)

DatasetField = Annotated[str, Lookup("/datasets")]
CategoryField = Annotated[str, Lookup("/correlation/categories", inputs=("dataset",))]
YearField = Annotated[int, Lookup("/correlation/years", inputs=("dataset", "category"))]


def _dataset(**kw):
    return Field(..., title="Dataset", description="Dataset code", examples=["wdi"], min_length=1, max_length=100, **kw)


def _category(**kw):
    return Field(..., title="Category", description="Indicator category of the dataset", examples=["Public Sector"],
                 min_length=1, max_length=200, **kw)


def _year(**kw):
    return Field(..., title="Year", description="Year of the indicator values", examples=[2015], ge=1900, le=2100, **kw)


# ---------------------------------------------------------------------------- look-ups
class CorrelationCategoriesQuery(ApiModel):
    dataset: DatasetField = _dataset()


class CorrelationCategory(ApiModel):
    category: str
    indicators: int = Field(description="Indicators in the category")


class CorrelationYearsQuery(ApiModel):
    dataset: DatasetField = _dataset()
    category: CategoryField = _category()
    compare_with: CompareWith = Field(CompareWith.sids,
                                      description="Count usable indicators over SIDS or over all countries")


class CorrelationYear(ApiModel):
    year: int
    indicators: int = Field(description=f"Indicators with values for at least "
                                        f"{correlation.MIN_COUNTRIES_PER_INDICATOR} countries and some spread")
    countries: int = Field(description="Countries with at least one of those indicators")


class CorrelationCountriesQuery(ApiModel):
    dataset: DatasetField = _dataset()
    category: CategoryField = _category()
    year: YearField = _year()
    compare_with: CompareWith = Field(CompareWith.sids, description="List SIDS only, or every country")


class CorrelationCountry(ApiModel):
    code: str
    name: str
    indicators: int = Field(description="Usable indicators the country has that year")


@blueprint.get("categories", query=CorrelationCategoriesQuery, response=list[CorrelationCategory], errors=(503,))
def categories(query: CorrelationCategoriesQuery) -> list[CorrelationCategory]:
    """The indicator categories of a dataset (the values of `category`)."""
    return [CorrelationCategory(**c) for c in correlation.categories(get_dataset(), query.dataset)]


@blueprint.get("years", query=CorrelationYearsQuery, response=list[CorrelationYear], errors=(503,))
def years(query: CorrelationYearsQuery) -> list[CorrelationYear]:
    """Years in which the category has usable indicators (the values of `year`)."""
    found = correlation.years(get_dataset(), query.dataset, query.category, query.compare_with)
    return [CorrelationYear(**y) for y in found]


@blueprint.get("countries", query=CorrelationCountriesQuery, response=list[CorrelationCountry], errors=(503,))
def countries(query: CorrelationCountriesQuery) -> list[CorrelationCountry]:
    """Countries with values for the category that year (the values of `country`).

    Each comes with the number of usable indicators it has, which `min_overlap` and `min_observed` are compared with.
    """
    data = get_dataset()
    return [CorrelationCountry(**c) for c in correlation.countries(data, query.dataset, query.category, query.year,
                                                            query.compare_with)]


# ---------------------------------------------------------------------------- correlate
class CorrelateRequest(ApiModel):
    dataset: DatasetField = _dataset()
    category: CategoryField = _category()
    country: Annotated[str, Lookup("/correlation/countries", inputs=("dataset", "category", "year"))] = Field(
        ..., title="Country", description="ISO3 code of the country to compare", examples=["FJI"],
        min_length=3, max_length=3)
    year: YearField = _year()
    compare_with: CompareWith = Field(CompareWith.sids, title="Compare with", description=(
        "sids: rank the other SIDS (the country must be one); all: rank every country in the dataset. "
        "Indicators are standardised over this group."))
    min_overlap: int = Field(DEFAULT_MIN_OVERLAP, title="Minimum overlap", description=(
        "Indicators two countries must both have for their correlation to be computed"), ge=3, le=1000)


class CorrelationRank(ApiModel):
    rank: int
    country: str
    name: str
    correlation: float = Field(description="Pearson correlation of the standardised profiles, -1 to 1")
    overlap: int = Field(description="Indicators both countries have")


class CorrelationSkipped(ApiModel):
    country: str
    name: str
    overlap: int = Field(description="Indicators both countries have (fewer than min_overlap, or a constant profile)")


class CorrelateResponse(ApiModel):
    dataset: str
    category: str
    year: int
    country: str
    country_name: str
    compare_with: CompareWith
    min_overlap: int
    indicators: list[str] = Field(description="Usable indicators the country has; the most any pair can share")
    ranking: list[CorrelationRank] = Field(description="Other countries, most correlated first")
    skipped: list[CorrelationSkipped] = Field(description="Countries with some data that could not be ranked")


@blueprint.post("correlate", body=CorrelateRequest, response=CorrelateResponse, main=True, errors=(503,))
def correlate(req: CorrelateRequest) -> CorrelateResponse:
    """Rank the other countries by how closely their indicator profile correlates with the country's.

    Each indicator of the dataset category is standardised across the compared countries
    that year; the correlation of two countries is taken over the indicators both have
    (nothing is imputed) and only when they share at least `min_overlap` of them.
    """
    data = get_dataset()
    result = correlation.correlate(data, req.dataset, req.category, req.country, req.year, req.compare_with,
                                   req.min_overlap)
    name = data.country_name
    return CorrelateResponse(
        dataset=result.dataset, category=result.category, year=result.year, country=result.country,
        country_name=name(result.country), compare_with=req.compare_with, min_overlap=req.min_overlap,
        indicators=result.indicators,
        ranking=[CorrelationRank(rank=i, country=c, name=name(c), correlation=r, overlap=n)
                 for i, (c, r, n) in enumerate(result.ranking, start=1)],
        skipped=[CorrelationSkipped(country=c, name=name(c), overlap=n) for c, n in result.skipped])


# ---------------------------------------------------------------------------- cluster
class ClusterRequest(ApiModel):
    dataset: DatasetField = _dataset()
    category: CategoryField = _category()
    year: YearField = _year()
    k: int = Field(3, title="Clusters", description="Number of clusters", ge=2, le=20)
    seed: int = Field(0, title="Seed", description="Random seed of the k-means initialisation (same seed, same answer)",
                      ge=0, le=2**31 - 1)
    min_observed: int = Field(3, title="Minimum indicators", description=(
        "A SIDS is clustered only when it has at least this many of the usable indicators that year"), ge=1, le=1000)


class ClusterExcluded(ApiModel):
    country: str
    name: str
    indicators: int = Field(description="Usable indicators it has (fewer than min_observed)")


class ClusterResponse(ApiModel):
    dataset: str
    category: str
    year: int
    k: int
    seed: int
    countries: list[str] = Field(description="Clustered SIDS, alphabetical")
    names: list[str] = Field(description="Their names, in the same order")
    labels: list[int] = Field(description="Cluster of each country, 0 to k-1, numbered by first appearance")
    indicators: list[str] = Field(description="Indicators the clustering used")
    excluded: list[ClusterExcluded] = Field(description="SIDS left out for lack of data")
    iterations: int = Field(description="Impute-and-cluster rounds run")
    converged: bool = Field(description="Whether the labels stopped changing before the round limit")
    inertia: float = Field(description="Sum of squared distances to the centroids (standardised units)")


@blueprint.post("cluster", body=ClusterRequest, response=ClusterResponse, errors=(503,))
def cluster(req: ClusterRequest) -> ClusterResponse:
    """Cluster the SIDS into k groups on the category's indicators that year (k-means handling missing values).

    Missing values start at the indicator mean, then are repeatedly replaced by their
    cluster centroid's value while k-means is rerun, until the labels stop changing.
    Seeded: the same request always returns the same clusters.
    """
    data = get_dataset()
    for module in MODEL_CODE:   # before the model imports it: never beside the warm-up's import (shared/imports.py)
        import_model_code(module)
    result = correlation.cluster(data, req.dataset, req.category, req.year, req.k, req.seed, req.min_observed)
    return ClusterResponse(
        dataset=result.dataset, category=result.category, year=result.year, k=result.k, seed=req.seed,
        countries=result.countries, names=[data.country_name(c) for c in result.countries],
        labels=result.labels, indicators=result.indicators,
        excluded=[ClusterExcluded(country=c, name=data.country_name(c), indicators=n)
                  for c, n in result.excluded],
        iterations=result.iterations, converged=result.converged, inertia=result.inertia)

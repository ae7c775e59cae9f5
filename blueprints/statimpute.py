"""Time-series interpolation (/statimpute): fill the missing years of one indicator for one SIDS country."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from models import statimpute
from models.statimpute import MAX_ORDER, ImputeDirection, ImputeMethod
from shared.http import ApiBlueprint
from shared.store import get_dataset
from shared.validation import ApiModel, Lookup, RequiredIf

blueprint = ApiBlueprint(
    "statimpute", label="Time-series interpolation",
    description=("Fills the missing years of one indicator for one SIDS country by interpolating along time. "
                 "Gaps between observed years use the chosen method; years before the first or after the last "
                 "observation (filled according to `direction`) take the nearest observed value."))


# ---------------------------------------------------------------------------- look-ups
class ImputeTargetsQuery(ApiModel):
    dataset: Annotated[Optional[str], Lookup("/datasets")] = Field(
        None, description="Only the indicators of this dataset", max_length=100)


class ImputeTarget(ApiModel):
    code: str
    name: str
    dataset: str
    category: str
    countries: int = Field(description="SIDS with at least one observed year")


class ImputeCountriesQuery(ApiModel):
    target: Annotated[str, Lookup("/statimpute/targets")] = Field(
        ..., description="Indicator code", examples=["wdi-SP.URB.TOTL"], min_length=1, max_length=200)


class ImputeCountry(ApiModel):
    code: str = Field(description="ISO 3166-1 alpha-3 code")
    name: str
    observed: int = Field(description="Years with a value")
    missing: int = Field(description="Years without a value")
    first_year: int
    last_year: int


@blueprint.get("targets", query=ImputeTargetsQuery, response=list[ImputeTarget], errors=(503,))
def targets(query: ImputeTargetsQuery) -> list[ImputeTarget]:
    """Indicators that some SIDS has data for (the values of `target`)."""
    return [ImputeTarget(**t) for t in statimpute.targets(get_dataset(), query.dataset)]


@blueprint.get("countries", query=ImputeCountriesQuery, response=list[ImputeCountry], errors=(503,))
def countries(query: ImputeCountriesQuery) -> list[ImputeCountry]:
    """SIDS with at least one observed year of the indicator (the values of `country`).

    Only Small Island Developing States are listed: the model serves SIDS. `observed`
    tells how many points the interpolation has (see the methods' minimums in /statimpute/impute).
    """
    return [ImputeCountry(**c) for c in statimpute.countries_with_data(get_dataset(), query.target)]


# ---------------------------------------------------------------------------- impute
class ImputeRequest(ApiModel):
    target: Annotated[str, Lookup("/statimpute/targets")] = Field(
        ..., title="Indicator", description="Indicator code to interpolate", examples=["wdi-SP.URB.TOTL"],
        min_length=1, max_length=200)
    country: Annotated[str, Lookup("/statimpute/countries", inputs=("target",))] = Field(
        ..., title="Country", description="ISO3 code of a SIDS with data for the indicator", examples=["FJI"],
        min_length=3, max_length=3)
    method: ImputeMethod = Field(ImputeMethod.linear, title="Method", description=(
        "Interpolation between observed years. Minimum observed years: 2 for linear, nearest, zero, slinear, "
        "pchip and akima; 3 for quadratic; 4 for cubic; order + 1 for spline and polynomial."))
    direction: ImputeDirection = Field(ImputeDirection.both, title="Direction", description=(
        "Which edges to fill besides the interior gaps: forward = years after the last observation, "
        "backward = years before the first, both = both. Edges take the nearest observed value."))
    order: Annotated[Optional[int], RequiredIf("method", "spline", "polynomial")] = Field(
        None, title="Order", description=f"Degree of the spline or polynomial (1 to {MAX_ORDER}); "
                                         "required for spline and polynomial, ignored otherwise",
        ge=1, le=MAX_ORDER)


class ImputeSeriesPoint(ApiModel):
    year: int
    value: Optional[float] = Field(description="Observed or imputed value; null when still missing")
    status: Literal["observed", "imputed", "missing"]


class ImputeResponse(ApiModel):
    target: str
    target_name: str
    country: str
    country_name: str
    method: ImputeMethod
    direction: ImputeDirection
    order: Optional[int]
    filled_years: list[int] = Field(description="Years that were missing and now have an imputed value")
    series: list[ImputeSeriesPoint] = Field(description="Every year of the dataset, observed and imputed values marked")


@blueprint.post("impute", body=ImputeRequest, response=ImputeResponse, main=True, errors=(503,))
def impute(req: ImputeRequest) -> ImputeResponse:
    """Interpolate the missing years of one indicator for one SIDS country.

    Returns the years it filled and the whole series with each point marked observed,
    imputed or (outside the chosen direction) still missing. A series with fewer
    observed years than the method needs is a 422 that says how many are needed.
    """
    data = get_dataset()
    order = req.order if req.method in statimpute.ORDERED_METHODS else None
    result = statimpute.impute(data, req.target, req.country, req.method, req.direction, order)
    series = [ImputeSeriesPoint(year=y, value=v,
                                status="observed" if o else ("imputed" if v is not None else "missing"))
              for y, v, o in zip(result.years, result.values, result.observed)]
    return ImputeResponse(target=result.target, target_name=data.indicator_name(result.target),
                          country=result.country, country_name=data.country_name(result.country),
                          method=req.method, direction=req.direction, order=order,
                          filled_years=result.filled_years, series=series)

"""HTTP layer of the two-level imputation model (/twolvlImp): request models, look-ups, predict, estimate.

The method itself lives in :mod:`models.twolvlimp`; this module only validates requests,
calls it and maps its errors to HTTP answers (422 with a message saying what is allowed).

Only the look-ups (:mod:`models.twolvlimp.lookups`: numpy, no scikit-learn) are imported with this
module. The method (:mod:`models.twolvlimp.runtime` and the scikit-learn code behind it) is
imported by the first /estimate or /predict, or before that in the background once the dataset
is loaded (``MODEL_CODE``, shared/warmup.py), so that an instance's start does not pay for it.

What the model keeps between requests (result cache, compute slots, fit pool, learned durations)
is one :class:`~models.twolvlimp.runtime.TwoLevelRuntime`, sized here from the settings
(:func:`build_runtime`) and reached through :func:`runtime`; the model code reads no settings.
"""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.twolvlimp import lookups
from models.twolvlimp.lookups import ImputationRequest
from shared.capacity import Budget, favour_light_requests
from shared.http import ApiBlueprint
from shared.imports import import_model_code
from shared.instance import InstanceSlot
from shared.settings import Settings, get_settings
from shared.store import get_dataset
from shared.validation import ApiModel, Lookup, RequiredIf

if TYPE_CHECKING:
    from models.twolvlimp.runtime import TwoLevelRuntime

blueprint = ApiBlueprint(
    "twolvlImp", label="Two-level imputation", prefix="twolvlImp",
    description=("Imputes an indicator's missing values for Small Island Developing States: a base imputer fills "
                 "the predictors' gaps (level 1), a cross-validated tree model predicts the target (level 2), with "
                 "calibrated 90% prediction intervals, feature importances and correlations. See docs/twolvlimp.md."))

PREFIX = "/twolvlImp"
# Imported by /estimate and /predict on first use; shared/warmup.py imports it after the dataset load.
MODEL_CODE = ("models.twolvlimp.runtime",)


def build_runtime(settings: Settings) -> TwoLevelRuntime:
    """A twolvlImp runtime sized by ``settings`` and by the CPUs this process may use (joblib's
    ``cpu_count``: the affinity, capped by a container's cgroup CPU quota; not the machine's cores):
    as many computations at once as usable CPUs unless MAX_CONCURRENT_PREDICTIONS says otherwise,
    one fit thread per usable CPU."""
    # scikit-learn: imported on first use, not at start, and never beside the warm-up's import (shared/imports.py)
    TwoLevelRuntime = import_model_code("models.twolvlimp.runtime").TwoLevelRuntime
    import joblib  # scikit-learn's dependency, imported by it already

    cpus = joblib.cpu_count()
    favour_light_requests()  # fits may now run beside light requests
    return TwoLevelRuntime(cache_size=settings.result_cache_size, cache_bytes=settings.result_cache_bytes,
                           concurrency=settings.max_concurrent_predictions or cpus,
                           queue_length=settings.max_queued_predictions, fit_workers=cpus)


# This instance's twolvlImp runtime (result cache, compute slots, fit pool, learned durations): built from the
# settings by the first /estimate or /predict, then kept for the process; tests serve with their own (use_runtime)
_runtime: InstanceSlot[TwoLevelRuntime] = InstanceSlot(lambda: build_runtime(get_settings()))
runtime = _runtime.get
use_runtime = _runtime.replace


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum whose members are ``values`` (member name = value): the request's choices for validation,
    OpenAPI and /params, from the model package's tuples, their one source."""
    return Enum(name, {v: v for v in values}, type=str, module=__name__)


Interpolator = _choices("Interpolator", lookups.INTERPOLATORS)
Scheme = _choices("Scheme", lookups.SCHEMES)
ModelKind = _choices("ModelKind", lookups.MODELS)
Interval = _choices("Interval", lookups.INTERVALS)
Method = _choices("Method", lookups.METHODS)


def _year_text(value: Any) -> Any:
    # The dashboard sends "2015"; a bare number is accepted too.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Year = Annotated[str, Field(title="Target year", description="The year to impute, as a string (see /twolvlImp/target_years)",
                            examples=["2015"], max_length=8), Lookup(f"{PREFIX}/target_years")]


class TrainRequest(ApiModel):
    """A /predict (or /estimate) request, as the dashboard builds it."""

    target: Annotated[str, Field(title="Target indicator",
                                 description="Code of the indicator whose missing SIDS values are imputed. The old "
                                             "platform's codes with a 'key-' prefix are accepted.",
                                 examples=["wdi-EG.ELC.ACCS.UR.ZS"], max_length=200),
                      Lookup(f"{PREFIX}/targets", "GET", ("target_year", "dataset"))]
    target_year: Year
    interpolator: Annotated[Interpolator, Field(
        title="Base imputer", description="The base imputer fills the gaps of the predictors (level 1): KNN with 5 "
        "neighbours on min-max scaled values, the column mean, or iterative imputation with extra trees",
        examples=["KNNImputer"])]
    scheme: Annotated[Scheme, Field(
        title="Predictor selection", description="MANUAL: the given predictors; AFS: automatic selection by recursive "
        "feature elimination with random forests; PCA: the features loading most on the leading principal components",
        examples=["MANUAL"])]
    estimators: Annotated[int, Field(title="Number of trees", description="Trees per tree model (1 to 1000)",
                                     ge=1, le=lookups.MAX_ESTIMATORS, examples=[100])]
    model: Annotated[ModelKind, Field(
        title="Model", description="rfr: random forest; gbr: gradient boosting; etr: extra trees; all: the best of "
        "the three by cross-validation", examples=["rfr"])]
    interval: Annotated[Interval, Field(
        title="Prediction interval", description="quantile: conformalised quantile band of the trees (adapts to each "
        "country); bootstrap: residual bootstrap (same width for every country). Both are 90% intervals calibrated "
        "on cross-validated predictions", examples=["quantile"])]
    dataset: Annotated[Optional[str], Field(
        title="Dataset", description="Dataset of the target (default: the target's dataset in the indicator "
        "metadata; the old platform's 'key' means the same)", examples=["wdi"], max_length=100),
        Lookup(f"{PREFIX}/datasets", "GET", ("target_year",))] = None
    manual_predictors: Annotated[Optional[list[Annotated[str, Field(max_length=200)]]], Field(
        title="Predictors", description="1 to 50 distinct predictor codes, each valid for the target year "
        "(POST /twolvlImp/predictors lists them); required when scheme is MANUAL",
        min_length=1, max_length=lookups.MAX_PREDICTORS, examples=[["wdi-EN.POP.DNST"]]),
        RequiredIf("scheme", "MANUAL"), Lookup(f"{PREFIX}/predictors", "POST", ("target_year", "dataset", "target", "scheme"))] = None
    number_predictor: Annotated[Optional[int], Field(
        title="Number of predictors", description="How many predictors AFS or PCA selects (1 to 50, at most the "
        "number of valid predictors that year); required when scheme is AFS or PCA",
        ge=1, le=lookups.MAX_PREDICTORS, examples=[10]),
        RequiredIf("scheme", "AFS", "PCA"), Lookup(f"{PREFIX}/predictors", "POST", ("target_year", "dataset", "target", "scheme"))] = None
    method: Annotated[Method, Field(
        title="Method", description="default: the improved method (own-series model, calibrated intervals); "
        "legacy: the old service's method, for comparison (slower, uncalibrated)", examples=["default"])] = Method.default

    _year = field_validator("target_year", mode="before")(_year_text)

    @field_validator("manual_predictors")
    @classmethod
    def _distinct(cls, value: Optional[list[str]]):
        # The model's rule (resolve applies it again after the key- aliases); here it gives repeated codes
        # the 422 of a malformed body, with the field in "loc". ImputationError is a ValueError.
        lookups.check_distinct(value or ())
        return value

    def to_model(self) -> ImputationRequest:
        return ImputationRequest(
            target=self.target, target_year=self.target_year, interpolator=self.interpolator.value,
            scheme=self.scheme.value, estimators=self.estimators, model=self.model.value, interval=self.interval.value,
            dataset=self.dataset, manual_predictors=tuple(self.manual_predictors) if self.manual_predictors else None,
            number_predictor=self.number_predictor, method=self.method.value)


class EstimateRequest(TrainRequest):
    """What /estimate accepts: any state of the dashboard's form, even half-filled.

    The page asks for an estimate after every change, before the form is complete (e.g. MANUAL
    with no predictor yet), and does not handle errors there; missing or not-yet-valid parts are
    estimated from typical choices instead of refused. /predict keeps the strict TrainRequest.
    """

    target: Annotated[Optional[str], Field(title="Target indicator", description="Code of the target "
                                           "(default: a typical target of the year)", max_length=200)] = None
    target_year: Annotated[Optional[str], Field(title="Target year", description="The year to impute "
                                                "(default: the latest target year)", max_length=8)] = None
    manual_predictors: Annotated[Optional[list[Annotated[str, Field(max_length=200)]]], Field(
        title="Predictors", description="The predictors chosen so far (none yet is fine)",
        max_length=lookups.MAX_PREDICTORS)] = None
    number_predictor: Annotated[Optional[int], Field(
        title="Number of predictors", description="How many predictors AFS or PCA selects (default 10)",
        ge=1, le=lookups.MAX_PREDICTORS)] = None

    def to_model(self) -> ImputationRequest:
        return ImputationRequest(
            target=self.target or "", target_year=self.target_year or "", interpolator=self.interpolator.value,
            scheme=self.scheme.value, estimators=self.estimators, model=self.model.value, interval=self.interval.value,
            dataset=self.dataset, manual_predictors=tuple(self.manual_predictors or ()),
            number_predictor=self.number_predictor, method=self.method.value)


class YearQuery(ApiModel):
    target_year: Year

    _year = field_validator("target_year", mode="before")(_year_text)


class TargetsQuery(YearQuery):
    dataset: Annotated[str, Field(title="Dataset", description="Dataset code (see /twolvlImp/datasets)",
                                  examples=["wdi"], max_length=100), Lookup(f"{PREFIX}/datasets", "GET", ("target_year",))]


class DimensionsQuery(YearQuery):
    target: Annotated[str, Field(title="Indicator", description="Indicator name (the indicator metadata's "
                                 "'Indicator'), or one of its codes", max_length=300,
                                 examples=["Access to electricity, urban"])]
    dataset: Annotated[Optional[str], Field(title="Dataset", description="Dataset code (default: the indicator's)",
                                            examples=["wdi"], max_length=100)] = None


class PredictorListRequest(YearQuery):
    dataset: Annotated[Optional[str], Field(title="Dataset", description="Dataset of the target (default: the "
                                            "target's)", examples=["wdi"], max_length=100)] = None
    target: Annotated[str, Field(title="Target indicator", description="Code of the target (it is never offered "
                                 "as its own predictor)", examples=["wdi-EG.ELC.ACCS.UR.ZS"], max_length=200)]
    scheme: Annotated[Scheme, Field(title="Predictor selection", examples=["MANUAL"])]


class Dimension(BaseModel):
    label: str
    value: str


class PredictionTable(BaseModel):
    """Parallel arrays, one entry per imputed SIDS."""

    model_config = ConfigDict(populate_by_name=True)
    country_code: list[str] = Field(alias="Country Code")
    prediction: list[float]
    lower: list[float]
    upper: list[float]


class SplitFrame(BaseModel):
    """A matrix in pandas' ``split`` orientation."""

    index: list[str]
    columns: list[str]
    data: list[list[float]]


class CategoryPie(BaseModel):
    category: list[str]
    value: list[float]


class ModelResponse(BaseModel):
    """Every field the dashboard reads, in both of its layouts, plus what a data scientist needs to judge the result."""

    model_config = ConfigDict(extra="allow")
    rmse: float = Field(description="Cross-validated RMSE of the model that imputed most countries (target units)")
    rmse_deviation: float = Field(description="rmse / mean of the target (or / its range when that is outside [0, 1])")
    model_feature_names: list[str]
    model_feature_importance: list[float] = Field(description="Impurity importances, parallel to model_feature_names")
    feature_importance_pie: CategoryPie = Field(description="Importances summed per indicator Category")
    correlation: SplitFrame = Field(description="Correlation of the selected predictors")
    prediction: PredictionTable
    indicatorJson: dict[str, Any] = Field(description="The year-keyed layout: data (observed SIDS values and "
                                          "predictions), upperIntervals/lowerIntervals (predicted ones only), "
                                          "featureImportances, categoryImportances, correlation, rmse, rmse_deviation, "
                                          "imputed (the predicted countries)")
    sample_size: int = Field(description="Training rows of the primary model")
    method: str
    model: dict[str, Any] = Field(description="Chosen model, its parameters and cross-validation scores")
    n_train: int
    n_train_sids: int
    predictors: list[dict[str, str]] = Field(description="Selected predictors with names")
    interval: dict[str, Any] = Field(description="Interval method, nominal level and calibration")
    submodels: list[dict[str, Any]] = Field(description="Own-series and cross-section models, if both were used")
    data_version: str
    compute_seconds: float


def _dataset():
    return get_dataset()


@blueprint.get("target_years", response=list[str])
def target_years() -> list[str]:
    """The years that can be targets (derived from the data)."""
    return lookups.target_years(_dataset())


@blueprint.get("datasets", query=YearQuery, response=dict[str, str])
def datasets(q: YearQuery) -> dict[str, str]:
    """{dataset code: dataset name} for the datasets with valid targets that year."""
    ds = _dataset()
    return lookups.datasets(ds, lookups.check_year(ds, q.target_year))


@blueprint.get("targets", query=TargetsQuery, response=dict[str, str])
def targets(q: TargetsQuery) -> dict[str, str]:
    """{indicator code: name}: indicators missing for fewer than 80% of countries that year, and for at least one."""
    ds = _dataset()
    year = lookups.check_year(ds, q.target_year)
    return lookups.targets(ds, year, lookups.dataset_for(ds, year, q.dataset, None, lookup=True))


@blueprint.get("dimensions", query=DimensionsQuery, response=list[Dimension])
def dimensions(q: DimensionsQuery) -> list[dict]:
    """[{label, value}]: the dimensions of an indicator (by name or code) that are valid targets that year."""
    ds = _dataset()
    year = lookups.check_year(ds, q.target_year)
    return lookups.dimensions(ds, year, lookups.dataset_for(ds, year, q.dataset, q.target, lookup=True), q.target)


@blueprint.post("predictors", body=PredictorListRequest, response=dict[str, Any])
def predictors(req: PredictorListRequest) -> dict:
    """MANUAL: {code: "Indicator-Dimension"} of the valid predictors that year, without the target itself.
    AFS/PCA: the allowed numbers of predictors ({n: n})."""
    ds = _dataset()
    year = lookups.check_year(ds, req.target_year)
    dataset = lookups.dataset_for(ds, year, req.dataset, req.target, lookup=True)
    target = lookups.check_target(ds, year, dataset, req.target)
    if req.scheme == Scheme.MANUAL:
        return lookups.manual_predictor_options(ds, year, target)
    return {str(k): v for k, v in lookups.number_predictor_options(ds, year, target).items()}


@blueprint.get("target_sample_size", response=int, aliases=("imputation/target_sample_size",))
def target_sample_size() -> int:
    """Minimum number of countries with data that a target needs (it may miss fewer than 80%)."""
    return lookups.target_sample_size(_dataset())


@blueprint.get("predictor_sample_size", response=int, aliases=("imputation/predictor_sample_size",))
def predictor_sample_size() -> int:
    """Minimum number of countries with data that a predictor needs (it may miss fewer than 30%)."""
    return lookups.predictor_sample_size(_dataset())


@blueprint.post("estimate", body=EstimateRequest, response=float)
def estimate(req: EstimateRequest) -> float:
    """Expected seconds for /predict with this request on this instance (learned from its measured durations).
    Answers any state of the form: what is not chosen yet is estimated from typical choices."""
    ds = _dataset()
    return runtime().estimate_seconds(ds, lookups.complete_for_estimate(ds, req.to_model()))


@blueprint.post("predict", body=TrainRequest, response=ModelResponse, main=True, aliases=("imputation/predict",),
                errors=(503, 504))
def predict(req: TrainRequest) -> func.HttpResponse:
    """Impute the target's missing SIDS values for the year: predictions, 90% intervals, importances, correlations.

    Bounded by the instance's capacity: 503 with Retry-After when its queue of predictions is full;
    422 (over_time_budget) up front when the request is expected to take longer than the time budget
    (the message names changes that fit); 504 when a computation overruns the budget and is stopped."""
    ds = _dataset()
    budget = Budget.for_request(get_settings().request_time_budget_seconds)
    outcome = runtime().predict_response(ds, req.to_model(), budget=budget)
    # The body is built as bytes by the model package (and cached as such): check it against the documented
    # schema before it leaves, so that a null or missing field is a logged 500, never a 200 a client trusts.
    ModelResponse.model_validate_json(outcome.body)
    return func.HttpResponse(body=outcome.body, status_code=200, mimetype="application/json", charset="utf-8",
                             headers={"x-cache": "hit" if outcome.cached else "miss",
                                      "x-compute-seconds": f"{outcome.seconds:.4f}"})

"""The work a request declares (its plan, which /estimate prices) against the work it runs (the tally).

If the method changes what it runs (another fold, another member of the stack, another selection step)
and its plan does not follow, these fail: /estimate cannot drift from the method silently.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.twolvlimp.costs import DurationModel, UnitCosts, makespan, plan_seconds
from models.twolvlimp.lookups import ImputationRequest, resolve
from models.twolvlimp.tree_search import BOOSTING_DEPTHS
from models.twolvlimp.runtime import compute, plan_request
from models.twolvlimp.stacking import KIND_SCREEN_TREES
from models.twolvlimp.work import Job, WorkPlan, job, tallied
from shared.dataset import Dataset

TARGET = "wdi-EG.ELC.ACCS.UR.ZS"
MANUAL = ("wdi-EN.POP.DNST", "wdi-IQ.SPI.PIL1", "wdi-IQ.SPI.PIL3")
# kinds whose every term the plan knows before the run (the others depend on the fit or the data)
EXACT = {"forest_fold_rfr", "forest_fold_etr", "impute_KNNImputer", "impute_SimpleImputer", "afs_rfe", "afs_lars",
         "pca", "screened_ridge", "stack", "request", "legacy_impute_KNNImputer", "legacy_impute_SimpleImputer",
         "legacy_rfe", "legacy_grid"}
_VERSIONS = itertools.count()


def fresh(ds: Dataset) -> Dataset:
    """The same data as a new version: nothing memoised."""
    return Dataset(values=ds.values, years=ds.years, countries=ds.countries, indicators=ds.indicators,
                   indicator_meta=ds.indicator_meta, dataset_meta=ds.dataset_meta, country_meta=ds.country_meta,
                   sids=ds.sids, version=f"plan-{next(_VERSIONS)}")


def request(**kw) -> ImputationRequest:
    base = dict(target=TARGET, target_year="2015", interpolator="KNNImputer", scheme="MANUAL", estimators=10,
                model="rfr", interval="quantile", dataset="wdi", manual_predictors=MANUAL)
    base.update(kw)
    if base["scheme"] != "MANUAL":
        base.setdefault("number_predictor", 5)
        base["manual_predictors"] = None
    return ImputationRequest(**base)


def planned_and_ran(ds: Dataset, req: ImputationRequest):
    r = resolve(ds, req)
    plan = plan_request(ds, r)
    with tallied() as tally:
        compute(ds, r)
    return plan, plan.totals(), tally.totals(), tally


def assert_same_terms(kind: str, planned: dict, ran: dict) -> None:
    assert set(planned) == set(ran), f"{kind}: terms planned {sorted(planned)} vs ran {sorted(ran)}"
    for term in planned:
        assert ran[term] == pytest.approx(planned[term], rel=1e-9), f"{kind}.{term}: planned {planned[term]}, ran {ran[term]}"


CASES = [
    dict(),                                                            # the form's simplest request
    dict(model="all", interval="bootstrap"),
    dict(model="all", estimators=150, scheme="PCA"),                   # the kind chosen on 100-tree fits first
    dict(scheme="AFS", interpolator="IterativeImputer", model="gbr"),
    dict(scheme="PCA", interpolator="SimpleImputer", model="etr"),
    dict(target="wdi-IP.TMK.TOTL", scheme="AFS", model="rfr"),          # a skewed target: ridge on log(target) too
    dict(method="legacy", scheme="AFS", model="etr"),
    dict(method="legacy", scheme="MANUAL", model="all"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "simple")
def test_plan_matches_the_jobs_the_method_runs(wdi, case):
    ds = fresh(wdi)
    plan, planned, ran, tally = planned_and_ran(ds, request(**case))
    optional = {"afs_inner_cv"}   # runs only when forest RFE and LARS disagree
    assert set(ran) <= set(planned), f"jobs run but not planned: {sorted(set(ran) - set(planned))}"
    assert set(planned) - set(ran) <= optional, f"jobs planned but not run: {sorted(set(planned) - set(ran))}"
    ran_on = {(t.job.kind, t.job.parallel) for t in tally.jobs}   # on the fit pool or on the request's thread
    assert ran_on <= {(j.kind, j.parallel) for j in plan.jobs}, f"run {sorted(ran_on)}, planned otherwise"
    if case.get("model") == "all" and case.get("estimators", 10) > KIND_SCREEN_TREES:
        # the kind the first round chooses is grown again with every tree: the plan counts it as a random forest
        folds = [k for k in ("forest_fold_rfr", "forest_fold_etr", "boosting_fold")]
        assert sum(ran[k]["job"] for k in folds) == sum(planned[k]["job"] for k in folds)
        planned, ran = ({k: v for k, v in d.items() if k not in folds} for d in (planned, ran))
    for kind, terms in planned.items():
        if kind not in ran:
            continue
        if kind in EXACT - {"stack"} or (kind == "stack" and case.get("estimators", 10) <= KIND_SCREEN_TREES) or (kind == "ridge" and case.get("scheme", "MANUAL") == "MANUAL"):
            assert_same_terms(kind, terms, ran[kind])
        else:   # the number of jobs is known; their sizes are expected values
            assert ran[kind]["job"] == terms["job"], kind
    if "boosting_fold" in ran:
        fits = ran["boosting_fold"]["fits"] / ran["boosting_fold"]["job"]
        assert 1 <= fits <= len(BOOSTING_DEPTHS)
    if "impute_IterativeImputer" in ran:   # the plan counts the most rounds the imputer may run
        assert 0 < ran["impute_IterativeImputer"]["column_rounds"] <= planned["impute_IterativeImputer"]["column_rounds"]
        assert ran["impute_IterativeImputer"]["pair_columns"] == planned["impute_IterativeImputer"]["pair_columns"]


@pytest.mark.parametrize("model", ["rfr", "all"])
def test_plan_matches_the_jobs_on_more_candidates_than_training_rows(platform, model):
    """The SIDS platform's data: AFS is redone in each stack fold (five more selections, ridge and tree fits
    on each fold's predictors, then the chosen kind on the predictors selected on every row)."""
    ds = fresh(platform)
    req = ImputationRequest(target="hdr-31706", target_year="2015", scheme="AFS", number_predictor=5,
                            estimators=10, model=model)
    plan, planned, ran, tally = planned_and_ran(ds, req)
    assert set(planned) - set(ran) <= {"afs_inner_cv"} and set(ran) <= set(planned)
    assert ran["afs_rfe"]["job"] == planned["afs_rfe"]["job"] == 6          # every row, then each of 5 folds
    assert_same_terms("afs_rfe", planned["afs_rfe"], ran["afs_rfe"])
    folds = ("forest_fold_rfr", "forest_fold_etr", "boosting_fold")
    assert sum(ran[k]["job"] for k in folds if k in ran) == sum(planned[k]["job"] for k in folds if k in planned)
    for kind in ("ridge", "stack", "chained_linear", "screened_ridge"):
        assert ran[kind]["job"] == planned[kind]["job"], kind
    assert_same_terms("stack", planned["stack"], ran["stack"])


def test_a_memoised_preparation_is_not_planned_and_known_predictors_make_the_ridge_exact(wdi):
    ds = fresh(wdi)
    req = request(scheme="AFS", model="rfr")
    planned_and_ran(ds, req)
    plan, planned, ran, _ = planned_and_ran(ds, req)   # the same target and year again: imputation, selection memoised
    assert not plan.prepare_cold and not any(k.startswith(("impute", "afs")) for k in planned)
    assert set(planned) == set(ran)
    assert_same_terms("ridge", planned["ridge"], ran["ridge"])


def test_every_kind_a_plan_can_hold_has_unit_costs(wdi):
    costs = UnitCosts.load()
    ds = fresh(wdi)
    kinds = set()
    for imputer, scheme, model, method in itertools.product(("KNNImputer", "IterativeImputer", "SimpleImputer"),
                                                            ("MANUAL", "AFS", "PCA"), ("rfr", "etr", "gbr", "all"),
                                                            ("default", "legacy")):
        plan = plan_request(ds, resolve(ds, request(interpolator=imputer, scheme=scheme, model=model, method=method)))
        kinds |= {j.kind for j in plan.jobs}
        assert plan_seconds(plan.jobs, costs, 2) > 0
    assert kinds <= set(costs.seconds), f"no unit costs for {sorted(kinds - set(costs.seconds))}"


def test_parallel_jobs_share_the_workers_and_the_rest_runs_in_sequence():
    assert makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert makespan([1.0] * 10, 2) == 5.0
    assert makespan([1.0] * 10, 1) == 10.0
    costs = UnitCosts(seconds={"fit": {"job": 1.0}, "glue": {"job": 0.5, "rows": 0.1}}, measured_on={})
    jobs = tuple([Job("fit", {}, parallel=True)] * 4 + [Job("glue", {"rows": 5.0})])
    assert plan_seconds(jobs, costs, 2) == pytest.approx(2.0 + 1.0)
    assert plan_seconds(jobs, costs, 4) == pytest.approx(1.0 + 1.0)


def test_durations_learn_the_ratio_of_measured_to_planned_seconds_per_group():
    costs = UnitCosts(seconds={"fit": {"job": 1.0}, "imp": {"job": 2.0}}, measured_on={})
    model = DurationModel(costs, workers=1)
    plan = WorkPlan((Job("imp", {}, "prepare"), Job("fit", {})), group="model/rfr", prepare_group="prepare/K/AFS")
    assert model.estimate(plan) == pytest.approx(3.0)
    model.record(plan, prepare_seconds=4.0, model_seconds=3.0)   # twice and three times the plan's price
    assert model.estimate(plan) == pytest.approx(4.0 + 3.0)
    other = WorkPlan((Job("fit", {}),), group="model/etr", prepare_group="prepare/K/AFS")
    assert model.estimate(other) == pytest.approx(3.0)          # an unseen group: its phase's ratio


def test_a_tally_counts_each_job_once_and_its_own_cpu_seconds_only():
    with tallied() as tally:
        with job("outer", rows=2.0):
            with job("inner"):
                sum(i * i for i in range(200_000))
    by_kind = {t.job.kind: t for t in tally.jobs}
    assert set(by_kind) == {"outer", "inner"} and by_kind["outer"].job.terms == {"rows": 2.0}
    assert by_kind["outer"].cpu_seconds < by_kind["inner"].cpu_seconds
    with job("untallied"):   # outside a tally marking costs nothing and records nothing
        pass
    assert len(tally.jobs) == 2 and np.isfinite(tally.seconds_by_kind()["inner"])

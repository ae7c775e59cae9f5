"""The stack as a list of member objects (models/twolvlimp/members.py, models/twolvlimp/stack.py): a member defined
here, outside the service's code, joins the stack with one class and one line; the stack fits it, weighs it,
reports it and the plan declares its work."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsRegressor

from models.twolvlimp.members import MEMBERS, Member, MemberFit, StackPlan, StackRun
from models.twolvlimp.stack import (StackData, StackOptions, _best_weights, fit_stacked, grid_size, stack_jobs,
                                   stacking_grid, tie_order)
from models.twolvlimp.stacking import Masking, stack_folds
from models.twolvlimp.tree_search import FitContext
from models.twolvlimp.work import Job, job, tallied

NEIGHBOURS = 5


class NearestNeighboursMember(Member):
    """k-nearest-neighbours regression on the selected predictors: the sixth member, written by a newcomer."""

    name, tie_rank, has_section = "knn", 5, True

    @staticmethod
    def terms(folds) -> dict[str, float]:
        return {"fits": float(len(folds)), "rows": float(sum(tr.size for tr, _ in folds))}

    def fit(self, run: StackRun, ctx: FitContext) -> MemberFit:
        X, y, Xp = run.data.X, run.data.y, run.data.Xp
        oof, preds, masked = np.empty(y.size), [], []
        with job("knn", **self.terms(run.folds)):
            for f, (tr, te) in enumerate(run.folds):
                ctx.check(f"knn fold {f}")
                model = KNeighborsRegressor(NEIGHBOURS, weights="distance").fit(X[tr], y[tr])
                oof[te] = model.predict(X[te])
                preds.append(model.predict(Xp))
                if run.masked is not None:
                    masked.append((model.predict(run.masked[f]["X"]), None))
        return MemberFit(oof, np.mean(preds, axis=0), masked=masked if run.masked is not None else None)

    def jobs(self, plan: StackPlan) -> list[Job]:
        return [Job("knn", self.terms(plan.folds))]

    def report(self, fit: MemberFit) -> dict:
        return {"neighbours": NEIGHBOURS, "weights": "inverse distance"}


WITH_KNN = MEMBERS + (NearestNeighboursMember(),)   # the one line


def bump_problem(seed=0, n=300, m=40):
    """A smooth bump in two predictors: neither linear nor step-like, where neighbours average well."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n + m, 2))
    y = np.exp(-(X ** 2).sum(axis=1)) * 4 + 0.05 * rng.normal(size=n + m)
    return X[:n], y[:n], rng.random(n) < 0.3, X[n:], y[n:]


def test_a_sixth_member_is_fitted_weighed_reported_and_planned():
    X, y, sids, Xp, truth = bump_problem()
    data, opts = StackData(X, y, sids, Xp), StackOptions("rfr", 20, "quantile", seed=7)
    with tallied() as tally:
        fit = fit_stacked(data, opts, members=WITH_KNN)
    stack = fit.params["stack"]
    weights = {m.name: stack[f"weight_{m.name}"] for m in WITH_KNN}
    assert weights["knn"] > 0 and "knn" in stack["chosen"].split("+")              # weighed
    assert sum(weights.values()) == pytest.approx(1.0)
    assert stack["cv_rmse"]["knn"] < stack["cv_rmse"]["mean"]                       # reported, scored out of fold
    assert stack["cv_rmse"]["stacked"] <= min(v for k, v in stack["cv_rmse"].items() if v is not None and k != "stacked")
    assert stack["knn"] == {"neighbours": NEIGHBOURS, "weights": "inverse distance"}
    assert np.sqrt(np.mean((fit.prediction - truth) ** 2)) < 0.5 * np.std(truth)
    assert np.all(fit.lower <= fit.prediction) and np.all(fit.prediction <= fit.upper)

    # declared: the plan from the same member list holds the member's job, as tallied, and a grid of 6 members
    shape = data.shape(opts.linear)
    plan = StackPlan(opts=opts, shape=shape, folds=stack_folds(len(y), opts.seed), train_rows=np.arange(len(y)),
                     pred_rows=np.arange(len(y), len(y) + len(Xp)), y=y, gaps=None, gap_share=0.0,
                     countries=len(y) + len(Xp))
    planned = {j.kind: j for j in stack_jobs(plan, 0, WITH_KNN)}
    ran = {t.job.kind: t.job for t in tally.jobs}
    assert planned["knn"].terms == ran["knn"].terms
    assert planned["stack"].terms == ran["stack"].terms
    assert ran["stack"].terms["grid_rows"] == grid_size(4) * len(y)   # ridge, trees, mean, knn run (MANUAL-like)
    # without the line, the same stack has no such member, weight or job
    plain = fit_stacked(data, opts)
    assert "weight_knn" not in plain.params["stack"] and "knn" not in {j.kind for j in stack_jobs(plan, 0)}


def test_a_member_reads_the_masked_rows_for_the_calibration_per_pattern():
    """Rows to predict that lack a predictor: the new member's fold models read the held-out rows masked to that
    pattern, and the pattern's weights include it."""
    rng = np.random.default_rng(3)
    n, m = 200, 60
    raw = rng.uniform(-2, 2, size=(n + m, 3))
    y_all = np.exp(-(raw[:, :2] ** 2).sum(axis=1)) * 4 + 0.5 * raw[:, 2] + 0.05 * rng.normal(size=n + m)
    raw[n:, 2] = np.nan
    filled = np.where(np.isnan(raw), np.nanmean(raw, axis=0), raw)
    masking = Masking(raw=raw, filled=filled, train_rows=np.arange(n), pred_rows=np.arange(n, n + m),
                      selected=np.arange(3), interpolator="SimpleImputer")
    gaps = np.isnan(raw)
    fit = fit_stacked(StackData(filled[:n], y_all[:n], np.zeros(n, bool), filled[n:], missing=gaps[:n],
                                missing_pred=gaps[n:], masking=masking),
                      StackOptions("rfr", 20, "quantile", seed=7), members=WITH_KNN)
    pattern = fit.interval_info["patterns"][0]
    assert pattern["rows"] == m and len(pattern["weights"]) == len(WITH_KNN)
    assert pattern["weights"][-1] > 0     # the knn member, read on the masked rows, weighs for this pattern


def test_the_grid_has_one_weight_per_member_and_ties_go_by_rank():
    assert len(stacking_grid(5)) == grid_size(5) == 1001 and len(stacking_grid(6)) == grid_size(6) == 3003
    assert all(len(g) == 6 and abs(sum(g) - 1) < 1e-9 for g in stacking_grid(6))
    # members that all predict perfectly score exactly the same: the tie gives all the weight to the member of
    # highest rank (the lowest ranks' weights are minimised first)
    for members in (MEMBERS, WITH_KNN):
        grid, order = stacking_grid(len(members)), tie_order(members)
        best = _best_weights(grid, np.zeros((len(members), 8)), np.zeros(8), np.ones(8), order)
        highest = max(range(len(members)), key=lambda i: members[i].tie_rank)
        assert best[highest] == 1.0 and members[highest].name == ("knn" if members is WITH_KNN else "trees")

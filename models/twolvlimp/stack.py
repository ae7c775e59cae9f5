"""The default method's second level: its members (:mod:`models.twolvlimp.members`) fitted on the same folds,
combined by out-of-fold error, with conformal intervals, per pattern of missing inputs where rows lack some.

:func:`fit_stacked` (what the method calls) iterates over a member list (:data:`~models.twolvlimp.members.MEMBERS`):

1. the members that apply to this stack (:meth:`~models.twolvlimp.members.Member.applies`) fit their folds;
2. the stacking grid (:func:`stacking_grid`: weights in multiples of 0.1 summing to 1, one per member) is scored
   on their out-of-fold predictions; the least weighted squared error wins, ties going to the least weight on
   the members of lowest ``tie_rank``;
3. the intervals are calibrated on the nested out-of-fold residuals (:func:`_nested_stack_oof`), scaled by the
   members' single-tree spread or leverage; rows lacking inputs get weights and intervals from the held-out rows
   masked to their pattern, read by every member's fold models;
4. the report (``model.stack``) lists each member's weight, out-of-fold error and section.

The method itself (why these members, the intervals, the patterns) is described in
:mod:`models.twolvlimp.stacking`, where the members' numeric work lives.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from math import comb

import numpy as np

from models.twolvlimp.intervals import bootstrap_interval
from models.twolvlimp.members import (MEMBERS, Member, MemberFit, StackData, StackOptions, StackPlan, StackRun,
                                      StackShape, TreesMember)
from models.twolvlimp.stacking import (MONDRIAN_MIN, PATTERN_WEIGHTS, _masked_rows, _normalised_interval,
                                       pattern_columns, pattern_terms, patterns_of, stack_folds, tree_search_rounds)
from models.twolvlimp.tree_search import (ESTIMATOR_NAMES, FOREST_DEPTHS, N_FOLDS, ON_THIS_THREAD, FitContext,
                                          FitResult, _wmse, balanced_weights, fit_submitter, results_of)
from models.twolvlimp.work import Job, job

__all__ = ["fit_stacked", "stack_jobs", "stacking_grid", "StackData", "StackOptions", "StackPlan", "MEMBERS"]


# ------------------------------------------------------------------------------------------------ the grid
@lru_cache(maxsize=None)
def stacking_grid(k: int) -> tuple[tuple[float, ...], ...]:
    """Weights of ``k`` members: multiples of 0.1 summing to 1 (the last member's is what the others leave)."""
    grid: list[tuple[float, ...]] = []

    def walk(tenths: tuple[int, ...], left: int) -> None:
        if len(tenths) == k - 1:
            grid.append(tuple(t / 10 for t in tenths) + (round(1 - sum(tenths) / 10, 10),))
            return
        for t in range(left + 1):
            walk(tenths + (t,), left - t)
    walk((), 10)
    return tuple(grid)


@lru_cache(maxsize=None)
def _grid_matrix(k: int) -> np.ndarray:
    """:func:`stacking_grid` as a read-only array (made once: converting the 1,001 tuples of 5 members took
    longer than scoring them)."""
    G = np.asarray(stacking_grid(k))
    G.flags.writeable = False
    return G


def grid_size(k: int) -> int:
    """len(stacking_grid(k)) without building it."""
    return comb(10 + k - 1, k - 1)


def tie_order(members) -> list[int]:
    """Positions of the members by tie-break rank (among equal errors, the least weight on the first wins)."""
    return sorted(range(len(members)), key=lambda i: members[i].tie_rank)


def _best_weights(grid, members_oof: np.ndarray, y: np.ndarray, w: np.ndarray, order: list[int]) -> tuple[float, ...]:
    """The stacking weights (of ``grid``, a :func:`stacking_grid`) of least weighted squared error; among equals,
    by :func:`tie_order`."""
    G = _grid_matrix(len(grid[0]))
    return grid[_least(G, ((G @ members_oof - y) ** 2) @ w, order)]


def _least(G: np.ndarray, errors: np.ndarray, order: list[int]) -> int:
    """The row of ``G`` of least error; among equals, the least weight on the members of lowest rank first
    (``order``: :func:`tie_order`), then the first row."""
    least = errors.min()
    tied = np.flatnonzero(errors == least) if least == least else np.arange(errors.size)   # (NaN: sorted last)
    if tied.size > 1:
        # np.lexsort's last key sorts first, and it is stable: among equal keys the first combination of the grid
        tied = tied[np.lexsort((*(G[tied, j] for j in reversed(order)), errors[tied]))]
    return int(tied[0])


def _nested_stack_oof(grid, members_oof: np.ndarray, y: np.ndarray, w: np.ndarray, folds, order: list[int],
                      apply_to: np.ndarray | None = None) -> np.ndarray:
    """The stacked prediction out of fold twice over: each fold's rows are predicted by their members'
    out-of-fold predictions with the weights that score best on the *other* folds' rows (``apply_to``: the
    weights chosen so, applied to these members' predictions instead)."""
    out = np.empty(y.size)
    apply_to = members_oof if apply_to is None else apply_to
    for tr, te in folds:
        out[te] = np.asarray(_best_weights(grid, members_oof[:, tr], y[tr], w[tr], order)) @ apply_to[:, te]
    return out


# ------------------------------------------------------------------------------------------------ the work
def stack_terms(shape: StackShape, opts: StackOptions, n_members: int, in_folds: bool = False) -> dict[str, float]:
    """The size of :func:`fit_stacked`'s own work (its members' fits are jobs of their own): reading the forests'
    per-tree outputs at every depth, scoring the stacking grid of ``n_members`` members, the intervals."""
    outputs = 0.0
    for kinds, trees in tree_search_rounds(opts.model, opts.n_estimators, in_folds):   # a kind still unknown: a forest
        forests = 1 if kinds is None else sum(1 for kind in kinds if kind != "gbr")
        outputs += forests * trees * (len(FOREST_DEPTHS) * shape.n + N_FOLDS * shape.n_pred)
    return {"rows": float(shape.n), "tree_outputs": float(outputs), "grid_rows": float(grid_size(n_members) * shape.n)}


def stack_jobs(plan: StackPlan, n_candidates: int, members: tuple[Member, ...] = MEMBERS) -> list[Job]:
    """The jobs one :func:`fit_stacked` call runs: the calibration per pattern (the held-out rows refilled on the
    ``n_candidates`` candidate columns), each member's that applies, the stack's own."""
    jobs = [Job("pattern_calibration", pattern_terms(plan.train_rows.size, plan.expected_patterns(),
                                                     n_candidates, plan.countries))]
    running = [m for m in members if m.applies(plan.shape)]
    for member in running:
        jobs += member.jobs(plan)
    jobs.append(Job("stack", stack_terms(plan.shape, plan.opts, len(running), plan.in_folds)))
    return jobs


# ------------------------------------------------------------------------------------------------ the fit
def fit_stacked(data: StackData, opts: StackOptions, ctx: FitContext = FitContext(),
                members: tuple[Member, ...] = MEMBERS) -> FitResult:
    """The members that apply fitted on the same folds, stacked by out-of-fold error; conformal intervals."""
    data = dataclasses.replace(data, X=np.asarray(data.X, np.float64), y=np.asarray(data.y, np.float64),
                               Xp=np.asarray(data.Xp, np.float64))
    shape = data.shape(opts.linear)
    running = [m for m in members if m.applies(shape)]
    with job("stack", **stack_terms(shape, opts, len(running), data.fold_columns is not None)):
        run = _start(data, opts)
        return _combine(run, running, _fit_members(run, running, ctx), members)


def _fit_members(run: StackRun, running: list[Member], ctx: FitContext) -> list[MemberFit]:
    """Each running member's fit, in the list's order. On as many rows as fits run in parallel
    (:func:`~models.twolvlimp.tree_search.fits_in_parallel`) the members other than the trees (ridge, screened ridge,
    chained linear: one job each) are queued on the fit pool first, each fitting on its pool thread alone, and the
    trees queue their fold fits behind them from this thread: the linear members no longer wait for each other and
    for the trees, one after another on this thread. On fewer rows, one after another here."""
    submit = fit_submitter(run.data.y.size, ctx)
    inline = FitContext(ON_THIS_THREAD, ctx.check)   # what a member on a pool thread would queue runs there, at once
    beside = {m.name: submit(f"{m.name} member", m.fit, run, inline) for m in running if m.name != TreesMember.name}
    try:
        trees = {m.name: m.fit(run, ctx) for m in running if m.name == TreesMember.name}
    except BaseException:
        for future in beside.values():   # the members not started are dropped
            future.cancel()
        raise
    done = dict(zip(beside, results_of(list(beside.values()))))
    return [trees[m.name] if m.name in trees else done[m.name] for m in running]


def _start(data: StackData, opts: StackOptions) -> StackRun:
    """The weights, the folds and, with ``masking``, each fold's held-out rows masked to each pattern of missing
    inputs among the rows to predict."""
    n = data.X.shape[0]
    run = StackRun(data, opts, balanced_weights(data.is_sids), stack_folds(n, opts.seed))
    masking = data.masking
    if masking is not None:
        with job("pattern_calibration") as terms:
            columns = pattern_columns(masking, data.y, run.w, data.fold_columns, screened=data.X_all is not None)
            kept, masks, row_pattern = patterns_of(np.isnan(masking.raw[masking.pred_rows]), columns)
            if len(masks):
                run.patterns = (kept, masks, row_pattern)
                run.masked = _masked_rows(masking, data.X, run.folds, masks, columns)
            terms.update(pattern_terms(n, len(masks), masking.raw.shape[1], masking.raw.shape[0]))
    return run


def _weighted(g, parts, weighing_only: bool = True):
    """The sum of weight x part over the parts that exist (and, ``weighing_only``, weigh): None if there are none."""
    terms = [v * part for v, part in zip(g, parts) if part is not None and (v > 0 or not weighing_only)]
    return None if not terms else sum(terms[1:], terms[0])


def _leverage(g, leverages):
    """The leverage of the heaviest member that has one (ties: the first in the list), None if none weighs."""
    weighing = [(v, -i) for i, (v, lev) in enumerate(zip(g, leverages)) if lev is not None and v > 0]
    return None if not weighing else leverages[-max(weighing)[1]]


def _calibration_rows(sids: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, str]:
    """The rows the conformal quantile is taken over, their weights, the weight of a row to predict, and what
    that is. The rows to predict are SIDS, often unlike the other countries, so when enough training SIDS exist
    the quantile is taken over the SIDS rows alone (Mondrian, group-conditional conformal prediction);
    otherwise over every row, SIDS weighted as all others."""
    if sids.sum() >= MONDRIAN_MIN:
        return sids, np.ones(int(sids.sum())), 1.0, "the SIDS rows (group-conditional)"
    tw = float(w[sids][0]) if sids.any() else 1.0
    return np.ones(sids.size, bool), w, tw, "every row, SIDS weighted as all other countries together"


def _masked_members(fits: list[MemberFit], folds, k: int, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every member's predictions of the held-out rows masked to pattern ``k`` (members x training rows), and per
    member its spread (0 where it has none) or leverage (1 where it has none) on those rows; a member fitted
    again for the pattern (``refits``): that fit's out-of-fold predictions and spread or leverage."""
    Mk = np.empty((len(fits), n))
    aux = [np.zeros(n) if f.spread is not None else np.ones(n) for f in fits]
    for i, fit in enumerate(fits):
        if fit.refits is not None:
            again = fit.refits[k]
            Mk[i] = again.oof
            scale = again.spread if again.spread is not None else again.leverage
            if scale is not None:
                aux[i] = scale[0]
            continue
        for f, (_, te) in enumerate(folds):
            block = slice(k * te.size, (k + 1) * te.size)
            predicted, scale = fit.masked[f]
            Mk[i, te] = predicted[block]
            if scale is not None:
                aux[i][te] = scale[block]
    return Mk, aux


def _on_pattern_rows(fit: MemberFit, k: int, rows: np.ndarray) -> tuple:
    """A member's predictions, spread and leverage (None: it has none) for the rows to predict of pattern ``k``:
    from its fit for the pattern when it was fitted again (``refits``)."""
    if fit.refits is not None:
        again = fit.refits[k]
        return again.prediction, *(None if s is None else s[1] for s in (again.spread, again.leverage))
    return fit.prediction[rows], *(None if s is None else s[1][rows] for s in (fit.spread, fit.leverage))


def _combine(run: StackRun, running: list[Member], fits: list[MemberFit], members: tuple[Member, ...]) -> FitResult:
    """The running members' fits stacked: the weights of least out-of-fold error, the intervals on the nested
    out-of-fold residuals, per pattern of missing inputs where rows to predict lack some; ``members`` (every
    member of the list, running or not) shapes the report."""
    data, opts, w, folds = run.data, run.opts, run.w, run.folds
    y, n = data.y, data.y.size
    order = tie_order(running)
    grid = stacking_grid(len(running))
    members_oof = np.vstack([f.oof for f in fits])
    members_pred = np.vstack([f.prediction for f in fits])
    G = _grid_matrix(len(running))
    mse = ((G @ members_oof - y) ** 2 @ w / w.sum())    # every combination's out-of-fold error at once
    scores = dict(zip(grid, mse.tolist()))
    g = grid[_least(G, mse, order)]
    # the residuals the intervals are calibrated on: the weights chosen on all rows fit these very residuals
    # (optimistic on few rows); with each fold's weights chosen without that fold they stay out of fold
    honest_oof = _nested_stack_oof(grid, members_oof, y, w, folds, order)
    oof = np.asarray(g) @ members_oof
    prediction = np.asarray(g) @ members_pred
    importances = _weighted(g, [f.importances for f in fits], weighing_only=False)
    if importances.sum() > 0:
        importances = importances / importances.sum()

    calib, cw, tw, calibrated_on = _calibration_rows(np.asarray(data.is_sids, bool), w)

    def calibrated(g, honest, prediction, spreads, leverages):
        """The interval of ``prediction`` (weights ``g``) calibrated on the residuals of ``honest``; ``spreads``,
        ``leverages``: per member, (calibration rows, rows to predict) of its single-tree spread or leverage."""
        if opts.interval == "bootstrap":
            return bootstrap_interval((y - honest)[calib], cw, prediction, seed=opts.seed, level=opts.level)
        spread_oof = _weighted(g, [None if s is None else s[0][calib] for s in spreads])
        spread_pred = _weighted(g, [None if s is None else s[1] for s in spreads])
        lev = _leverage(g, leverages)
        return _normalised_interval(y[calib], honest[calib], cw, prediction, spread_oof, spread_pred, tw,
                                    opts.level, None if lev is None else (lev[0][calib], lev[1]))

    lower, upper, info = calibrated(g, honest_oof, prediction, [f.spread for f in fits], [f.leverage for f in fits])
    info["calibrated_on"] = calibrated_on
    info["residuals"] = "out of fold, the stack's weights for each fold chosen without that fold's rows"

    def every_member(weights) -> list[float]:
        """The weights of the running members as weights of every member of the list (0 for those not run)."""
        of = dict(zip((m.name for m in running), weights))
        return [of.get(m.name, 0.0) for m in members]

    if run.patterns is not None:
        # rows that lack inputs the held-out rows had: calibrated (and weighted) on those rows masked the same way
        kept, masks, row_pattern = run.patterns
        info["patterns"] = []
        refitted = [m.name for m, f in zip(running, fits) if f.refits is not None]
        for k in range(len(masks)):
            rows = np.flatnonzero(row_pattern == k)
            Mk, aux = _masked_members(fits, folds, k, n)
            parts = [_on_pattern_rows(f, k, rows) for f in fits]
            members_k = np.vstack([predicted for predicted, _, _ in parts])
            spreads_k = [None if s is None else (a, s) for (_, s, _), a in zip(parts, aux)]
            leverages_k = [None if lev is None else (a, lev) for (_, _, lev), a in zip(parts, aux)]
            if PATTERN_WEIGHTS:
                gk = _best_weights(grid, Mk, y, w, order)
                honest_k = _nested_stack_oof(grid, Mk, y, w, folds, order)
            else:
                gk, honest_k = g, _nested_stack_oof(grid, members_oof, y, w, folds, order, apply_to=Mk)
            pred_k = np.asarray(gk) @ members_k
            lo, hi, pinfo = calibrated(gk, honest_k, pred_k, spreads_k, leverages_k)
            prediction[rows], lower[rows], upper[rows] = pred_k, lo, hi
            info["patterns"].append({"rows": int(rows.size), "inputs_lacked": int(masks[k].sum()),
                                     "members_fitted_again": refitted,
                                     "weights": every_member(gk), "scale": pinfo.get("scale"),
                                     "adjustment": pinfo.get("adjustment", pinfo.get("residual_high")),
                                     "cv_rmse_masked": float(np.sqrt(_wmse(y, honest_k, w)))})
        info["per_pattern"] = (f"rows lacking some of the {kept.size} inputs that matter most are calibrated on the "
                               "held-out rows masked to their pattern (nested: each lacks at least what the row lacks)")
    lower, upper = np.minimum(lower, prediction), np.maximum(upper, prediction)
    stack = _report(running, fits, members, g, scores, every_member(g))
    trees = fits[[m.name for m in running].index(TreesMember.name)].detail
    return _result(run, trees, stack, prediction, lower, upper, oof, importances, info,
                   {m.name: stack["cv_rmse"][m.name] for m in running if m.listed_in_candidates})


def _report(running, fits, members, g, scores, weights) -> dict:
    """The response's ``model.stack``: the chosen members, every member's weight and out-of-fold error (None: it
    did not run), the stacked error, and the sections of the members that have one."""
    unit = {m.name: tuple(float(i == j) for j in range(len(running))) for i, m in enumerate(running)}
    stack: dict = {"chosen": "+".join(m.name for m, v in zip(running, g) if v > 0)}
    stack.update({f"weight_{m.name}": v for m, v in zip(members, weights)})
    stack["cv_rmse"] = {m.name: float(np.sqrt(scores[unit[m.name]])) if m.name in unit else None for m in members}
    stack["cv_rmse"]["stacked"] = float(np.sqrt(scores[g]))
    fit_of = {m.name: f for m, f in zip(running, fits)}
    for m in members:
        if m.has_section:
            stack[m.name] = m.report(fit_of[m.name]) if m.name in fit_of else None
    return stack


def _result(run: StackRun, trees, stack: dict, prediction, lower, upper, oof, importances, info: dict,
            listed: dict) -> FitResult:
    """The submodel's fit: the trees' kind and parameters (the model the user asked for), the stack's report."""
    opts, folds, y, w = run.opts, run.folds, run.data.y, run.w
    params = {"estimator": ESTIMATOR_NAMES[trees.kind], "n_estimators": int(opts.n_estimators),
              "max_depth": trees.depth,
              **({"kind_chosen_with_trees": trees.kind_chosen_with} if trees.kind_chosen_with else {}),
              "random_state": opts.seed, "cv_folds": len(folds), "final_model": f"average of the {len(folds)} fold models",
              "stack": stack}
    if trees.kind == "gbr":
        params.update({"learning_rate": 0.1, "loss": "squared_error"})
    else:
        params.update({"bootstrap": trees.kind == "rfr", "max_features": 1.0})
    candidates = {**trees.candidates, **listed, "stacked": stack["cv_rmse"]["stacked"]}
    sids = np.asarray(run.data.is_sids, bool)
    return FitResult(
        kind=trees.kind, depth=trees.depth, params=params, prediction=prediction, lower=lower, upper=upper, oof=oof,
        importances=importances, rmse=float(np.sqrt(np.mean((y - oof) ** 2))),
        rmse_weighted=float(np.sqrt(_wmse(y, oof, w))),
        rmse_sids=float(np.sqrt(np.mean((y[sids] - oof[sids]) ** 2))) if sids.any() else None,
        cv_rmse_by_depth=trees.scores, interval_info=info, candidates=candidates)

"""The default two-level imputation method.

Level 1 fills the predictor columns with the base imputer; level 2 is a tree model trained on
every country with a value (SIDS weighted as much as all other countries together).

What differs from the old service (``method: "legacy"`` in :mod:`models.twolvlimp.legacy`):

* SIDS whose target has values in other years are imputed by an *own-series* model: the
  interpolation (or nearest value) of the country's own series is a feature and the base of
  the prediction, and the trees learn the correction from the predictors and the gap lengths.
  SIDS that never reported the target use the cross-section model, as before.
* Candidate predictors are the indicators missing for fewer than 30% of all countries that year
  (the /predictors list), imputed once per data version, year and base imputer.
* Automatic selection eliminates features geometrically with cheap forests; PCA works on
  standardised columns.
* Intervals are calibrated on out-of-fold predictions (see :mod:`models.twolvlimp.intervals`).
* Every random step is seeded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.twolvlimp.lookups import PREDICTOR_MISSING_MAX, SEED, ResolvedRequest, year_info
from models.twolvlimp.tree_search import (KINDS, LEVEL, ON_THIS_THREAD, FitContext, balanced_weights, fit_submitter,
                                          fits_in_parallel, results_of)
from models.twolvlimp.imputers import impute, imputation_terms, needs_imputation
from models.twolvlimp.memo import work_memo, work_memo_get, work_memo_has
from models.twolvlimp.result import ImputationResult, Submodel, correlation_split
from models.twolvlimp.selection import afs_select, afs_terms, pca_select
from models.twolvlimp.stack import StackData, StackOptions, StackPlan, fit_stacked, stack_jobs
from models.twolvlimp.members import StackShape
from models.twolvlimp.stacking import Masking, stack_folds
from models.twolvlimp.temporal import OWN_FEATURES, OwnSeries, own_series
from models.twolvlimp.work import Job, WorkPlan, svd_cells
from shared.dataset import Dataset

MIN_OWN_SERIES_TRAIN = 20   # fewer training countries with an own series: use the cross-section model
RFE_TREES = 30
RANGE_EXTRAPOLATE = 0.5     # predictions may leave the target's observed range by this share of it (as ridge's inputs)


def candidate_matrix(ds: Dataset, year: int, interpolator: str, target: int,
                     extra: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Candidate predictors and their imputed countries x candidates matrix.

    Candidates are the indicators missing for fewer than 30% of the training rows (the countries
    with a target value), as in the old service, plus any ``extra`` columns (MANUAL predictors
    that are sparser among the training rows). The base imputer is fitted on every country
    (the target is not among its columns), once per data version, year, imputer and target.
    """
    key, cols = imputation_key(ds, year, interpolator, target, extra)

    def compute():
        filled = impute(interpolator, ds.year_matrix(year)[:, cols], random_state=0)
        filled.setflags(write=False)
        return cols, filled

    return work_memo(ds, key, compute)


def imputation_key(ds: Dataset, year: int, interpolator: str, target: int,
                   extra: tuple[int, ...] = ()) -> tuple[tuple, np.ndarray]:
    """The work-memo key of the imputed candidate matrix, and its columns (the training candidates,
    then the ``extra`` columns that are not among them)."""
    base = training_candidates(ds, year, target)
    needed = tuple(sorted({int(c) for c in extra} - set(base.tolist())))
    return ("imputed", year, interpolator, target, needed), np.concatenate([base, np.asarray(needed, dtype=base.dtype)])


def training_candidates(ds: Dataset, year: int, target: int) -> np.ndarray:
    """Indicators missing for fewer than 30% of the countries that have the target (without the target)."""
    M = ds.year_matrix(year)
    train = ~np.isnan(M[:, target])
    cols = np.flatnonzero(np.isnan(M[train]).mean(axis=0) < PREDICTOR_MISSING_MAX)
    return cols[cols != target]


def manual_columns(ds: Dataset, r: ResolvedRequest) -> tuple[int, ...]:
    """The columns of the request's MANUAL predictors (none for AFS/PCA)."""
    return tuple(int(ds.indicators.get_loc(c)) for c in r.manual_predictors)


def selection_key(r: ResolvedRequest) -> tuple | None:
    """The work-memo key of the automatic selection (None for MANUAL)."""
    if r.scheme == "MANUAL":
        return None
    return (r.scheme.lower(), r.year, r.interpolator, r.target, r.number_predictor)


def select_columns(ds: Dataset, r: ResolvedRequest, cols: np.ndarray, Z: np.ndarray, train: np.ndarray,
                   y: np.ndarray, w: np.ndarray, beside: "FoldSelections | None" = None,
                   ctx: FitContext = FitContext()) -> np.ndarray:
    """Positions (in ``cols``) of the selected predictors. ``beside``: AFS in the stack folds, started (on the fit
    pool) just after this selection is queued there first: the pool's threads run the six, and this thread waits
    for this one."""
    if r.scheme == "MANUAL":
        where = {int(c): i for i, c in enumerate(cols)}
        return np.asarray([where[ds.indicators.get_loc(code)] for code in r.manual_predictors], dtype=int)
    k = r.number_predictor
    if r.scheme == "AFS" and beside is not None:
        def compute():
            parallel = fits_in_parallel(y.size)
            first = fit_submitter(y.size, ctx)("afs", afs_select, Z[train], y, k, w, SEED, RFE_TREES, parallel)
            beside.start()
            return results_of([first])[0][0]
    elif r.scheme == "AFS":
        def compute():
            return afs_select(Z[train], y, k, w, random_state=SEED, n_estimators=RFE_TREES)[0]
    else:
        def compute():
            return np.sort(pca_select(Z[train], k, standardize=True))
    return work_memo(ds, selection_key(r), compute)


def reselects_in_folds(r: ResolvedRequest, n_candidates: int, n_train: int) -> bool:
    """Whether AFS is redone on each stack fold's training rows, for the out-of-fold predictions the stack
    weighs and the intervals are calibrated on: when the candidates outnumber the training rows (the SIDS
    platform's ~40 SIDS and hundreds of candidates), ten predictors chosen on every row fit those rows by
    chance, and models on them look better out of fold than they are on a country they never saw (measured:
    stacked out-of-fold error half the error on held-out SIDS; coverage 0.68). PCA does not read the target:
    nothing to redo."""
    return r.scheme == "AFS" and n_candidates > n_train


class FoldSelections:
    """AFS on each stack fold's training rows (positions among the candidates), memoised as the selection: started
    (:meth:`start`) right after the selection on every row is queued (:func:`select_columns`) and waited for when
    the cross-section stack needs them (:meth:`result`). On as many rows as the fold fits are
    (:func:`fits_in_parallel`) they run on the fit pool, beside each other, the selection on every row and the
    own-series stack; on fewer rows, one after another on the request's thread when waited for."""

    def __init__(self, ds: Dataset, r: ResolvedRequest, Z_train: np.ndarray, y: np.ndarray, w: np.ndarray,
                 ctx: FitContext):
        self.key = fold_selection_key(r)
        self._ds, self._r, self._data, self._ctx = ds, r, (Z_train, y, w), ctx
        self._runs: list = []

    def _submit(self) -> list:
        (Z, y, w), k = self._data, self._r.number_predictor
        submit = fit_submitter(y.size, self._ctx)
        return [submit("afs fold", afs_select, Z[tr], y[tr], k, w[tr], SEED, RFE_TREES, fits_in_parallel(y.size))
                for tr, _ in stack_folds(y.size, SEED)]

    def start(self) -> "FoldSelections":
        """Start them on the fit pool, once (unless memoised, or on too few rows for the pool: then :meth:`result`
        runs them)."""
        if not self._runs and fits_in_parallel(self._data[1].size) and not work_memo_has(self._ds, self.key):
            self._runs = self._submit()
        return self

    @property
    def pending(self) -> bool:
        """Whether some of its runs are queued or running on the fit pool."""
        return any(not run.done() for run in self._runs)

    def result(self) -> list[np.ndarray]:
        try:
            return work_memo(self._ds, self.key,
                             lambda: [chosen for chosen, _ in results_of(self._runs or self._submit())])
        finally:
            self.cancel()   # (another request may have memoised them first: drop the runs not started)

    def cancel(self) -> None:
        """Drop the runs not started yet (the request failed or was stopped before it waited for them)."""
        for run in self._runs:
            run.cancel()


def fold_selection_key(r: ResolvedRequest) -> tuple:
    return selection_key(r) + ("in stack folds",)


@dataclass(frozen=True)
class Layout:
    """Who is trained and predicted by which submodel: known before any imputation or fit."""

    target: int                 # the target's column
    column: np.ndarray          # the target in the request's year, every country
    sids: np.ndarray            # bool, every country
    train: np.ndarray           # bool: countries with a target value
    to_predict: np.ndarray      # SIDS without one (row indices)
    own: OwnSeries              # the target's own series in the other years
    train_own: np.ndarray       # training rows of the own-series submodel
    own_rows: np.ndarray        # rows it predicts
    cross_rows: np.ndarray      # rows the cross-section submodel predicts


def layout(ds: Dataset, r: ResolvedRequest) -> Layout:
    j = int(ds.indicators.get_loc(r.target))
    column = ds.year_matrix(r.year)[:, j]
    sids = np.asarray(ds.sids_mask, dtype=bool)
    train = ~np.isnan(column)
    to_predict = np.flatnonzero(sids & np.isnan(column))
    own = own_series(ds.values[:, :, j], ds.years, year_info(ds, r.year).index)
    has_own = own.available
    train_own = np.flatnonzero(train & has_own)
    own_rows = to_predict[has_own[to_predict]]
    cross_rows = to_predict[~has_own[to_predict]]
    if own_rows.size and train_own.size < MIN_OWN_SERIES_TRAIN:
        own_rows, cross_rows = own_rows[:0], to_predict
    return Layout(j, column, sids, train, to_predict, own, train_own, own_rows, cross_rows)


def submodel_roles(lay: Layout) -> list[str]:
    """The submodels a request fits, in order: each a stack (:func:`fit_stacked`) of its own. The one list
    :func:`run_default` fits and :func:`plan_default` declares."""
    return [role for role, rows in (("own_series", lay.own_rows), ("cross_section", lay.cross_rows)) if rows.size]


def _with_own_gaps(gaps: np.ndarray) -> np.ndarray:
    """The own-series submodel's gap flags: its three own-series features are never imputed."""
    return np.column_stack([gaps, np.zeros((gaps.shape[0], len(OWN_FEATURES)), bool)])


@dataclass(frozen=True)
class PrepareStep:
    """One step before the stacks whose result is memoised per data version: its work-memo key, and the jobs it
    runs when that key is not memoised yet."""

    name: str
    key: tuple
    jobs: Callable[[], list[Job]]


def prepare_steps(ds: Dataset, r: ResolvedRequest, lay: Layout) -> list[PrepareStep]:
    """The memoised steps before the stacks, in order: the base imputation of the candidates, the selection
    (AFS/PCA), the selection on each stack fold's training rows (AFS among more candidates than training rows,
    for the cross-section submodel). The one list :func:`run_default` runs (each through the work memo under its
    key) and :func:`plan_default` declares (unless memoised)."""
    M = ds.year_matrix(r.year)
    memo_key, cols = imputation_key(ds, r.year, r.interpolator, lay.target, manual_columns(ds, r))
    n = int(lay.train.sum())

    def imputation_jobs() -> list[Job]:
        if not needs_imputation(M[:, cols]):
            return []
        return [Job(f"impute_{r.interpolator}", imputation_terms(r.interpolator, M[:, cols]), "prepare")]

    def selection_jobs() -> list[Job]:
        if r.scheme == "AFS":   # on the fit pool beside the selections in the folds (select_columns)
            parallel = in_folds and fits_in_parallel(n)
            return [Job(kind, terms, "prepare", parallel)
                    for kind, terms in afs_terms(n, cols.size, r.number_predictor, RFE_TREES).items()]
        return [Job("pca", {"svd": svd_cells(n, cols.size)}, "prepare")]

    def fold_selection_jobs() -> list[Job]:
        return [Job(kind, terms, "prepare", fits_in_parallel(n)) for tr, _ in stack_folds(n, SEED)
                for kind, terms in afs_terms(tr.size, cols.size, r.number_predictor, RFE_TREES).items()]

    in_folds = "cross_section" in submodel_roles(lay) and reselects_in_folds(r, cols.size, n)
    steps = [PrepareStep("imputation", memo_key, imputation_jobs)]
    if r.scheme != "MANUAL":
        steps.append(PrepareStep("selection", selection_key(r), selection_jobs))
    if in_folds:
        steps.append(PrepareStep("selection_in_folds", fold_selection_key(r), fold_selection_jobs))
    return steps


def stack_options(r: ResolvedRequest) -> StackOptions:
    """The request's choices as every stack of its submodels takes them."""
    return StackOptions(model=r.model, n_estimators=r.estimators, interval=r.interval, seed=SEED, level=LEVEL)


def run_default(ds: Dataset, r: ResolvedRequest, ctx: FitContext = FitContext()) -> ImputationResult:
    """The default method on one request; ``ctx``: where its fits run and its budget's check (the runtime's)."""
    started = time.perf_counter()
    lay = layout(ds, r)
    j, column, sids, train, to_predict = lay.target, lay.column, lay.sids, lay.train, lay.to_predict
    steps = {step.name for step in prepare_steps(ds, r, lay)}

    extra = manual_columns(ds, r)
    cols, Z = candidate_matrix(ds, r.year, r.interpolator, j, extra)
    y = column[train]
    w = balanced_weights(sids[train])
    # the selections in the stack folds need only the candidates: started with the selection on every row, they
    # run beside it and beside the own-series stack
    selections = FoldSelections(ds, r, Z[train], y, w, ctx) if "selection_in_folds" in steps else None
    try:
        sel = select_columns(ds, r, cols, Z, train, y, w, selections, ctx)
        if selections is not None:
            selections.start()   # (when the selection on every row was memoised)
        codes = [str(ds.indicators[cols[i]]) for i in sel]
        X = Z[:, sel]
        raw = ds.year_matrix(r.year)[:, cols]   # the candidates as the data has them (NaN: no value)
        gaps = np.isnan(raw[:, sel])            # cells the base imputer filled

        def masking(train_rows, pred_rows):
            """What calibrates the rows to predict per pattern of missing inputs (:class:`Masking`)."""
            return Masking(raw=raw, filled=Z, train_rows=train_rows, pred_rows=pred_rows, selected=sel,
                           interpolator=r.interpolator)
        prepare_seconds = time.perf_counter() - started
        own, train_own, own_rows, cross_rows = lay.own, lay.train_own, lay.own_rows, lay.cross_rows

        prediction = np.empty(ds.countries.size)
        lower = np.empty_like(prediction)
        upper = np.empty_like(prediction)
        submodels: list[Submodel] = []
        own_name = f"{r.target} (own series)"

        roles = submodel_roles(lay)
        if "own_series" in roles:
            XA = np.column_stack([X, own.features()])
            base = own.estimate
            yA = column[train_own] - base[train_own]
            data = StackData(XA[train_own], yA, sids[train_own], XA[own_rows], missing=_with_own_gaps(gaps)[train_own],
                             missing_pred=_with_own_gaps(gaps)[own_rows], masking=masking(train_own, own_rows))
            # while the selections in the folds still run on the fit pool, this thread fits the own-series stack alone
            own_ctx = FitContext(ON_THIS_THREAD, ctx.check) if selections is not None and selections.pending else ctx
            fit = fit_stacked(data, stack_options(r), own_ctx)
            prediction[own_rows] = base[own_rows] + fit.prediction
            lower[own_rows] = base[own_rows] + fit.lower
            upper[own_rows] = base[own_rows] + fit.upper
            imp = list(fit.importances[:len(codes)]) + [float(fit.importances[len(codes):].sum())]
            yt = column[train_own]
            submodels.append(Submodel(
                role="own_series", countries=[str(c) for c in ds.countries[own_rows]], feature_names=codes + [own_name],
                importances=imp, kind=fit.kind, params=fit.params, rmse=fit.rmse, rmse_weighted=fit.rmse_weighted,
                rmse_sids=fit.rmse_sids, n_train=int(train_own.size), n_train_sids=int(sids[train_own].sum()),
                cv_rmse_by_depth=fit.cv_rmse_by_depth, candidates=fit.candidates,
                interval_info={**fit.interval_info, "target": "correction to the own-series estimate"},
                y_mean=float(yt.mean()), y_min=float(yt.min()), y_max=float(yt.max())))

        if "cross_section" in roles:
            rows = np.flatnonzero(train)
            # the candidates as the data has them (NaN where no value) for the chained linear member: every
            # country's row, the training rows and the rows to predict first
            unimputed = None if r.scheme == "MANUAL" else raw
            other = np.setdiff1d(np.arange(ds.countries.size), np.concatenate([rows, cross_rows]))
            in_folds = None if selections is None else selections.result()
            data = StackData(X[rows], y, sids[rows], X[cross_rows], missing=gaps[rows], missing_pred=gaps[cross_rows],
                             # AFS/PCA ask the service to choose predictors: ridge on every candidate competes;
                             # MANUAL predictors are the user's choice and stay the only ones
                             X_all=None if r.scheme == "MANUAL" else Z[rows],
                             Xp_all=None if r.scheme == "MANUAL" else Z[cross_rows],
                             R_all=None if unimputed is None else unimputed[rows],
                             Rp_all=None if unimputed is None else unimputed[cross_rows],
                             R_other=None if unimputed is None else unimputed[other], fold_columns=in_folds,
                             masking=masking(rows, cross_rows))
            fit = fit_stacked(data, stack_options(r), ctx)
            if in_folds is not None:
                fit.params["stack"]["selection_in_folds"] = {
                    "why": "the candidates outnumber the training rows: AFS is redone on each fold's training rows "
                           "for the out-of-fold predictions of ridge and trees (what the stack's weights and the "
                           "intervals rest on); the predictions use the selection on every row",
                    "predictors_by_fold": [[str(ds.indicators[cols[i]]) for i in f] for f in in_folds]}
            prediction[cross_rows] = fit.prediction
            lower[cross_rows] = fit.lower
            upper[cross_rows] = fit.upper
            submodels.append(Submodel(
                role="cross_section", countries=[str(c) for c in ds.countries[cross_rows]], feature_names=codes,
                importances=list(fit.importances), kind=fit.kind, params=fit.params, rmse=fit.rmse,
                rmse_weighted=fit.rmse_weighted, rmse_sids=fit.rmse_sids, n_train=int(rows.size),
                n_train_sids=int(sids[rows].sum()), cv_rmse_by_depth=fit.cv_rmse_by_depth, candidates=fit.candidates,
                interval_info=dict(fit.interval_info),
                y_mean=float(y.mean()), y_min=float(y.min()), y_max=float(y.max())))
    finally:
        if selections is not None:
            selections.cancel()

    low, high = plausible_range(ds.values[:, :, j])
    prediction, lower, upper = (np.clip(a, low, high) for a in (prediction, lower, upper))

    primary = 0 if len(submodels) == 1 or own_rows.size >= cross_rows.size else 1
    known_sids = np.flatnonzero(sids & train)
    return ImputationResult(
        target=r.target, year=r.year, dataset=r.dataset, method="default", interval=r.interval, level=LEVEL,
        interpolator=r.interpolator, scheme=r.scheme, predictors=codes,
        countries=[str(c) for c in ds.countries[to_predict]], prediction=prediction[to_predict],
        lower=lower[to_predict], upper=upper[to_predict],
        observed={str(ds.countries[i]): float(column[i]) for i in known_sids},
        correlation=correlation_split(X[train], codes), submodels=submodels, primary=primary,
        notes=list(r.notes), not_predicted=absent_sids(ds), seed=SEED,
        timings={"prepare": prepare_seconds, "model": time.perf_counter() - started - prepare_seconds},
        value_range=(low, high))


def plausible_range(series: np.ndarray) -> tuple[float, float]:
    """Where predictions and bounds may lie: the range the target takes in the data (every country, every
    year) widened by RANGE_EXTRAPOLATE of it on each side (a SIDS that never reported may be the most
    extreme country: with only the others' range, its prediction was cut there), but never below 0 for a
    quantity never observed negative, nor above 100 for one only ever observed between 0 and 100 (a share
    or a score: no 110% access to electricity)."""
    low, high = float(np.nanmin(series)), float(np.nanmax(series))
    span = high - low
    lo, hi = low - RANGE_EXTRAPOLATE * span, high + RANGE_EXTRAPOLATE * span
    if low >= 0:
        lo = max(lo, 0.0)
        if high <= 100:
            hi = min(hi, 100.0)
    return lo, hi


def absent_sids(ds: Dataset) -> list[dict]:
    """SIDS named by the country metadata that have no row at all in the data: they cannot be imputed."""
    missing = sorted(set(ds.sids) - set(ds.countries))
    return [{"Country Code": c, "reason": "no data at all for this country in the dataset"} for c in missing]


# ----------------------------------------------------------------------------- the work it needs
def plan_default(ds: Dataset, r: ResolvedRequest) -> WorkPlan:
    """The jobs :func:`run_default` will run for this request (:mod:`models.twolvlimp.work`): the steps before
    the stacks unless memoised (:func:`prepare_steps`), then per submodel (:func:`submodel_roles`) the jobs of
    its stack, from the member list the stack runs (:func:`models.twolvlimp.stack.stack_jobs`: the calibration
    per pattern, each member's fits, the stacking); the response's job is the runtime's. Counted with the
    functions and constants the method runs with; where a count depends on the fit itself (boosting stages, the patterns of predictors not selected yet) the
    expected value. ``tests/unit/test_work_plan.py`` checks it against the tally of real runs."""
    lay = layout(ds, r)
    M = ds.year_matrix(r.year)
    extra = manual_columns(ds, r)
    _, cols = imputation_key(ds, r.year, r.interpolator, lay.target, extra)
    steps = prepare_steps(ds, r, lay)
    jobs: list[Job] = [job for step in steps if not work_memo_has(ds, step.key) for job in step.jobs()]
    if r.scheme == "MANUAL":
        where = {int(c): i for i, c in enumerate(cols)}
        selected = np.asarray([where[c] for c in extra], dtype=int)
    else:
        selected = work_memo_get(ds, selection_key(r))
    p = selected.size if selected is not None else min(r.number_predictor, cols.size)
    gaps = None if selected is None else np.isnan(M[:, cols[selected]])
    candidate_gap_share = float(np.isnan(M[:, cols]).mean()) if cols.size else 0.0
    roles = submodel_roles(lay)
    in_folds = any(step.name == "selection_in_folds" for step in steps)

    kinds = KINDS if r.model == "all" else (r.model,)
    if "own_series" in roles:
        y = lay.column[lay.train_own] - lay.own.estimate[lay.train_own]
        jobs += _submodel_jobs(r, lay.train_own, lay.own_rows, y, None if gaps is None else _with_own_gaps(gaps),
                               p + len(OWN_FEATURES), candidate_gap_share, candidates=0, countries=ds.countries.size,
                               n_candidates=cols.size)
    if "cross_section" in roles:
        rows = np.flatnonzero(lay.train)
        jobs += _submodel_jobs(r, rows, lay.cross_rows, lay.column[rows], gaps, p, candidate_gap_share,
                               candidates=0 if r.scheme == "MANUAL" else cols.size, countries=ds.countries.size,
                               in_folds=in_folds, n_candidates=cols.size)
    return WorkPlan(tuple(jobs), group=f"model/{'+'.join(kinds)}", prepare_group=f"prepare/{r.interpolator}/{r.scheme}")


def _submodel_jobs(r: ResolvedRequest, train_rows: np.ndarray, pred_rows: np.ndarray, y: np.ndarray,
                   gaps: np.ndarray | None, p: int, candidate_gap_share: float, candidates: int,
                   countries: int, in_folds: bool = False, n_candidates: int = 0) -> list[Job]:
    """One :func:`fit_stacked` call (:func:`models.twolvlimp.stack.stack_jobs`, from the same member list): ``gaps``
    flags every country's imputed predictors (None: the predictors are not chosen yet), ``candidates`` the columns
    of the screened ridge and the chained linear member (0: neither runs), ``countries`` every row the chained
    member fills, ``in_folds`` whether ridge and trees are also fitted on predictors selected in each fold,
    ``n_candidates`` the candidate columns (the held-out rows masked to each pattern of the rows to predict are
    filled again on them)."""
    shape = StackShape(n=train_rows.size, n_pred=pred_rows.size, p=p, candidates=candidates, unimputed=candidates)
    plan = StackPlan(opts=stack_options(r), shape=shape, folds=stack_folds(train_rows.size, SEED),
                     train_rows=train_rows, pred_rows=pred_rows, y=y, gaps=gaps, gap_share=candidate_gap_share,
                     countries=countries, in_folds=in_folds)
    return stack_jobs(plan, n_candidates)

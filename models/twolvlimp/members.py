"""The members of the stacked second level: one class per model the stack weighs.

Each member (a :class:`Member`) says whether it runs for a stack (:meth:`Member.applies`, on the stack's
:class:`StackShape`), fits its folds (:meth:`Member.fit`: a :class:`MemberFit` with its out-of-fold
predictions, its predictions, its importances, its single-tree spread or leverage for the intervals, and its
fold models' reading of the held-out rows masked to each pattern of missing inputs), reports its part of the
response's ``model.stack`` (:meth:`Member.report`), declares the jobs it runs (:meth:`Member.jobs`, what
/estimate prices: ``method.plan_default``) and ranks in the tie-break (``tie_rank``: among combinations of equal
out-of-fold error, the one with the least weight on the member of lowest rank wins).

:data:`MEMBERS` is the list the stack (:func:`models.twolvlimp.stack.fit_stacked`) and the plan both iterate over:
adding a member is one class here and one line there.

The numeric work stays in :mod:`models.twolvlimp.stacking` (ridge, screened ridge, chained equations, the tree
search); a member calls it with the stack's data (:class:`StackRun`) and the request's :class:`FitContext`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.twolvlimp.stacking import (MAX_PATTERNS, Masking, _chained_linear, _linear, _screened_linear,
                                       _screened_linear_folds, _trees, _wmse, chained_terms, log_target_competes,
                                       read_trees, ridge_terms, screen_counts, screened_terms, tree_search_rounds)
from models.twolvlimp.tree_search import (FitContext, boosting_depths_expected, boosting_fold_terms,
                                          boosting_stages_expected, fits_in_parallel, forest_fold_terms)
from models.twolvlimp.work import Job, job


# ------------------------------------------------------------------------------------------ what a stack holds
@dataclass(frozen=True)
class StackData:
    """The matrices one stacked fit learns from.

    ``X`` / ``y`` the training rows (``is_sids`` flags the SIDS among them), ``Xp`` the rows to predict;
    ``missing`` / ``missing_pred`` flag the cells of ``X`` / ``Xp`` the base imputer filled (ridge leaves them
    out: reduced models). AFS/PCA only (the service chooses the predictors, so wider models compete):
    ``X_all`` / ``Xp_all`` every candidate predictor, imputed (the screened ridge); ``R_all`` / ``Rp_all`` /
    ``R_other`` the same candidates as the data has them (NaN: no value), for the training rows, the rows to
    predict and every other country (the chained linear member); ``fold_columns`` the predictors selected on
    each fold's training rows (positions among the candidates) when AFS is redone in the folds. ``masking``
    (:class:`~models.twolvlimp.stacking.Masking`): what calibrates the rows to predict per pattern of
    missing inputs."""

    X: np.ndarray
    y: np.ndarray
    is_sids: np.ndarray
    Xp: np.ndarray
    missing: np.ndarray | None = None
    missing_pred: np.ndarray | None = None
    X_all: np.ndarray | None = None
    Xp_all: np.ndarray | None = None
    R_all: np.ndarray | None = None
    Rp_all: np.ndarray | None = None
    R_other: np.ndarray | None = None
    fold_columns: list[np.ndarray] | None = None
    masking: Masking | None = None

    def shape(self, linear: bool) -> "StackShape":
        return StackShape(
            n=len(self.y), n_pred=np.shape(self.Xp)[0], p=np.shape(self.X)[1], linear=linear,
            candidates=0 if self.X_all is None else np.shape(self.X_all)[1],
            unimputed=0 if self.R_all is None or self.Rp_all is None else np.shape(self.R_all)[1])


@dataclass(frozen=True)
class StackOptions:
    """The request's choices for one stack: the tree model and its trees, the interval kind and level, the
    seed; ``linear=False`` keeps the trees (and the mean) alone."""

    model: str
    n_estimators: int
    interval: str
    seed: int
    level: float = 0.9
    linear: bool = True


@dataclass(frozen=True)
class StackShape:
    """What decides which members run, known before the fit (the plan) as during it: training rows, rows to
    predict, predictors, candidates of the screened ridge (0: none), unimputed candidates of the chained
    member (0: none), and whether linear members run at all."""

    n: int
    n_pred: int
    p: int
    candidates: int = 0
    unimputed: int = 0
    linear: bool = True


@dataclass
class StackRun:
    """One stacked fit under way: its data and options, the SIDS-balancing weights, the folds every member is
    fitted on, and (calibration per pattern) each fold's held-out rows masked to each pattern (``masked``: per
    fold ``{"R", "Z", "X", "missing"}``), with the patterns themselves (``patterns``: kept columns, masks, each
    row to predict's pattern or -1)."""

    data: StackData
    opts: StackOptions
    w: np.ndarray
    folds: list
    masked: list[dict] | None = None
    patterns: tuple | None = None

    @property
    def n_patterns(self) -> int:
        return 0 if self.patterns is None else len(self.patterns[1])

    def fold_columns_of(self, M: np.ndarray) -> list[np.ndarray]:
        """Each fold's own predictors (AFS redone on its training rows) taken from a candidates matrix."""
        return [np.asarray(M)[:, c] for c in self.data.fold_columns]


@dataclass(frozen=True)
class StackPlan:
    """What the plan knows of one stack before it runs (``method.plan_default``): the options and shape, the
    folds, the training rows and rows to predict (as every country's row numbers), the target's values,
    every country's gap flags of the predictors (None: not chosen yet; then ``gap_share`` of the candidates'
    cells are expected missing), every country's count, and whether AFS is redone in the folds."""

    opts: StackOptions
    shape: StackShape
    folds: list
    train_rows: np.ndarray
    pred_rows: np.ndarray
    y: np.ndarray
    gaps: np.ndarray | None
    gap_share: float
    countries: int
    in_folds: bool = False

    def expected_patterns(self) -> int:
        """The patterns of missing inputs the calibration per pattern will find among the rows to predict (not
        known before the selection and screening): one per row lacking a selected predictor, at most MAX_PATTERNS."""
        p = self.shape.p
        lacking = ((1 - (1 - self.gap_share) ** p) * self.pred_rows.size if self.gaps is None
                   else float(self.gaps[self.pred_rows][:, :p].any(axis=1).sum()))
        return int(min(MAX_PATTERNS, round(lacking)))


@dataclass
class MemberFit:
    """What a member's fold models give the stack. ``spread`` / ``leverage``: (training rows out of fold, rows to
    predict) of what scales its intervals (the single-tree spread; the ridge leverage); ``masked``: per fold,
    (predictions, spread or leverage or None) on the fold's held-out rows masked to each pattern, pattern after
    pattern; ``refits``: per pattern instead, the member fitted again for the rows to predict of that pattern on
    what they have (out of fold, their predictions, leverage or spread); ``detail``: what else the member keeps
    for its report."""

    oof: np.ndarray
    prediction: np.ndarray
    importances: np.ndarray | None = None
    spread: tuple[np.ndarray, np.ndarray] | None = None
    leverage: tuple[np.ndarray, np.ndarray] | None = None
    masked: list[tuple[np.ndarray, np.ndarray | None]] | None = None
    refits: list["MemberFit"] | None = None
    detail: Any = None


class Member(ABC):
    """One model the stack weighs (see the module's docstring)."""

    name: str                        # its key in model.stack (weight_<name>, cv_rmse[name], its own section)
    tie_rank: int                    # among equal errors, the least weight on the lowest rank is preferred
    has_section: bool = False        # whether model.stack has a section of its own for it (None when it does not run)
    listed_in_candidates: bool = False   # whether its out-of-fold error is listed among the submodel's candidates

    def applies(self, shape: StackShape) -> bool:
        return True

    @abstractmethod
    def fit(self, run: StackRun, ctx: FitContext) -> MemberFit:
        """Fit on ``run.folds``; read ``run.masked`` with the fold models when it is not None."""

    def jobs(self, plan: StackPlan) -> list[Job]:
        """The jobs :meth:`fit` runs (kinds and terms as its job marks tally them)."""
        return []

    def report(self, fit: MemberFit) -> dict | None:
        """Its section of model.stack (members with ``has_section``)."""
        return None


def fold_means(run: StackRun) -> tuple[np.ndarray, np.ndarray]:
    """Each fold's SIDS-balanced training mean on its held-out rows, and the mean of every training row for the
    rows to predict."""
    y, w = run.data.y, run.w
    oof = np.empty(y.size)
    for tr, te in run.folds:
        oof[te] = np.average(y[tr], weights=w[tr])
    return oof, np.full(np.shape(run.data.Xp)[0], float(np.average(y, weights=w)))


def masked_means(run: StackRun, means_oof: np.ndarray) -> list[tuple[np.ndarray, None]]:
    """The fold means on each fold's masked held-out rows (every pattern)."""
    return [(np.full(te.size * run.n_patterns, means_oof[te][0]), None) for _, te in run.folds]


# ------------------------------------------------------------------------------------------------ the members
class RidgeMember(Member):
    """Ridge on the selected predictors (reduced models for imputed cells); for a skewed non-negative target,
    ridge on log(target) competes out of fold."""

    name, tie_rank, has_section, listed_in_candidates = "ridge", 3, True, True

    def applies(self, shape: StackShape) -> bool:
        return shape.linear

    def fit(self, run: StackRun, ctx: FitContext) -> MemberFit:
        d, w = run.data, run.w
        X, y, Xp = np.asarray(d.X, np.float64), np.asarray(d.y, np.float64), np.asarray(d.Xp, np.float64)
        in_folds = ext_fold = ext_x = None
        if d.fold_columns is not None:
            in_folds = (run.fold_columns_of(d.X_all), run.fold_columns_of(np.isnan(np.asarray(d.R_all, np.float64))))
        if run.masked is not None:
            ext_x = [(e["X"], e["missing"]) for e in run.masked]
            if d.fold_columns is not None:
                ext_fold = [(e["Z"][:, c], np.isnan(e["R"][:, c])) for e, c in zip(run.masked, d.fold_columns)]
        oof, pred, imp, alphas, lev, ext = _linear(X, y, w, Xp, run.folds, d.missing, d.missing_pred, in_folds,
                                                    ext_x, ext_fold)
        target_transform = "none"
        if log_target_competes(y):
            # a non-negative, strongly right-skewed target: ridge on log(y + offset) competes, out of fold
            off = float(y[y > 0].min()) if (y > 0).any() else 1.0
            l_oof, l_pred, l_imp, l_alphas, l_lev, l_ext = _linear(X, np.log(y + off), w, Xp, run.folds, d.missing,
                                                                   d.missing_pred, in_folds, ext_x, ext_fold)
            # (capped so that a wild extrapolation stays finite; the final prediction is clipped to the range)
            l_oof, l_pred = np.exp(np.minimum(l_oof, 700)) - off, np.exp(np.minimum(l_pred, 700)) - off
            if l_ext is not None:
                l_ext = [(np.exp(np.minimum(p_, 700)) - off, lev_) for p_, lev_ in l_ext]
            if _wmse(y, l_oof, w) < _wmse(y, oof, w):
                oof, pred, imp, alphas, lev, ext = l_oof, l_pred, l_imp, l_alphas, l_lev, l_ext
                target_transform = f"log(y + {off:.4g})"
        return MemberFit(oof, pred, importances=imp, leverage=lev, masked=ext,
                         detail={"alphas": alphas, "target_transform": target_transform})

    def jobs(self, plan: StackPlan) -> list[Job]:
        p, folds = plan.shape.p, plan.folds
        shapes = []
        for tr, te in folds:
            shapes.append((tr.size, p))
            if plan.gaps is None:  # each row has an imputed predictor with probability 1 - (1 - share)^p
                reduced = (1 - (1 - plan.gap_share) ** p) * (te.size + plan.pred_rows.size)
                shapes += [(tr.size, p)] * int(round(reduced))
                continue
            flags = np.concatenate([plan.gaps[plan.train_rows][te], plan.gaps[plan.pred_rows]])
            patterns = np.unique(flags[flags.any(axis=1)], axis=0)
            shapes += [(tr.size, int((~pattern).sum())) for pattern in patterns if not pattern.all()]
        # each fold's own selection: not known before it runs (expected gaps, as for predictors not chosen yet)
        expected_reduced = 1 - (1 - plan.gap_share) ** p
        shapes_in_folds = [shape for tr, te in folds
                           for shape in [(tr.size, p)] + [(tr.size, p)] * int(round(expected_reduced * te.size))]
        jobs = []
        for _ in range(2 if log_target_competes(plan.y) else 1):
            jobs.append(Job("ridge", ridge_terms(shapes)))
            if plan.in_folds:
                jobs.append(Job("ridge", ridge_terms(shapes_in_folds)))
        return jobs

    def report(self, fit: MemberFit) -> dict:
        return {"estimator": "ridge, penalty by leave-one-out CV", "alpha_by_fold": fit.detail["alphas"],
                "transform": "log of skewed non-negative columns, standardised",
                "target_transform": fit.detail["target_transform"],
                "missing_predictors": "left out per row (reduced models), not read from the imputed values"}


class TreesMember(Member):
    """The user's tree model (``rfr``, ``etr``, ``gbr``, or the best of the three for ``all``), its depth by
    5-fold CV; forests give the single-tree spread the intervals may scale with. Its detail (kind, depth,
    scores) is the submodel's ``kind`` and ``params``."""

    name, tie_rank = "trees", 4

    def fit(self, run: StackRun, ctx: FitContext) -> MemberFit:
        d, o = run.data, run.opts
        X, Xp = np.asarray(d.X, np.float64), np.asarray(d.Xp, np.float64)
        in_folds = None
        if d.fold_columns is not None:
            in_folds = (run.fold_columns_of(d.X_all), run.fold_columns_of(d.Xp_all))
        trees = _trees(X, np.asarray(d.y, np.float64), run.w, Xp, o.model, o.n_estimators, run.folds, o.seed,
                       in_folds, ctx)
        masked = None
        if run.masked is not None:
            # (with predictors selected in the folds, the out-of-fold models read each fold's own columns)
            masked = [read_trees(trees, f, e["X"] if d.fold_columns is None else e["Z"][:, d.fold_columns[f]])
                      for f, e in enumerate(run.masked)]
        spread = None if trees.spread_oof is None else (trees.spread_oof, trees.spread_pred)
        return MemberFit(trees.oof, trees.prediction, importances=trees.importances, spread=spread, masked=masked,
                         detail=trees)

    def jobs(self, plan: StackPlan) -> list[Job]:
        jobs, parallel = [], fits_in_parallel(plan.train_rows.size)
        for round_kinds, trees in tree_search_rounds(plan.opts.model, plan.opts.n_estimators, plan.in_folds):
            for kind in round_kinds or ("rfr",):   # a kind chosen by the first round: counted as a random forest
                for tr, te in plan.folds:
                    if kind == "gbr":
                        terms = boosting_fold_terms(boosting_depths_expected(tr.size), boosting_stages_expected(trees),
                                                    tr.size, plan.shape.p)
                        jobs.append(Job("boosting_fold", terms, parallel=parallel))
                    else:
                        terms = forest_fold_terms(trees, tr.size, plan.shape.p, te.size + plan.pred_rows.size)
                        jobs.append(Job(f"forest_fold_{kind}", terms, parallel=parallel))
        return jobs


class MeanMember(Member):
    """The constant: each fold's SIDS-balanced training mean (scored out of fold like the others). The stack
    moves toward it only when that wins out of fold."""

    name, tie_rank = "mean", 0

    def fit(self, run: StackRun, ctx: FitContext) -> MemberFit:
        oof, pred = fold_means(run)
        return MemberFit(oof, pred, masked=None if run.masked is None else masked_means(run, oof))


class ScreenedRidgeMember(Member):
    """Ridge on the candidates most correlated with the target, their count chosen inside each fold (AFS/PCA:
    wider linear screening than the selected predictors)."""

    name, tie_rank, has_section = "ridge_all_candidates", 2, True

    def __init__(self, per_pattern: bool = True):
        self.per_pattern = per_pattern   # fitted again per pattern of missing inputs (:meth:`for_pattern`)

    def applies(self, shape: StackShape) -> bool:
        return shape.linear and shape.candidates > shape.p

    def fit(self, run: StackRun, ctx: FitContext) -> MemberFit:
        d = run.data
        X_all, y, Xp_all = (np.asarray(d.X_all, np.float64), np.asarray(d.y, np.float64),
                            np.asarray(d.Xp_all, np.float64))
        # fitted again per pattern: its fits for the patterns stand in for the masked held-out rows, so those are
        # not predicted
        refit = self.per_pattern and run.patterns is not None
        oof, pred, alphas, chosen, lev, ext = _screened_linear(
            X_all, y, run.w, Xp_all, run.folds, None if run.masked is None or refit else [e["Z"] for e in run.masked])
        refits = self._refits(run, X_all, y, Xp_all, chosen) if refit else None
        return MemberFit(oof, pred, leverage=lev, masked=ext, refits=refits,
                         detail={"n_candidates": int(X_all.shape[1]), "alphas": alphas, "chosen": chosen})

    def _refits(self, run: StackRun, X_all, y, Xp_all, chosen) -> list[MemberFit]:
        """Per pattern of missing inputs, ranked among the candidates the pattern has, each fold keeping its
        count and log choice: where rows lack the target's close relatives, the next best predictors stand in
        for them, instead of their imputed values (the same out of fold whether the held-out rows are masked
        or not: it never reads the pattern's columns)."""
        sizes, counts, refits = [tr.size for tr, _ in run.folds], [c for c, _ in chosen], []
        with job("screened_ridge_per_pattern", patterns=0.0, rank=0.0, svd=0.0) as terms:
            _, masks, row_pattern = run.patterns
            for k, lacks in enumerate(masks):
                has = ~lacks
                oof, pred, _, _, lev, _ = _screened_linear_folds(
                    X_all[:, has], y, run.w, Xp_all[row_pattern == k][:, has], run.folds, fixed=chosen)
                refits.append(MemberFit(oof, pred, leverage=lev))
                done = screened_terms(sizes, int(has.sum()), counts)
                terms.update(patterns=terms["patterns"] + 1, rank=terms["rank"] + done["rank"],
                             svd=terms["svd"] + done["svd"])
        return refits

    def jobs(self, plan: StackPlan) -> list[Job]:
        sizes = [tr.size for tr, _ in plan.folds]
        jobs = [Job("screened_ridge", screened_terms(sizes, plan.shape.candidates))]
        if self.per_pattern:
            # each fold's count is not known before the fit: counted as the median count it may try
            counts = screen_counts(plan.shape.candidates)
            each = screened_terms(sizes, plan.shape.candidates, [counts[len(counts) // 2]] * len(sizes))
            patterns = plan.expected_patterns()
            jobs.append(Job("screened_ridge_per_pattern", {"patterns": float(patterns), "rank": patterns * each["rank"],
                                                            "svd": patterns * each["svd"]}))
        return jobs

    def report(self, fit: MemberFit) -> dict:
        return {"n_candidates": fit.detail["n_candidates"], "alpha_by_fold": fit.detail["alphas"],
                "screening": "the candidates most correlated with the target on the fold's training rows; their "
                             "count by leave-one-out error",
                "count_by_fold": [count for count, _ in fit.detail["chosen"]],
                "per_pattern": "fitted again for each pattern of missing inputs among the rows to predict, ranked "
                               "among the candidates the pattern has (each fold's count kept)"
                               if self.per_pattern else None}


class ChainedLinearMember(Member):
    """The target imputed by chained linear equations with its most correlated candidates, unimputed
    (:func:`models.twolvlimp.stacking._chained_linear`); a fold whose chain left the target unfilled falls back
    to the fold's mean."""

    name, tie_rank, has_section = "chained_linear", 1, True

    def applies(self, shape: StackShape) -> bool:
        return shape.linear and shape.unimputed > 0

    def fit(self, run: StackRun, ctx: FitContext) -> MemberFit:
        d = run.data
        oof, pred, counts, rounds, shape, ext = _chained_linear(
            np.asarray(d.R_all, np.float64), np.asarray(d.y, np.float64), run.w, np.asarray(d.Rp_all, np.float64),
            None if d.R_other is None else np.asarray(d.R_other, np.float64), run.folds,
            None if run.masked is None else [e["R"] for e in run.masked])
        means_oof, means_pred = fold_means(run)
        masked = None
        if ext is not None:
            masked = [(np.where(np.isfinite(c), c, m[0]), None) for c, m in zip(ext, masked_means(run, means_oof))]
        return MemberFit(np.where(np.isfinite(oof), oof, means_oof), np.where(np.isfinite(pred), pred, means_pred),
                         masked=masked, detail={"n_candidates": int(np.shape(d.R_all)[1]), "counts": counts,
                                                "rounds": rounds, "shape": shape})

    def jobs(self, plan: StackPlan) -> list[Job]:
        return [Job("chained_linear", chained_terms([tr.size for tr, _ in plan.folds], plan.shape.unimputed,
                                                    plan.countries, log_target_competes(plan.y)))]

    def report(self, fit: MemberFit) -> dict:
        return {"n_candidates": fit.detail["n_candidates"], "columns_by_fold": fit.detail["counts"],
                "rounds_by_fold": fit.detail["rounds"],
                "shape": {"none": "columns as they are",
                          "log": "skewed non-negative columns in logs"}.get(fit.detail["shape"]),
                "estimator": "chained equations (NearestFeatureIterativeImputer: ridge, penalty by generalised CV, "
                             "each column on the others) on the unimputed candidates most correlated with the "
                             "target and the target, every country's row; the target read where it is blanked"}


# The stack's members, in the order of the weights in the response's model.stack (and in the stacking grid).
MEMBERS: tuple[Member, ...] = (
    RidgeMember(),
    TreesMember(),
    MeanMember(),
    ScreenedRidgeMember(),
    ChainedLinearMember(),
)

"""Where the default method's work runs: what may run beside what, on the request's fit pool, with the same numbers
as one fit after another on the request's thread."""
from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from models.twolvlimp import members, method, tree_search
from models.twolvlimp.lookups import ImputationRequest, resolve
from models.twolvlimp.tree_search import FitContext, fit_pool
from shared.dataset import Dataset

_VERSIONS = itertools.count()


def fresh(ds: Dataset) -> Dataset:
    """The same data as a new version: nothing memoised."""
    return Dataset(values=ds.values, years=ds.years, countries=ds.countries, indicators=ds.indicators,
                   indicator_meta=ds.indicator_meta, dataset_meta=ds.dataset_meta, country_meta=ds.country_meta,
                   sids=ds.sids, version=f"schedule-{next(_VERSIONS)}")


@pytest.fixture
def pool():
    threads = fit_pool(2)
    yield threads
    threads.shutdown()


def test_selections_in_the_folds_run_beside_the_selection_on_every_row_with_the_same_numbers(platform, pool,
                                                                                            monkeypatch):
    """AFS among more candidates than training rows is redone on each stack fold's training rows: those five
    selections are queued on the fit pool just after the selection on every row, and run beside it and beside the
    own-series stack; the result is the one of every fit on the request's thread, one after another."""
    monkeypatch.setattr(tree_search, "PARALLEL_FIT_MIN_ROWS", 10)   # the platform's ~45 SIDS rows on the pool too
    spans = []   # (selection on fold rows?, start, end, thread) of every AFS
    real = method.afs_select

    def timed(X, y, k, w, *args, **kw):
        start = time.perf_counter()
        out = real(X, y, k, w, *args, **kw)
        spans.append((X.shape[0] < y_all, start, time.perf_counter(), threading.current_thread().name))
        return out
    monkeypatch.setattr(method, "afs_select", timed)
    req = ImputationRequest(target="itu-iuit", target_year="2015", scheme="AFS", number_predictor=5, estimators=10,
                            model="rfr")
    ds = fresh(platform)
    r = resolve(ds, req)
    lay = method.layout(ds, r)
    assert method.submodel_roles(lay) == ["own_series", "cross_section"]
    y_all = int(lay.train.sum())
    beside = method.run_default(ds, r, FitContext(pool))
    every_row = [(start, end, thread) for in_folds, start, end, thread in spans if not in_folds]
    in_folds = [(start, end, thread) for in_folds, start, end, thread in spans if in_folds]
    assert len(every_row) == 1 and len(in_folds) == 5
    assert all(thread.startswith("twolvlimp-fit") for _, _, thread in every_row + in_folds)
    assert min(start for start, _, _ in in_folds) < every_row[0][1]   # beside it, on the pool
    assert max(end for _, end, _ in in_folds) > every_row[0][1]       # still running when the request went on

    alone = method.run_default(fresh(platform), r)   # every fit on this thread, one after another
    for name in ("prediction", "lower", "upper"):
        assert np.array_equal(getattr(beside, name), getattr(alone, name)), name
    assert beside.predictors == alone.predictors
    for a, b in zip(beside.submodels, alone.submodels, strict=True):
        assert a.role == b.role and a.importances == b.importances and a.params == b.params
        assert a.interval_info == b.interval_info
    assert beside.submodels[1].params["stack"]["selection_in_folds"]["predictors_by_fold"]


def test_the_linear_members_fit_on_the_pool_beside_the_trees_with_the_same_numbers(wdi, pool, monkeypatch):
    """On enough rows for the fit pool, ridge, the screened ridge and the chained linear member each fit on a pool
    thread (beside each other and the trees' folds) instead of one after another on the request's thread."""
    threads: dict[str, set] = {}
    for member in members.MEMBERS:
        if member.name != members.TreesMember.name:
            def fit(run, ctx, real=type(member).fit, self=member):
                threads.setdefault(self.name, set()).add(threading.current_thread().name)
                return real(self, run, ctx)
            monkeypatch.setattr(member, "fit", fit)
    req = ImputationRequest(target="wdi-EG.ELC.ACCS.UR.ZS", target_year="2015", scheme="AFS", number_predictor=5,
                            estimators=10, model="rfr", dataset="wdi")
    ds = fresh(wdi)
    r = resolve(ds, req)
    assert tree_search.fits_in_parallel(int(method.layout(ds, r).train.sum()))
    beside = method.run_default(ds, r, FitContext(pool))
    assert {"ridge", "ridge_all_candidates", "chained_linear"} <= set(threads)
    for name in ("ridge", "ridge_all_candidates", "chained_linear"):
        assert all(t.startswith("twolvlimp-fit") for t in threads[name]), (name, threads[name])

    threads.clear()
    alone = method.run_default(fresh(wdi), r)
    assert all(t == threading.main_thread().name for names in threads.values() for t in names)
    for name in ("prediction", "lower", "upper"):
        assert np.array_equal(getattr(beside, name), getattr(alone, name)), name
    for a, b in zip(beside.submodels, alone.submodels, strict=True):
        assert a.role == b.role and a.importances == b.importances and a.params == b.params
        assert a.interval_info == b.interval_info

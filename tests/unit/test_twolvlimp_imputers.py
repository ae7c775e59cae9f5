"""The base imputers of the default method (models/twolvlimp/imputers.py), without HTTP."""
from __future__ import annotations

import numpy as np
import pytest

from models.twolvlimp import imputers
from models.twolvlimp.imputers import NearestFeatureIterativeImputer, impute


def gappy(n_rows: int = 200, n_cols: int = 12, share: float = 0.2, seed: int = 0):
    """Correlated columns (three latent factors, one heavy-tailed column) and a copy with gaps."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_rows, 3))
    X = latent @ rng.normal(size=(3, n_cols)) + 0.3 * rng.normal(size=(n_rows, n_cols))
    X[:, 1] = np.exp(X[:, 1])          # a skewed positive column (modelled in logs)
    holes = rng.random(X.shape) < share
    Xm = X.copy()
    Xm[holes] = np.nan
    return X, Xm, holes


def test_iterative_imputer_is_deterministic():
    _, Xm, _ = gappy(seed=3)
    first = impute("IterativeImputer", Xm)
    again = impute("IterativeImputer", Xm.copy())
    assert not np.isnan(first).any()
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, NearestFeatureIterativeImputer(random_state=0).fit_transform(Xm))


def test_iterative_imputer_is_multivariate_an_exact_linear_column_is_recovered():
    rng = np.random.default_rng(1)
    a = rng.normal(10, 3, size=150)
    X = np.c_[a, 3 * a - 2, rng.normal(size=(150, 4))]
    Xm = X.copy()
    holes = rng.random(150) < 0.3
    holes[[a.argmin(), a.argmax()]] = False    # imputed values are kept within the observed range
    Xm[holes, 1] = np.nan                      # column 1 has gaps where column 0 is known
    out = impute("IterativeImputer", Xm)
    err = np.abs(out[holes, 1] - X[holes, 1])
    assert err.max() < 0.01 * X[:, 1].std()     # near-exact: modelled from column 0
    # a univariate filler (the column mean) is far off
    assert np.abs(np.nanmean(Xm[:, 1]) - X[holes, 1]).mean() > 50 * err.mean()
    np.testing.assert_array_equal(out[~holes], X[~holes])   # observed values untouched


def test_iterative_imputer_iterates_and_rounds_improve_on_the_first():
    X, Xm, holes = gappy(n_rows=120, n_cols=8, share=0.35, seed=2)
    one = NearestFeatureIterativeImputer(max_iter=1).fit(Xm)
    more = NearestFeatureIterativeImputer()
    out_more = more.fit_transform(Xm)
    out_one = one.fit_transform(Xm)
    assert 1 < more.n_iter_ <= more.max_iter
    sd = X.std(axis=0)
    rmse = lambda out: np.sqrt(np.mean((((out - X) / sd)[holes]) ** 2))
    assert rmse(out_more) < rmse(out_one)       # later rounds use better-filled neighbours
    assert rmse(out_more) < 0.7 * rmse(impute("SimpleImputer", Xm))


def test_iterative_imputer_work_is_bounded(monkeypatch):
    """Only columns with gaps are modelled, each on at most n_nearest_features inputs, for at most
    max_iter rounds: the number of regressions does not grow with the columns that are complete."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 3)) @ rng.normal(size=(3, 300)) + 0.1 * rng.normal(size=(80, 300))
    with_gaps = [5, 17, 123, 250]
    for j in with_gaps:
        X[rng.random(80) < 0.25, j] = np.nan
    calls = []
    real = imputers._ridge_gcv

    def counting(A, b):
        calls.append(A.shape)
        return real(A, b)

    monkeypatch.setattr(imputers, "_ridge_gcv", counting)
    model = NearestFeatureIterativeImputer(n_nearest_features=7, max_iter=4)
    out = model.fit_transform(X)
    assert not np.isnan(out).any()
    assert model.n_features_modelled_ == len(with_gaps)
    assert sorted(model.models_) == with_gaps
    assert all(len(inputs) <= 7 for inputs, _, _ in model.models_.values())
    assert len(calls) <= len(with_gaps) * 4
    assert all(cols <= 7 for _, cols in calls)


def test_iterative_imputer_stays_in_the_observed_range_and_fills_empty_columns_with_zero():
    _, Xm, _ = gappy(seed=5)
    Xm[:, 4] = np.nan
    out = impute("IterativeImputer", Xm)
    assert (out[:, 4] == 0).all()
    for j in (0, 1, 2, 3, 5):
        assert np.nanmin(Xm[:, j]) <= out[:, j].min() and out[:, j].max() <= np.nanmax(Xm[:, j])


def test_iterative_imputer_transforms_other_rows_with_the_fitted_models():
    X, Xm, _ = gappy(n_rows=240, seed=6)
    model = NearestFeatureIterativeImputer().fit(Xm[:200])
    out = model.transform(Xm[200:])
    assert not np.isnan(out).any()
    known = ~np.isnan(Xm[200:])
    np.testing.assert_array_equal(out[known], X[200:][known])


def test_legacy_keeps_the_old_services_iterative_imputer():
    from sklearn.impute import IterativeImputer

    model = imputers.make_base_imputer("IterativeImputer", random_state=0)
    assert isinstance(model, IterativeImputer) and model.random_state == 0


@pytest.mark.parametrize("name", ["KNNImputer", "SimpleImputer", "IterativeImputer"])
def test_every_imputer_fills_every_gap(name):
    _, Xm, _ = gappy(seed=7)
    assert not np.isnan(impute(name, Xm)).any()


def test_blas_threads_are_restored_after_concurrent_imputations():
    import threading

    from threadpoolctl import threadpool_info

    _, Xm, _ = gappy(seed=8)
    impute("IterativeImputer", Xm)   # a first imputation on this (main) thread, as a test or warm-up would
    before = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    inside = []
    results = [None] * 4

    def work(k):
        with imputers.one_blas_thread():
            inside.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
            results[k] = impute("IterativeImputer", Xm)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(n == 1 for seen in inside for n in seen), inside
    assert [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"] == before
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])   # the same numbers whatever ran beside them


def test_knn_imputer_gives_scikit_learns_numbers_exactly():
    """The KNN imputer averages each column's donors on plain arrays (not np.ma): the same numbers to the last
    bit as scikit-learn's KNNImputer, with ties in the distances, empty columns and rows far from every donor."""
    from sklearn.impute import KNNImputer

    rng = np.random.default_rng(3)
    for case in range(12):
        n, p = int(rng.integers(8, 120)), int(rng.integers(2, 30))
        X = rng.normal(size=(n, p))
        X[rng.random((n, p)) < rng.uniform(0.05, 0.6)] = np.nan
        if case % 3 == 0:
            X = np.round(X, 1)   # equal distances: which donors argpartition keeps must not change
        if case % 4 == 0:
            X[:, 0] = np.nan
        ours = imputers._KNNImputer(n_neighbors=5, keep_empty_features=True).fit(X).transform(X)
        theirs = KNNImputer(n_neighbors=5, keep_empty_features=True).fit(X).transform(X)
        assert np.array_equal(ours, theirs, equal_nan=True), case


def test_knn_imputer_fills_other_rows_with_scikit_learns_numbers_exactly():
    """Filling rows other than the donors (as the calibration's refills do: a few blanked columns among many),
    only the columns with gaps are visited; the numbers stay scikit-learn's to the last bit, rows that share no
    value with any donor included (the column's mean), over one chunk of distances or many (one row each)."""
    import warnings

    from sklearn import config_context
    from sklearn.impute import KNNImputer

    rng = np.random.default_rng(5)
    for case in range(12):
        n, p = int(rng.integers(8, 80)), int(rng.integers(3, 60))
        donors = rng.normal(size=(n, p))
        donors[rng.random((n, p)) < 0.3] = np.nan
        donors[:, 1] = np.nan if case % 3 == 0 else donors[:, 1]
        rows = rng.normal(size=(int(rng.integers(1, 40)), p))
        rows[:, rng.permutation(p)[:int(rng.integers(1, 4))]] = np.nan          # a pattern's blanked columns
        rows[rng.random(rows.shape) < 0.1] = np.nan
        rows[0, :] = np.nan
        rows[0, p - 1] = 0.5 if case % 2 else np.nan                          # shares nothing, or one column
        with config_context(working_memory=0.0005 if case % 4 == 1 else 1024), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # (one row per chunk: below the memory it asks for)
            ours = imputers._KNNImputer(n_neighbors=5, keep_empty_features=True).fit(donors).transform(rows)
            theirs = KNNImputer(n_neighbors=5, keep_empty_features=True).fit(donors).transform(rows)
        assert not np.isnan(ours).any()
        assert np.array_equal(ours, theirs), case


def test_the_chained_ridge_decomposes_with_numpys_own_numbers():
    """The chained imputer's ridge calls numpy's LAPACK routine directly (thousands of small fits per request):
    eigenvalues and vectors equal to np.linalg.eigh's to the last bit, singular and empty matrices included."""
    rng = np.random.default_rng(11)
    for k, m in ((30, 40), (30, 12), (5, 5), (1, 3), (0, 4)):
        A = rng.normal(size=(m, k))
        G = A.T @ A
        ours, numpys = imputers._symmetric_eigh(G), np.linalg.eigh(G)
        assert all(np.array_equal(a, b) for a, b in zip(ours, numpys)), (k, m)
    coef, intercept = imputers._ridge_gcv(np.ones((6, 3)), np.arange(6.0))   # constant inputs: the mean alone
    assert np.array_equal(coef, np.zeros(3)) and intercept == 2.5

"""The dataset store seen through an endpoint: what a prediction makes of data the store had to clean.

The store itself (parsing, swaps, last good copy, manifests) is tested in tests/unit/test_store.py.
"""
import shutil

import numpy as np
import pytest

from helpers import HUGE, JUST_INSIDE, ROOT, with_huge_values
from shared.store import DatasetStore, LocalFolderSource


@pytest.fixture
def folder(tmp_path):
    target = tmp_path / "ds"
    shutil.copytree(ROOT / "data" / "wdi", target)
    return target


@pytest.mark.parametrize("interpolator, method, values", [
    ("IterativeImputer", "default", HUGE), ("IterativeImputer", "legacy", HUGE), ("KNNImputer", "legacy", HUGE),
    ("IterativeImputer", "legacy", JUST_INSIDE),  # the bound itself is safe for the most fragile method
], ids=["iterative", "iterative-legacy", "knn-legacy", "iterative-legacy-at-bound"])
def test_predictions_on_data_with_huge_values_are_finite(call, folder, interpolator, method, values):
    from shared.store import set_store

    target, predictor = "wdi-EG.ELC.ACCS.UR.ZS", "wdi-SP.URB.TOTL.IN.ZS"
    with_huge_values(folder, predictor, values=values)
    with_huge_values(folder, target, years=("2014", "2013"), values=values)
    set_store(DatasetStore(LocalFolderSource(folder), refresh_seconds=3600))
    try:
        reply = call("POST", "/twolvlImp/predict", {
            "target": target, "target_year": "2015", "interpolator": interpolator, "scheme": "MANUAL",
            "manual_predictors": [predictor], "estimators": 10, "model": "rfr", "interval": "quantile",
            "dataset": "wdi", "method": method})
    finally:
        set_store(None)
    assert reply.status == 200, reply.body[:500]
    body = reply.json()
    numbers = [body["rmse"], body["rmse_deviation"], *body["prediction"]["prediction"],
               *body["prediction"]["lower"], *body["prediction"]["upper"]]
    assert numbers and all(isinstance(v, float) and np.isfinite(v) for v in numbers), numbers[:10]
    if values is HUGE:
        assert max(abs(v) for v in body["prediction"]["prediction"]) < 1e3  # a percentage, not an overflow

"""The dashboard's real ML page (../shared/contracts/dashboard.md), replayed over HTTP on both datasets.

The page's form offers base imputer x scheme x model x interval, 5/10/20 predictors and 10, 100, 500
and 1000 trees. It sends a CORS preflight asking for ``content-type`` and ``access-control-allow-origin``
(an axios default it sets), calls ``/estimate`` after every change, before the form is complete, and
``/predict`` on Train, and reads the ModelResponse fields listed in the contract. The matrix below
covers every value of every field at least once (every imputer x scheme pair) on the embedded WDI data
and on the SIDS platform's own data (SIDS only, ``key-`` codes, its own ``key`` dataset).
"""
from __future__ import annotations

import math

import httpx
import pytest

from conftest import platform_data, start_local_host, stop_process

ORIGIN = "https://sids-dashboard.github.io"
YEAR = "2015"

# imputer, scheme, predictors, model, interval, trees: each value of each field at least once.
MATRIX = [
    ("KNNImputer", "MANUAL", 5, "rfr", "quantile", 1000),
    ("KNNImputer", "AFS", 10, "gbr", "bootstrap", 100),
    ("KNNImputer", "PCA", 20, "etr", "quantile", 500),
    ("SimpleImputer", "MANUAL", 10, "all", "bootstrap", 10),
    ("SimpleImputer", "AFS", 20, "rfr", "quantile", 100),
    ("SimpleImputer", "PCA", 5, "gbr", "bootstrap", 10),
    ("IterativeImputer", "MANUAL", 20, "etr", "bootstrap", 10),
    ("IterativeImputer", "AFS", 5, "all", "quantile", 10),
    ("IterativeImputer", "PCA", 10, "rfr", "quantile", 100),
]


@pytest.fixture(scope="module", params=["wdi", "sids-platform"])
def dashboard(request, live_server):
    if request.param == "wdi":
        yield httpx.Client(base_url=live_server, timeout=300), "wdi"
        return
    proc, base, _ = start_local_host({"DATASET_PATH": str(platform_data())})
    try:
        yield httpx.Client(base_url=base, timeout=300), "key"
    finally:
        stop_process(proc)


def send(client: httpx.Client, path: str, body: dict) -> httpx.Response:
    pre = client.options(path, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "access-control-allow-origin,content-type"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" in pre.headers["access-control-allow-headers"]
    reply = client.post(path, json=body, headers={"Origin": ORIGIN, "Access-Control-Allow-Origin": "*"})
    assert reply.headers.get("access-control-allow-origin") == ORIGIN
    return reply


def form_target(client: httpx.Client, dataset: str) -> tuple[str, list[str]]:
    targets = client.get("/twolvlImp/targets", params={"target_year": YEAR, "dataset": dataset})
    assert targets.status_code == 200, targets.text
    codes = sorted(targets.json())
    for code in codes:  # the first target with enough predictors for the form's largest choice
        options = client.post("/twolvlImp/predictors", json={"target_year": YEAR, "dataset": dataset,
                                                               "target": code, "scheme": "MANUAL"}).json()
        if len(options) >= 20:
            return code, sorted(options)
    pytest.fail(f"no {dataset} target in {YEAR} with 20 predictors")


def assert_reads_like_the_dashboard(body: dict) -> None:
    assert isinstance(body["rmse_deviation"], (int, float)) and math.isfinite(body["rmse_deviation"])
    names, weights = body["model_feature_names"], body["model_feature_importance"]
    assert names and len(names) == len(weights) and all(isinstance(n, str) for n in names)
    assert all(math.isfinite(w) for w in weights)
    pie = body["feature_importance_pie"]
    assert len(pie["category"]) == len(pie["value"]) > 0
    corr = body["correlation"]
    assert len(corr["data"]) == len(corr["index"]) and all(len(row) == len(corr["columns"]) for row in corr["data"])
    table = body["prediction"]
    n = len(table["Country Code"])
    assert n > 0 and len(table["prediction"]) == len(table["lower"]) == len(table["upper"]) == n
    for low, mid, high in zip(table["lower"], table["prediction"], table["upper"]):
        assert math.isfinite(low) and math.isfinite(mid) and math.isfinite(high)
        assert low <= mid <= high


@pytest.mark.slow
def test_every_form_combination_renders(dashboard):
    client, dataset = dashboard
    target, predictors = form_target(client, dataset)
    for imputer, scheme, count, model, interval, trees in MATRIX:
        form = {"target": target, "target_year": YEAR, "interpolator": imputer, "scheme": scheme,
                "estimators": trees, "model": model, "interval": interval, "dataset": dataset}
        half_filled = dict(form, manual_predictors=[]) if scheme == "MANUAL" else form
        estimate = send(client, "/twolvlImp/estimate", half_filled)
        assert estimate.status_code == 200, (form, estimate.text)
        assert isinstance(estimate.json(), float) and estimate.json() > 0
        full = dict(form, manual_predictors=predictors[:count]) if scheme == "MANUAL" else \
            dict(form, number_predictor=count)
        assert send(client, "/twolvlImp/estimate", full).status_code == 200
        reply = send(client, "/twolvlImp/predict", full)
        assert reply.status_code == 200, (full, reply.text[:500])
        assert_reads_like_the_dashboard(reply.json())


def test_estimate_answers_every_half_filled_form(live_server):
    states = [
        {},
        {"scheme": "MANUAL", "manual_predictors": []},
        {"scheme": "AFS"},
        {"target": "", "target_year": ""},
        {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": YEAR, "scheme": "MANUAL",
         "manual_predictors": ["not-an-indicator"]},
    ]
    base = {"interpolator": "KNNImputer", "scheme": "MANUAL", "estimators": 1000, "model": "rfr",
            "interval": "quantile"}
    for state in states:
        reply = httpx.post(live_server + "/twolvlImp/estimate", json={**base, **state})
        assert reply.status_code == 200, (state, reply.text)
        assert reply.json() > 0
    strict = httpx.post(live_server + "/twolvlImp/predict", json={**base, "target": "wdi-EG.ELC.ACCS.UR.ZS",
                                                                  "target_year": YEAR, "manual_predictors": []})
    assert strict.status_code == 422


def test_first_release_paths_answer_as_the_current_ones(live_server):
    for path in ("target_sample_size", "predictor_sample_size"):
        old, new = httpx.get(f"{live_server}/imputation/{path}"), httpx.get(f"{live_server}/twolvlImp/{path}")
        assert old.status_code == new.status_code == 200 and old.json() == new.json()
    body = {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": YEAR, "interpolator": "KNNImputer",
            "scheme": "MANUAL", "manual_predictors": ["wdi-SP.URB.TOTL.IN.ZS"], "estimators": 10, "model": "rfr",
            "interval": "quantile", "dataset": "wdi"}
    old, new = httpx.post(f"{live_server}/imputation/predict", json=body), \
        httpx.post(f"{live_server}/twolvlImp/predict", json=body)
    assert old.status_code == new.status_code == 200
    assert old.json()["prediction"] == new.json()["prediction"]


def test_platform_key_dataset_is_a_dataset_of_its_own():
    proc, base, _ = start_local_host({"DATASET_PATH": str(platform_data())})
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            datasets = client.get("/twolvlImp/datasets", params={"target_year": YEAR}).json()
            assert "key" in datasets
            targets = client.get("/twolvlImp/targets", params={"target_year": YEAR, "dataset": "key"})
            assert targets.status_code == 200 and targets.json()
            assert all(code.startswith("key-") for code in targets.json())
    finally:
        stop_process(proc)


def ok(reply: httpx.Response):
    assert reply.status_code == 200, f"{reply.request.method} {reply.request.url} -> {reply.status_code} {reply.text[:300]}"
    return reply.json()


def test_every_model_endpoint_works_through_its_look_ups(dashboard):
    """Each model's form, built from its own look-ups as a client would, on both datasets."""
    client, dataset = dashboard
    for path in ("/", "/health", "/datasets", "/params", "/openapi.json", "/twolvlImp/target_years",
                 "/twolvlImp/target_sample_size", "/twolvlImp/predictor_sample_size"):
        ok(client.get(path))
    assert dataset in {d["code"] for d in ok(client.get("/datasets"))}

    for entry in ok(client.get("/statimpute/targets", params={"dataset": dataset})):  # sparse series: find 2+ years
        best = max(ok(client.get("/statimpute/countries", params={"target": entry["code"]})), key=lambda c: c["observed"])
        if best["observed"] >= 2:
            assert ok(client.post("/statimpute/impute", json={"target": entry["code"], "country": best["code"]}))
            break
    else:
        pytest.fail(f"no {dataset} indicator with a SIDS observed in 2 years")

    category = ok(client.get("/correlation/categories", params={"dataset": dataset}))[0]["category"]
    years = ok(client.get("/correlation/years", params={"dataset": dataset, "category": category}))
    year = max(years, key=lambda y: (y["indicators"], y["year"]))["year"]
    form = {"dataset": dataset, "category": category, "year": year}
    country = max(ok(client.get("/correlation/countries", params=form)), key=lambda c: c["indicators"])["code"]
    assert ok(client.post("/correlation/correlate", json={**form, "country": country}))
    assert ok(client.post("/correlation/cluster", json=form))

    dimensions = ok(client.get("/twolvlImp/dimensions", params={"target_year": YEAR, "dataset": dataset,
                                                                "target": form_target(client, dataset)[0]}))
    assert dimensions

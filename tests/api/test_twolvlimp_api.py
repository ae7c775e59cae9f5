"""The /twolvlImp endpoints through the app's registered functions (real func.HttpRequest) and over HTTP."""
from __future__ import annotations

import json

import httpx
import pytest

ORIGIN = "https://sids-dashboard.github.io"
TARGET = "wdi-EG.ELC.ACCS.UR.ZS"
# The dashboard's request (contracts/dashboard.md), on an indicator the embedded data has.
DASHBOARD = {
    "target": TARGET, "interval": "quantile", "target_year": "2015", "interpolator": "KNNImputer",
    "scheme": "MANUAL", "estimators": 10, "model": "rfr", "dataset": "wdi",
    "manual_predictors": ["wdi-SP.URB.TOTL.IN.ZS"],
}
JSON_HEADERS = {"origin": ORIGIN, "content-type": "application/json"}


def check_dashboard_fields(body: dict) -> None:
    assert isinstance(body["rmse_deviation"], float)
    names, imps = body["model_feature_names"], body["model_feature_importance"]
    assert isinstance(names, list) and len(names) == len(imps) and all(isinstance(v, float) for v in imps)
    pie = body["feature_importance_pie"]
    assert set(pie) == {"category", "value"} and len(pie["category"]) == len(pie["value"])
    corr = body["correlation"]
    assert set(corr) == {"index", "columns", "data"} and len(corr["data"]) == len(corr["index"])
    pred = body["prediction"]
    assert set(pred) == {"Country Code", "prediction", "lower", "upper"}
    assert len({len(v) for v in pred.values()}) == 1 and pred["Country Code"]
    ij = body["indicatorJson"]
    for key in ("data", "upperIntervals", "lowerIntervals", "featureImportances", "categoryImportances",
                "correlation", "rmse", "rmse_deviation"):
        assert list(ij[key]) == ["2015"], key


def test_dashboard_request_works_unchanged(call):
    reply = call("POST", "/twolvlImp/predict", DASHBOARD, headers=JSON_HEADERS)
    assert reply.status == 200, reply.body
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    check_dashboard_fields(reply.json())
    est = call("POST", "/twolvlImp/estimate", DASHBOARD, headers=JSON_HEADERS)
    assert est.status == 200 and isinstance(est.json(), float) and est.json() >= 0


def test_cors_preflight(call):
    for path in ("/twolvlImp/predict", "/twolvlImp/estimate"):
        reply = call("OPTIONS", path, headers={"origin": ORIGIN, "access-control-request-method": "POST",
                                               "access-control-request-headers": "content-type"})
        assert reply.status == 204
        assert reply.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in reply.headers["access-control-allow-methods"]
        assert reply.headers["access-control-allow-headers"] == "content-type"


def test_repeated_request_is_served_from_the_cache_with_the_same_bytes(call):
    body = {**DASHBOARD, "estimators": 12}
    first = call("POST", "/twolvlImp/predict", body)
    second = call("POST", "/twolvlImp/predict", body)
    assert first.status == second.status == 200
    assert second.headers["x-cache"] == "hit" and second.body == first.body


def test_lookups(call):
    years = call("GET", "/twolvlImp/target_years").json()
    assert years[0] == "1990" and years[-1] == "2020" and "2015" in years
    assert call("GET", "/twolvlImp/datasets", params={"target_year": "2015"}).json() == {"wdi": "World Development Indicators"}
    targets = call("GET", "/twolvlImp/targets", params={"target_year": "2015", "dataset": "wdi"}).json()
    assert targets[TARGET] == "Access to electricity, urban" and "wdi-EN.POP.DNST" not in targets  # never missing
    for target in ("Access to electricity, urban", TARGET):
        dims = call("GET", "/twolvlImp/dimensions", params={"target": target, "target_year": "2015", "dataset": "wdi"})
        assert dims.json() == [{"label": "% of urban population", "value": TARGET}]
    manual = call("POST", "/twolvlImp/predictors",
                  {"target_year": "2015", "dataset": "wdi", "target": TARGET, "scheme": "MANUAL"}).json()
    assert TARGET not in manual and manual["wdi-EN.POP.DNST"] == "Population density-people per sq. km of land area"
    counts = call("POST", "/twolvlImp/predictors",
                  {"target_year": "2015", "dataset": "wdi", "target": TARGET, "scheme": "AFS"}).json()
    assert counts["1"] == 1 and max(counts.values()) == len(manual)
    assert call("GET", "/twolvlImp/target_sample_size").json() == 44            # ceil(217 * 0.2)
    assert call("GET", "/twolvlImp/predictor_sample_size").json() == 152        # ceil(217 * 0.7)


@pytest.mark.parametrize("change,field,text", [
    ({"estimators": 0}, "estimators", "greater than or equal to 1"),
    ({"estimators": 1001}, "estimators", "less than or equal to 1000"),
    ({"scheme": "AFS", "number_predictor": 51}, "number_predictor", "less than or equal to 50"),
    ({"scheme": "AFS"}, "number_predictor", "required when scheme is AFS or PCA"),
    ({"manual_predictors": None}, "manual_predictors", "required when scheme is MANUAL"),
    ({"manual_predictors": []}, "manual_predictors", "at least 1 item"),
    ({"manual_predictors": [f"wdi-X{i}" for i in range(51)]}, "manual_predictors", "at most 50 items"),
    ({"manual_predictors": ["wdi-EN.POP.DNST", "wdi-EN.POP.DNST"]}, "manual_predictors", "repeated: wdi-EN.POP.DNST"),
    ({"model": "svm"}, "model", "'rfr', 'gbr', 'etr' or 'all'"),
    ({"interval": "conformal"}, "interval", "'quantile' or 'bootstrap'"),
])
def test_malformed_requests_are_422_saying_what_is_allowed(call, change, field, text):
    body = {k: v for k, v in {**DASHBOARD, **change}.items() if v is not None}
    reply = call("POST", "/twolvlImp/predict", body)
    assert reply.status == 422
    detail = reply.json()["detail"]
    assert detail[0]["loc"] == ["body", field] and text in detail[0]["msg"], detail


@pytest.mark.parametrize("change,text", [
    ({"target": "wdi-NO.SUCH"}, "unknown target 'wdi-NO.SUCH'"),
    ({"target_year": "1970"}, "the data has targets for the years 1990 to 2020"),
    ({"dataset": "imf"}, "dataset 'imf' has no valid targets in 2015; datasets with targets that year: wdi"),
    ({"target": "wdi-SP.URB.GROW"}, "every SIDS in the data has a value for 'wdi-SP.URB.GROW' in 2015"),
    ({"manual_predictors": ["wdi-IP.PAT.NRES"]}, "invalid predictor(s) for 2015: wdi-IP.PAT.NRES"),
    ({"manual_predictors": [TARGET]}, "cannot be one of its own predictors"),
    ({"scheme": "PCA", "number_predictor": 50}, "number_predictor must be between 1 and 25 for 2015"),
])
def test_values_the_data_does_not_support_are_422_value_errors(call, change, text):
    reply = call("POST", "/twolvlImp/predict", {**DASHBOARD, **change})
    assert reply.status == 422
    detail = reply.json()["detail"]
    assert detail["type"] == "value_error" and text in detail["msg"], detail


def test_each_error_response_carries_its_own_message(call):
    first = call("POST", "/twolvlImp/predict", {**DASHBOARD, "manual_predictors": ["wdi-A.1"]}).json()
    second = call("POST", "/twolvlImp/predict", {**DASHBOARD, "manual_predictors": ["wdi-B.2"]}).json()
    assert "wdi-A.1" in first["detail"]["msg"] and "wdi-A.1" not in second["detail"]["msg"]
    assert "wdi-B.2" in second["detail"]["msg"]


def test_old_callers_without_dataset_and_with_key_codes(call):
    body = {k: v for k, v in DASHBOARD.items() if k != "dataset"}
    body.update(target="key-" + TARGET, manual_predictors=["key-wdi-SP.URB.TOTL.IN.ZS"], target_year=2015)
    reply = call("POST", "/twolvlImp/predict", body)
    assert reply.status == 200, reply.body
    out = reply.json()
    assert out["target"]["code"] == TARGET and out["target"]["dataset"] == "wdi"
    assert any("old platform" in note for note in out["notes"])


def test_params_and_openapi_describe_the_model(call):
    params = {m["model"]: m for m in call("GET", "/params").json()}
    model = params["twolvlImp"]
    assert model["endpoint"] == "/twolvlImp/predict" and model["label"] == "Two-level imputation"
    inputs = {i["parameter"]: i for i in model["inputs"]}
    assert inputs["manual_predictors"]["conditions"] == {"required": {"scheme": ["MANUAL"]}}
    assert inputs["number_predictor"]["conditions"] == {"required": {"scheme": ["AFS", "PCA"]}}
    assert inputs["number_predictor"]["maximum"] == 50 and inputs["estimators"]["maximum"] == 1000
    assert inputs["target"]["req_endpoint"]["path"] == "/twolvlImp/targets"
    assert inputs["dataset"]["req_endpoint"]["path"] == "/twolvlImp/datasets"
    assert inputs["manual_predictors"]["req_endpoint"] == {
        "path": "/twolvlImp/predictors", "method": "POST", "inputs": ["target_year", "dataset", "target", "scheme"]}
    assert inputs["method"]["values"] == ["default", "legacy"] and inputs["method"]["default"] == "default"
    doc = call("GET", "/openapi.json").json()
    for path in ("target_years", "datasets", "targets", "dimensions", "predictors", "target_sample_size",
                 "predictor_sample_size", "estimate", "predict"):
        assert f"/twolvlImp/{path}" in doc["paths"], path
    assert doc["paths"]["/twolvlImp/predict"]["post"]["x-main-endpoint"] is True


def test_over_http(live_server):
    with httpx.Client(base_url=live_server, timeout=60) as client:
        pre = client.options("/twolvlImp/predict", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                            "Access-Control-Request-Headers": "content-type"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
        reply = client.post("/twolvlImp/predict", content=json.dumps(DASHBOARD),
                            headers={"Origin": ORIGIN, "Content-Type": "application/json"})
        assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == ORIGIN
        check_dashboard_fields(reply.json())
        assert client.get("/twolvlImp/target_years").json()[-1] == "2020"
        bad = client.post("/twolvlImp/predict", json={**DASHBOARD, "estimators": 0})
        assert bad.status_code == 422


def test_a_body_outside_the_response_schema_is_never_sent_as_a_200(call, monkeypatch):
    from models.twolvlimp import runtime as twolvlimp_runtime

    real = call("POST", "/twolvlImp/predict", DASHBOARD).json()
    broken = dict(real, rmse=None, prediction=dict(real["prediction"], prediction=[None] * len(real["prediction"]["lower"])))
    monkeypatch.setattr(twolvlimp_runtime.TwoLevelRuntime, "predict_response",
                        lambda self, ds, req, **kwargs: twolvlimp_runtime.PredictOutcome(body=json.dumps(broken).encode(), cached=False, seconds=0.1))
    reply = call("POST", "/twolvlImp/predict", DASHBOARD)
    assert reply.status == 500
    assert reply.json()["detail"]["type"] == "internal_error" and "null" not in reply.body.decode()

"""Time-series interpolation (/statimpute): the endpoints, through the app's functions and over HTTP.

The pure functions are tested in tests/unit/test_statimpute.py.
"""
from __future__ import annotations

import pytest

PM25, GINI = "wdi-EN.ATM.PM25.MC.M3", "wdi-SI.POV.GINI"


def test_targets_endpoint(call):
    reply = call("GET", "/statimpute/targets")
    assert reply.status == 200
    pm25 = next(t for t in reply.json() if t["code"] == PM25)
    assert pm25["name"] == "PM2.5 air pollution, mean annual exposure" and pm25["dataset"] == "wdi"
    assert call("GET", "/statimpute/targets", params={"dataset": "wdi"}).json() == reply.json()
    unknown = call("GET", "/statimpute/targets", params={"dataset": "nope"})
    assert unknown.status == 422 and "known datasets: wdi" in unknown.json()["detail"]["msg"]


def test_countries_endpoint(call):
    reply = call("GET", "/statimpute/countries", params={"target": PM25})
    assert reply.status == 200
    body = reply.json()
    assert {"code": "ATG", "name": "Antigua and Barbuda", "observed": 12, "missing": 19,
            "first_year": 1990, "last_year": 2017} in body
    assert "USA" not in {c["code"] for c in body}
    missing = call("GET", "/statimpute/countries")
    assert missing.status == 422 and missing.json()["detail"][0]["loc"] == ["query", "target"]


def test_impute_endpoint_marks_observed_and_imputed_years(call):
    reply = call("POST", "/statimpute/impute", {"target": PM25, "country": "ATG", "method": "pchip",
                                                 "direction": "forward"})
    assert reply.status == 200, reply.json()
    body = reply.json()
    assert body["country_name"] == "Antigua and Barbuda" and body["target_name"].startswith("PM2.5")
    assert body["method"] == "pchip" and body["direction"] == "forward" and body["order"] is None
    assert [p["year"] for p in body["series"]] == list(range(1990, 2021))
    statuses = {p["year"]: p["status"] for p in body["series"]}
    assert body["filled_years"] == [y for y, s in statuses.items() if s == "imputed"]
    assert {2018, 2019, 2020} <= set(body["filled_years"])
    assert sum(s == "observed" for s in statuses.values()) == 12
    assert all(p["value"] is not None for p in body["series"])


def test_backward_leaves_the_later_years_missing(call):
    body = call("POST", "/statimpute/impute", {"target": PM25, "country": "ATG", "direction": "backward"}).json()
    tail = [p for p in body["series"] if p["year"] > 2017]
    assert tail and all(p["status"] == "missing" and p["value"] is None for p in tail)
    assert body["method"] == "linear"


def test_order_is_required_for_spline_and_polynomial(call):
    for method in ("spline", "polynomial"):
        reply = call("POST", "/statimpute/impute", {"target": PM25, "country": "ATG", "method": method})
        assert reply.status == 422
        assert reply.json()["detail"] == [{"loc": ["body", "order"], "type": "missing",
                                           "msg": "Field required when method is spline or polynomial"}]
        ok = call("POST", "/statimpute/impute", {"target": PM25, "country": "ATG", "method": method, "order": 3})
        assert ok.status == 200 and ok.json()["order"] == 3
    ignored = call("POST", "/statimpute/impute", {"target": PM25, "country": "ATG", "method": "cubic", "order": 3})
    assert ignored.status == 200 and ignored.json()["order"] is None
    too_high = call("POST", "/statimpute/impute", {"target": PM25, "country": "ATG", "method": "spline", "order": 9})
    assert too_high.status == 422 and too_high.json()["detail"][0]["loc"] == ["body", "order"]


def test_too_few_points_is_a_clear_422(call):
    countries = call("GET", "/statimpute/countries", params={"target": GINI}).json()
    two = next(c["code"] for c in countries if c["observed"] == 2)
    reply = call("POST", "/statimpute/impute", {"target": GINI, "country": two, "method": "cubic"})
    assert reply.status == 422
    detail = reply.json()["detail"]
    assert "cubic interpolation needs at least 4 observed years" in detail["msg"] and f"{two} has 2" in detail["msg"]
    assert detail["context"] == {"needed": 4, "observed": 2, "method": "cubic"}
    spline = call("POST", "/statimpute/impute", {"target": GINI, "country": two, "method": "spline", "order": 2})
    assert spline.status == 422 and "of order 2 needs at least 3" in spline.json()["detail"]["msg"]
    assert call("POST", "/statimpute/impute", {"target": GINI, "country": two, "method": "linear"}).status == 200


@pytest.mark.parametrize("body,loc", [
    ({"country": "ATG"}, ["body", "target"]),
    ({"target": PM25, "country": "ATG", "method": "quartic"}, ["body", "method"]),
    ({"target": PM25, "country": "ATG", "direction": "sideways"}, ["body", "direction"]),
    ({"target": PM25, "country": "ATGX"}, ["body", "country"]),
])
def test_malformed_requests(call, body, loc):
    reply = call("POST", "/statimpute/impute", body)
    assert reply.status == 422 and reply.json()["detail"][0]["loc"] == loc


def test_unsupported_values_are_422_with_messages(call):
    reply = call("POST", "/statimpute/impute", {"target": PM25, "country": "USA"})
    assert reply.status == 422
    assert reply.json()["detail"]["msg"].startswith("USA (United States) is not a Small Island Developing State")
    reply = call("POST", "/statimpute/impute", {"target": "wdi-XX", "country": "ATG"})
    assert reply.status == 422 and "GET /statimpute/targets" in reply.json()["detail"]["msg"]


def test_params_and_openapi_describe_the_model(call):
    entry = next(m for m in call("GET", "/params").json() if m["model"] == "statimpute")
    assert entry["endpoint"] == "/statimpute/impute" and entry["method"] == "POST"
    inputs = {i["parameter"]: i for i in entry["inputs"]}
    assert inputs["order"]["conditions"] == {"required": {"method": ["spline", "polynomial"]}}
    assert inputs["method"]["type"] == "enum" and len(inputs["method"]["values"]) == 10
    assert inputs["direction"]["values"] == ["forward", "backward", "both"]
    assert inputs["target"]["req_endpoint"] == {"path": "/statimpute/targets", "method": "GET", "inputs": []}
    assert inputs["country"]["req_endpoint"] == {"path": "/statimpute/countries", "method": "GET", "inputs": ["target"]}
    doc = call("GET", "/openapi.json").json()
    op = doc["paths"]["/statimpute/impute"]["post"]
    assert op["x-main-endpoint"] is True
    schema = doc["components"]["schemas"]["ImputeRequest"]
    assert {"if": {"properties": {"method": {"enum": ["spline", "polynomial"]}}, "required": ["method"]},
            "then": {"required": ["order"]}} in schema["allOf"]
    assert {"/statimpute/targets", "/statimpute/countries"} <= set(doc["paths"])


def test_impute_over_http(live_server):
    import httpx

    reply = httpx.post(live_server + "/statimpute/impute",
                       json={"target": PM25, "country": "ATG", "method": "akima"}, timeout=30)
    assert reply.status_code == 200
    assert len(reply.json()["series"]) == 31

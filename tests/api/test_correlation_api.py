"""Country similarity (/correlation): the endpoints, through the app's functions and over HTTP.

The pure functions are tested in tests/unit/test_correlation.py.
"""
from __future__ import annotations

import pytest


def test_lookups(call):
    cats = call("GET", "/correlation/categories", params={"dataset": "wdi"})
    assert cats.status == 200
    assert {"category": "Public Sector", "indicators": 50} in cats.json()
    years = call("GET", "/correlation/years", params={"dataset": "wdi", "category": "Public Sector"})
    assert years.status == 200 and 2015 in [y["year"] for y in years.json()]
    countries = call("GET", "/correlation/countries", params={"dataset": "wdi", "category": "Public Sector",
                                                              "year": "2015"})
    assert countries.status == 200
    fji = next(c for c in countries.json() if c["code"] == "FJI")
    assert fji["name"] == "Fiji" and fji["indicators"] > 5
    everyone = call("GET", "/correlation/countries", params={"dataset": "wdi", "category": "Public Sector",
                                                             "year": "2015", "compare_with": "all"})
    assert len(everyone.json()) > len(countries.json())
    bad = call("GET", "/correlation/categories", params={"dataset": "nope"})
    assert bad.status == 422 and "known datasets: wdi" in bad.json()["detail"]["msg"]


def test_correlate_endpoint(call):
    reply = call("POST", "/correlation/correlate",
                 {"dataset": "wdi", "category": "Public Sector", "country": "fji", "year": 2015})
    assert reply.status == 200, reply.json()
    body = reply.json()
    assert body["country"] == "FJI" and body["country_name"] == "Fiji" and body["compare_with"] == "sids"
    ranks = body["ranking"]
    assert [r["rank"] for r in ranks] == list(range(1, len(ranks) + 1))
    assert all(-1 <= r["correlation"] <= 1 and r["overlap"] >= 5 and r["name"] for r in ranks)
    assert [r["correlation"] for r in ranks] == sorted((r["correlation"] for r in ranks), reverse=True)
    assert all(s["overlap"] < 5 for s in body["skipped"])


@pytest.mark.parametrize("body,status,fragment", [
    ({"dataset": "nope", "category": "Public Sector", "country": "FJI", "year": 2015}, 422, "Unknown dataset"),
    ({"dataset": "wdi", "category": "Public Sectr", "country": "FJI", "year": 2015}, 422, "Did you mean Public Sector"),
    ({"dataset": "wdi", "category": "Public Sector", "country": "USA", "year": 2015}, 422, "compare_with"),
    ({"dataset": "wdi", "category": "Public Sector", "country": "FJI", "year": 1950}, 422, "years run from 1990"),
    ({"dataset": "wdi", "category": "Poverty", "country": "FJI", "year": 2020}, 422, "GET /correlation/years"),
])
def test_correlate_unsupported_values(call, body, status, fragment):
    reply = call("POST", "/correlation/correlate", body)
    assert reply.status == status and fragment in reply.json()["detail"]["msg"]


@pytest.mark.parametrize("body,loc", [
    ({"category": "Public Sector", "country": "FJI", "year": 2015}, ["body", "dataset"]),
    ({"dataset": "wdi", "category": "Public Sector", "country": "FJI", "year": 2015, "min_overlap": 2},
     ["body", "min_overlap"]),
    ({"dataset": "wdi", "category": "Public Sector", "country": "FJI", "year": "soon"}, ["body", "year"]),
])
def test_correlate_malformed(call, body, loc):
    reply = call("POST", "/correlation/correlate", body)
    assert reply.status == 422 and reply.json()["detail"][0]["loc"] == loc


def test_cluster_endpoint_is_reproducible(call):
    request = {"dataset": "wdi", "category": "Urban Development", "year": 2010, "k": 3}
    first = call("POST", "/correlation/cluster", request)
    assert first.status == 200, first.json()
    body = first.json()
    assert len(body["countries"]) == len(body["names"]) == len(body["labels"])
    assert set(body["labels"]) == {0, 1, 2} and body["labels"][0] == 0 and body["seed"] == 0
    assert body["names"][body["countries"].index("FJI")] == "Fiji"
    assert call("POST", "/correlation/cluster", request).json() == body
    assert call("POST", "/correlation/cluster", {**request, "k": 1}).json()["detail"][0]["loc"] == ["body", "k"]
    too_many = call("POST", "/correlation/cluster", {**request, "k": 20, "min_observed": 17})
    assert too_many.status == 422 and "choose k <=" in too_many.json()["detail"]["msg"]


def test_params_lists_correlate_with_lookups(call):
    entry = next(m for m in call("GET", "/params").json() if m["model"] == "correlation")
    assert entry["endpoint"] == "/correlation/correlate"
    inputs = {i["parameter"]: i for i in entry["inputs"]}
    assert inputs["dataset"]["req_endpoint"]["path"] == "/datasets"
    assert inputs["category"]["req_endpoint"] == {"path": "/correlation/categories", "method": "GET",
                                                  "inputs": ["dataset"]}
    assert inputs["year"]["req_endpoint"]["inputs"] == ["dataset", "category"]
    assert inputs["country"]["req_endpoint"]["inputs"] == ["dataset", "category", "year"]
    assert inputs["compare_with"]["values"] == ["sids", "all"] and inputs["compare_with"]["default"] == "sids"
    paths = call("GET", "/openapi.json").json()["paths"]
    assert {"/correlation/correlate", "/correlation/cluster", "/correlation/categories", "/correlation/years",
            "/correlation/countries"} <= set(paths)


def test_cluster_over_http(live_server):
    import httpx

    reply = httpx.post(live_server + "/correlation/cluster",
                       json={"dataset": "wdi", "category": "Public Sector", "year": 2015, "k": 4}, timeout=60)
    assert reply.status_code == 200
    assert set(reply.json()["labels"]) == {0, 1, 2, 3}

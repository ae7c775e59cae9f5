"""Country similarity (/correlation): the pure functions on hand-made and embedded data, then the endpoints."""
from __future__ import annotations

import numpy as np
import pytest

from models import correlation
from models.correlation import CompareWith, cluster, correlate, kmeans_missing, pearson, profiles
from shared.dataset import build_dataset
from models.errors import ModelInputError

NAN = float("nan")


def make_dataset(rows: dict[str, list[float]], sids: set[str], year: int = 2015, category: str = "Cat"):
    """A one-year dataset: rows are countries, columns indicators I0..In of one category."""
    n = len(next(iter(rows.values())))
    data = ["Country Code,Indicator Code," + str(year)]
    for country, values in rows.items():
        for j, v in enumerate(values):
            data.append(f"{country},I{j},{'' if np.isnan(v) else v}")
    meta = ["Indicator Code,Indicator,Dimension,Category,Dataset"] + [f"I{j},Indicator {j},u,{category},ds"
                                                                       for j in range(n)]
    countries = ["Country Code,Country Name,SIDS"] + [f"{c},Name of {c},{c in sids}" for c in rows]
    files = {"indicatorData.csv": "\n".join(data).encode(), "indicatorMeta.csv": "\n".join(meta).encode(),
             "datasetMeta.csv": b"Dataset Code,Dataset Name\nds,Test data\n",
             "countryMeta.csv": "\n".join(countries).encode()}
    return build_dataset(files, version="synthetic")


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(1)
    base = rng.normal(size=8)
    rows = {
        "AAA": list(base),
        "BBB": list(base * 2 + 1),                        # the same profile in other units
        "CCC": list(-base),                               # the opposite profile
        "DDD": list(rng.normal(size=8)),
        "EEE": [base[0], base[1], base[2], base[3]] + [NAN] * 4,   # shares only 4 indicators
        "FFF": [NAN] * 8,                                 # no data that year
        "GGG": list(rng.normal(size=8)),
        "ZZZ": list(base),                                # not a SIDS
    }
    return make_dataset(rows, sids={"AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG"})


# ---------------------------------------------------------------------------- pure functions
def test_pearson():
    x = np.array([1.0, 2.0, 3.0, 5.0])
    assert pearson(x, 3 * x + 2) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(x, np.ones(4)) is None
    assert pearson(x, np.array([2.0, 1.0, 5.0, 3.0])) == pytest.approx(np.corrcoef(x, [2, 1, 5, 3])[0, 1])


def test_profiles_standardise_each_indicator_over_the_group(small):
    p = profiles(small, "ds", "Cat", 2015, CompareWith.sids)
    assert p.countries == ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG"]
    assert np.allclose(np.nanmean(p.z, axis=0), 0) and np.allclose(np.nanstd(p.z, axis=0), 1)
    assert profiles(small, "ds", "cat", 2015, "sids") is p            # memoised; names are matched case-insensitively
    assert profiles(small, "ds", "Cat", 2015, CompareWith.all).countries[-1] == "ZZZ"


def test_correlate_ranks_by_correlation_and_respects_the_overlap(small):
    result = correlate(small, "ds", "Cat", "AAA", 2015)
    ranked = [c for c, _, _ in result.ranking]
    values = [r for _, r, _ in result.ranking]
    assert values == sorted(values, reverse=True)
    assert ranked[0] == "BBB" and values[0] > 0.8
    assert dict((c, r) for c, r, _ in result.ranking)["CCC"] < -0.5
    assert "AAA" not in ranked and "ZZZ" not in ranked                # itself; not a SIDS
    assert result.skipped == [("EEE", 4)]                            # 4 shared indicators < min_overlap 5
    assert "FFF" not in ranked and "FFF" not in dict(result.skipped)  # no data at all
    with_four = correlate(small, "ds", "Cat", "AAA", 2015, min_overlap=4)
    assert "EEE" in [c for c, _, _ in with_four.ranking] and with_four.skipped == []


def test_an_identical_profile_correlates_perfectly(small):
    # Over all countries ZZZ (a copy of AAA, not a SIDS) is ranked, first, with a correlation of 1.
    everyone = correlate(small, "ds", "Cat", "AAA", 2015, CompareWith.all)
    assert everyone.ranking[0][0] == "ZZZ" and everyone.ranking[0][1] == pytest.approx(1.0)


def test_correlate_errors(small):
    with pytest.raises(ModelInputError, match="not a Small Island Developing State"):
        correlate(small, "ds", "Cat", "ZZZ", 2015)
    with pytest.raises(ModelInputError, match="Unknown country code"):
        correlate(small, "ds", "Cat", "QQQ", 2015)
    with pytest.raises(ModelInputError, match="has values for 0 of the 8 usable Cat indicators in 2015"):
        correlate(small, "ds", "Cat", "FFF", 2015)
    with pytest.raises(ModelInputError, match="Unknown category 'Dog'"):
        correlate(small, "ds", "Dog", "AAA", 2015)
    with pytest.raises(ModelInputError, match="Unknown dataset 'nope'; known datasets: ds"):
        correlate(small, "nope", "Cat", "AAA", 2015)
    with pytest.raises(ModelInputError, match="No year 2014 in the dataset"):
        correlate(small, "ds", "Cat", "AAA", 2014)


def test_kmeans_missing_recovers_separated_groups_and_fills_from_centroids():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, size=(6, 4))
    b = rng.normal(5, 0.1, size=(6, 4))
    x = np.vstack([a, b])
    x[1, 2] = x[8, 0] = x[9, 3] = NAN
    labels, filled, iterations, converged, _ = kmeans_missing(x, 2, seed=0)
    assert converged and iterations >= 2
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1 and labels[0] != labels[6]
    assert filled[8, 0] == pytest.approx(5, abs=0.5) and filled[1, 2] == pytest.approx(0, abs=0.5)
    again = kmeans_missing(x, 2, seed=0)[0]
    assert np.array_equal(labels, again)


def test_cluster_is_seeded_and_labels_are_renumbered(small):
    first = cluster(small, "ds", "Cat", 2015, k=2)
    assert first.countries == ["AAA", "BBB", "CCC", "DDD", "EEE", "GGG"]
    assert first.excluded == [("FFF", 0)]
    assert first.labels[0] == 0 and set(first.labels) == {0, 1}
    assert cluster(small, "ds", "Cat", 2015, k=2) == first
    with pytest.raises(ModelInputError, match="k=7 clusters but only 6 SIDS"):
        cluster(small, "ds", "Cat", 2015, k=7)
    few = cluster(small, "ds", "Cat", 2015, k=2, min_observed=5)
    assert ("EEE", 4) in few.excluded


def test_cluster_on_the_embedded_dataset(wdi):
    result = cluster(wdi, "wdi", "Public Sector", 2015, k=4, seed=3)
    assert len(result.countries) == len(result.labels) > 30
    assert set(result.labels) == {0, 1, 2, 3} and result.converged
    assert set(result.countries) <= wdi.sids
    assert cluster(wdi, "wdi", "Public Sector", 2015, k=4, seed=3) == result


def test_correlate_on_the_embedded_dataset(wdi):
    result = correlate(wdi, "wdi", "Public Sector", "FJI", 2015)
    assert all(n >= 5 for _, _, n in result.ranking) and all(c in wdi.sids for c, _, _ in result.ranking)
    assert len(result.ranking) > 20
    broad = correlate(wdi, "wdi", "Public Sector", "FJI", 2015, "all")
    assert len(broad.ranking) > 100


def test_too_few_indicators_names_the_years_that_have_enough(wdi):
    with pytest.raises(ModelInputError, match=r"ABW \(Aruba\) has values for 2 of the 46 usable Public Sector "
                                               r"indicators in 2015; at least 5 are needed. Years where it has at "
                                               r"least 5: 2005, 2006, .*, 2014\.") as err:
        correlate(wdi, "wdi", "Public Sector", "ABW", 2015)
    assert err.value.context == {"field": "country", "observed": 2, "needed": 5}


# ---------------------------------------------------------------------------- endpoints
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

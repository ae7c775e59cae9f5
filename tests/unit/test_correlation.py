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

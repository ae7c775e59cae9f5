"""Time-series interpolation (/statimpute): the pure functions, then the endpoints through real HttpRequests."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import statimpute
from models.statimpute import ImputeDirection, ImputeMethod, impute, interpolate, min_points
from models.errors import ModelInputError

YEARS = list(range(2000, 2012))
# ATG's PM2.5 exposure is observed in 12 of the 31 years, 1990..2017, with gaps inside and none after 2017.
PM25, GINI = "wdi-EN.ATM.PM25.MC.M3", "wdi-SI.POV.GINI"


def series(values: dict[int, float], years=YEARS) -> pd.Series:
    return pd.Series([values.get(y, np.nan) for y in years], index=years, dtype="float64")


def order_for(method: ImputeMethod) -> int | None:
    return 2 if method in statimpute.ORDERED_METHODS else None


# ---------------------------------------------------------------------------- pure functions
def test_linear_fills_interior_gaps_by_year_and_edges_by_direction():
    s = series({2002: 1.0, 2005: 4.0, 2007: 2.0})
    both = interpolate(s, "linear", "both")
    assert both[2003] == pytest.approx(2.0) and both[2004] == pytest.approx(3.0) and both[2006] == pytest.approx(3.0)
    assert both[2000] == both[2001] == 1.0          # first value carried backward
    assert (both.loc[2008:] == 2.0).all()              # last value carried forward

    forward = interpolate(s, "linear", "forward")
    assert forward.loc[:2001].isna().all() and (forward.loc[2008:] == 2.0).all()
    backward = interpolate(s, "linear", "backward")
    assert (backward.loc[:2001] == 1.0).all() and backward.loc[2008:].isna().all()
    for filled in (forward, backward):             # interior gaps are filled whatever the direction
        assert filled.loc[2003:2006].notna().all()


def test_linear_weighs_by_the_years_not_by_position():
    s = pd.Series([0.0, np.nan, 10.0], index=[2000, 2001, 2010])
    assert interpolate(s, "linear")[2001] == pytest.approx(1.0)


@pytest.mark.parametrize("method", list(ImputeMethod))
@pytest.mark.parametrize("direction", list(ImputeDirection))
def test_every_method_keeps_observations_and_fills_the_interior(method, direction):
    observed = {2001: 3.0, 2003: 5.0, 2004: 4.0, 2006: 8.0, 2008: 7.5, 2009: 9.0}
    s = series(observed)
    filled = interpolate(s, method, direction, order_for(method))
    for year, value in observed.items():
        assert filled[year] == value
    assert filled.loc[2001:2009].notna().all()
    assert np.isfinite(filled.dropna()).all()
    assert filled.loc[2010:].notna().all() == (direction is not ImputeDirection.backward)
    assert pd.isna(filled[2000]) == (direction is ImputeDirection.forward)


@pytest.mark.parametrize("method,kwargs", [("slinear", {}), ("spline", {"order": 1}), ("polynomial", {"order": 1})])
def test_degree_one_methods_agree_with_linear(method, kwargs):
    s = series({2000: 1.0, 2003: 7.0, 2004: 2.0, 2008: 10.0, 2011: 4.0})
    assert np.allclose(interpolate(s, method, **kwargs), interpolate(s, "linear"))


@pytest.mark.parametrize("method,kwargs,degree", [
    ("quadratic", {}, 2), ("cubic", {}, 3), ("spline", {"order": 3}, 3), ("polynomial", {"order": 2}, 2)])
def test_splines_reproduce_a_polynomial_of_their_degree(method, kwargs, degree):
    truth = {y: float((y - 2000) ** degree - 3 * (y - 2000)) for y in YEARS}
    s = series({y: v for y, v in truth.items() if y in (2000, 2002, 2003, 2006, 2008, 2011)})
    filled = interpolate(s, method, **kwargs)
    assert np.allclose(filled.to_numpy(), [truth[y] for y in YEARS])   # an interpolating spline (s=0), not a smoothing one


def test_pchip_stays_monotone_on_monotone_data():
    s = series({2000: 0.0, 2003: 1.0, 2004: 9.0, 2009: 10.0, 2011: 10.5})
    filled = interpolate(s, "pchip")
    assert (np.diff(filled.to_numpy()) >= 0).all()


@pytest.mark.parametrize("method", list(ImputeMethod))
def test_minimum_points_match_what_scipy_accepts(method):
    order = order_for(method)
    needed = min_points(method, order)
    positions = [2000, 2003, 2005, 2008, 2011][:needed]
    enough = series({y: float(i * i + 1) for i, y in enumerate(positions)})
    assert interpolate(enough, method, order=order).loc[positions[0]:positions[-1]].notna().all()
    too_few = series({y: float(i + 1) for i, y in enumerate(positions[:-1])})
    with pytest.raises(ModelInputError, match=f"needs at least {needed} observed years"):
        interpolate(too_few, method, order=order)


def test_documented_minimums():
    assert {m.value: min_points(m, 3) for m in ImputeMethod} == {
        "linear": 2, "nearest": 2, "zero": 2, "slinear": 2, "quadratic": 3, "cubic": 4,
        "spline": 4, "polynomial": 4, "pchip": 2, "akima": 2}


def test_ordered_methods_need_a_valid_order():
    s = series({2000: 1.0, 2004: 2.0, 2008: 5.0, 2011: 3.0})
    for method in ("spline", "polynomial"):
        with pytest.raises(ModelInputError, match="order"):
            interpolate(s, method)
        with pytest.raises(ModelInputError, match="order"):
            interpolate(s, method, order=statimpute.MAX_ORDER + 1)


def test_complete_series_is_returned_unchanged():
    s = series({y: float(y) for y in YEARS})
    assert interpolate(s, "cubic").equals(s)


def test_impute_on_the_embedded_dataset(wdi):
    result = impute(wdi, PM25, "atg", "linear", "forward")
    raw = wdi.indicator_series(PM25).loc["ATG"]
    assert result.country == "ATG" and result.years == list(wdi.years)
    assert result.filled_years == [y for y, v in raw.items() if pd.isna(v)]          # interior and 2018-2020
    for year, value, observed in zip(result.years, result.values, result.observed):
        assert observed == (not pd.isna(raw[year]))
        if observed:
            assert value == raw[year]
    assert result.values[-1] == raw[2017]                                           # carried forward


@pytest.mark.parametrize("target,country,message", [
    ("wdi-NOPE", "ATG", "Unknown indicator"),
    ("wdi-en.atm.pm25.mc.m3", "XXX", "Unknown country code"),
    (PM25, "USA", "not a Small Island Developing State"),
])
def test_impute_refuses_unknown_values(wdi, target, country, message):
    with pytest.raises(ModelInputError, match=message):
        impute(wdi, target, country, "linear")


def test_unknown_indicator_suggests_close_codes(wdi):
    with pytest.raises(ModelInputError, match="Did you mean wdi-EN.ATM.PM25.MC.M3"):
        impute(wdi, "wdi-EN.ATM.PM25.MC.M2", "ATG", "linear")


def test_country_without_data_is_refused(wdi):
    counts = {c["code"] for c in statimpute.countries_with_data(wdi, GINI)}
    without = sorted(set(statimpute.sids_codes(wdi)) - counts)[0]
    with pytest.raises(ModelInputError, match=f"{without} .* has no data for {GINI}"):
        impute(wdi, GINI, without, "linear")


def test_lookups_list_sids_with_data_and_are_memoised(wdi):
    countries = statimpute.countries_with_data(wdi, PM25)
    assert countries and all(c["code"] in wdi.sids and c["observed"] >= 1 for c in countries)
    atg = next(c for c in countries if c["code"] == "ATG")
    assert atg == {"code": "ATG", "name": "Antigua and Barbuda", "observed": 12, "missing": 19,
                   "first_year": 1990, "last_year": 2017}
    assert statimpute.countries_with_data(wdi, PM25) is countries
    targets = statimpute.targets(wdi)
    assert statimpute.targets(wdi) is targets
    assert {t["code"] for t in targets} <= set(wdi.indicators)
    assert all(t["countries"] > 0 and t["name"] for t in targets)

"""AI Mode's files (models/twolvlimp/aimode.py): built from data/wdi and from the SIDS platform data, checked against
every rule of issue 18's "Done means" and against the published samples (../shared/contracts/ai-mode-samples)."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.errors import ModelInputError
from models.twolvlimp import aimode
from models.twolvlimp.method import plausible_range

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "contracts" / "ai-mode-samples" / "ml"
SAMPLE_CODE = "key-wdi-EG.ELC.ACCS.ZS"

# a handful of indicators and years of each dataset (each indicator-year is one run of the method: keep it fast)
WDI_CASES = {"wdi-EG.ELC.ACCS.UR.ZS": [2010, 2015], "wdi-GC.XPN.TOTL.GD.ZS": [2015], "wdi-IP.TMK.TOTL": [2000, 2002]}
PLATFORM_CASES = {SAMPLE_CODE: [2009, 2015], "wdi-DC.DAC.DEUL.CD": [2004], "key-wdi-EN.CLC.DRSK.XQ": [2011]}


def sample(model: int) -> dict:
    return json.loads((SAMPLES / f"model{model}" / "key" / f"{SAMPLE_CODE}.json").read_text())


def build(ds, cases: dict, slot: int = 1) -> dict[str, dict]:
    return {code: aimode.indicator_file(ds, code, slot, years) for code, years in cases.items()}


@pytest.fixture(scope="module")
def wdi_files(wdi):
    return build(wdi, WDI_CASES)


@pytest.fixture(scope="module")
def platform_files(platform):
    return build(platform, PLATFORM_CASES)


def check_rules(ds, code: str, doc: dict, years: list[int]) -> None:
    """The rules spelled out here, independently of file_problems."""
    assert list(doc) == list(aimode.FILE_KEYS)
    assert sorted(doc["data"]) == [str(y) for y in years]
    j = ds.indicators.get_loc(code)
    low, high = plausible_range(ds.values[:, :, j])
    sids = sorted(str(c) for c in ds.countries[ds.sids_mask])
    for y in doc["data"]:
        column = ds.year_matrix(int(y))[:, j]
        value = {str(c): v for c, v in zip(ds.countries, column)}
        data, lower, upper = doc["data"][y], doc["lowerIntervals"][y], doc["upperIntervals"][y]
        assert sorted(data) == sids                                  # every SIDS, nothing else
        predicted = sorted(c for c in sids if math.isnan(value[c]))
        assert predicted and sorted(lower) == sorted(upper) == predicted   # intervals: the predicted SIDS only
        for c in sids:
            if c not in predicted:
                assert data[c] == value[c]                           # reported values as the data has them
        for c in predicted:
            assert low <= lower[c] <= data[c] <= upper[c] <= high
        for part in ("featureImportances", "categoryImportances"):
            assert all(v >= 0 for v in doc[part][y].values())
            assert sum(doc[part][y].values()) == pytest.approx(1, abs=1e-9)
        predictions = [data[c] for c in predicted]
        assert not aimode.unexplained_ties(ds, j, int(y), predicted, predictions)


def test_wdi_files_follow_every_rule(wdi, wdi_files):
    for code, doc in wdi_files.items():
        check_rules(wdi, code, doc, WDI_CASES[code])
        assert aimode.file_problems(wdi, code, doc) == []


def test_platform_files_follow_every_rule(platform, platform_files):
    for code, doc in platform_files.items():
        check_rules(platform, code, doc, PLATFORM_CASES[code])
        assert aimode.file_problems(platform, code, doc) == []


def test_files_have_the_samples_format(wdi_files, platform_files):
    """Same keys, and the same types at every level: years as strings, ISO3 codes, plain numbers."""
    def shape(doc: dict) -> dict:
        out = {}
        for key, by_year in doc.items():
            years = list(by_year)
            assert all(isinstance(y, str) and len(y) == 4 and y.isdigit() for y in years)
            inner = [v for y in years for v in by_year[y].items()]
            out[key] = ({type(k) for k, _ in inner}, {type(v) for _, v in inner})
        return out

    for model in (1, 4):
        expected = shape(sample(model))
        assert set(expected) == set(aimode.FILE_KEYS)
        for doc in list(wdi_files.values()) + list(platform_files.values()):
            assert set(doc) == set(expected)
            got = shape(doc)
            for key in expected:
                assert got[key][0] == expected[key][0] == {str}
                assert got[key][1] <= {float, int} and expected[key][1] <= {float, int}
            countries = {c for y in doc["data"].values() for c in y}
            assert all(len(c) == 3 and c.isupper() for c in countries)


def test_file_problems_finds_the_samples_known_defects(platform):
    problems = aimode.file_problems(platform, SAMPLE_CODE, sample(1))
    ties = [p for p in problems if p.startswith("2015: identical prediction")]
    assert ties and "AIA, COK, MSR, NIU" in ties[0]
    # model 4's importances are not normalised (a category "importance" of 6,380)
    problems4 = aimode.file_problems(platform, SAMPLE_CODE, sample(4))
    assert any(p.startswith("2015: categoryImportances sums to 6387") for p in problems4)
    assert any(p.startswith("2015: featureImportances sums to") for p in problems4)


def test_file_problems_finds_each_broken_rule(platform, platform_files):
    """Each rule, broken once in a valid file, is reported (and the valid file has no problem)."""
    code = SAMPLE_CODE
    good = platform_files[code]
    assert aimode.file_problems(platform, code, good) == []
    y = "2015"
    predicted = sorted(good["lowerIntervals"][y])
    a, b = predicted[0], predicted[1]
    reported = next(c for c in good["data"][y] if c not in good["lowerIntervals"][y])

    def broken(change) -> list[str]:
        doc = copy.deepcopy(good)
        change(doc)
        return aimode.file_problems(platform, code, doc)

    assert any("missing from data" in p for p in broken(lambda d: d["data"][y].pop(a)))
    assert any("not SIDS of the data" in p for p in broken(lambda d: d["data"][y].update(USA=50.0)))
    assert any("differ from the data" in p for p in broken(lambda d: d["data"][y].update({reported: -1.0})))
    assert any("exactly the predicted SIDS" in p for p in broken(lambda d: d["upperIntervals"][y].pop(a)))
    assert any("not lower <= prediction <= upper" in p
               for p in broken(lambda d: d["lowerIntervals"][y].update({a: d["upperIntervals"][y][a] + 1})))
    assert any("outside the plausible range" in p
               for p in broken(lambda d: d["upperIntervals"][y].update({a: 115.0})))
    assert any("not finite numbers" in p for p in broken(lambda d: d["data"][y].update({a: None})))
    assert any("featureImportances sums to" in p
               for p in broken(lambda d: d["featureImportances"][y].update(
                   {k: v * 2 for k, v in d["featureImportances"][y].items()})))
    assert any("not the features' Category sums" in p
               for p in broken(lambda d: d["categoryImportances"].update({y: {"Environment": 1.0}})))

    def tie(d):
        d["data"][y][b] = d["data"][y][a]
        d["lowerIntervals"][y][b] = min(d["lowerIntervals"][y][b], d["data"][y][a])
        d["upperIntervals"][y][b] = max(d["upperIntervals"][y][b], d["data"][y][a])
    assert any(p.startswith(f"{y}: identical prediction") for p in broken(tie))
    assert any("keys" in p for p in broken(lambda d: d.pop("categoryImportances")))


def test_ties_of_the_method_are_separated(platform):
    """Why the old files had one prediction for several islands, shown on the method itself: SIDS with no value of
    the target in any year and none of the selected predictors all get the fold models' intercept (and with the
    stack on the mean, every SIDS of a submodel gets it). year_result predicts those from what each reports."""
    from models.twolvlimp.lookups import max_number_predictor, resolve
    from models.twolvlimp.method import run_default

    code, year = SAMPLE_CODE, 2009    # MSR and TKL: the kind of tie the published sample shows in 2015
    j = platform.indicators.get_loc(code)
    fresh = aimode.masked_copy(platform, j, year, np.array([], dtype=int), "fresh copy")   # nothing memoised yet
    slot = aimode.SLOTS[1]
    raw = run_default(fresh, resolve(fresh, slot.request(code, year, max_number_predictor(fresh, year, code))))
    ties = aimode.unexplained_ties(fresh, j, year, raw.countries, raw.prediction)
    assert ties == [["MSR", "TKL"]], "the method (as /predict runs it) no longer ties here: pick a case that does"
    rows = [fresh.countries.get_loc(c) for c in ties[0]]
    selected = [fresh.indicators.get_loc(c) for c in raw.predictors]
    assert np.isnan(fresh.year_matrix(year)[np.ix_(rows, selected)]).all()       # none of the selected predictors
    assert np.isnan(fresh.values[:, rows, j]).all()                                # and the target in no year
    separated = aimode.separate_ties(fresh, raw)
    assert aimode.unexplained_ties(fresh, j, year, separated.countries, separated.prediction) == []
    assert all(lo <= p <= hi for lo, p, hi in zip(separated.lower, separated.prediction, separated.upper))
    assert any("one shared prediction" in n for n in separated.notes)
    fixed = aimode.year_result(fresh, code, year, slot)
    assert aimode.unexplained_ties(fresh, j, year, fixed.countries, fixed.prediction) == []


def test_bound_and_own_series_ties_are_explained(wdi):
    """Predictions clipped to a bound of the plausible range (0 trademark applications) tie legitimately."""
    code = "wdi-IP.TMK.TOTL"
    j = wdi.indicators.get_loc(code)
    low, _ = plausible_range(wdi.values[:, :, j])
    assert low == 0
    assert aimode.unexplained_ties(wdi, j, 2000, ["ATG", "BLZ"], [0.0, 0.0]) == []
    assert aimode.unexplained_ties(wdi, j, 2000, ["ATG", "BLZ"], [5.0, 5.0]) == [["ATG", "BLZ"]]


def test_publishable_indicators_and_unpublishable_ones(wdi):
    codes = aimode.publishable_indicators(wdi)
    assert codes == sorted(codes) and "wdi-EG.ELC.ACCS.UR.ZS" in codes
    assert all(aimode.publishable_years(wdi, c) for c in codes[:10])
    unpublishable = sorted(set(map(str, wdi.indicators)) - set(codes))
    assert unpublishable, "data/wdi has indicators with no SIDS-year to predict"
    with pytest.raises(ModelInputError, match="cannot be published"):
        aimode.indicator_file(wdi, unpublishable[0], 1)
    with pytest.raises(ModelInputError, match="unknown indicator"):
        aimode.indicator_file(wdi, "no-such-code", 1)
    with pytest.raises(ModelInputError, match="unknown model slot"):
        aimode.indicator_file(wdi, codes[0], 9)
    assert aimode.file_path(1, "key-wdi-EG.ELC.ACCS.ZS") == "ml/model1/key/key-wdi-EG.ELC.ACCS.ZS.json"


def test_accuracy_and_metadata(wdi):
    cases = aimode.accuracy_sample(wdi, 2, random_state=0)
    assert len(cases) == 2 and cases == aimode.accuracy_sample(wdi, 2, random_state=0)
    whole = aimode.holdout_accuracy(wdi, 1, cases)
    parts = [aimode.holdout_accuracy(wdi, 1, [case]) for case in cases]
    pooled = aimode.combine_accuracy(parts)
    assert whole["values"] >= 4 and whole["indicator_years"] == 2
    assert pooled["nrmse"] == pytest.approx(whole["nrmse"]) and pooled["coverage90"] == whole["coverage90"]
    assert 0 <= whole["coverage90"] <= 1 and whole["nrmse"] > 0
    # standard errors with the indicator-year as the unit, computed here from each case's own counts
    inside = np.array([p["inside"] for p in parts], float)
    n = np.array([p["values"] for p in parts], float)
    squared = np.array([p["sum_squared"] for p in parts])
    m = len(parts)
    coverage_se = np.sqrt(m / (m - 1) * np.sum((inside - whole["coverage90"] * n) ** 2)) / n.sum()
    mse = squared.sum() / n.sum()
    nrmse_se = np.sqrt(m / (m - 1) * np.sum((squared - mse * n) ** 2)) / n.sum() / (2 * np.sqrt(mse))
    for acc in (whole, pooled):
        assert acc["coverage90_se"] == pytest.approx(coverage_se, abs=1e-12)
        assert acc["nrmse_se"] == pytest.approx(nrmse_se)
    assert parts[0]["coverage90_se"] is None   # one indicator-year: no standard error
    meta = aimode.model_metadata({1: whole})
    assert list(meta) == ["Model 1", "Model 2", "Model 3", "Model 4"]
    for number, entry in enumerate(meta.values(), start=1):
        assert all(isinstance(entry[f], str) and entry[f] for f in aimode.METADATA_FIELDS)
        assert entry["Model Name"] == aimode.SLOTS[number].label
    assert meta["Model 1"]["accuracy"]["coverage90"] == whole["coverage90"]
    assert meta["Model 1"]["accuracy"]["coverage90_se"] == whole["coverage90_se"]
    assert "90% interval coverage" in meta["Model 1"]["Measured Accuracy"]
    assert f"± {whole['coverage90_se']:.3f}" in meta["Model 1"]["Measured Accuracy"]
    published = json.loads((SAMPLES / "ML Model Metadata.json").read_text())
    assert set(aimode.METADATA_FIELDS) <= set(published["Model 1"])


def test_holdout_hides_copies_of_the_target(wdi):
    """A series published under two codes would give the hidden values away: the holdout hides both."""
    import pandas as pd

    from shared.dataset import Dataset

    code, year = "wdi-EG.ELC.ACCS.UR.ZS", 2015
    j = wdi.indicators.get_loc(code)
    values = np.concatenate([wdi.values, wdi.values[:, :, [j]]], axis=2)
    meta = pd.concat([wdi.indicator_meta, wdi.indicator_meta.loc[[code]].rename(index={code: "copy-of-target"})])
    ds = Dataset(values=values, years=wdi.years, countries=wdi.countries,
                 indicators=wdi.indicators.append(pd.Index(["copy-of-target"])), indicator_meta=meta,
                 dataset_meta=wdi.dataset_meta, country_meta=wdi.country_meta, sids=wdi.sids, version="with a copy")
    twin = ds.indicators.get_loc("copy-of-target")
    assert aimode.copies_of(ds, j) == [twin] and aimode.copies_of(wdi, j) == []
    rows = np.flatnonzero(ds.sids_mask & ~np.isnan(ds.year_matrix(year)[:, j]))[:3]
    masked = aimode.masked_copy(ds, j, year, rows, "masked")
    assert np.isnan(masked.year_matrix(year)[rows][:, [j, twin]]).all()
    assert np.array_equal(masked.values[:, :, :j], ds.values[:, :, :j], equal_nan=True)


def test_the_batch_leaves_predict_its_own_numbers(wdi):
    """The batch's shared imputation never answers a /predict on the same data version: the same request gives
    the same numbers whether or not AI Mode ran on that dataset first."""
    from models.twolvlimp.lookups import ImputationRequest, resolve
    from models.twolvlimp.method import run_default
    from shared.dataset import build_dataset

    def fresh():
        folder = ROOT / "data" / "wdi"
        return build_dataset({p.name: str(p) for p in folder.iterdir() if p.is_file()}, version="fresh")

    code, year = "wdi-EG.ELC.ACCS.UR.ZS", 2015
    request = ImputationRequest(target=code, target_year=str(year), interpolator="KNNImputer", scheme="AFS",
                                number_predictor=5, estimators=20, model="rfr", interval="quantile", dataset="wdi")
    alone = fresh()
    expected = run_default(alone, resolve(alone, request))
    after_batch = fresh()
    aimode.indicator_file(after_batch, code, 1, [year])
    got = run_default(after_batch, resolve(after_batch, request))
    assert np.array_equal(got.prediction, expected.prediction)
    assert np.array_equal(got.lower, expected.lower) and np.array_equal(got.upper, expected.upper)

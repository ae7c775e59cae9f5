"""The synthetic platform-size dataset generator (scripts/make_synthetic.py).

Statistical properties are checked on generated arrays (no timing); the files are
checked by loading them with the service's own loader.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import make_synthetic as synthetic  # noqa: E402
from shared.dataset import DATA_PARQUET, build_dataset  # noqa: E402


@pytest.fixture(scope="module")
def platform():
    """The default, platform-size dataset (3,000 indicators x 250 countries x 2000-2020), in memory."""
    return synthetic.generate(seed=0)


@pytest.fixture(scope="module")
def small():
    return synthetic.generate(indicators=300, countries=80, years=(2000, 2020), seed=0)


def files_of(folder: Path, without: tuple[str, ...] = ()) -> dict[str, str]:
    return {p.name: str(p) for p in folder.iterdir() if p.is_file() and p.name not in without}


def test_shape_and_metadata(small):
    assert small.values.shape == (21, 80, 300)
    assert small.years == tuple(range(2000, 2021))
    assert len(set(small.countries)) == 80 and small.countries == sorted(small.countries)
    assert int(small.sids.sum()) == round(80 * 0.16)
    meta = small.indicator_meta
    for column in ("Indicator Code", "Indicator", "Dimension", "Category", "Dataset"):
        assert column in meta.columns and meta[column].notna().all()
    assert meta["Indicator Code"].is_unique
    assert set(meta["Dataset"]) <= set(small.dataset_meta["Dataset Code"])
    assert all(code.startswith(ds + "-") for code, ds in zip(meta["Indicator Code"], meta["Dataset"]))
    # some indicator names carry several dimensions, as on the platform
    dims = meta.groupby("Indicator")["Dimension"].nunique()
    assert (dims > 1).any()
    assert small.country_meta["SIDS"].isin(["True", "False"]).all()


def test_platform_size_and_sids(platform):
    assert platform.values.shape == (21, 250, 3000)
    assert 35 <= int(platform.sids.sum()) <= 45


def test_missingness_matches_the_reference(platform):
    """About 40% missing overall and about 340 indicators under 30% missing in 2015 (reference file)."""
    missing = np.isnan(platform.values)
    assert 0.35 <= missing.mean() <= 0.45
    in_2015 = missing[platform.years.index(2015)].mean(axis=0)
    assert 290 <= int((in_2015 < 0.3).sum()) <= 400
    # heavier for SIDS
    assert missing[:, platform.sids].mean() > missing[:, ~platform.sids].mean() + 0.08


def test_missingness_has_whole_series_and_scattered_gaps(platform):
    missing = np.isnan(platform.values)
    absent_series = missing.all(axis=0)                         # [country, indicator]
    assert 0.15 <= absent_series.mean() <= 0.45
    # scattered gaps: inside present series, a missing year between two reported ones
    present = ~missing
    first = np.argmax(present, axis=0)
    last = present.shape[0] - 1 - np.argmax(present[::-1], axis=0)
    t = np.arange(present.shape[0])[:, None, None]
    interior_gap = (missing & (t > first) & (t < last)).any(axis=0) & ~absent_series
    assert interior_gap.sum() / (~absent_series).sum() > 0.3
    # and every indicator keeps some data (no empty columns that the loader would drop)
    assert present.any(axis=(0, 1)).all()


def test_values_are_correlated_through_latent_factors(small):
    """Indicators sharing a latent factor correlate much more than chance; series are smooth in time."""
    year = small.years.index(2015)
    matrix = small.values[year]
    usable = np.isnan(matrix).mean(axis=0) < 0.3
    corr = np.abs(pd.DataFrame(matrix[:, usable]).corr(min_periods=20).to_numpy())
    factors = small.factors[usable]
    same = (factors[:, None] == factors[None, :]) & ~np.eye(len(factors), dtype=bool)
    rng = np.random.default_rng(0)
    shuffled = np.column_stack([rng.permutation(col) for col in matrix[:, usable].T])
    chance = np.abs(pd.DataFrame(shuffled).corr(min_periods=20).to_numpy())
    off = ~np.eye(len(factors), dtype=bool)
    assert np.nanmean(corr[same]) > 0.35
    assert np.nanmean(corr[same]) > 2.5 * np.nanmean(chance[off])
    # smooth time trends: a value is close to the previous year's
    values = small.values
    z = (values - np.nanmean(values, axis=(0, 1))) / np.nanstd(values, axis=(0, 1))
    a, b = z[:-1].ravel(), z[1:].ravel()
    ok = ~np.isnan(a) & ~np.isnan(b)
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.8


def test_value_kinds_are_plausible(small):
    meta = small.indicator_meta
    percent = meta["Dimension"].str.startswith("%").to_numpy()
    assert np.nanmin(small.values[..., percent]) >= 0 and np.nanmax(small.values[..., percent]) <= 100
    positive = meta["Dimension"].isin(synthetic.DIMENSIONS["positive"]).to_numpy()
    assert np.nanmin(small.values[..., positive]) > 0


def test_deterministic_given_the_seed(small):
    again = synthetic.generate(indicators=300, countries=80, years=(2000, 2020), seed=0)
    assert np.array_equal(small.values, again.values, equal_nan=True)
    pd.testing.assert_frame_equal(small.indicator_meta, again.indicator_meta)
    other = synthetic.generate(indicators=300, countries=80, years=(2000, 2020), seed=1)
    assert not np.array_equal(np.isnan(small.values), np.isnan(other.values))


def test_written_files_load_with_the_service_loader(tmp_path):
    syn = synthetic.generate(indicators=120, countries=40, years=(2005, 2016), seed=3)
    synthetic.write(syn, tmp_path, parquet=True)
    assert {"indicatorData.csv", DATA_PARQUET, "indicatorMeta.csv", "datasetMeta.csv",
            "countryMeta.csv"} <= {p.name for p in tmp_path.iterdir()}
    from_csv = build_dataset(files_of(tmp_path, without=(DATA_PARQUET,)))
    from_parquet = build_dataset(files_of(tmp_path))
    for data in (from_csv, from_parquet):
        assert data.years == tuple(range(2005, 2017))
        assert data.sids == frozenset(c for c, s in zip(syn.countries, syn.sids) if s)
        assert not data.warnings
        expected = pd.DataFrame(index=pd.Index(syn.countries), columns=syn.indicators, dtype=float)
        for k in range(len(data.years)):
            expected.loc[:, :] = syn.values[k]
            got = data.year_frame(data.years[k]).reindex(index=expected.index, columns=expected.columns)
            np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    assert set(from_csv.indicator_meta["Dataset"]) <= set(from_csv.dataset_meta.index)


def test_files_are_byte_identical_for_the_same_seed(tmp_path):
    syn = synthetic.generate(indicators=60, countries=30, years=(2010, 2015), seed=5)
    synthetic.write(syn, tmp_path / "a")
    synthetic.write(synthetic.generate(indicators=60, countries=30, years=(2010, 2015), seed=5), tmp_path / "b")
    for name in ("indicatorData.csv", "indicatorMeta.csv", "datasetMeta.csv", "countryMeta.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_rewriting_without_parquet_removes_a_stale_copy(tmp_path):
    syn = synthetic.generate(indicators=20, countries=10, years=(2010, 2012), seed=0)
    synthetic.write(syn, tmp_path, parquet=True)
    synthetic.write(syn, tmp_path, parquet=False)
    assert not (tmp_path / DATA_PARQUET).exists()


def test_command_line(tmp_path, capsys):
    out = tmp_path / "syn"
    assert synthetic.main([str(out), "--indicators", "50", "--countries", "20", "--years", "2010-2015",
                           "--seed", "2", "--parquet"]) == 0
    printed = capsys.readouterr().out
    assert "indicators=50" in printed and "countries=20" in printed
    data = build_dataset(files_of(out))
    assert data.years == tuple(range(2010, 2016))
    assert len(data.countries) <= 20 and len(data.indicators) <= 50

#!/usr/bin/env python3
"""Write a synthetic dataset of platform size in the platform's file layout.

    python scripts/make_synthetic.py OUT_DIR [--indicators 3000] [--countries 250]
                                             [--years 2000-2020] [--seed 0] [--parquet]

The real SIDS platform holds about 3,000 indicators for 250 countries over 20+ years,
about 40% of the cells missing, and (in 2015) only about 340 indicators missing for
fewer than 30% of the countries. The files written here have that shape, so that the
service's speed and memory can be measured at platform scale without the real data:

* ``indicatorData.csv``: one row per country and indicator that has at least one value
  (``Country Code``, ``Indicator Code``, one column per year); optionally
  ``indicatorData.parquet`` with the same table (``--parquet``);
* ``indicatorMeta.csv`` (``Indicator Code``, ``Indicator``, ``Dimension``, ``Units``,
  ``Category``, ``Dataset``, ``Source``, ``Definition``), ``datasetMeta.csv`` and
  ``countryMeta.csv`` (with a ``SIDS`` column: about 16% of the countries, 40 of 250,
  carrying real SIDS ISO3 codes; the other countries get codes from the ISO
  user-assigned range X..).

How values are made (so that imputation has something to learn):

* each country follows a low-rank latent trajectory: ``n_factors`` factors, each a
  country level + a country-specific linear trend + a smooth AR(1) wiggle over the years;
* each indicator loads mainly on the factor of its category (indicators of one category
  are correlated) and weakly on the others, plus a persistent country effect, a global
  time trend of its own and a little year-to-year noise;
* indicators are either plain levels, percentages (0-100) or positive heavy-tailed
  quantities, rounded to about four significant digits.

How gaps are made: a country's reporting capacity (lower for SIDS) and an indicator's
coverage decide whether a whole series is missing; series may start late or stop before
the last year (reporting lag); a few indicators are measured only every ten years; and
scattered single-year gaps (more frequent for low-capacity countries) fall inside series.
The parameters are tuned so that, at the default size, about 40% of all cells are
missing and about 340 indicators are missing for fewer than 30% of the countries in 2015.

Everything is a deterministic function of the arguments (seeded ``numpy`` generator).
"""
from __future__ import annotations

import argparse
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.dataset import DEFAULT_SIDS, as_copy_of  # noqa: E402  (real SIDS codes for the SIDS rows)

CATEGORIES = (
    "Economy", "Health", "Education", "Environment", "Energy", "Population", "Urban Development",
    "Gender", "Infrastructure", "Trade", "Finance", "Agriculture", "Climate", "Governance", "Poverty",
    "Science & Technology",
)
DATASETS = (  # code, name, share of the indicators
    ("synwdi", "Synthetic development indicators", 0.45),
    ("synhdr", "Synthetic human development data", 0.15),
    ("synsdg", "Synthetic SDG indicators", 0.20),
    ("synimf", "Synthetic financial statistics", 0.10),
    ("synenv", "Synthetic environment statistics", 0.10),
)
DIMENSIONS = {  # kind -> (dimension labels an indicator name may carry)
    "level": ("index", "score", "rate"),
    "percent": ("% of total", "% of population", "% of GDP"),
    "positive": ("total", "per capita", "per 1,000 people"),
}
KINDS = ("level", "percent", "positive")
KIND_SHARES = (0.40, 0.35, 0.25)

# Missingness parameters, tuned for the default size (see the module docstring).
CORE_SHARE = 0.09          # well-covered "core" indicators (like the major WDI series)
CORE_COVERAGE = (3.0, 0.6)  # their series-presence intercept (logit scale): mean, spread
COVERAGE_MEAN = 1.1        # the other indicators' series-presence intercept (logit scale)
COVERAGE_SD = 0.15         # its spread across indicators
CAPACITY_SD = 0.9          # spread of the countries' reporting capacity (logit scale)
SIDS_CAPACITY_SHIFT = -1.0  # SIDS report less
GAP_MEAN = 0.09            # mean share of scattered single-year gaps inside a series
LATE_START_SHARE = 0.15    # indicators whose series start after the first year
PERIODIC_SHARE = 0.04      # indicators measured only every ten years


@dataclass
class Synthetic:
    """A generated dataset, held in memory before it is written."""

    values: np.ndarray          # float64 [year, country, indicator]; NaN = missing
    years: tuple[int, ...]
    countries: list[str]
    sids: np.ndarray            # bool per country
    indicator_meta: pd.DataFrame  # one row per indicator, column "Indicator Code" first
    dataset_meta: pd.DataFrame
    country_meta: pd.DataFrame
    factors: np.ndarray         # int per indicator: the latent factor it mainly loads on

    @property
    def indicators(self) -> list[str]:
        return self.indicator_meta["Indicator Code"].tolist()

    def missing_share(self) -> float:
        return float(np.isnan(self.values).mean())


def _country_codes(n: int, n_sids: int) -> tuple[list[str], np.ndarray]:
    sids_pool = sorted(DEFAULT_SIDS)
    if n_sids > len(sids_pool):
        raise ValueError(f"at most {len(sids_pool)} SIDS codes are available")
    others = [f"X{a}{b}" for a in string.ascii_uppercase for b in string.ascii_uppercase]
    if n - n_sids > len(others):
        raise ValueError(f"at most {len(others) + n_sids} countries are supported")
    codes = sids_pool[:n_sids] + others[:n - n_sids]
    order = np.argsort(codes)
    codes = [codes[k] for k in order]
    sids = np.array([c in DEFAULT_SIDS and c in sids_pool[:n_sids] for c in codes])
    return codes, sids


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], rho: float, sd: float) -> np.ndarray:
    """AR(1) noise along the first axis (years), stationary with standard deviation ``sd``."""
    out = np.empty(shape)
    out[0] = rng.standard_normal(shape[1:]) * sd
    innovation = sd * np.sqrt(1 - rho * rho)
    for t in range(1, shape[0]):
        out[t] = rho * out[t - 1] + rng.standard_normal(shape[1:]) * innovation
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _standardised(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else x - x.mean()


def _round_significant(x: np.ndarray, digits: int = 4) -> np.ndarray:
    """Round each indicator (last axis) to about ``digits`` significant digits of its typical size."""
    with np.errstate(all="ignore"):
        typical = np.nanmedian(np.abs(x).reshape(-1, x.shape[-1]), axis=0)
    typical = np.where(np.isfinite(typical) & (typical > 0), typical, 1.0)
    decimals = np.clip(digits - 1 - np.floor(np.log10(typical)).astype(int), 0, 8)
    out = np.empty_like(x)
    for d in np.unique(decimals):
        cols = decimals == d
        out[..., cols] = np.round(x[..., cols], int(d))
    return out


def generate(indicators: int = 3000, countries: int = 250, years: tuple[int, int] = (2000, 2020), seed: int = 0,
             n_sids: int | None = None, n_factors: int = 10) -> Synthetic:
    """Generate values, gaps and metadata (deterministic given the arguments)."""
    if indicators < 1 or countries < 2:
        raise ValueError("need at least 1 indicator and 2 countries")
    first, last = years
    if last < first:
        raise ValueError("the last year comes before the first")
    rng = np.random.default_rng(seed)
    year_list = tuple(range(first, last + 1))
    n_t, n_c, n_i = len(year_list), countries, indicators
    n_sids = max(1, round(countries * 0.16)) if n_sids is None else n_sids
    codes, sids = _country_codes(n_c, min(n_sids, n_c - 1))
    tau = np.linspace(-1.0, 1.0, n_t) if n_t > 1 else np.zeros(1)

    # --- metadata -------------------------------------------------------------------
    category = rng.integers(0, len(CATEGORIES), n_i)
    shares = np.array([s for _, _, s in DATASETS])
    dataset = rng.choice(len(DATASETS), size=n_i, p=shares / shares.sum())
    kind = rng.choice(len(KINDS), size=n_i, p=np.array(KIND_SHARES))
    # Consecutive indicators of the same kind and category may share a name (several dimensions).
    name_id = np.zeros(n_i, dtype=int)
    dim_id = np.zeros(n_i, dtype=int)
    for i in range(1, n_i):
        same = kind[i] == kind[i - 1] and dim_id[i - 1] < 2 and rng.random() < 0.5
        if same:
            category[i], dataset[i] = category[i - 1], dataset[i - 1]
            name_id[i], dim_id[i] = name_id[i - 1], dim_id[i - 1] + 1
        else:
            name_id[i], dim_id[i] = name_id[i - 1] + 1, 0
    width = max(4, len(str(n_i)))
    meta = pd.DataFrame({
        "Indicator Code": [f"{DATASETS[d][0]}-SYN.{i:0{width}d}" for i, d in enumerate(dataset)],
        "Indicator": [f"Synthetic {CATEGORIES[c].lower()} indicator {n:0{width}d}" for c, n in zip(category, name_id)],
        "Dimension": [DIMENSIONS[KINDS[k]][d] for k, d in zip(kind, dim_id)],
        "Units": [DIMENSIONS[KINDS[k]][d] for k, d in zip(kind, dim_id)],
        "Category": [CATEGORIES[c] for c in category],
        "Dataset": [DATASETS[d][0] for d in dataset],
        "Source": "Synthetic (scripts/make_synthetic.py)",
        "Definition": "Generated from latent country factors; not real data.",
    })
    dataset_meta = pd.DataFrame({
        "Dataset Code": [c for c, _, _ in DATASETS], "Dataset Name": [n for _, n, _ in DATASETS],
        "Source": "Synthetic", "Link": "", "License": "CC0 (generated)",
    })
    country_meta = pd.DataFrame({
        "Country Code": codes,
        "Country Name": [f"Synthetic {'island state' if s else 'country'} {c}" for c, s in zip(codes, sids)],
        "SIDS": np.where(sids, "True", "False"),
    })

    # --- values: low-rank latent factors + noise + smooth trends -------------------
    k = n_factors
    level = rng.standard_normal((n_c, k))
    trend = rng.standard_normal((n_c, k)) * 0.5
    latent = level[None] + trend[None] * tau[:, None, None] + _smooth_noise(rng, (n_t, n_c, k), 0.8, 0.25)
    factor = category % k
    loadings = rng.standard_normal((k, n_i)) * 0.25
    loadings[factor, np.arange(n_i)] = rng.choice([-1.0, 1.0], n_i) * rng.uniform(0.8, 1.5, n_i)
    z = (latent.reshape(n_t * n_c, k) @ loadings).reshape(n_t, n_c, n_i)
    z /= np.sqrt((loadings ** 2).sum(axis=0) + 0.2)          # about unit variance
    z += rng.standard_normal((n_c, n_i)) * rng.uniform(0.2, 0.6, n_i)   # persistent country effect
    z += tau[:, None, None] * rng.normal(0.0, 0.4, n_i)                 # the indicator's own trend
    z += rng.standard_normal((n_t, n_c, n_i)) * rng.uniform(0.05, 0.25, n_i)  # year-to-year noise

    out = np.empty_like(z)
    for kk, name in enumerate(KINDS):
        cols = kind == kk
        m = int(cols.sum())
        if not m:
            continue
        zc = z[..., cols]
        if name == "level":
            out[..., cols] = rng.normal(0, 50, m) + np.exp(rng.uniform(0, 4, m)) * zc
        elif name == "percent":
            out[..., cols] = 100 * _sigmoid(rng.uniform(0.6, 1.4, m) * zc + rng.normal(0, 1.2, m))
        else:
            out[..., cols] = np.exp(rng.uniform(-2, 8, m)) * np.exp(rng.uniform(0.4, 1.2, m) * zc)
    del z
    values = _round_significant(out)
    del out

    # --- gaps ------------------------------------------------------------------------
    # Draws are standardised (exact mean and spread, exact core count) so that the
    # missingness figures hardly depend on the seed.
    capacity = CAPACITY_SD * _standardised(rng.standard_normal(n_c)) + np.where(sids, SIDS_CAPACITY_SHIFT, 0.0)
    core = np.zeros(n_i, dtype=bool)
    core[rng.permutation(n_i)[:round(CORE_SHARE * n_i)]] = True
    coverage = np.where(core, CORE_COVERAGE[0] + CORE_COVERAGE[1] * _standardised(rng.standard_normal(n_i)),
                        COVERAGE_MEAN + COVERAGE_SD * _standardised(rng.standard_normal(n_i)))
    present = rng.random((n_c, n_i)) < _sigmoid(coverage[None, :] + capacity[:, None])  # whole series
    start = np.zeros(n_i, dtype=int)
    late = rng.random(n_i) < LATE_START_SHARE
    start[late] = rng.integers(1, max(2, n_t // 3), int(late.sum()))
    # reporting lag: the last one or two years are often not there yet
    lag = rng.choice([0, 1, 2], size=(n_c, n_i), p=[0.8, 0.15, 0.05])
    t_idx = np.arange(n_t)[:, None, None]
    in_span = (t_idx >= start[None, None, :]) & (t_idx < (n_t - lag)[None])
    # scattered gaps, more frequent where capacity is low
    gap_rate = rng.beta(6.0, 6.0 * (1 - GAP_MEAN) / GAP_MEAN, n_i)
    gap_p = _sigmoid(np.log(gap_rate / (1 - gap_rate))[None, :] - 0.6 * capacity[:, None])
    gaps = rng.random((n_t, n_c, n_i)) < gap_p[None]
    keep = present[None] & in_span & ~gaps
    periodic = rng.random(n_i) < PERIODIC_SHARE
    if periodic.any():
        phase = rng.integers(0, 10, n_i)
        on_cycle = ((np.asarray(year_list)[:, None] - phase[None, :]) % 10) == 0
        keep &= np.where(periodic[None, :], on_cycle, True)[:, None, :]
    values[~keep] = np.nan
    return Synthetic(values=values, years=year_list, countries=codes, sids=sids, indicator_meta=meta,
                     dataset_meta=dataset_meta, country_meta=country_meta, factors=factor)


def data_table(syn: Synthetic) -> pd.DataFrame:
    """The indicatorData table: one row per (indicator, country) pair with at least one value."""
    n_t, n_c, n_i = syn.values.shape
    flat = syn.values.transpose(2, 1, 0).reshape(n_i * n_c, n_t)  # indicator-major, like the platform's file
    has = ~np.all(np.isnan(flat), axis=1)
    ind_idx, c_idx = np.divmod(np.flatnonzero(has), n_c)
    codes = np.asarray(syn.indicators, dtype=object)
    countries = np.asarray(syn.countries, dtype=object)
    frame = pd.DataFrame(flat[has], columns=[str(y) for y in syn.years])
    frame.insert(0, "Indicator Code", codes[ind_idx])
    frame.insert(0, "Country Code", countries[c_idx])
    return frame


def write(syn: Synthetic, out_dir: Path, parquet: bool = False) -> dict[str, Path]:
    """Write the dataset's files into ``out_dir``; returns file name -> path."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(data_table(syn), preserve_index=False)
    written = {}
    path = out_dir / "indicatorData.csv"
    # Codes hold no commas or quotes: a plain header and unquoted values, as the platform's files have.
    with open(path, "wb") as sink:
        sink.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    written[path.name] = path
    parquet_path = out_dir / "indicatorData.parquet"
    if parquet:
        import pyarrow.parquet as pq

        pq.write_table(as_copy_of(table, str(path)), parquet_path, compression="zstd")  # read only beside this CSV
        written[parquet_path.name] = parquet_path
    elif parquet_path.exists():
        parquet_path.unlink()  # never leave a stale columnar copy beside a new CSV
    for name, frame in (("indicatorMeta.csv", syn.indicator_meta), ("datasetMeta.csv", syn.dataset_meta),
                        ("countryMeta.csv", syn.country_meta)):
        frame.to_csv(out_dir / name, index=False)
        written[name] = out_dir / name
    return written


def summary(syn: Synthetic, year: int = 2015) -> dict:
    """Shape and missingness figures (the ones the module docstring promises)."""
    values = syn.values
    missing = np.isnan(values)
    out = {
        "indicators": values.shape[2], "countries": values.shape[1], "sids": int(syn.sids.sum()),
        "years": f"{syn.years[0]}-{syn.years[-1]}",
        "missing_share": round(float(missing.mean()), 4),
        "missing_share_sids": round(float(missing[:, syn.sids].mean()), 4),
        "missing_share_other": round(float(missing[:, ~syn.sids].mean()), 4),
    }
    if year in syn.years:
        per_indicator = missing[syn.years.index(year)].mean(axis=0)
        out[f"indicators_under_30pct_missing_{year}"] = int((per_indicator < 0.3).sum())
    return out


def _years(text: str) -> tuple[int, int]:
    try:
        a, _, b = text.partition("-")
        return int(a), int(b or a)
    except ValueError:
        raise argparse.ArgumentTypeError(f"years must look like 2000-2020, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write the dataset into (created if needed)")
    parser.add_argument("--indicators", type=int, default=3000)
    parser.add_argument("--countries", type=int, default=250)
    parser.add_argument("--years", type=_years, default=(2000, 2020), help="first-last, e.g. 2000-2020")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parquet", action="store_true", help="also write indicatorData.parquet beside the CSV")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    syn = generate(args.indicators, args.countries, args.years, args.seed)
    write(syn, args.out_dir, parquet=args.parquet)
    facts = summary(syn)
    facts["seconds"] = round(time.perf_counter() - started, 1)
    print(f"wrote {args.out_dir}: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

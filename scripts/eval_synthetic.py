"""A synthetic dataset with known structure, for the masked-holdout evaluation (generated in-process, seeded).

Countries (a fifth of them SIDS, smaller and with shifted characteristics, so SIDS are unlike most
training rows) follow three latent factors that drift over the years. *Predictors* are noisy
functions of the factors (plain levels, percentages, heavy-tailed positive quantities, population).
*Targets* are functions of the predictors with a known noise level, so the best achievable NRMSE
of each case is known (``oracle_nrmse``: noise standard deviation / target standard deviation):

========  =================================================================================
LIN       linear in three predictors
RATE      a sub-group's rate given related rates (near-linear, 0-100)
NONLIN    sine and square of predictors
THRESH    an interaction switched on by a threshold
GROUP     a slope that changes sign with an observable sub-group (a binary indicator)
HEAVY     log-normal: exp of a linear function (heavy right tail)
TNOISE    linear with Student-t (2 degrees of freedom) noise
SIZE      depends on population (log) and a predictor
========  =================================================================================

Missingness depends on country size: a series is missing, and single years are missing, more often
for small countries (so mostly for SIDS).
"""
from __future__ import annotations

import io
import string
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.dataset import DEFAULT_SIDS, Dataset, build_dataset  # noqa: E402

YEARS = tuple(range(2000, 2021))
TARGETS = ("LIN", "RATE", "NONLIN", "THRESH", "GROUP", "HEAVY", "TNOISE", "SIZE")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_synthetic(seed: int = 0, n_countries: int = 180, n_sids: int = 40, n_predictors: int = 24) -> tuple[Dataset, dict]:
    """The dataset and ``{target code: oracle NRMSE in 2010}``."""
    rng = np.random.default_rng(seed)
    T = len(YEARS)
    codes = sorted(DEFAULT_SIDS)[:n_sids] + [f"X{a}{b}" for a in string.ascii_uppercase
                                              for b in string.ascii_uppercase][:n_countries - n_sids]
    sids = np.array([i < n_sids for i in range(n_countries)])
    # size (log population): SIDS are small
    log_pop = np.where(sids, rng.normal(12.5, 1.2, n_countries), rng.normal(16.0, 1.5, n_countries))
    # three latent factors, a level, a trend and an AR(1) wiggle per country; SIDS shifted on factor 0
    level = rng.normal(size=(n_countries, 3)) + np.where(sids[:, None], [0.8, -0.3, 0.0], 0.0)
    trend = rng.normal(0, 0.3, size=(n_countries, 3))
    t = (np.arange(T) - 10) / 10.0
    wiggle = np.zeros((T, n_countries, 3))
    for k in range(1, T):
        wiggle[k] = 0.8 * wiggle[k - 1] + rng.normal(0, 0.08, size=(n_countries, 3))
    F = level[None] + trend[None] * t[:, None, None] + wiggle          # T x C x 3

    cols, names, kinds = [], [], []
    load = rng.normal(size=(n_predictors, 3))
    for p in range(n_predictors):
        z = F @ load[p] / np.linalg.norm(load[p]) + rng.normal(0, 0.35, size=(1, n_countries)) \
            + rng.normal(0, 0.05, size=(T, n_countries))
        kind = ("level", "percent", "positive")[p % 3]
        if kind == "percent":
            v = 100 * _sigmoid(1.3 * z)
        elif kind == "positive":
            v = np.exp(1.0 + 0.9 * z)
        else:
            v = 10 + 3 * z
        cols.append(v)
        names.append(f"syn-P{p:02d}")
        kinds.append(kind)
    cols.append(np.broadcast_to(log_pop, (T, n_countries)) + 0.01 * np.arange(T)[:, None])
    names.append("syn-POP")
    kinds.append("level")
    group = (level[:, 1] > 0.3).astype(float)
    cols.append(np.broadcast_to(group, (T, n_countries)).copy())
    names.append("syn-GRP")
    kinds.append("binary")
    P = np.stack(cols, axis=2)                                          # T x C x p
    std = (P - P.reshape(-1, P.shape[2]).mean(0)) / P.reshape(-1, P.shape[2]).std(0)
    z = lambda k: std[:, :, k]                                          # noqa: E731

    def noise(sd, df=None):
        e = rng.standard_t(df, size=(T, n_countries)) if df else rng.normal(size=(T, n_countries))
        persistent = rng.standard_t(df, size=n_countries) if df else rng.normal(size=n_countries)
        return sd * (0.8 * persistent[None] + 0.6 * e)   # mostly a persistent country effect

    targets, sd_noise = {}, {}
    targets["LIN"], sd_noise["LIN"] = 2 * z(0) - 1.0 * z(3) + 0.5 * z(6), 0.3
    rate_base = 100 * _sigmoid(1.1 * z(1) + 0.4 * z(4))
    targets["RATE"], sd_noise["RATE"] = None, 3.0
    targets["NONLIN"], sd_noise["NONLIN"] = 2 * np.sin(1.5 * z(2)) + z(5) ** 2, 0.3
    targets["THRESH"], sd_noise["THRESH"] = np.where(z(7) > 0, 2.0 * z(8), 0.0) + 0.5 * z(9), 0.3
    g = std[:, :, names.index("syn-GRP")] > 0
    targets["GROUP"], sd_noise["GROUP"] = np.where(g, 1.5 * z(10), -1.5 * z(10)) + 0.5 * z(11), 0.3
    targets["HEAVY"], sd_noise["HEAVY"] = None, 0.3
    targets["TNOISE"], sd_noise["TNOISE"] = 1.5 * z(12) + z(13), 0.4
    targets["SIZE"], sd_noise["SIZE"] = 0.8 * std[:, :, names.index("syn-POP")] + z(14), 0.3
    out = {}
    for name in TARGETS:
        if name == "RATE":
            # a sub-group's rate: the total rate (a predictor) plus a gap, 0-100
            total = P[:, :, 1]
            out[name] = np.clip(0.9 * total + 0.1 * rate_base - 8 + noise(sd_noise[name]), 0, 100)
        elif name == "HEAVY":
            out[name] = np.exp(1.0 + 0.8 * (z(0) + z(15)) + noise(sd_noise[name]))
        elif name == "TNOISE":
            out[name] = targets[name] + noise(sd_noise[name], df=2)
        else:
            out[name] = targets[name] + noise(sd_noise[name])
    V = np.concatenate([P, np.stack([out[n] for n in TARGETS], axis=2)], axis=2)
    all_names = names + [f"syn-{n}" for n in TARGETS]
    all_kinds = kinds + ["target"] * len(TARGETS)

    # Missingness: series and single years missing more often for small countries.
    small = (14.0 - log_pop) / 1.5
    miss_series = _sigmoid(-2.6 + 1.0 * small)[:, None] * np.ones((1, V.shape[2]))
    miss_series[:, -1] = 0.0    # the binary sub-group indicator is always there
    series_gone = rng.random(miss_series.shape) < miss_series
    cell_gone = rng.random(V.shape) < _sigmoid(-2.4 + 0.6 * small)[None, :, None]
    V = np.where(series_gone[None] | cell_gone, np.nan, V)
    V = np.round(V, 4)

    # oracle NRMSE in 2010 (the noise the data cannot explain / the target's spread that year)
    yi = YEARS.index(2010)
    oracle = {}
    for n in TARGETS:
        j = all_names.index(f"syn-{n}")
        col = V[yi, :, j]
        sd_y = float(np.nanstd(col))
        if n == "HEAVY":
            clean = np.exp(1.0 + 0.8 * (z(0) + z(15)))[yi]
            # noise is multiplicative: the unexplained part is the difference to the noiseless value
            unexplained = float(np.nanstd(np.where(np.isnan(col), np.nan, col - clean * np.exp(0.5 * sd_noise[n] ** 2))))
        elif n == "TNOISE":
            unexplained = float(np.nanstd(np.where(np.isnan(col), np.nan, col - targets[n][yi])))
        else:
            unexplained = sd_noise[n]
        oracle[f"syn-{n}"] = unexplained / sd_y

    rows = []
    for ci, c in enumerate(codes):
        for j, code in enumerate(all_names):
            series = V[:, ci, j]
            if np.isnan(series).all():
                continue
            rows.append([c, code] + ["" if np.isnan(v) else repr(float(v)) for v in series])
    data = pd.DataFrame(rows, columns=["Country Code", "Indicator Code"] + [str(y) for y in YEARS])
    meta = pd.DataFrame({
        "Indicator Code": all_names,
        "Indicator": [f"Synthetic {n.removeprefix('syn-')}" for n in all_names],
        "Dimension": all_kinds,
        "Category": ["Target" if k == "target" else f"Factor group {i % 4}" for i, k in enumerate(all_kinds)],
        "Dataset": "syn"})
    dmeta = pd.DataFrame({"Dataset Code": ["syn"], "Dataset Name": ["Synthetic data with known structure"]})
    cmeta = pd.DataFrame({"Country Code": codes, "SIDS": ["True" if s else "False" for s in sids]})

    def csv(df):
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        return buf.getvalue().encode()

    ds = build_dataset({"indicatorData.csv": csv(data), "indicatorMeta.csv": csv(meta),
                        "datasetMeta.csv": csv(dmeta), "countryMeta.csv": csv(cmeta)},
                       version=f"synthetic-{seed}", source="synthetic")
    return ds, oracle


if __name__ == "__main__":
    ds, oracle = make_synthetic()
    print(ds.values.shape, int(ds.sids_mask.sum()), "SIDS; missing share", round(float(np.isnan(ds.values).mean()), 3))
    for k, v in oracle.items():
        j = ds.indicators.get_loc(k)
        col = ds.year_matrix(2010)[:, j]
        print(k, "oracle NRMSE", round(v, 3), "known SIDS", int((~np.isnan(col[ds.sids_mask])).sum()),
              "missing", round(float(np.isnan(col).mean()), 2))

"""The requests the load scenarios send, built from the service's own look-ups.

Shared by ``locustfile.py`` and ``run_load.py`` (which builds the pool before the measured
run and hands it to Locust in a file). Plain ``httpx``; no Locust import, so importing this
does not monkey-patch anything.
"""
from __future__ import annotations

import json
import logging
import random

DATASET = "wdi"
# The seed README's "simple request". The embedded dataset has no EG.ELC.ACCS.ZS or
# AG.LND.AGRI.K2: the nearest indicators stand in for them.
SIMPLE = {
    "manual_predictors": ["wdi-EN.POP.DNST"],
    "target_year": "2001",
    "target": "wdi-EG.ELC.ACCS.UR.ZS",
    "interpolator": "KNNImputer",
    "scheme": "MANUAL",
    "estimators": 10,
    "model": "rfr",
    "interval": "quantile",
    "dataset": DATASET,
}
AFS = {"target_year": "2001", "interpolator": "KNNImputer", "scheme": "AFS", "number_predictor": 10,
       "estimators": 100, "model": "rfr", "interval": "quantile", "dataset": DATASET}


def build_pool(base_url: str, seed: int = 20, targets_per_year: int = 40) -> dict[str, list]:
    """Valid, answerable (target, year, predictor) combinations, AFS targets, and (year, target) pairs."""
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    rng = random.Random(seed)
    pool: dict[str, list] = {"simple": [], "targets": [], "afs": []}
    with httpx.Client(base_url=base_url, timeout=120) as http:
        years = http.get("/twolvlImp/target_years").json()
        years = [y for y in years if 2000 <= int(y) <= 2019] or years
        for year in years[::3]:
            targets = list(http.get("/twolvlImp/targets", params={"target_year": year, "dataset": DATASET}).json())
            pool["targets"].extend([year, t] for t in targets)
            for target in rng.sample(targets, min(targets_per_year, len(targets))):
                resp = http.post("/twolvlImp/predictors", json={"target_year": year, "dataset": DATASET,
                                                                 "target": target, "scheme": "MANUAL"})
                if resp.status_code != 200:
                    continue
                predictors = list(resp.json())
                chosen = rng.sample(predictors, min(3, len(predictors)))
                # A listed target may have no missing SIDS that year (nothing to predict: a 422):
                # /estimate validates a request without training, so only answerable ones are kept.
                probe = dict(SIMPLE, target=target, target_year=year, manual_predictors=chosen[:1])
                if not chosen or http.post("/twolvlImp/estimate", json=probe).status_code != 200:
                    continue
                pool["simple"].extend([target, year, predictor] for predictor in chosen)
                if len(predictors) >= 10:
                    pool["afs"].append([target, year])
    rng.shuffle(pool["simple"])
    rng.shuffle(pool["afs"])
    return pool


def save(pool: dict, path: str) -> None:
    with open(path, "w") as out:
        json.dump(pool, out)


def load(path: str) -> dict:
    with open(path) as src:
        return json.load(src)

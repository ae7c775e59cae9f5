"""Fit the seconds per size term of each kind of job (models/twolvlimp/unit_costs.json).

    python scripts/calibrate_costs.py [--platform-data DIR] [--synthetic DIR] [--quick]

Runs a spread of twolvlImp requests (every base imputer, scheme and tree kind, 10 to 1000 trees, on
``data/wdi``, the SIDS platform data and the synthetic platform-size data when present), each first of
its kind (nothing memoised), one fit thread, and records for every request the jobs the method *planned*
(``plan_request``) and the CPU seconds of the jobs it *ran* (``models.twolvlimp.work.tallied``). Per kind
of job, the seconds per planned term are the non-negative least-squares fit of the measured seconds on the
planned terms, in relative error (so a small request counts as much as a large one). Writes the costs, the
machine they come from and, per kind, how well they fit (median and worst ratio of fitted to measured).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.optimize import nnls  # noqa: E402

from models.twolvlimp.costs import UNIT_COSTS_FILE  # noqa: E402
from models.twolvlimp.lookups import INTERPOLATORS as IMPUTERS, MODELS, SCHEMES  # noqa: E402
from models.twolvlimp.lookups import ImputationRequest, resolve, year_info  # noqa: E402
from models.twolvlimp.tree_search import FitContext  # noqa: E402
from models.twolvlimp.runtime import compute, plan_request  # noqa: E402
from models.twolvlimp.work import tallied  # noqa: E402
from shared.dataset import Dataset, build_dataset  # noqa: E402

DEFAULT_PLATFORM = ROOT.parent / "shared" / "data" / "sids-platform"
DEFAULT_SYNTHETIC = ROOT / "bench-results" / "synthetic-3000x250-2000-2020-seed0"
TREES = (10, 100, 300, 1000)


def load(folder: Path) -> Dataset:
    return build_dataset({p.name: str(p) for p in folder.iterdir() if p.is_file()}, version=f"calibrate-{folder.name}",
                         source=str(folder))


def forget(ds: Dataset) -> None:
    """Nothing memoised: each request pays its preparation, as the first of its kind."""
    with ds._memo_lock:
        ds._memo.clear()


def targets(ds: Dataset, year: int, count: int) -> list[str]:
    """``count`` targets evenly spread over those with many known SIDS and some SIDS to fill."""
    M = ds.year_matrix(year)
    info = year_info(ds, year)
    known_sids = (~np.isnan(M[ds.sids_mask])).sum(axis=0)
    missing_sids = np.isnan(M[ds.sids_mask]).sum(axis=0)
    ok = np.flatnonzero(info.target_mask & (known_sids >= 15) & (missing_sids >= 1))
    return [str(ds.indicators[i]) for i in ok[np.linspace(0, ok.size - 1, count).round().astype(int)]]


def predictors(ds: Dataset, year: int, target: str, count: int) -> list[str]:
    M = ds.year_matrix(year)
    order = np.argsort(np.isnan(M).mean(axis=0), kind="stable")
    return [str(ds.indicators[i]) for i in order if ds.indicators[i] != target][:count]


def requests(ds: Dataset, year: int, n_targets: int, legacy: bool) -> list[ImputationRequest]:
    out = []
    for t, target in enumerate(targets(ds, year, n_targets)):
        for i, (imputer, scheme) in enumerate((a, b) for a in IMPUTERS for b in SCHEMES):
            k = i + 3 * t
            model, trees = MODELS[k % len(MODELS)], TREES[(k // 2) % len(TREES)]
            number = (10, 20, 5)[k % 3]
            out.append(ImputationRequest(
                target=target, target_year=str(year), interpolator=imputer, scheme=scheme, estimators=trees, model=model,
                manual_predictors=tuple(predictors(ds, year, target, 3)) if scheme == "MANUAL" else None,
                number_predictor=None if scheme == "MANUAL" else number))
        if legacy:
            for imputer, scheme, model in (("KNNImputer", "MANUAL", "rfr"), ("SimpleImputer", "AFS", "etr"),
                                           ("KNNImputer", "PCA", "gbr"), ("IterativeImputer", "MANUAL", "rfr")):
                out.append(ImputationRequest(
                    target=target, target_year=str(year), interpolator=imputer, scheme=scheme, estimators=10,
                    model=model, method="legacy",
                    manual_predictors=tuple(predictors(ds, year, target, 3)) if scheme == "MANUAL" else None,
                    number_predictor=None if scheme == "MANUAL" else 5))
    return out


def measure(ds: Dataset, req: ImputationRequest, pool: ThreadPoolExecutor) -> dict:
    forget(ds)
    r = resolve(ds, req)
    plan = plan_request(ds, r)
    with tallied() as tally:
        _, timings = compute(ds, r, FitContext(pool))
    ran = tally.seconds_by_kind(cpu=True)
    return {"request": r.key()[:-1], "planned": plan.totals(), "ran": ran, "ran_terms": tally.totals(),
            "seconds": timings}


def fit_kind(rows: list[tuple[dict, float]]) -> tuple[dict, dict]:
    terms = sorted({t for planned, _ in rows for t in planned})
    A = np.array([[planned.get(t, 0.0) for t in terms] for planned, _ in rows])
    y = np.array([s for _, s in rows])
    weight = 1 / np.maximum(y, 1e-3)          # relative error
    scale = np.maximum(A.max(axis=0), 1e-300)
    coef, _ = nnls((A / scale) * weight[:, None], y * weight)
    coef = coef / scale
    fitted = A @ coef
    ratio = fitted / np.maximum(y, 1e-6)
    quality = {"requests": len(rows), "median_ratio": round(float(np.median(ratio)), 3),
               "worst_ratio": round(float(max(ratio.max(), 1 / max(ratio.min(), 1e-9))), 3),
               "measured_seconds": [round(float(y.min()), 4), round(float(y.max()), 4)]}
    return {t: float(f"{c:.4g}") for t, c in zip(terms, coef)}, quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform-data", type=Path, default=DEFAULT_PLATFORM)
    parser.add_argument("--synthetic", type=Path, default=DEFAULT_SYNTHETIC)
    parser.add_argument("--quick", action="store_true", help="one target per dataset, data/wdi and platform only")
    parser.add_argument("--out", type=Path, default=UNIT_COSTS_FILE)
    parser.add_argument("--raw", type=Path, help="also write every request's planned and measured work here")
    options = parser.parse_args()

    sets = [("wdi", ROOT / "data" / "wdi", 2015, 3, True), ("sids-platform", options.platform_data, 2015, 2, False),
            ("synthetic", options.synthetic, 2015, 1, False)]
    if options.quick:
        sets = [(n, f, y, 1, legacy) for n, f, y, _, legacy in sets[:2]]
    pool = ThreadPoolExecutor(max_workers=1)
    measured = []
    for name, folder, year, n_targets, legacy in sets:
        if not folder.is_dir():
            print(f"{name}: {folder} not found, skipped", flush=True)
            continue
        ds = load(folder)
        for req in requests(ds, year, n_targets, legacy):
            m = measure(ds, req, pool)
            m["dataset"] = name
            measured.append(m)
            print(f"{name} {req.target} {req.method} {req.interpolator} {req.scheme} {req.model} {req.estimators}: "
                  f"{m['seconds']['prepare']:.3f} + {m['seconds']['model']:.3f} s", flush=True)
    by_kind: dict[str, list] = {}
    for m in measured:
        for kind, planned in m["planned"].items():
            by_kind.setdefault(kind, []).append((planned, m["ran"].get(kind, 0.0)))
    seconds, quality = {}, {}
    for kind, rows in sorted(by_kind.items()):
        seconds[kind], quality[kind] = fit_kind(rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = {"measured_on": {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                           "python": platform.python_version(), "date": datetime.date.today().isoformat(),
                           "commit": commit, "requests": str(len(measured)),
                           "how": "scripts/calibrate_costs.py: CPU seconds of tallied jobs, one fit thread"},
           "seconds": seconds, "fit": quality}
    options.out.write_text(json.dumps(out, indent=1) + "\n")
    if options.raw:
        options.raw.write_text(json.dumps(measured, indent=1, default=str))
    for kind, q in quality.items():
        print(f"{kind:24s} {q}")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()

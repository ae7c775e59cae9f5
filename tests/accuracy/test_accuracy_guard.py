"""The accuracy guard (``make eval-quick``: scripts/eval_twolvlimp.py --quick), outside tests/unit so that the
unit tests run in seconds; ``make test`` collects it (pytest.ini: testpaths = tests).

The masked-holdout evaluation on a few cases per dataset, 3 folds: the default method must stay ahead of the
baselines computed on the same masks, its 90% intervals calibrated, not wider than the median baseline's, and
its predictions not collapsed; and where a SIDS lacks the target's closest relatives too (scenario (c)), its
intervals must still cover."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import eval_twolvlimp as ev  # noqa: E402

QUICK_MARGIN = 0.10   # relative slack of the quick guard (few cases, 3 folds)
BASELINES = ("median", "knn", "hgb", "iterative")


def check(name: str, scenario: str, rows: dict, min_case_coverage: float, width_factor: float = 1.0) -> None:
    default = rows["default"]
    best = min(rows[m]["nrmse_mean"] for m in BASELINES)
    assert default["nrmse_mean"] <= best * (1 + QUICK_MARGIN), (name, scenario, default, best)
    assert 0.80 <= default["coverage"] <= 1.0, (name, scenario, default)
    assert default["coverage_min"] >= min_case_coverage, (name, scenario, default)
    assert default["width"] <= rows["median"]["width"] * width_factor, (name, scenario, default, rows["median"])


@pytest.mark.slow
def test_quick_masked_holdout_guards_accuracy():
    """Scenarios (a) and (b) on the quick cases: fails when accuracy or calibration regresses."""
    report = ev.run(["wdi", "platform", "synthetic"], ev.DEFAULT_PLATFORM, ev.QUICK["folds"], ev.QUICK["cases"],
                    legacy_cases=0, log=lambda m: None, scenarios=ev.QUICK["scenarios"])
    assert {"wdi", "synthetic"} <= set(report["datasets"])
    for name, d in report["datasets"].items():
        assert set(d["summary"]) == set(ev.QUICK["scenarios"])
        for scenario, rows in d["summary"].items():
            check(name, scenario, rows, 0.6)
            assert rows["default"]["spread"] >= 0.5, (name, scenario, rows["default"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ev.QUICK["relatives"]["cases"]))
def test_intervals_cover_when_the_targets_relatives_are_hidden_too(name):
    """Scenario (c): the target and its 3 most correlated indicators hidden for the masked SIDS. Intervals
    calibrated on rows that have those relatives covered 0.65 (wdi) and 0.00 (platform) here (db7c88a)."""
    rel = ev.QUICK["relatives"]
    if name == "platform" and not (ev.DEFAULT_PLATFORM / "indicatorData.csv").exists():
        pytest.skip(f"no SIDS platform data at {ev.DEFAULT_PLATFORM}")
    report = ev.run([name], ev.DEFAULT_PLATFORM, ev.QUICK["folds"], {}, legacy_cases=0, log=lambda m: None,
                    only=rel["cases"][name], scenarios=(rel["scenario"],))
    rows = report["datasets"][name]["summary"][rel["scenario"]]
    assert rows["default"]["cases"] == len(rel["cases"][name])
    # the median baseline's 5%-95% band is no calibrated interval: on these cases it covers 0.80-0.81, and a
    # 90% interval is a little wider (measured 1.08-1.14 times its width)
    check(name, rel["scenario"], rows, 0.80, width_factor=1.25)

"""scripts/benchmark.py's bookkeeping, without running anything: the synthetic target rule, timed runs
against a fake client, and the table derived from a report (its end-to-end run is in
tests/system/test_benchmark_script.py).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark  # noqa: E402
import make_synthetic  # noqa: E402
from shared.dataset import build_dataset  # noqa: E402


def test_synthetic_target_rule():
    syn = make_synthetic.generate(indicators=150, countries=50, years=(2010, 2016), seed=0)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic.write(syn, Path(tmp))
        data = build_dataset({p.name: str(p) for p in Path(tmp).iterdir()})
    chosen = benchmark.choose_synthetic_target(data)
    missing = np.isnan(data.year_matrix(2015))
    enough = min(5, max(1, int(data.sids_mask.sum()) // 3))
    qualifying = [code for j, code in enumerate(data.indicators)
                  if 0.25 <= missing[:, j].mean() <= 0.45 and missing[data.sids_mask, j].sum() >= enough]
    assert qualifying, "the small synthetic dataset has suitable targets"
    assert chosen["target"] == min(qualifying)
    j = data.indicators.get_loc(chosen["target"])
    assert chosen["sids_missing"] == missing[data.sids_mask, j].sum()
    assert chosen["dataset"] == data.indicator_meta.at[chosen["target"], "Dataset"]


class FakeClient:
    """Answers /estimate with a fixed number and /predict from a cache that the bypass clears."""

    def __init__(self):
        self.cache = {}
        self.computed = 0
        self.calls = []

    def has(self, method, path):
        return True

    def call(self, method, path, body=None, params=None):
        self.calls.append(path)
        if path.endswith("/estimate"):
            return 200, b"0.5", 0.001
        key = json.dumps(body, sort_keys=True)
        if key not in self.cache:
            self.computed += 1
            self.cache[key] = json.dumps({"rmse": 1.0, "n": self.computed}).encode()
            return 200, self.cache[key], 0.25
        return 200, self.cache[key], 0.002


def test_timed_runs_bypass_the_cache_and_the_hit_is_measured_after():
    client = FakeClient()

    class Bypass:
        calls = 0

        def __call__(self):
            Bypass.calls += 1
            client.cache.clear()

    result = benchmark.measure_request(client, Bypass(), {"target": "x"}, runs=3, warmup=1, budget_seconds=100)
    assert Bypass.calls == 4 and client.computed == 4   # every warm-up and timed run computed its result
    assert result["runs_seconds"] == [0.25, 0.25, 0.25] and result["seconds"] == 0.25
    assert result["cache_hit_seconds"] == 0.002 and result["cache_hit_same_bytes"] is True
    # /estimate is asked before every run, and compared with the run that follows
    assert client.calls[:2] == ["/twolvlImp/estimate", "/twolvlImp/predict"]
    assert result["estimates_seconds"] == [0.5] * 4
    assert result["estimate_cold"] == 0.5 and result["actual_cold"] == 0.25 and result["estimate_cold_ratio"] == 0.5
    assert result["estimate_worst_factor"] == 2.0 and result["estimate_within_2x"] is True
    # the fake's bodies differ only by their counter, which is not a timing field
    assert result["same_numbers_every_run"] is False


def test_timed_runs_stop_when_the_budget_is_used():
    client = FakeClient()
    result = benchmark.measure_request(client, client.cache.clear, {"target": "x"}, runs=5, warmup=1,
                                       budget_seconds=0.3)
    assert result["runs_seconds"] == [0.25] and "stopped_early" in result


def test_rows_and_table_from_a_report():
    report = {
        "quick": False, "requested": ["simple", "afs", "all"],
        "machine": {"cpu": "CPU X", "cores": 2, "usable_cores": 2, "ram_gib": 8, "os": "Linux", "python": "3.11",
                    "numpy": "2", "pandas": "3", "pyarrow": "26", "scikit_learn": "1.9", "date": "today",
                    "git_commit": "abc"},
        "load_average_before": [1, 1, 1], "load_average_after": [1, 1, 1],
        "embedded_load": {"seconds": 0.2},
        "embedded_requests": {"requests": {
            "simple": {"seconds": 0.07, "estimate_cold": 0.1, "actual_cold": 0.2, "estimate_learned": 0.08,
                       "estimate_worst_factor": 1.25, "estimate_within_2x": True, "cache_hit_seconds": 0.001,
                       "cache_hit_same_bytes": True},
            "afs": {"seconds": 2.0},
            "all": {"error": "HTTP 500: boom"}}},
        "synthetic": {"summary": {"indicators": 3000, "countries": 250}},
        "synthetic_load_csv": {"seconds": 2.5}, "synthetic_load_parquet": {"seconds": 0.9},
        "synthetic_requests": {"requests": {"synthetic_afs": {"seconds": 4.35}},
                               "peak_rss": {"total": 1300 * 1024 * 1024}},
    }
    report["rows"] = benchmark.rows(report)
    by_id = {r["id"]: r for r in report["rows"]}
    assert by_id["simple"]["speedup_vs_old"] == 5.0 and by_id["simple"]["meets_target"] is True
    assert by_id["afs"]["meets_target"] is False and by_id["afs"]["speedup_vs_old"] == 1.7
    assert by_id["all"]["value"] is None and by_id["all"]["note"] == "HTTP 500: boom"
    assert by_id["synthetic_afs"]["speedup_vs_old"] == 10.0
    assert by_id["synthetic_peak_rss"]["value"] == 1300.0 and by_id["synthetic_peak_rss"]["meets_target"] is False
    assert "synthetic_load_csv_peak_rss" not in by_id  # no figure, no row
    table = benchmark.markdown(report)
    assert "MISSED" in table and "not measured (HTTP 500: boom)" in table and "CPU X" in table
    assert "0.100 s for a 0.200 s first run; 0.080 s learned (worst 1.25x)" in table and "1.0 ms" in table


def test_run_to_run_comparison_ignores_only_timing_fields():
    a = json.dumps({"rmse": 1.5, "compute_seconds": 0.2, "compute_phases": {"model": 0.1},
                    "meta": {"loaded_at": "x", "n": 3}}).encode()
    b = json.dumps({"rmse": 1.5, "compute_seconds": 0.9, "compute_phases": {"model": 0.4},
                    "meta": {"loaded_at": "y", "n": 3}}).encode()
    c = json.dumps({"rmse": 1.6, "compute_seconds": 0.2, "compute_phases": {"model": 0.1},
                    "meta": {"loaded_at": "x", "n": 3}}).encode()
    assert benchmark._volatile_free(a) == benchmark._volatile_free(b)
    assert benchmark._volatile_free(a) != benchmark._volatile_free(c)


def test_start_rows_from_a_report():
    report = {"start": {
        "embedded": {"seconds": 0.9, "load_seconds": 0.1, "shape": [217, 110], "failed_runs": 0},
        "synthetic_csv": {"seconds": 2.4, "load_seconds": 1.1, "shape": [250, 3000], "failed_runs": 0},
        "synthetic_parquet": {"error": "exited: boom", "failed_runs": 5}}}
    by_id = {r["id"]: r for r in benchmark.start_rows(report)}
    assert list(by_id) == ["start_embedded", "start_synthetic_csv", "start_synthetic_parquet"]
    assert by_id["start_embedded"]["meets_target"] is True and by_id["start_embedded"]["target"] == 1.0
    assert by_id["start_synthetic_csv"]["meets_target"] is False and by_id["start_synthetic_csv"]["target"] == 2.0
    assert "3000 ind. x 250 countries" in by_id["start_synthetic_csv"]["label"]
    assert by_id["start_synthetic_parquet"]["value"] is None and by_id["start_synthetic_parquet"]["note"] == "exited: boom"
    assert benchmark.start_rows({}) == []


def test_reference_figures_are_read_from_the_repository_file_each_with_its_source():
    document = json.loads(benchmark.REFERENCE_FILE.read_text())
    assert benchmark.REFERENCE_FILE.is_relative_to(ROOT)
    for section in ("old", "targets", "start_targets", "iterative_targets", "iterative_before"):
        for key, entry in document[section].items():
            assert isinstance(entry["value"], (int, float)) and entry["source"].strip(), (section, key)
    assert benchmark.OLD == {k: e["value"] for k, e in document["old"].items()}
    assert benchmark.TARGET == {k: e["value"] for k, e in document["targets"].items()}
    # the old service's figures as ../shared/reference/original-figures.md gives them
    assert benchmark.OLD == {"simple": 0.35, "afs": 3.38, "all": 13.0, "synthetic_afs": 43.5}


def test_platform_data_is_an_option_and_its_absence_is_a_row_with_a_note(tmp_path, monkeypatch):
    assert benchmark.parse_args(["--no-platform-data"]).platform_data is None
    assert benchmark.parse_args(["--platform-data", str(tmp_path)]).platform_data == tmp_path
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--platform-data", str(tmp_path / "absent")])
    sibling = benchmark.SIBLING_PLATFORM_DATA
    assert benchmark.parse_args([]).platform_data == (sibling if sibling.is_dir() else None)

    monkeypatch.setattr(benchmark, "start_to_health", lambda path, root, timeout: {
        "seconds": 0.5, "load_seconds": 0.1, "countries": 217, "indicators": 110})
    options = benchmark.parse_args(["--no-platform-data", "--start-repeats", "1"])
    report = {"start": benchmark.measure_starts(options, None)}
    by_id = {r["id"]: r for r in benchmark.start_rows(report)}
    assert by_id["start_embedded"]["value"] == 0.5
    skipped = by_id["start_platform_real"]
    assert skipped["value"] is None and skipped["note"].startswith("skipped: no SIDS platform data")


def test_matrix_summary_and_form_rows():
    runs = [{"options": {"interpolator": "KNNImputer"}, "seconds": 1.0, "estimate_cold": 1.5},
            {"options": {"interpolator": "IterativeImputer"}, "seconds": 4.0, "estimate_cold": 1.0},
            {"options": {"interpolator": "SimpleImputer"}, "seconds": 2.0, "estimate_cold": None},
            {"options": {"interpolator": "x"}, "seconds": 0.1, "error": "HTTP 500: boom"}]
    s = benchmark.summarise_matrix({"runs": runs})
    assert s["combinations"] == 4 and s["failed"] == 1
    assert s["slowest"]["seconds"] == 4.0 and s["median_seconds"] == 2.0  # the failed run is not a figure
    assert s["estimate_worst_factor"] == 4.0 and s["estimate_worst"]["options"]["interpolator"] == "IterativeImputer"
    assert s["estimates_within_2x"] == 1 and s["estimates_rated"] == 2
    assert benchmark.summarise_matrix({"runs": [], "error": "worker failed"}) == {"error": "worker failed"}

    report = {"form_only": True, "form_matrix": {"runs": runs, "summary": s},
              "heaviest_sids_platform": {"seconds": 12.0, "estimate_cold": 6.0, "actual_cold": 12.0,
                                         "cpu_seconds": 20.0, "peak_rss": {"total": 300 * 1024 * 1024}},
              "form_default": {"error": "skipped: not found"}}
    by_id = {r["id"]: r for r in benchmark.rows(report)}
    assert by_id["heaviest_sids_platform"]["meets_target"] is False  # 10 s goal
    assert by_id["heaviest_sids_platform"]["within_host_limit"] is True
    assert by_id["heaviest_sids_platform"]["peak_rss_mib"] == 300.0
    assert by_id["matrix_slowest"]["value"] == 4.0 and by_id["matrix_slowest"]["meets_target"] is True
    assert by_id["matrix_median"]["value"] == 2.0
    assert by_id["matrix_estimate_worst"]["value"] == 4.0 and by_id["matrix_estimate_worst"]["meets_target"] is False
    assert by_id["form_default"]["value"] is None and by_id["form_default"]["note"] == "skipped: not found"
    assert "heaviest_synthetic" not in by_id  # not run, no row


def test_memory_under_load_rows():
    report = {"memory_load": {"requests": 86, "concurrency": 8, "statuses": {"200": 80, "422": 6}, "seconds": 300,
                              "rss_before_mib": 180.0, "rss_peak_mib": 900.0, "rss_at_end_mib": 700.0,
                              "rss_after_mib": 300.0, "settle_seconds": 60.0, "after_over_before": 1.67}}
    by_id = {r["id"]: r for r in benchmark.rows(report)}
    peak, after = by_id["memory_load_peak_rss"], by_id["memory_load_after"]
    assert peak["value"] == 900.0 and peak["target"] == round(1e9 / 2 ** 20, 1) and peak["meets_target"] is True
    assert after["value"] == 1.67 and after["target"] == 1.5 and after["meets_target"] is False
    assert after["rss_after_mib"] == 300.0 and "86 heaviest" in peak["label"]
    assert "memory_load_peak_rss" not in {r["id"] for r in benchmark.rows({})}

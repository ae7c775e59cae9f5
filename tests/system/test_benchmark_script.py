"""scripts/benchmark.py: it runs end to end (a quick run, in subprocesses) and writes well-formed JSON.

No timing is asserted (machines are noisy): only that figures exist and have the right
shape. Its bookkeeping (rows, table, targets) is tested in tests/unit/test_benchmark_tables.py.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark  # noqa: E402

HAS_MODEL = (ROOT / "blueprints" / "twolvlimp.py").exists()


QUICK_ARGS = ["--quick", "--requests", "simple", "--synthetic-indicators", "120", "--synthetic-countries", "45",
              "--synthetic-years", "2010-2016", "--no-platform-data"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out, md = tmp / "bench.json", tmp / "bench.md"
    cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), *QUICK_ARGS,
           "--synthetic-dir", str(tmp / "synthetic"), "--out", str(out), "--markdown", str(md),
           "--plots", str(tmp / "plots")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text()), md.read_text(), tmp


@pytest.mark.slow
def test_quick_run_writes_well_formed_json(quick_run):
    proc, report, table, _ = quick_run
    assert report["schema"] == 1 and report["quick"] is True
    for key in ("cpu", "cores", "ram_gib", "python", "numpy", "scikit_learn", "date"):
        assert report["machine"][key], key
    assert len(report["load_average_before"]) == 3
    emb = report["embedded_load"]
    assert emb["seconds"] > 0 and emb["shape"] == [31, 217, 110] and emb["source_file"] == "indicatorData.csv"
    assert report["synthetic"]["summary"]["indicators"] == 120
    assert report["synthetic_load_csv"]["source_file"] == "indicatorData.csv"
    assert report["synthetic_load_parquet"]["source_file"] == "indicatorData.parquet"
    for key in ("synthetic_load_csv", "synthetic_load_parquet"):
        assert report[key]["seconds"] > 0 and report[key]["shape"][0] == 7
        assert report[key]["peak_rss_bytes"] > 10 * 1024 * 1024
    ids = [r["id"] for r in report["rows"]]
    starts = [i for i in ids if i.startswith("start_")]
    # the IterativeImputer rows come with the quick run too (they were added without this list)
    assert [i for i in ids if i not in starts] == ["embedded_load", "simple", "iterative_wdi",
                                                   "iterative_sids_platform", "synthetic_load_csv",
                                                   "synthetic_load_parquet", "synthetic_afs",
                                                   "synthetic_load_csv_peak_rss", "synthetic_peak_rss",
                                                   "iterative_synthetic", "telemetry_off_start",
                                                   "telemetry_off_request", "telemetry_on_start",
                                                   "telemetry_on_request"]
    # start of an instance: each dataset; the platform's real data is left out here (--no-platform-data),
    # and its rows say so
    assert starts == ["start_embedded", "start_synthetic_csv", "start_synthetic_parquet", "start_platform_real"]
    by_id = {r["id"]: r for r in report["rows"]}
    for key in ("iterative_sids_platform", "start_platform_real"):
        assert by_id[key]["value"] is None and "skipped: no SIDS platform data" in by_id[key]["note"], by_id[key]
    assert report["platform_data"] is None and report["reference_file"] == "docs/reference/benchmark-reference.json"
    for key in ("embedded", "synthetic_csv", "synthetic_parquet"):
        start = report["start"][key]
        assert start["failed_runs"] == 0 and start["seconds"] > start["load_seconds"] > 0, start
    assert report["start"]["synthetic_parquet"]["shape"] == report["start"]["synthetic_csv"]["shape"]
    for row in report["rows"]:
        assert row["value"] is not None or row["note"], row  # a figure, or why there is none
    # the printed table is the markdown file's
    assert table.strip() in proc.stdout
    assert table.startswith("| figure | this service |") and "Machine:" in table


@pytest.mark.slow
def test_quick_run_shows_its_progress_and_draws_its_figures(quick_run):
    """The bar on stderr counts every measurement the run makes, up to the total it announced; --plots draws."""
    proc, report, _, tmp = quick_run
    planned = benchmark.planned_steps(benchmark.parse_args(QUICK_ARGS))
    assert planned > 5
    last = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.startswith("benchmark:")][-1]
    assert f"| {planned}/{planned} [" in last, last  # done / total [elapsed<left, rate]
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, *[\d.]+(step/s|s/step)[,\]]", last), last  # elapsed<left, rate
    png = tmp / "plots" / "bench-latency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not (tmp / "plots" / "bench-form-options.png").exists()  # no option matrix in a quick run


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MODEL, reason="the twolvlImp model is not in the tree yet")
def test_quick_run_measures_the_reference_request(quick_run):
    _, report, _, _ = quick_run
    simple = report["embedded_requests"]["requests"]["simple"]
    assert "error" not in simple, simple.get("error")
    assert simple["seconds"] > 0 and len(simple["runs_seconds"]) == 1
    assert simple["cache_hit_seconds"] > 0 and simple["cache_hit_same_bytes"] is True
    assert simple["same_numbers_every_run"] is True  # seeded: recomputing gives the same numbers
    assert simple["request"]["manual_predictors"] == ["wdi-EN.POP.DNST", "wdi-IQ.SPI.PIL1", "wdi-IQ.SPI.PIL3"]
    row = next(r for r in report["rows"] if r["id"] == "simple")
    assert row["speedup_vs_old"] == round(0.35 / simple["seconds"], 1)


@pytest.mark.skipif(not HAS_MODEL, reason="no twolvlImp blueprint")
def test_the_cache_bypass_empties_the_cache_the_app_answers_from(call):
    request = {"target": "wdi-EG.ELC.ACCS.UR.ZS", "target_year": "2015", "interpolator": "SimpleImputer",
               "scheme": "MANUAL", "manual_predictors": ["wdi-EN.POP.DNST"], "estimators": 5, "model": "rfr",
               "interval": "bootstrap", "dataset": "wdi"}
    bypass = benchmark.CacheBypass()
    assert bypass.method.startswith("blueprints.twolvlimp.runtime().cache.clear()")
    call("POST", "/twolvlImp/predict", request)
    assert call("POST", "/twolvlImp/predict", request).headers["x-cache"] == "hit"
    bypass()
    assert call("POST", "/twolvlImp/predict", request).headers["x-cache"] == "miss"



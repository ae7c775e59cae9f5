"""make ai-mode (scripts/ai_mode.py): one run on data/wdi, as make runs it (a subprocess, the settings from the
environment, two worker processes), writes the page's paths and valid files; the settings it reads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.twolvlimp import aimode
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ai-mode")
    env = dict(os.environ, DATASET_PATH=str(ROOT / "data" / "wdi"), AI_MODE_OUT=str(out), AI_MODE_LIMIT="2",
               AI_MODE_SLOTS="1,3")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ai_mode.py"), "--workers", "2",
                           "--accuracy-sample", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_run_writes_the_pages_files(run, wdi):
    out, proc = run
    codes = aimode.publishable_indicators(wdi)[:2]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.json"))
    expected = sorted([f"ml/model{s}/wdi/{c}.json" for s in (1, 3) for c in codes]
                      + ["ml/ML Model Metadata.json", "summary.json"])
    assert files == expected
    for slot in (1, 3):
        for code in codes:
            doc = json.loads((out / aimode.file_path(slot, code)).read_text())
            assert aimode.file_problems(wdi, code, doc) == []
    meta = json.loads((out / "ml" / "ML Model Metadata.json").read_text())
    assert meta["Model 1"]["accuracy"]["values"] >= 2 and "Measured Accuracy" in meta["Model 3"]
    assert "accuracy" not in meta["Model 2"]          # slot 2 was not run: described, not measured
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 4 and summary["failures"] == [] and summary["slots"] == [1, 3]
    assert summary["indicator_years"] == 2 * sum(len(aimode.publishable_years(wdi, c)) for c in codes)
    assert "AI Mode: 4 files (" in proc.stderr   # the log's last line


def test_rerun_replaces_files_whole(run, wdi):
    """Idempotent: a second run over the same folder leaves the same valid files, and no temporary file."""
    out, _ = run
    env = dict(os.environ, DATASET_PATH=str(ROOT / "data" / "wdi"), AI_MODE_OUT=str(out), AI_MODE_LIMIT="1",
               AI_MODE_SLOTS="1")
    first = aimode.publishable_indicators(wdi)[0]
    before = (out / aimode.file_path(1, first)).read_bytes()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ai_mode.py"), "--workers", "1",
                           "--accuracy-sample", "0", "--no-progress"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / aimode.file_path(1, first)).read_bytes() == before      # same data, same bytes
    assert not list(out.rglob("*.tmp"))


def test_unknown_slot_is_a_clear_error(tmp_path):
    env = dict(os.environ, DATASET_PATH=str(ROOT / "data" / "wdi"), AI_MODE_OUT=str(tmp_path), AI_MODE_SLOTS="7")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ai_mode.py"), "--no-progress"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown slot(s) [7]" in proc.stderr and "Traceback" not in proc.stderr


def test_ai_mode_settings():
    default = Settings.from_env({})
    assert default.ai_mode_out == ROOT / "out" / "ai-mode" and default.ai_mode_limit == 0
    assert default.ai_mode_slots == (1, 2, 3, 4)
    s = Settings.from_env({"AI_MODE_OUT": "/tmp/x", "AI_MODE_LIMIT": "5", "AI_MODE_SLOTS": "1, 2"})
    assert (s.ai_mode_out, s.ai_mode_limit, s.ai_mode_slots) == (Path("/tmp/x"), 5, (1, 2))
    assert Settings.from_env({"AI_MODE_OUT": "elsewhere"}).ai_mode_out == ROOT / "elsewhere"


def test_throughput_extrapolates_from_its_own_figures(wdi):
    """--throughput on the first publishable indicator: its years, the once-per-process year imputations of those
    years reported apart, and the whole-dataset minutes on 2 cores from the files' rate plus that once-per-process
    part for every year of the dataset (up to the rounding of the figures it prints)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from ai_mode import throughput

    out = throughput(wdi, 1, 1, cores=2)
    first = aimode.publishable_indicators(wdi)[0]
    years = aimode.publishable_years(wdi, first)
    assert out["indicators"] == 1 and out["indicator_years"] == len(years) == out["once_per_process_years"]
    rate, once = out["indicator_years_per_cpu_second"], out["once_per_process_cpu_seconds"]
    assert out["rate_with_once_per_process"] <= rate
    assert out["dataset_years"] == len({y for c in aimode.publishable_indicators(wdi)
                                        for y in aimode.publishable_years(wdi, c)})
    expected = (out["dataset_indicator_years"] / rate + once / len(years) * out["dataset_years"] * 2) / 2 / 60
    assert out["dataset_minutes_on_cores"] == pytest.approx(expected, abs=0.06 + 0.002 * expected)

"""scripts/plots.py and scripts/progress.py: the pictures of the evaluation and the benchmark, drawn from the
scripts' report structures (and read back from the markdown the scripts write, as the docs hold it), and the
progress bars of the long runs."""
from __future__ import annotations

import io
import re
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import plots  # noqa: E402
from progress import progress  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _case(code: str, year: int, default: tuple, baselines: dict, oracle: float | None = None) -> dict:
    """One case as eval_twolvlimp.evaluate_case reports it (both scenarios alike but for the default)."""
    out = {"case": code, "year": year, "n": 30, "seconds": {"default": 1.0, "baselines": 0.1, "legacy": 0.0}}
    for shift, scenario in ((0.0, "gap"), (0.2, "never")):
        nrmse, cov = default
        out[scenario] = {"default": {"nrmse": nrmse + shift, "coverage": cov, "width": 0.5, "spread": 0.9,
                                     "truth_spread": 1.0, "chosen": []},
                         "median": {"nrmse": baselines["median"], "coverage": 0.8, "width": 2.0, "spread": 0.0,
                                    "truth_spread": 1.0}}
        out[scenario].update({m: {"nrmse": v, "spread": 0.5, "truth_spread": 1.0}
                              for m, v in baselines.items() if m != "median"})
    if oracle is not None:
        out["oracle"] = oracle
    return out


@pytest.fixture(scope="module")
def eval_report():
    import eval_twolvlimp as ev

    cases = {"wdi": [_case("wdi-A", 2005, (0.1234, 0.9), {"median": 0.8, "knn": 0.7, "hgb": 0.6, "iterative": 2.5}),
                     _case("wdi-B", 2010, (0.3, 0.75), {"median": 0.9, "knn": 0.65, "hgb": 0.55, "iterative": 0.5})],
             "synthetic": [_case("syn-X", 2010, (0.2, 0.95), {"median": 1.2, "knn": 0.7, "hgb": 0.8, "iterative": 0.6},
                                 oracle=0.18)]}
    report = {"commit": "abc1234", "folds": 3, "estimators": 100, "interval": "quantile", "datasets": {}}
    for name, results in cases.items():
        summary = ev.summarise(results)
        report["datasets"][name] = {"cases": results, "summary": summary, "goals": ev.goals(summary), "seconds": 1.0}
    return report, ev.markdown(report)


def test_the_evaluation_markdown_reads_back_into_its_report(eval_report):
    report, text = eval_report
    back = plots.report_from_markdown(text)
    assert list(back["datasets"]) == ["wdi", "synthetic"]
    for name, d in report["datasets"].items():
        parsed = back["datasets"][name]["cases"]
        assert [(c["case"], c["year"]) for c in parsed] == [(c["case"], c["year"]) for c in d["cases"]]
        for mine, theirs in zip(d["cases"], parsed):
            for scenario in ("gap", "never"):
                assert set(theirs[scenario]) == set(mine[scenario])
                for method, figures in mine[scenario].items():
                    assert theirs[scenario][method]["nrmse"] == round(figures["nrmse"], 3)
                assert theirs[scenario]["default"]["coverage"] == round(mine[scenario]["default"]["coverage"], 2)
    assert back["datasets"]["synthetic"]["cases"][0]["oracle"] == 0.18
    # a second, older run of the same tables below is not mixed in
    older = text.replace("0.123", "0.999")
    assert plots.report_from_markdown(text + "\n\n" + older) == back


def test_the_docs_accuracy_tables_read_back_to_their_summaries():
    """docs/accuracy.md's latest full run: the per-case tables give its summary table's counts and means."""
    text = (ROOT / "docs" / "accuracy.md").read_text()
    report = plots.report_from_markdown(text)
    counts = {name: len(d["cases"]) for name, d in report["datasets"].items()}
    heading = re.search(r"### wdi \((\d+) cases", text)
    assert counts["wdi"] == int(heading.group(1)) and set(counts) == {"wdi", "platform", "synthetic"}
    wdi_gap = re.search(r"\| wdi, \d+ cases, \(a\) \| \*\*([\d.]+)\*\*.*?\| ([\d.]+) \(([\d.]+)\) \|", text)
    cases = report["datasets"]["wdi"]["cases"]
    assert statistics.fmean(c["gap"]["default"]["nrmse"] for c in cases) == pytest.approx(float(wdi_gap.group(1)),
                                                                                           abs=0.001)
    coverage = [c["gap"]["default"]["coverage"] for c in cases]
    assert statistics.fmean(coverage) == pytest.approx(float(wdi_gap.group(2)), abs=0.005)
    assert min(coverage) == float(wdi_gap.group(3))


def test_eval_plots_draw_both_pictures_the_same_each_time(eval_report, tmp_path):
    report, _ = eval_report
    first = plots.eval_plots(report, tmp_path / "a")
    second = plots.eval_plots(report, tmp_path / "b")
    assert [p.name for p in first] == ["eval-nrmse.png", "eval-coverage.png"]
    for a, b in zip(first, second):
        assert a.read_bytes()[:8] == PNG and a.stat().st_size > 10_000
        assert a.read_bytes() == b.read_bytes()  # regenerating unchanged results changes no file
    with pytest.raises(ValueError, match="no per-case table"):
        plots.report_from_markdown("# nothing here")


def test_the_docs_benchmark_table_reads_back_into_rows():
    rows = plots.rows_from_markdown((ROOT / "docs" / "benchmarks.md").read_text())
    simple = next(r for r in rows if r["label"].startswith("simple: MANUAL"))
    assert simple["unit"] == "s" and simple["target"] == 0.1 and simple["old"] == 0.35
    assert simple["meets_target"] is True and 0 < simple["value"] < 0.1
    memory = next(r for r in rows if r["unit"] == "MiB")
    assert memory["target"] == 1144.0
    assert len(rows) >= 15 and all(r["value"] is not None for r in rows)


def test_bench_plots_draw_the_latency_and_the_form_options(tmp_path):
    rows = [{"label": "simple", "value": 0.04, "unit": "s", "target": 0.1, "old": 0.35, "meets_target": True},
            {"label": "heavy", "value": 12.0, "unit": "s", "target": 10.0, "old": None, "meets_target": False},
            {"label": "memory", "value": 480.0, "unit": "MiB", "target": 1144.0, "old": None, "meets_target": True}]
    assert [p.name for p in plots.bench_plots({"rows": rows}, tmp_path)] == ["bench-latency.png"]
    options = [dict(interpolator=i, scheme=s, model=m, interval=v) for i in ("KNNImputer", "SimpleImputer")
               for s in ("MANUAL", "AFS") for m in ("rfr", "all") for v in ("quantile", "bootstrap")]
    matrix = {"size": {"number_predictor": 10, "estimators": 100},
              "runs": [{"options": o, "seconds": 0.1 * (k + 1)} for k, o in enumerate(options)]
              + [{"options": options[0], "error": "HTTP 500"}]}
    written = plots.bench_plots({"rows": rows, "form_matrix": matrix}, tmp_path)
    assert [p.name for p in written] == ["bench-latency.png", "bench-form-options.png"]
    assert all(p.read_bytes()[:8] == PNG for p in written)
    with pytest.raises(ValueError, match="no timed figure"):
        plots.latency_plot({"rows": rows[2:]}, tmp_path / "x.png")


def test_progress_shows_counts_rate_and_time_left():
    out = io.StringIO()
    for _ in progress(range(3), desc="wdi", unit="case", file=out):
        pass
    last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("wdi: 100%") and "| 3/3 [" in last, last
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, .*(case/s|s/case)\]$", last), last  # elapsed<left, rate


def test_the_evaluation_shows_a_bar_per_dataset(capsys, monkeypatch):
    """eval_twolvlimp.run's cases go through a bar per dataset (the evaluation itself stubbed: this is its reporting)."""
    import eval_twolvlimp as ev

    def evaluate(ds, code, year, **kwargs):
        return _case(code, year, (0.2, 0.9), {"median": 0.8, "knn": 0.7, "hgb": 0.6, "iterative": 0.5})

    monkeypatch.setattr(ev, "evaluate_case", evaluate)
    logged = []
    report = ev.run(["wdi"], None, folds=2, max_cases={"wdi": 3}, legacy_cases=0, log=logged.append,
                    scenarios=("gap", "never"))  # the scenarios the stubbed cases report
    err = capsys.readouterr().err
    assert len(report["datasets"]["wdi"]["cases"]) == len(logged) == 3
    assert "wdi (1/1 datasets): 100%" in err and "| 3/3 [" in err, err

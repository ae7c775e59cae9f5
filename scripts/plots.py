"""Pictures of the accuracy evaluation and the benchmark (matplotlib, PNG), embedded in docs/accuracy.md and
docs/benchmarks.md.

    python scripts/plots.py eval bench-results/eval.json [--out docs/img]      # the JSON of eval_twolvlimp.py --json
    python scripts/plots.py eval docs/accuracy.md [--out docs/img]             # or the per-case tables of its markdown
    python scripts/plots.py bench bench-results/benchmark.json [--out docs/img]
    python scripts/plots.py bench docs/benchmarks.md [--out docs/img]          # or its first table (no option matrix)

``make eval`` and ``make bench`` call :func:`eval_plots` and :func:`bench_plots` on the reports they have just
made (``--plots DIR``); the commands above redraw them from saved results. Files written:

* ``eval-nrmse.png``: per dataset (rows) and scenario (columns), each case's NRMSE for the default method and
  every baseline (boxes: quartiles; the dot: the mean the tables give); NRMSE above 2 is drawn at 2 and counted;
* ``eval-coverage.png``: per dataset and scenario, the coverage of each case's 90% interval (sorted), against
  the nominal 0.90 and the 0.85-0.95 band the evaluation's goals accept;
* ``bench-latency.png``: every timed figure of the benchmark (seconds, log scale) against its target;
* ``bench-form-options.png`` (when the run has the form's option matrix): the seconds of each of the 72 option
  combinations, grouped by each option of the form (base imputer, scheme, model, interval), with the median.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS_IMG = ROOT / "docs" / "img"
SCENARIO_LABELS = {"gap": "(a) gap: other years kept", "never": "(b) never reported"}
NOMINAL = 0.90
ACCEPTED = (0.85, 0.95)  # eval_twolvlimp.goals: mean coverage within, per scenario
NRMSE_CLIP = 2.0
DEFAULT_COLOUR, BASELINE_COLOUR = "#1f77b4", "#bbbbbb"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # the same results draw the same bytes (no version string either: regenerating changes no file)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def _panels(report: dict) -> tuple[list[str], list[str]]:
    names = list(report["datasets"])
    scenarios = [s for s in SCENARIO_LABELS if any(s in c for d in report["datasets"].values() for c in d["cases"])]
    scenarios += sorted({s for d in report["datasets"].values() for c in d["cases"] for s, v in c.items()
                         if isinstance(v, dict) and isinstance(v.get("default"), dict)} - set(scenarios))
    return names, scenarios


def _grid(report: dict, row_height: float) -> tuple:
    """A figure with a panel per dataset (rows) and scenario (columns), and per panel: its axes, the dataset's
    name and cases, the scenario, and whether it starts a row."""
    names, scenarios = _panels(report)
    fig, axes = plt.subplots(len(names), len(scenarios), figsize=(4.6 * len(scenarios), row_height * len(names)),
                             squeeze=False, sharey=True, layout="constrained")
    return fig, [(axes[i][j], name, report["datasets"][name]["cases"], scenario, j == 0)
                 for i, name in enumerate(names) for j, scenario in enumerate(scenarios)]


# ------------------------------------------------------------------------------------------ evaluation
def nrmse_plot(report: dict, path: Path) -> Path:
    """Each case's NRMSE per method, for every dataset (rows) and scenario (columns)."""
    fig, panels = _grid(report, 3.0)
    for ax, name, cases, scenario, row_start in panels:
        methods = _methods(cases, scenario)
        values = [[c[scenario][m]["nrmse"] for c in cases if m in c.get(scenario, {})] for m in methods]
        clipped = [[min(v, NRMSE_CLIP) for v in vs] for vs in values]
        labels = [m if len(vs) == len(cases) else f"{m} ({len(vs)})" for m, vs in zip(methods, values)]
        boxes = ax.boxplot(clipped, tick_labels=labels, widths=0.6, patch_artist=True, showfliers=True,
                           flierprops={"markersize": 2.5, "alpha": 0.5}, medianprops={"color": "black"})
        for patch, method in zip(boxes["boxes"], methods):
            patch.set_facecolor(DEFAULT_COLOUR if method == "default" else BASELINE_COLOUR)
        for k, vs in enumerate(values, start=1):
            ax.plot(k, min(statistics.fmean(vs), NRMSE_CLIP), "D", color="#d62728", markersize=4, zorder=3)
            over = sum(v > NRMSE_CLIP for v in vs)
            if over:
                ax.annotate(f"{over} > {NRMSE_CLIP:g}", (k, NRMSE_CLIP), ha="center", va="bottom", fontsize=7,
                            xytext=(0, 2), textcoords="offset points")
        ax.set_ylim(0, NRMSE_CLIP * 1.08)
        ax.tick_params(axis="x", labelsize=8, rotation=30)
        ax.set_title(f"{name}, {SCENARIO_LABELS.get(scenario, scenario)} ({len(cases)} cases)", fontsize=9)
        if row_start:
            ax.set_ylabel("NRMSE (RMSE / std)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Masked holdout: NRMSE per case, default vs every baseline (lower is better; red: mean)",
                 fontsize=10)
    return _save(fig, path)


def _methods(cases: list[dict], scenario: str) -> list[str]:
    seen: list[str] = []
    for c in cases:
        for m in c.get(scenario, {}):
            if m not in seen and isinstance(c[scenario][m], dict) and "nrmse" in c[scenario][m]:
                seen.append(m)
    return sorted(seen, key=lambda m: (m != "default", m == "legacy", seen.index(m)))


def coverage_plot(report: dict, path: Path) -> Path:
    """Coverage of each case's 90% interval (the default method), sorted, against the nominal 0.90."""
    fig, panels = _grid(report, 2.7)
    for ax, name, cases, scenario, row_start in panels:
        cov = sorted(c[scenario]["default"]["coverage"] for c in cases
                     if "coverage" in c.get(scenario, {}).get("default", {}))
        ax.axhspan(*ACCEPTED, color="#2ca02c", alpha=0.12, label="0.85-0.95 (goal for the mean)")
        ax.axhline(NOMINAL, color="#2ca02c", linewidth=1, label="nominal 0.90")
        ax.plot(range(1, len(cov) + 1), cov, "o", markersize=3, color=DEFAULT_COLOUR, label="a case")
        if cov:
            mean = statistics.fmean(cov)
            ax.axhline(mean, color=DEFAULT_COLOUR, linestyle="--", linewidth=1, label="mean")
            ax.text(0.98, 0.04, f"mean {mean:.2f}, lowest {cov[0]:.2f}", transform=ax.transAxes, ha="right",
                    fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(min([0.6] + cov) - 0.02, 1.02)
        ax.set_xlabel("cases, sorted by coverage", fontsize=8)
        ax.set_title(f"{name}, {SCENARIO_LABELS.get(scenario, scenario)}", fontsize=9)
        if row_start:
            ax.set_ylabel("coverage of the 90% interval")
        if ax is panels[0][0]:
            ax.legend(fontsize=6.5, loc="center right")
        ax.grid(alpha=0.3)
    fig.suptitle("Masked holdout: interval coverage per case (default method)", fontsize=10)
    return _save(fig, path)


def eval_plots(report: dict, out: Path = DOCS_IMG) -> list[Path]:
    """The evaluation's pictures from its report (eval_twolvlimp.run, or its JSON)."""
    return [nrmse_plot(report, Path(out) / "eval-nrmse.png"), coverage_plot(report, Path(out) / "eval-coverage.png")]


_SUMMARY = re.compile(r"<details><summary>(?P<name>.+?), scenario (?P<scenario>\w+): every case \(NRMSE\)</summary>")
_CASE = re.compile(r"(?P<code>\S+)(?: \(best possible (?P<oracle>[\d.]+)\))?")


def report_from_markdown(text: str) -> dict:
    """The per-case figures of an evaluation from its markdown (eval_twolvlimp.markdown, as in docs/accuracy.md):
    the first run in the text; a later table of a dataset and scenario already read belongs to an older run."""
    report: dict = {"datasets": {}}
    lines = text.splitlines()
    for at, line in enumerate(lines):
        m = _SUMMARY.search(line)
        if not m:
            continue
        name, scenario = m.group("name"), m.group("scenario")
        dataset = report["datasets"].setdefault(name, {"cases": []})
        if any(scenario in c for c in dataset["cases"]):
            break  # an older run
        end = next((k for k, ln in enumerate(lines[at + 1:], start=at + 1) if ln.startswith("</details>")), len(lines))
        rows = [ln for ln in lines[at + 1:end] if ln.startswith("|")]
        header = [h.strip() for h in rows[0].strip("|").split("|")]
        methods = header[4:]
        by_key = {(c["case"], c["year"]): c for c in dataset["cases"]}
        for row in rows[2:]:
            cells = [c.strip() for c in row.strip("|").split("|")]
            case = _CASE.fullmatch(cells[0])
            key = (case.group("code"), int(cells[1]))
            entry = by_key.get(key)
            if entry is None:
                entry = {"case": key[0], "year": key[1], "n": int(cells[2])}
                if case.group("oracle"):
                    entry["oracle"] = float(case.group("oracle"))
                dataset["cases"].append(entry)
                by_key[key] = entry
            nrmse, cov, width, spread = (x.strip() for x in cells[3].split("/"))
            entry[scenario] = {"default": {"nrmse": float(nrmse), "coverage": float(cov), "width": float(width),
                                           "spread": None if spread == "-" else float(spread)}}
            for method, cell in zip(methods, cells[4:]):
                if cell:
                    entry[scenario][method] = {"nrmse": float(cell)}
    if not report["datasets"]:
        raise ValueError("no per-case table (<details><summary>NAME, scenario S: every case (NRMSE)) in the text")
    return report


# ------------------------------------------------------------------------------------------ benchmark
def _short(label: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(label, width)[:3])


def latency_plot(report: dict, path: Path) -> Path:
    """Every figure in seconds (benchmark rows) against its target, log scale."""
    rows = [r for r in report["rows"] if r.get("unit") == "s" and r.get("value") is not None]
    if not rows:
        raise ValueError("no timed figure in the report")
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(rows) + 1.2), layout="constrained")
    y = list(range(len(rows)))[::-1]
    colours = ["#d62728" if r.get("meets_target") is False else DEFAULT_COLOUR for r in rows]
    ax.barh(y, [r["value"] for r in rows], color=colours, height=0.6, label="this service")
    targets = [(yy, r["target"]) for yy, r in zip(y, rows) if r.get("target")]
    if targets:
        ax.plot([t for _, t in targets], [yy for yy, _ in targets], "|", color="black", markersize=16,
                markeredgewidth=2, label="target")
    olds = [(yy, r["old"]) for yy, r in zip(y, rows) if r.get("old")]
    if olds:
        ax.plot([o for _, o in olds], [yy for yy, _ in olds], "x", color="#7f7f7f", markersize=7, label="old service")
    for yy, r in zip(y, rows):
        ax.annotate(f"{r['value']:.3g} s", (r["value"], yy), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    ax.set_yticks(y, [_short(r["label"]) for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.set_title("Benchmark: each timed figure against its target (red: missed)", fontsize=10)
    return _save(fig, path)


def form_options_plot(report: dict, path: Path) -> Path:
    """The option matrix: each combination's wall seconds (and CPU seconds, when measured), grouped by each option
    of the form, with the median. CPU seconds stay near the work done when the machine is busy; wall seconds do not."""
    runs = [r for r in (report.get("form_matrix") or {}).get("runs", []) if "error" not in r and "seconds" in r]
    if not runs:
        raise ValueError("the report has no option matrix (benchmark.py --matrix, or the full run)")
    options = list(runs[0]["options"])
    measures = [(key, label) for key, label in (("seconds", "wall seconds"), ("cpu_seconds", "CPU seconds"))
                if all(r.get(key) is not None for r in runs)]
    fig, axes = plt.subplots(len(measures), len(options), figsize=(3.2 * len(options), 2.9 * len(measures) + 0.4),
                             sharey="row", squeeze=False, layout="constrained")
    for row, (key, label) in enumerate(measures):
        for ax, option in zip(axes[row], options):
            values = list(dict.fromkeys(r["options"][option] for r in runs))
            for k, value in enumerate(values):
                secs = [r[key] for r in runs if r["options"][option] == value]
                ax.plot([k + (i % 5 - 2) * 0.05 for i in range(len(secs))], secs, "o", markersize=3, alpha=0.6,
                        color=DEFAULT_COLOUR)
                median = statistics.median(secs)
                ax.plot([k - 0.3, k + 0.3], [median, median], color="black", linewidth=1.5)
                ax.annotate(f"{median:.2f}", (k + 0.32, median), fontsize=7, va="center")
            ax.set_xticks(range(len(values)), values, fontsize=8, rotation=20)
            if row == 0:
                ax.set_title(option, fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        axes[row][0].set_ylabel(f"{label}, first of its kind", fontsize=8)
    size = (report.get("form_matrix") or {}).get("size") or {}
    fig.suptitle(f"The dashboard form's {len(runs)} option combinations ({size.get('number_predictor', '?')} "
                 f"predictors, {size.get('estimators', '?')} trees): seconds per option (line: median)", fontsize=10)
    return _save(fig, path)


def bench_plots(report: dict, out: Path = DOCS_IMG) -> list[Path]:
    """The benchmark's pictures from its report (benchmark.run, or its JSON)."""
    written = [latency_plot(report, Path(out) / "bench-latency.png")]
    if (report.get("form_matrix") or {}).get("runs"):
        written.append(form_options_plot(report, Path(out) / "bench-form-options.png"))
    return written


_VALUE = re.compile(r"^(?P<value>[\d.]+) (?P<unit>s|MiB|x)\b")
_TARGET = re.compile(r"^(?:<=|<) (?P<target>[\d.]+) (?:s|MiB|x)(?: (?P<verdict>ok|MISSED))?")


def rows_from_markdown(text: str) -> list[dict]:
    """The rows of the first benchmark table in the text (benchmark.markdown, as in docs/benchmarks.md)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| figure | this service | target | old service"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        label, value, target, old = (c.strip() for c in line.strip("|").split("|")[:4])
        v, t = _VALUE.match(value), _TARGET.match(target)
        rows.append({"label": label, "value": float(v.group("value")) if v else None,
                     "unit": v.group("unit") if v else None, "target": float(t.group("target")) if t else None,
                     "meets_target": None if not t or not t.group("verdict") else t.group("verdict") == "ok",
                     "old": float(old.split()[0]) if old not in ("-", "") else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("eval", "bench"))
    parser.add_argument("source", type=Path, help="a JSON report, or the markdown holding its tables")
    parser.add_argument("--out", type=Path, default=DOCS_IMG, help=f"folder of the PNGs (default {DOCS_IMG})")
    args = parser.parse_args(argv)
    text = args.source.read_text()
    if args.source.suffix == ".json":
        report = json.loads(text)
    elif args.kind == "eval":
        report = report_from_markdown(text)
    else:
        report = {"rows": rows_from_markdown(text)}
    for path in (eval_plots if args.kind == "eval" else bench_plots)(report, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

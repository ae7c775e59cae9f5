"""AI Mode on one machine (``make ai-mode``): every published indicator's file for each model slot, in one run.

    python scripts/ai_mode.py [--workers N] [--accuracy-sample N]

Reads the configured dataset (the service's settings: ``DATASET_PATH``, or the blob settings; embedded ``data/wdi``
by default) and writes, under ``AI_MODE_OUT`` (default ``out/ai-mode``), what the dashboard's AI Mode reads from
``<base>/ml/...``:

* ``ml/model<N>/<dataset>/<code>.json`` per slot N (``AI_MODE_SLOTS``, default 1,2,3,4) and indicator
  (``AI_MODE_LIMIT=n``: the first n of the sorted publishable indicators), made by
  :func:`models.twolvlimp.aimode.indicator_file`; each written whole (a temporary file renamed), so a rerun
  replaces files and never leaves half of one;
* ``ml/ML Model Metadata.json``: what each slot runs, with its accuracy measured in this run (masked holdout on
  ``--accuracy-sample`` indicator-years, :func:`models.twolvlimp.aimode.holdout_accuracy`);
* ``summary.json`` (beside ``ml/``, not read by the page): counts, failures (indicator and reason), timings.

The work is spread over ``--workers`` processes (default: the usable CPUs), one (slot, indicator) at a time; a
progress bar (tqdm) shows it and the log says the rate and the time left.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import joblib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.errors import ModelInputError  # noqa: E402
from models.twolvlimp import aimode  # noqa: E402
from shared.dataset import Dataset  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.store import build_store  # noqa: E402

log = logging.getLogger("sids.ai_mode")

_ds: Dataset | None = None   # each worker process's dataset (inherited from the parent, or loaded once)


def load_dataset(settings: Settings) -> Dataset:
    return build_store(settings).get()


def _init(settings: Settings, ds: Dataset | None) -> None:
    global _ds
    _ds = ds if ds is not None else load_dataset(settings)


def compute_file(task: tuple[int, str]) -> dict:
    """One (slot, indicator): the file, or the reason it cannot be published."""
    slot, code = task
    started, cpu = time.perf_counter(), time.process_time()
    try:
        doc = aimode.indicator_file(_ds, code, slot)
        out = {"doc": doc, "years": len(doc["data"])}
    except ModelInputError as exc:
        out = {"error": exc.msg}
    except Exception as exc:  # one indicator's failure must not stop the run: reported in the summary
        out = {"error": f"{type(exc).__name__}: {exc}"}
    return {"slot": slot, "code": code, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu, **out}


def compute_accuracy(task: tuple[int, str, int]) -> dict:
    slot, code, year = task
    return {"slot": slot, **aimode.holdout_accuracy(_ds, slot, [(code, year)])}


def write_json(path: Path, doc) -> None:
    """Write the whole file or nothing (a temporary file renamed over it): idempotent, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, allow_nan=False, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def run(settings: Settings, workers: int, accuracy_sample: int, progress: bool = True) -> dict:
    from tqdm import tqdm

    started = time.perf_counter()
    ds = load_dataset(settings)
    unknown = [s for s in settings.ai_mode_slots if s not in aimode.SLOTS]
    if unknown:
        raise SystemExit(f"AI_MODE_SLOTS: unknown slot(s) {unknown}; the slots are {', '.join(map(str, aimode.SLOTS))}")
    codes = aimode.publishable_indicators(ds)
    if settings.ai_mode_limit:
        codes = codes[:settings.ai_mode_limit]
    slots = list(settings.ai_mode_slots)
    out = Path(settings.ai_mode_out)
    sample = aimode.accuracy_sample(ds, accuracy_sample) if accuracy_sample else []
    tasks = [(s, c) for s in slots for c in codes]
    log.info("AI Mode: dataset %s (version %s): %d indicators x %d slot(s) = %d files, accuracy sample of %d "
             "indicator-years, %d worker process(es), into %s", ds.source, ds.version, len(codes), len(slots),
             len(tasks), len(sample), workers, out)

    failures, written, years, cpu = [], 0, 0, 0.0
    accuracy_parts: dict[int, list[dict]] = {s: [] for s in slots}
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    initargs = (settings, ds if context.get_start_method() == "fork" else None)
    _init(*initargs)
    pool = context.Pool(workers, initializer=_init, initargs=initargs) if workers > 1 else None
    mapper = (lambda f, items: pool.imap_unordered(f, items)) if pool else map
    try:
        bar = tqdm(total=len(tasks) + len(sample) * len(slots), unit="file", disable=not progress, smoothing=0.05)
        last_log, finished = time.perf_counter(), 0
        for done in mapper(compute_file, tasks):
            bar.update()
            finished += 1
            cpu += done["cpu_seconds"]
            if "error" in done:
                failures.append({"slot": done["slot"], "indicator": done["code"], "error": done["error"]})
                log.warning("model %d, %s: not published: %s", done["slot"], done["code"], done["error"])
            else:
                write_json(out / aimode.file_path(done["slot"], done["code"]), done["doc"])
                written += 1
                years += done["years"]
            if time.perf_counter() - last_log > 30:
                last_log = time.perf_counter()
                elapsed = last_log - started
                log.info("AI Mode: %d/%d files, %.2f files/s, about %.0f s left", finished, len(tasks),
                         finished / elapsed, (len(tasks) - finished) * elapsed / finished)
        files_seconds = time.perf_counter() - started
        for part in mapper(compute_accuracy, [(s, c, y) for s in slots for c, y in sample]):
            bar.update()
            accuracy_parts[part.pop("slot")].append(part)
        bar.close()
    finally:
        if pool:
            pool.close()
            pool.join()
    accuracy = {s: aimode.combine_accuracy(parts) for s, parts in accuracy_parts.items() if parts}
    write_json(out / aimode.METADATA_PATH, aimode.model_metadata(accuracy))
    seconds = time.perf_counter() - started
    summary = {
        "dataset": {"source": ds.source, "version": ds.version},
        "slots": slots, "indicators": len(codes), "files": written, "indicator_years": years,
        "failures": failures, "seconds": round(seconds, 1), "files_seconds": round(files_seconds, 1),
        "workers": workers, "cpu_seconds_files": round(cpu, 1),
        "indicator_years_per_cpu_second": round(years / cpu, 3) if cpu else None,
        "accuracy": {str(s): {k: v for k, v in a.items() if k != "protocol"} for s, a in accuracy.items()},
        "accuracy_sample": [[c, y] for c, y in sample],
    }
    write_json(out / "summary.json", summary)
    log.info("AI Mode: %d files (%d indicator-years) written, %d not published, in %.1f s (files %.1f s; %.2f "
             "indicator-years per CPU second); accuracy %s", written, years, len(failures), seconds, files_seconds,
             summary["indicator_years_per_cpu_second"] or 0,
             {s: (round(a["nrmse"], 3) if a["nrmse"] is not None else None,
                  round(a["coverage90"], 3) if a["coverage90"] is not None else None) for s, a in accuracy.items()})
    return summary


def throughput(ds: Dataset, slot: int, indicators: int, cores: int = 2) -> dict:
    """Indicator-years per CPU second of one slot on ``indicators`` publishable indicators spread evenly over the
    sorted codes (each whole: every year), in this process, and what that makes for the whole dataset (every
    publishable indicator, every year, one slot) on ``cores`` processes, assuming they scale linearly. CPU seconds
    (this process's), not wall time: on a machine other work keeps busy they are the steadier figure.

    What each worker process pays once, whatever it computes, is measured apart: the year's shared imputation of each
    year (:func:`aimode.year_imputation`; the first file of a year pays it in a run) and the method's imports.
    The rate counts the files' own CPU; the extrapolation adds the once-per-process part for every year of the
    dataset and each of the ``cores`` processes (``rate_with_once_per_process``: the same sample with that part
    spread over it, the figure this measured before it was set apart)."""
    from models.twolvlimp.imputers import one_blas_thread

    codes = aimode.publishable_indicators(ds)
    picked = [codes[i] for i in sorted({round(k * (len(codes) - 1) / max(indicators - 1, 1))
                                        for k in range(min(indicators, len(codes)))})]
    total_years = sum(len(aimode.publishable_years(ds, c)) for c in codes)
    dataset_years = sorted({y for c in codes for y in aimode.publishable_years(ds, c)})
    needed = sorted({y for c in picked for y in aimode.publishable_years(ds, c)})
    view, interpolator = aimode.batch_view(ds), aimode.SLOTS[slot].interpolator
    cpu0 = time.process_time()
    import models.twolvlimp.method  # noqa: F401  (its imports: scikit-learn's estimators, the stack)
    with one_blas_thread():
        for year in needed:
            aimode.year_imputation(view, year, interpolator)
    once = time.process_time() - cpu0
    per_year = once / len(needed) if needed else 0.0
    years, cpu, wall = 0, 0.0, 0.0
    for code in picked:
        started, cpu0 = time.perf_counter(), time.process_time()
        try:
            years += len(aimode.indicator_file(ds, code, slot)["data"])
        except ModelInputError:
            pass
        cpu += time.process_time() - cpu0
        wall += time.perf_counter() - started
    rate = years / cpu if cpu else None
    dataset_cpu = total_years / rate + per_year * len(dataset_years) * cores if rate else None
    return {"slot": slot, "indicators": len(picked), "indicator_years": years, "cpu_seconds": round(cpu, 1),
            "wall_seconds": round(wall, 1), "indicator_years_per_cpu_second": round(rate, 3) if rate else None,
            "once_per_process_cpu_seconds": round(once, 1), "once_per_process_years": len(needed),
            "rate_with_once_per_process": round(years / (cpu + once), 3) if cpu + once else None,
            "dataset_indicators": len(codes), "dataset_indicator_years": total_years,
            "dataset_years": len(dataset_years), "cores": cores,
            "dataset_minutes_on_cores": round(dataset_cpu / cores / 60, 1) if dataset_cpu else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: the usable CPUs)")
    parser.add_argument("--accuracy-sample", type=int, default=None,
                        help="indicator-years of the masked holdout per slot (0: none; default AI_MODE_ACCURACY_SAMPLE, "
                             "120)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the log still reports)")
    parser.add_argument("--throughput", type=int, metavar="N", default=0,
                        help="write nothing: measure indicator-years per CPU second of the first slot of AI_MODE_SLOTS "
                             "on N indicators and extrapolate the whole dataset on 2 cores (JSON on stdout)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    if args.throughput:
        print(json.dumps(throughput(load_dataset(settings), settings.ai_mode_slots[0], args.throughput), indent=1))
        return 0
    workers = args.workers or joblib.cpu_count()
    sample = settings.ai_mode_accuracy_sample if args.accuracy_sample is None else args.accuracy_sample
    run(settings, workers, max(0, sample), progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The work a request needs: declared by the method before it runs, tallied while it runs.

A request's compute time is the sum of its *jobs*: the base imputation, the predictor selection, each
fold's forest or boosting fit, the ridge fits, the stacking. A job has a kind and a few size *terms*
(``{"tree_rows": trees x rows x log2(rows), ...}``); the cost model (:mod:`models.twolvlimp.costs`)
prices each term, and each job (the term ``job``), in seconds.

* Each method declares the jobs a request will run (``method.plan_default``, ``legacy.plan_legacy``),
  with the same constants and size functions it runs them with (the functions below).
* While it runs, the method marks the same jobs with :func:`job`; inside :func:`tallied` they are
  recorded with their measured seconds (wall and CPU). Outside a tally marking costs nothing.

The tally is the one piece of a computation's surroundings that still reaches its code through a context
variable (the fit pool and the budget are handed down in :class:`~models.twolvlimp.tree_search.FitContext`): it
only measures (tests, ``scripts/calibrate_costs.py``), never changes what runs, and its marks sit in the numeric
functions themselves, which would otherwise all take one more argument for a measurement that is off in service.

So the estimate is derived from what the method says it does, and a test compares the declared
plan with the tally of real runs (``tests/unit/test_work_plan.py``): a method change that the plan
does not follow fails there, not silently in /estimate. ``scripts/calibrate_costs.py`` fits the
seconds per term from tallies.
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator, Mapping


@dataclass(frozen=True)
class Job:
    """One unit of work: ``kind`` names it, ``terms`` size it. ``phase`` is ``prepare`` (memoised per
    data version: only the first request of its kind pays it) or ``model``; ``parallel`` jobs run on
    the request's fit pool beside each other, the others one after another on the request's thread."""

    kind: str
    terms: Mapping[str, float]
    phase: str = "model"
    parallel: bool = False


@dataclass(frozen=True)
class WorkPlan:
    """The jobs one request will run, and the group its measured times are learned under."""

    jobs: tuple[Job, ...]
    group: str                        # the model phase's, e.g. "model/rfr" or "legacy/rfr+etr+gbr"
    prepare_group: str = ""           # the prepare phase's, e.g. "prepare/KNNImputer/AFS"

    def phase(self, name: str) -> tuple[Job, ...]:
        return tuple(j for j in self.jobs if j.phase == name)

    @property
    def prepare_cold(self) -> bool:
        return any(j.phase == "prepare" for j in self.jobs)

    def totals(self) -> dict[str, dict[str, float]]:
        """Per kind: the number of jobs (``job``) and the sum of each term."""
        return summarise(self.jobs)


@dataclass
class TalliedJob:
    job: Job
    seconds: float        # wall clock, enclosed jobs included
    cpu_seconds: float    # CPU time of the thread that ran it (every job runs on one thread), its own only


@dataclass
class Tally:
    """The jobs a computation ran, from any of its threads."""

    jobs: list[TalliedJob] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: TalliedJob) -> None:
        with self._lock:
            self.jobs.append(entry)

    def totals(self) -> dict[str, dict[str, float]]:
        return summarise([t.job for t in self.jobs])

    def seconds_by_kind(self, cpu: bool = True) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.jobs:
            out[t.job.kind] = out.get(t.job.kind, 0.0) + (t.cpu_seconds if cpu else t.seconds)
        return out


def summarise(jobs) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for j in jobs:
        row = out.setdefault(j.kind, {"job": 0.0})
        row["job"] += 1
        for term, value in j.terms.items():
            row[term] = row.get(term, 0.0) + float(value)
    return out


_active: ContextVar[Tally | None] = ContextVar("twolvlimp_tally", default=None)


@contextmanager
def tallied() -> Iterator[Tally]:
    """Record the jobs the computation in this block runs (on this thread and on the fit pool: the
    tree search submits fits in a copy of this context)."""
    tally = Tally()
    token = _active.set(tally)
    try:
        yield tally
    finally:
        _active.reset(token)


_enclosing: ContextVar[list | None] = ContextVar("twolvlimp_enclosing_job", default=None)


@contextmanager
def job(kind: str, phase: str = "model", parallel: bool = False, **terms: float) -> Iterator[dict]:
    """Mark a job of the method. Yields its terms: a size known only at the end (boosting stages
    actually grown, iterations actually run) is set in the dict before the block ends.

    Jobs may enclose others on the same thread (the stacking encloses its ridge fits): a job's CPU
    seconds are its own, without those of the jobs it encloses."""
    tally = _active.get()
    sizes = dict(terms)
    if tally is None:
        yield sizes
        return
    nested = [0.0, threading.get_ident()]   # CPU seconds of the jobs this one encloses on its thread
    outer = _enclosing.get()
    token = _enclosing.set(nested)
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield sizes
    finally:
        spent = time.thread_time() - cpu
        _enclosing.reset(token)
        if outer is not None and outer[1] == nested[1]:   # fits on the pool run on their own threads
            outer[0] += spent
        tally.add(TalliedJob(Job(kind, dict(sizes), phase, parallel), time.perf_counter() - wall,
                             max(0.0, spent - nested[0])))


# ----------------------------------------------------------------------- size terms
def nlog(n: float) -> float:
    n = max(float(n), 2.0)
    return n * math.log2(n)


def tree_terms(trees: float, rows: float, features: float) -> dict[str, float]:
    """Growing ``trees`` trees on ``rows`` x ``features`` (all features tried at each split)."""
    return {"trees": float(trees), "tree_rows": trees * nlog(rows), "tree_cells": trees * nlog(rows) * max(features, 1)}


def svd_cells(rows: float, cols: float) -> float:
    """The work of one thin SVD of a rows x cols matrix."""
    return float(rows) * float(cols) * float(min(rows, cols))

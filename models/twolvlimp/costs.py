"""What a request's work costs in seconds: priced from its plan, corrected by this instance's measurements.

* :class:`UnitCosts`: seconds per size term of each kind of job (``unit_costs.json``, fitted by
  ``scripts/calibrate_costs.py`` from the CPU seconds of tallied jobs on the reference machine).
* :func:`plan_seconds`: a plan's wall-clock seconds: its sequential jobs one after another, its
  parallel jobs (the fold fits) spread over the fit pool's workers (longest first on the least busy).
* :class:`DurationModel`: learns, per phase and request group, the ratio of measured to planned
  seconds on this instance (its CPU, its load); before any measurement the plan's price stands alone.
"""
from __future__ import annotations

import heapq
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from models.twolvlimp.work import Job, WorkPlan

UNIT_COSTS_FILE = Path(__file__).with_name("unit_costs.json")


@dataclass(frozen=True)
class UnitCosts:
    seconds: Mapping[str, Mapping[str, float]]   # kind -> term -> seconds per unit of the term
    measured_on: Mapping[str, str]

    @classmethod
    def load(cls, path: Path = UNIT_COSTS_FILE) -> "UnitCosts":
        raw = json.loads(Path(path).read_text())
        return cls(seconds=raw["seconds"], measured_on=raw.get("measured_on", {}))

    def job_seconds(self, job: Job) -> float:
        rates = self.seconds.get(job.kind)
        if rates is None:  # a kind never calibrated: a test keeps this from happening (test_work_plan)
            raise KeyError(f"no unit costs for jobs of kind {job.kind!r}: run scripts/calibrate_costs.py")
        return rates.get("job", 0.0) + sum(rates.get(term, 0.0) * value for term, value in job.terms.items())


def makespan(durations: list[float], workers: int) -> float:
    """Wall time of independent jobs on ``workers`` threads, longest first to the least busy."""
    if not durations:
        return 0.0
    loads = [0.0] * max(1, min(int(workers), len(durations)))
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def plan_seconds(jobs: tuple[Job, ...], costs: UnitCosts, workers: int) -> float:
    sequential = sum(costs.job_seconds(j) for j in jobs if not j.parallel)
    return sequential + makespan([costs.job_seconds(j) for j in jobs if j.parallel], workers)


class DurationModel:
    """Expected seconds of a plan on this instance: the plan priced by :class:`UnitCosts`, times the ratio
    of measured to priced seconds learned per phase and group (exponentially weighted, in logs)."""

    def __init__(self, costs: UnitCosts, workers: int, smoothing: float = 0.5):
        self.costs = costs
        self.workers = max(1, int(workers))
        self.smoothing = smoothing
        self._log_ratio: dict[str, float] = {}
        self._count = 0
        self._lock = threading.Lock()

    def prior(self, plan: WorkPlan, phase: str) -> float:
        return plan_seconds(plan.phase(phase), self.costs, self.workers)

    def _update(self, group: str, prior: float, seconds: float) -> None:
        if prior <= 0 or seconds <= 0:
            return
        r = math.log(seconds / prior)
        for key in (group, group.split("/")[0]):  # the group, and its phase as a fallback
            old = self._log_ratio.get(key)
            self._log_ratio[key] = r if old is None else (1 - self.smoothing) * old + self.smoothing * r

    def record(self, plan: WorkPlan, prepare_seconds: float, model_seconds: float) -> None:
        with self._lock:
            if plan.prepare_group:
                self._update(plan.group, self.prior(plan, "model"), model_seconds)
                if plan.prepare_cold:
                    self._update(plan.prepare_group, self.prior(plan, "prepare"), prepare_seconds)
            else:  # one phase (legacy)
                self._update(plan.group, self.prior(plan, "model"), prepare_seconds + model_seconds)
            self._count += 1

    def _ratio(self, group: str) -> float:
        r = self._log_ratio.get(group, self._log_ratio.get(group.split("/")[0]))
        return 1.0 if r is None else math.exp(r)

    def estimate(self, plan: WorkPlan) -> float:
        with self._lock:
            total = self.prior(plan, "model") * self._ratio(plan.group)
            if plan.prepare_cold:
                total += self.prior(plan, "prepare") * self._ratio(plan.prepare_group)
        return total

    @property
    def measurements(self) -> int:
        with self._lock:
            return self._count

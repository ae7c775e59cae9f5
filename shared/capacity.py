"""What bounds heavy work on one instance: compute slots with a bounded queue, a time budget per
request, and cancellation when the client has gone away.

No HTTP here: the errors raised are the capacity errors defined below (:class:`Overloaded`,
:class:`OverTimeBudget`, :class:`TimeBudgetExceeded`, :class:`RequestCancelled`), which carry no
status; the HTTP layer maps them to answers (``shared/http.py``, ``ERROR_ANSWERS``). A handler makes a :class:`Budget` (a deadline, and the request's cancellation
flag when the host provides one) and passes it to the runtime, which hands its ``check`` down to the model
code explicitly (``models.twolvlimp.tree_search.FitContext``); the model code calls ``check(stage)`` between
steps (folds, fits). The local host sets the cancellation flag when the client disconnects
(:func:`run_cancellable`): the one value that still travels in a context variable, from the host's
connection handling to the handler's :meth:`Budget.for_request`, past the Functions programming model
(which has no parameter for it).
"""
from __future__ import annotations

import math
import sys
import threading
import time
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

from shared.telemetry import note


class CapacityError(Exception):
    """Work this instance cannot do now, or not within the request's time budget (the request itself is
    valid). Like the models' errors, a message safe to show the client and a context of plain values."""

    def __init__(self, msg: str, **context: Any):
        super().__init__(msg)
        self.msg = msg
        self.context = context


class Overloaded(CapacityError):
    """This instance cannot take the work now (its queue is full, or the work waited its time budget
    away in the queue); trying again makes sense after ``retry_after_seconds``."""

    def __init__(self, msg: str, retry_after_seconds: int = 1, **context: Any):
        super().__init__(msg, **context)
        self.retry_after_seconds = max(1, int(retry_after_seconds))


class OverTimeBudget(CapacityError):
    """Refused before any work: the cost model expects the request to overrun its time budget
    (the context names changes that would fit)."""


class TimeBudgetExceeded(CapacityError):
    """The work overran the request's time budget and was stopped."""


class RequestCancelled(CapacityError):
    """The client went away, so its work was stopped; nobody reads the answer."""


_cancel_event: ContextVar[threading.Event | None] = ContextVar("sids_cancel_event", default=None)


def run_cancellable(event: threading.Event, fn: Callable, *args):
    """Call ``fn(*args)`` with ``event`` as the current request's cancellation flag (meant to run
    inside ``contextvars.copy_context().run`` on the thread that handles the request)."""
    token = _cancel_event.set(event)
    try:
        return fn(*args)
    finally:
        _cancel_event.reset(token)


def cancel_event() -> threading.Event | None:
    """The current request's cancellation flag, if the host provides one."""
    return _cancel_event.get()


class Budget:
    """A deadline (``seconds`` from now; None: none) and an optional cancellation flag."""

    def __init__(self, seconds: float | None, cancelled: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self.started = clock()
        self.deadline = math.inf if seconds is None else self.started + seconds
        self._cancelled = cancelled

    @classmethod
    def for_request(cls, seconds: float | None) -> "Budget":
        """A budget starting now, carrying the current request's cancellation flag."""
        return cls(seconds, cancel_event())

    def remaining(self) -> float:
        return self.deadline - self._clock()

    def elapsed(self) -> float:
        return self._clock() - self.started

    def waited_for_slot(self, expected_seconds: float) -> bool:
        """True when work expected to take ``expected_seconds`` fitted the whole budget but no longer
        fits what is left of it (the rest was spent waiting): better refused now than stopped later."""
        return expected_seconds <= (self.seconds or math.inf) and expected_seconds > self.remaining()

    @property
    def cancelled(self) -> bool:
        return self._cancelled is not None and self._cancelled.is_set()

    def check(self, stage: str = "") -> None:
        """Raise if the client has gone or the deadline has passed; otherwise return at once."""
        if self.cancelled:
            raise RequestCancelled("The client disconnected; its work was stopped" + (f" at {stage}" if stage else ""))
        if self._clock() > self.deadline:
            where = f" (stopped at {stage})" if stage else ""
            raise TimeBudgetExceeded(
                f"The request overran its time budget of {self.seconds:g} s after {self.elapsed():.1f} s and was "
                f"stopped{where}. Ask for less work (fewer trees, model other than 'all', another interpolator) "
                "or try again when the service is less busy.",
                budget_seconds=self.seconds, elapsed_seconds=round(self.elapsed(), 2), stage=stage or None)


LIGHT_REQUEST_SWITCH_INTERVAL = 0.001  # seconds


def favour_light_requests() -> None:
    """Let the interpreter switch threads every millisecond (CPython's default: 5 ms).

    Fits hold the GIL between the tree builder's releases; a light request (/health, a look-up)
    needs it a dozen times on its way, and waits up to a switch interval each time. Measured with
    heavy predictions queued on 2 cores: /health p99 126 ms at 5 ms, 71 ms at 1 ms, no slower fits.
    """
    if sys.getswitchinterval() > LIGHT_REQUEST_SWITCH_INTERVAL:
        sys.setswitchinterval(LIGHT_REQUEST_SWITCH_INTERVAL)


_gates: "weakref.WeakSet[ComputeGate]" = weakref.WeakSet()


def gates() -> list["ComputeGate"]:
    """The compute gates alive in this process (telemetry's queue depth gauge sums them)."""
    return list(_gates)


class ComputeGate:
    """At most ``slots`` heavy computations at once, at most ``max_queued`` more waiting (first
    come, first served); beyond that :class:`Overloaded` at once (an HTTP 503 with Retry-After).

    Waiting costs no CPU: a waiting thread sleeps on a condition, waking every ``poll`` seconds
    to notice its client leaving or its budget running out.
    """

    def __init__(self, slots: int, max_queued: int, poll: float = 1.0):
        self.slots = max(1, int(slots))
        self.max_queued = max(0, int(max_queued))
        self.poll = poll
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0
        self._mean_hold = 1.0  # seconds a computation holds a slot (exponentially weighted)
        _gates.add(self)

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._waiting

    def _expected_wait(self, ahead: int) -> float:
        return (ahead + 1) * self._mean_hold / self.slots

    def retry_after(self) -> int:
        """Seconds until a queued request would probably be served (1 to 120)."""
        with self._cond:
            return int(min(120, max(1, math.ceil(self._expected_wait(self._waiting)))))

    def _overloaded(self, msg: str) -> Overloaded:
        wait = int(min(120, max(1, math.ceil(self._expected_wait(self._waiting)))))
        return Overloaded(msg, retry_after_seconds=wait, running=self._running, queued=self._waiting,
                          max_queued=self.max_queued)

    @contextmanager
    def slot(self, budget: Budget | None = None) -> Iterator[None]:
        queued = time.monotonic()
        with self._cond:
            if self._running < self.slots and self._waiting == 0:
                self._running += 1
                note(queue_wait_seconds=0.0)
            else:
                if self._waiting >= self.max_queued:
                    raise self._overloaded(f"This instance is busy: {self._running} computations running and "
                                           f"{self._waiting} queued (the limit). Retry later.")
                if budget is not None and self._expected_wait(self._waiting) > budget.remaining():
                    raise self._overloaded("This instance is busy: the queue ahead of this request would not "
                                           "be served within its time budget. Retry later.")
                self._waiting += 1
                try:
                    while self._running >= self.slots:
                        timeout = self.poll
                        if budget is not None:
                            if budget.cancelled:
                                budget.check("queue")  # raises RequestCancelled
                            left = budget.remaining()
                            if left <= 0:
                                raise self._overloaded(
                                    f"This instance is busy: the request waited its whole time budget "
                                    f"({budget.seconds:g} s) for a free computation slot. Retry later.")
                            timeout = min(timeout, left)
                        self._cond.wait(timeout)
                    self._running += 1
                finally:
                    self._waiting -= 1
                    note(queue_wait_seconds=round(time.monotonic() - queued, 4))  # the request's telemetry
        started = time.monotonic()
        try:
            yield
        finally:
            held = time.monotonic() - started
            with self._cond:
                self._running -= 1
                self._mean_hold = 0.7 * self._mean_hold + 0.3 * held
                self._cond.notify()

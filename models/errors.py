"""The errors model code raises, and the code that runs it (``shared/capacity.py``'s checkpoints).

Models know nothing of HTTP: every error here is a :class:`ModelError` (a message for the client and
a context of plain values), and the HTTP layer (``shared/http.py``, ``MODEL_ERROR_ANSWERS``) gives
each type its status, ``type`` and headers in one place.

* :class:`ModelInputError`: a request the data or the method cannot serve (422 ``value_error``);
* :class:`CapacityError`: work this instance cannot do now or within the request's time budget:
  :class:`Overloaded`, :class:`OverTimeBudget`, :class:`TimeBudgetExceeded`, :class:`RequestCancelled`.

Every instance carries its own message: nothing here is a shared, mutable template.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable


class ModelError(Exception):
    """An error whose message (and context) is safe to show to the client."""

    def __init__(self, msg: str, **context: Any):
        super().__init__(msg)
        self.msg = msg
        self.context = context


class ModelInputError(ModelError, ValueError):
    """A well-formed request the data cannot serve; ``msg`` says what is allowed instead."""


class CapacityError(ModelError):
    """Work this instance cannot do now, or not within the request's time budget (the request itself is valid)."""


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


def did_you_mean(value: str, choices: Iterable[Any], limit: int = 3) -> str:
    """" Did you mean A, B?" for the choices closest to ``value`` (empty when none is close)."""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=limit, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""

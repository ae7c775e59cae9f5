"""The errors model code raises.

Models know nothing of HTTP: every error here is a :class:`ModelError` (a message for the client and
a context of plain values), and the HTTP layer (``shared/http.py``, ``ERROR_ANSWERS``) gives
each type its status, ``type`` and headers in one place.

* :class:`ModelInputError`: a request the data or the method cannot serve (422 ``value_error``).

Work an instance cannot do now or within a request's time budget raises the capacity errors of
``shared/capacity.py`` (:class:`~shared.capacity.CapacityError`), which model code may use too.

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


def did_you_mean(value: str, choices: Iterable[Any], limit: int = 3) -> str:
    """" Did you mean A, B?" for the choices closest to ``value`` (empty when none is close)."""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=limit, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""

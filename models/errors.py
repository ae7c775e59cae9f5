"""The one error type model code raises for a request its data or method cannot serve.

Models know nothing of HTTP: the HTTP layer (``shared/http.py``) maps :class:`ModelInputError`
to a 422 ``{"detail": {"msg", "type": "value_error", "context"}}`` in one place.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable


class ModelInputError(ValueError):
    """A well-formed request the data cannot serve; ``msg`` says what is allowed instead."""

    def __init__(self, msg: str, **context: Any):
        super().__init__(msg)
        self.msg = msg
        self.context = context


def did_you_mean(value: str, choices: Iterable[Any], limit: int = 3) -> str:
    """" Did you mean A, B?" for the choices closest to ``value`` (empty when none is close)."""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=limit, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""

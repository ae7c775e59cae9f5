"""Errors a handler or a model may raise, and the HTTP answer each one becomes.

Every error instance carries its own message: nothing here is a shared,
mutable template (the old service reused one and leaked values between requests).
"""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error whose message is safe to show to the client."""

    status: int = 500
    error_type: str = "error"

    def __init__(self, msg: str, headers: dict[str, str] | None = None, **context: Any):
        super().__init__(msg)
        self.msg = msg
        self.context = context
        self.headers = dict(headers or {})  # sent with the answer, e.g. Allow or Retry-After

    def body(self) -> dict:
        detail = {"msg": self.msg, "type": self.error_type}
        if self.context:
            detail["context"] = self.context
        return {"detail": detail}


class UnsupportedValue(ServiceError):
    """A well-formed request whose values the data does not support (unknown target, year out of range)."""

    status = 422
    error_type = "value_error"


class BadRequest(ServiceError):
    status = 400
    error_type = "bad_request"


class NotFound(ServiceError):
    status = 404
    error_type = "not_found"


class MethodNotAllowed(ServiceError):
    status = 405
    error_type = "method_not_allowed"


class PayloadTooLarge(ServiceError):
    status = 413
    error_type = "payload_too_large"


class DatasetUnavailable(ServiceError):
    status = 503
    error_type = "dataset_unavailable"


class Overloaded(ServiceError):
    """This instance cannot take the work now (its queue is full, or the work waited its whole time
    budget in the queue); ``retry_after`` seconds is when trying again makes sense."""

    status = 503
    error_type = "overloaded"

    def __init__(self, msg: str, retry_after: int = 1, **context: Any):
        self.retry_after = max(1, int(retry_after))
        super().__init__(msg, headers={"Retry-After": str(self.retry_after)}, **context)


class TimeBudgetExceeded(ServiceError):
    """The work overran the request's time budget and was stopped."""

    status = 504
    error_type = "time_budget_exceeded"


class OverTimeBudget(ServiceError):
    """Refused before any work: the cost model expects the request to overrun the time budget."""

    status = 422
    error_type = "over_time_budget"


class RequestCancelled(ServiceError):
    """The client went away, so its work was stopped; nobody reads this answer (499, as nginx logs it)."""

    status = 499
    error_type = "cancelled"


class UnsupportedMediaType(ServiceError):
    status = 415
    error_type = "unsupported_media_type"

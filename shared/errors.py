"""Errors the HTTP layer and the shared platform code raise, and the HTTP answer each one becomes.

Model code raises the model-level errors of ``models/errors.py`` instead (no statuses there);
``shared/http.py`` maps those.

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


class LengthRequired(ServiceError):
    status = 411
    error_type = "length_required"


class PayloadTooLarge(ServiceError):
    status = 413
    error_type = "payload_too_large"


class DatasetUnavailable(ServiceError):
    status = 503
    error_type = "dataset_unavailable"


class UnsupportedMediaType(ServiceError):
    status = 415
    error_type = "unsupported_media_type"

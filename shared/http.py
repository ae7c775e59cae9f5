"""Thin HTTP layer shared by every blueprint.

:class:`ApiBlueprint` is a real ``azure.functions.Blueprint``. Its ``get``/``post``
decorators register a native HTTP function whose body runs the same pipeline for
every route::

    request -> CORS preflight / size limit -> JSON + pydantic validation
            -> handler (plain Python in, plain Python out) -> JSON response

and attach a :class:`RouteSpec` to it, from which the OpenAPI document and
``/params`` are generated. Errors become FastAPI-compatible JSON bodies; unexpected
ones are logged with a request id and never leak a stack trace.
"""

import gzip
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import azure.functions as func
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.errors import PayloadTooLarge, ServiceError
from shared.settings import get_settings
from shared.validation import JsonBodyError, json_error_detail, load_json, validation_detail

log = logging.getLogger("sids.http")

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class RouteSpec:
    """What a route takes and returns: the source of its OpenAPI operation and /params entry."""

    path: str
    method: str
    summary: str
    description: str
    tags: list[str]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: Any = None
    main: bool = False
    raw: bool = False
    content_type: str = "application/json"
    blueprint: "ApiBlueprint | None" = None
    errors: tuple[int, ...] = ()
    hidden: bool = False
    _adapter: TypeAdapter | None = field(default=None, repr=False)

    def adapter(self) -> TypeAdapter | None:
        if self._adapter is None and self.response is not None:
            self._adapter = TypeAdapter(self.response)
        return self._adapter


def json_response(payload: Any, status: int = 200, adapter: TypeAdapter | None = None) -> func.HttpResponse:
    if isinstance(payload, BaseModel):
        body = payload.model_dump_json(by_alias=True).encode()
    elif adapter is not None:
        # Validating against the declared response type keeps every answer true to the documented schema.
        body = adapter.dump_json(adapter.validate_python(payload), by_alias=True)
    else:
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    return func.HttpResponse(body=body, status_code=status, mimetype="application/json", charset="utf-8")


def error_response(status: int, detail: Any) -> func.HttpResponse:
    return json_response({"detail": detail}, status=status)


def _request_id(req: func.HttpRequest) -> str:
    given = req.headers.get(REQUEST_ID_HEADER, "")
    return given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex


def _cors_headers(req: func.HttpRequest, preflight: bool) -> dict[str, str]:
    origin = (req.headers.get("origin") or "").rstrip("/")
    headers = {"Vary": "Origin"}
    if origin and origin != "*" and origin in get_settings().cors_origins:  # never a wildcard
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = "x-request-id, x-compute-seconds"
        if preflight:
            headers["Access-Control-Allow-Methods"] = ", ".join(ALLOWED_METHODS)
            requested = req.headers.get("access-control-request-headers")
            headers["Access-Control-Allow-Headers"] = requested or "Content-Type"
            headers["Access-Control-Max-Age"] = "600"
    return headers


def _maybe_gzip(req: func.HttpRequest, body: bytes, headers: dict[str, str]) -> bytes:
    accepts = "gzip" in (req.headers.get("accept-encoding") or "").lower()
    if accepts and len(body) >= get_settings().gzip_min_bytes:
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = headers.get("Vary", "") + ", Accept-Encoding" if headers.get("Vary") else "Accept-Encoding"
        return gzip.compress(body, compresslevel=5)
    return body


def _finish(req: func.HttpRequest, resp: func.HttpResponse, request_id: str, preflight: bool = False) -> func.HttpResponse:
    headers = dict(resp.headers)
    headers.update(_cors_headers(req, preflight))
    headers[REQUEST_ID_HEADER] = request_id
    headers.setdefault("X-Content-Type-Options", "nosniff")
    body = resp.get_body() or b""
    if headers.get("Content-Encoding") is None and resp.mimetype == "application/json":
        body = _maybe_gzip(req, body, headers)
    headers.pop("Content-Type", None)
    headers.pop("content-type", None)
    return func.HttpResponse(body=body, status_code=resp.status_code, headers=headers,
                             mimetype=resp.mimetype, charset=resp.charset or "utf-8")


def check_body_size(req: func.HttpRequest) -> None:
    limit = get_settings().max_body_bytes
    declared = req.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
    if len(req.get_body() or b"") > limit:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")


class RequestInvalid(Exception):
    def __init__(self, detail: list[dict]):
        self.detail = detail


def parse_input(spec: RouteSpec, req: func.HttpRequest) -> Any:
    try:
        if spec.body is not None:
            return spec.body.model_validate(load_json(req.get_body() or b""))
        if spec.query is not None:
            return spec.query.model_validate(dict(req.params))
    except JsonBodyError as exc:
        raise RequestInvalid(json_error_detail(exc))
    except ValidationError as exc:
        raise RequestInvalid(validation_detail(exc, "body" if spec.body is not None else "query"))
    return None


def run_pipeline(spec: RouteSpec, handler: Callable, req: func.HttpRequest) -> func.HttpResponse:
    """Answer one request: the same steps for every route of every blueprint."""
    started = time.perf_counter()
    request_id = _request_id(req)
    preflight = req.method.upper() == "OPTIONS"
    try:
        if preflight:
            resp = func.HttpResponse(status_code=204, headers={"Allow": ", ".join(ALLOWED_METHODS)})
        elif spec.raw:
            resp = handler(req)
        else:
            check_body_size(req)
            value = parse_input(spec, req)
            result = handler(value) if (spec.body or spec.query) else handler()
            resp = result if isinstance(result, func.HttpResponse) else json_response(result, adapter=spec.adapter())
    except RequestInvalid as exc:
        resp = error_response(422, exc.detail)
    except ServiceError as exc:
        resp = json_response(exc.body(), status=exc.status)
    except Exception:
        log.exception("unhandled error request_id=%s %s %s", request_id, req.method, spec.path)
        resp = error_response(500, {"msg": "Internal server error; quote the request id to the operators.",
                                    "type": "internal_error", "request_id": request_id})
    elapsed = time.perf_counter() - started
    resp = _finish(req, resp, request_id, preflight)
    log.info("%s /%s -> %d in %.1f ms request_id=%s", req.method, spec.path, resp.status_code, elapsed * 1000, request_id)
    return resp


class ApiBlueprint(func.Blueprint):
    """A Functions blueprint whose routes carry their request/response models.

    ``name`` is the model's name (also its route prefix and OpenAPI tag), ``label`` the
    human title shown in /params. ``uses_dataset`` says whether the model reads the
    shared dataset (a service running only models that do not need not load it).
    """

    def __init__(self, name: str, label: str | None = None, description: str = "",
                 prefix: str | None = None, uses_dataset: bool = True, is_model: bool = True):
        super().__init__(http_auth_level=func.AuthLevel.ANONYMOUS)
        self.name = name
        self.label = label or name
        self.description = description
        self.prefix = (name if prefix is None else prefix).strip("/")
        self.uses_dataset = uses_dataset
        self.is_model = is_model
        self.specs: list[RouteSpec] = []

    def _full_path(self, path: str) -> str:
        return "/".join(p for p in (self.prefix, path.strip("/")) if p)

    def endpoint(self, path: str, method: str, *, summary: str | None = None, query: type[BaseModel] | None = None,
                 body: type[BaseModel] | None = None, response: Any = None, main: bool = False, raw: bool = False,
                 methods: tuple[str, ...] | None = None, content_type: str = "application/json",
                 errors: tuple[int, ...] = (), hidden: bool = False, function_name: str | None = None):
        full = self._full_path(path)

        def register(fn: Callable):
            doc = (fn.__doc__ or "").strip()
            spec = RouteSpec(path=full, method=method, summary=summary or doc.split("\n")[0] or fn.__name__,
                             description=doc, tags=[self.label if self.is_model else "Platform"], query=query,
                             body=body, response=response, main=main, raw=raw, content_type=content_type,
                             blueprint=self, errors=errors, hidden=hidden)

            def handler(req: func.HttpRequest) -> func.HttpResponse:
                return run_pipeline(spec, fn, req)

            handler.__name__ = fn.__name__
            handler.__doc__ = fn.__doc__
            handler.__api__ = spec
            name = function_name or re.sub(r"[^A-Za-z0-9_]", "_", f"{self.name}_{path}" if path else self.name)
            route_methods = list(methods or (method, "OPTIONS"))
            self.function_name(name)(self.route(route=full, methods=route_methods, auth_level=func.AuthLevel.ANONYMOUS)(handler))
            self.specs.append(spec)
            return fn

        return register

    def get(self, path: str, **kwargs):
        return self.endpoint(path, "GET", **kwargs)

    def post(self, path: str, **kwargs):
        return self.endpoint(path, "POST", **kwargs)

"""Thin HTTP layer shared by every blueprint.

:class:`ApiBlueprint` is a real ``azure.functions.Blueprint``. Its ``get``/``post``
decorators register **one native HTTP function per path**, listing every method the
host can route, so the host's first-match routing (``shared/routing.py``) never lets a
wrong method fall through to another function. The function (a :class:`PathFunction`)
answers each method itself::

    request -> OPTIONS preflight | 405 with Allow | 411 without a Content-Length | size limit
            -> 415 unless JSON -> pydantic validation -> handler (plain Python in, plain Python out)
            -> JSON response (HEAD: the GET answer's status and headers, no body)

and carries a :class:`RouteSpec` per method, from which the OpenAPI document and
``/params`` are generated. Errors become FastAPI-compatible JSON bodies; unexpected
ones are logged with a request id and never leak a stack trace.
"""

import gzip
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import azure.functions as func
from pydantic import BaseModel, TypeAdapter, ValidationError

from models.errors import ModelError, ModelInputError
from shared import memory
from shared.capacity import CapacityError, OverTimeBudget, Overloaded, RequestCancelled, TimeBudgetExceeded
from shared.errors import LengthRequired, MethodNotAllowed, PayloadTooLarge, ServiceError, UnsupportedMediaType
from shared.routing import host_order_key
from shared import telemetry
from shared.settings import get_settings
from shared.validation import JsonBodyError, json_error_detail, load_json, validation_detail

log = logging.getLogger("sids.http")

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_JSON_MEDIA_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")
# The name of the one catch-all function; every other function's name sorts before it (see ApiBlueprint).
FALLBACK_FUNCTION_NAME = "zz_unmatched_path"


def log_safe(text: str, limit: int = 300) -> str:
    """``text`` with control characters escaped, so that a request cannot forge log lines."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit])


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
    alias_of: str | None = None
    status: int = 200                                  # the success status (202: accepted, poll for the result)
    auth_level: func.AuthLevel = func.AuthLevel.ANONYMOUS  # FUNCTION: the host asks for a function key
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


@dataclass(frozen=True)
class ErrorAnswer:
    """The HTTP answer to a model-level error: status, the body's ``type`` and extra headers."""

    status: int
    error_type: str
    headers: Callable[[Any], dict[str, str]] = lambda exc: {}


# The one place the status-free errors (models/errors.py, shared/capacity.py) get their HTTP statuses, types and headers.
ERROR_ANSWERS: dict[type[ModelError | CapacityError], ErrorAnswer] = {
    ModelInputError: ErrorAnswer(422, "value_error"),  # a request the data cannot serve
    OverTimeBudget: ErrorAnswer(422, "over_time_budget"),  # refused before any work
    Overloaded: ErrorAnswer(503, "overloaded", lambda exc: {"Retry-After": str(exc.retry_after_seconds)}),
    TimeBudgetExceeded: ErrorAnswer(504, "time_budget_exceeded"),  # stopped between steps
    RequestCancelled: ErrorAnswer(499, "cancelled"),  # the client has gone (as nginx logs it); nobody reads it
}


def model_error_response(exc: ModelError | CapacityError) -> func.HttpResponse | None:
    """``{"detail": {"msg", "type", "context"}}`` with the status and headers of ``exc``'s type
    (or of its nearest mapped base class); None for a type the table does not know."""
    answer = next((ERROR_ANSWERS[c] for c in type(exc).__mro__ if c in ERROR_ANSWERS), None)
    if answer is None:
        return None
    telemetry.note(error_type=answer.error_type)
    detail: dict[str, Any] = {"msg": exc.msg, "type": answer.error_type}
    if exc.context:
        detail["context"] = exc.context
    resp = json_response({"detail": detail}, status=answer.status)
    resp.headers.update(answer.headers(exc))
    return resp


def _request_id(req: func.HttpRequest, invocation_id: str | None = None) -> str:
    """The client's x-request-id when it is safe to echo; else the Functions invocation id (so that the id a
    user quotes finds the invocation in Application Insights); else a new one."""
    given = req.headers.get(REQUEST_ID_HEADER, "")
    if _SAFE_REQUEST_ID.match(given):
        return given
    return invocation_id if invocation_id and _SAFE_REQUEST_ID.match(invocation_id) else uuid.uuid4().hex


def _cors_headers(req: func.HttpRequest, preflight: bool, allowed: tuple[str, ...]) -> dict[str, str]:
    origin = (req.headers.get("origin") or "").rstrip("/")
    headers = {"Vary": "Origin"}
    if origin and origin != "*" and origin in get_settings().cors_origins:  # never a wildcard
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = "x-request-id, x-compute-seconds"
        if preflight:
            headers["Access-Control-Allow-Methods"] = ", ".join(allowed)
            requested = req.headers.get("access-control-request-headers")
            headers["Access-Control-Allow-Headers"] = requested or "Content-Type"
            headers["Access-Control-Max-Age"] = "600"
    return headers


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip, honouring q-values (``gzip;q=0`` refuses it)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding:
            weights[coding.strip()] = q
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def _maybe_gzip(req: func.HttpRequest, body: bytes, headers: dict[str, str]) -> bytes:
    if accepts_gzip(req.headers.get("accept-encoding") or "") and len(body) >= get_settings().gzip_min_bytes:
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = headers.get("Vary", "") + ", Accept-Encoding" if headers.get("Vary") else "Accept-Encoding"
        return gzip.compress(body, compresslevel=5)
    return body


def _finish(req: func.HttpRequest, resp: func.HttpResponse, request_id: str, allowed: tuple[str, ...],
            preflight: bool = False, head: bool = False) -> func.HttpResponse:
    """The answer with CORS, request id, Allow and gzip added; for HEAD (``head``) the GET answer's status and
    headers without its body (RFC 9110 9.3.2; the Functions host sends what the function returns)."""
    headers = dict(resp.headers)
    headers.update(_cors_headers(req, preflight, allowed))
    headers[REQUEST_ID_HEADER] = request_id
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if resp.status_code == 405 or preflight:
        headers.setdefault("Allow", ", ".join(allowed))
    body = resp.get_body() or b""
    if headers.get("Content-Encoding") is None and resp.mimetype == "application/json":
        body = _maybe_gzip(req, body, headers)
    if head:
        body = b""
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


def check_body_length(req: func.HttpRequest) -> None:
    """A body route needs a Content-Length: the Functions host forwards a body only with one, so a chunked
    body (or none at all) arrives empty; 411 says so instead of a 422 about an empty document."""
    if req.headers.get("content-length") is None:
        raise LengthRequired("This endpoint needs a JSON body sent with a Content-Length header "
                             "(a chunked body without a length is not forwarded)")


def check_json_content_type(req: func.HttpRequest) -> None:
    """A JSON body must say so: text/plain, form and absent types are what a page may send without a preflight."""
    media_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if not _JSON_MEDIA_TYPE.match(media_type):
        shown = log_safe(media_type, 100) or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {shown})")


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


def _answer(spec: RouteSpec, handler: Callable, req: func.HttpRequest) -> func.HttpResponse:
    if spec.raw:
        return handler(req)
    if spec.body is not None:
        check_body_length(req)
    check_body_size(req)
    if spec.body is not None and req.get_body():
        check_json_content_type(req)
    value = parse_input(spec, req)
    telemetry.note_request(value)
    result = handler(value) if (spec.body or spec.query) else handler()
    return result if isinstance(result, func.HttpResponse) else json_response(result, spec.status, spec.adapter())


class PathFunction:
    """The one Functions function serving a path: the handler and spec of each method it answers.

    OPTIONS (CORS preflight) is answered for every path; HEAD on a path served by GET is answered
    like GET without a body; a method the path does not serve gets a JSON 405 with an ``Allow``
    header, from here rather than from another function.
    """

    def __init__(self, path: str):
        self.path = path
        self.auth_level = func.AuthLevel.ANONYMOUS
        self.handlers: dict[str, tuple[RouteSpec, Callable]] = {}

    @property
    def specs(self) -> list[RouteSpec]:
        return [spec for spec, _ in self.handlers.values()]

    @property
    def allowed(self) -> tuple[str, ...]:
        """The methods this path answers, as the Allow header lists them."""
        head = ("HEAD",) if "GET" in self.handlers and "HEAD" not in self.handlers else ()
        return (*self.handlers, *head, "OPTIONS")

    def handler_for(self, method: str) -> tuple[RouteSpec, Callable] | None:
        """What answers ``method``: its own handler, or GET's for HEAD."""
        found = self.handlers.get(method)
        if found is None and method == "HEAD":
            found = self.handlers.get("GET")
        return found

    def add(self, spec: RouteSpec, handler: Callable) -> None:
        if spec.method in self.handlers:
            raise ValueError(f"{spec.method} /{self.path} is registered twice")
        self.handlers[spec.method] = (spec, handler)

    def _internal_error(self, request_id: str, method: str) -> func.HttpResponse:
        log.exception("unhandled error request_id=%s %s /%s", request_id, log_safe(method, 20), self.path,
                      extra={"request_id": request_id, "route": f"/{self.path}"})
        return error_response(500, {"msg": "Internal server error; quote the request id to the operators.",
                                     "type": "internal_error", "request_id": request_id})

    def __call__(self, req: func.HttpRequest, context: func.Context | None = None) -> func.HttpResponse:
        method = req.method.upper()
        invocation_id = getattr(context, "invocation_id", None)
        request_id = _request_id(req, invocation_id)
        record = telemetry.begin(log_safe(method, 20), f"/{self.path}", request_id, context, req.url)
        try:
            return self._serve(req, method, request_id, record)
        finally:
            telemetry.end(record)

    def _serve(self, req: func.HttpRequest, method: str, request_id: str,
               record: telemetry.RequestRecord) -> func.HttpResponse:
        started = time.perf_counter()
        preflight = method == "OPTIONS"
        try:
            if preflight:
                resp = func.HttpResponse(status_code=204)
            elif (found := self.handler_for(method)) is None:
                raise MethodNotAllowed(f"Method {log_safe(method, 20)} is not allowed on /{self.path}; "
                                       f"use {', '.join(m for m in self.allowed if m != 'OPTIONS')}")
            else:
                resp = _answer(*found, req)
        except RequestInvalid as exc:
            resp = error_response(422, exc.detail)
        except (ModelError, CapacityError) as exc:  # raised by model code and shared/capacity.py: mapped by ERROR_ANSWERS
            resp = model_error_response(exc) or self._internal_error(request_id, method)
        except ServiceError as exc:
            resp = json_response(exc.body(), status=exc.status)
            resp.headers.update(exc.headers)
        except Exception as exc:
            record.error = exc
            resp = self._internal_error(request_id, method)
        elapsed = time.perf_counter() - started
        if elapsed >= memory.HEAVY_SECONDS:
            memory.release_soon()  # give the freed memory of heavy work back to the system (issue 19)
        resp = _finish(req, resp, request_id, self.allowed, preflight, head=method == "HEAD")
        telemetry.note_response(resp.headers)
        ids = "".join(f" {k}={v}" for k, v in (("invocation_id", record.invocation_id), ("trace_id", record.trace_id)) if v)
        log.info("%s /%s -> %d in %.1f ms request_id=%s%s", log_safe(method, 20), self.path, resp.status_code,
                 elapsed * 1000, request_id, ids, extra=record.log_fields(resp.status_code, elapsed))
        record.status = resp.status_code
        return resp


class ApiBlueprint(func.Blueprint):
    """A Functions blueprint whose routes carry their request/response models.

    ``name`` is the model's name (also its route prefix and OpenAPI tag), ``label`` the
    human title shown in /params. ``uses_dataset`` says whether the model reads the
    shared dataset (a service running only models that do not need not load it).

    Function names are ``model_<path>`` (``platform_<path>`` for the platform), so
    whatever a model is called, every function sorts before the catch-all
    (:data:`FALLBACK_FUNCTION_NAME`) in the host's order and no route is shadowed by it.
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
        self._functions: dict[str, PathFunction] = {}

    def _full_path(self, path: str) -> str:
        return "/".join(p for p in (self.prefix, path.strip("/")) if p)

    def function_name_for(self, full_path: str) -> str:
        kind = "model" if self.is_model else "platform"
        return re.sub(r"[^A-Za-z0-9_]", "_", f"{kind}_{full_path}")

    def _path_function(self, full_path: str, function_name: str | None = None,
                       auth_level: func.AuthLevel = func.AuthLevel.ANONYMOUS) -> PathFunction:
        found = self._functions.get(full_path)
        if found is not None:
            if found.auth_level != auth_level:
                raise ValueError(f"/{full_path}: one function serves a path, so its methods share one auth level")
            return found
        name = function_name or self.function_name_for(full_path)
        if name != FALLBACK_FUNCTION_NAME and host_order_key(name) >= host_order_key(FALLBACK_FUNCTION_NAME):
            raise ValueError(f"function name {name!r} would sort after {FALLBACK_FUNCTION_NAME!r}, whose catch-all "
                             "route would then answer for it under the host's routing")
        if name != FALLBACK_FUNCTION_NAME and "{*" in full_path:
            raise ValueError(f"/{full_path}: only {FALLBACK_FUNCTION_NAME} may declare a catch-all route")
        path_function = PathFunction(full_path)
        path_function.auth_level = auth_level

        # ``context`` (the worker passes it by that name): the invocation id and the host's W3C trace context.
        def handler(req: func.HttpRequest, context: func.Context = None) -> func.HttpResponse:
            return path_function(req, context)

        handler.__name__ = name
        handler.__api__ = path_function
        self.function_name(name)(self.route(route=full_path, methods=list(func.HttpMethod),
                                            auth_level=auth_level)(handler))
        self._functions[full_path] = path_function
        return path_function

    def endpoint(self, path: str, method: str, *, summary: str | None = None, query: type[BaseModel] | None = None,
                 body: type[BaseModel] | None = None, response: Any = None, main: bool = False, raw: bool = False,
                 content_type: str = "application/json", errors: tuple[int, ...] = (), hidden: bool = False,
                 function_name: str | None = None, aliases: tuple[str, ...] = (), status: int = 200,
                 auth_level: func.AuthLevel = func.AuthLevel.ANONYMOUS):
        """Register ``fn`` for ``method`` on ``path`` (under the prefix); ``aliases`` are other full paths
        that serve it too (documented as deprecated). ``auth_level=FUNCTION``: the host serves the path only
        to callers with a function key (``x-functions-key`` header or ``code`` query parameter)."""
        full = self._full_path(path)

        def register(fn: Callable):
            doc = (fn.__doc__ or "").strip()
            spec = RouteSpec(path=full, method=method, summary=summary or doc.split("\n")[0] or fn.__name__,
                             description=doc, tags=[self.label if self.is_model else "Platform"], query=query,
                             body=body, response=response, main=main, raw=raw, content_type=content_type,
                             blueprint=self, errors=errors, hidden=hidden, status=status, auth_level=auth_level)
            self._path_function(full, function_name, auth_level).add(spec, fn)
            self.specs.append(spec)
            for alias in aliases:
                alias_spec = replace(spec, path=alias.strip("/"), main=False, alias_of=full,
                                     summary=f"Alias of /{full} (the dashboard's first ML release)")
                self._path_function(alias_spec.path).add(alias_spec, fn)
                self.specs.append(alias_spec)
            return fn

        return register

    def get(self, path: str, **kwargs):
        return self.endpoint(path, "GET", **kwargs)

    def post(self, path: str, **kwargs):
        return self.endpoint(path, "POST", **kwargs)

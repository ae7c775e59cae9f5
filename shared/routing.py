"""The app's registered HTTP functions, and how the Azure Functions host routes a request to them.

This is the one routing table: the functions registered on the app. The local host, the test
client, the OpenAPI document and /params all read it, and route exactly as the host does
(``../shared/reference/functions-host.md``):

* functions are sorted by name, ordinal and case-insensitive, and the **first** function whose
  route template and method both match answers; there is no precedence by specificity;
* a method no matching function lists is not routed (the host answers an empty 404);
* query parameters with an empty value are dropped, a body is forwarded only with a
  ``Content-Length`` above 0, and header names arrive lower-cased;
* the response's ``Content-Type`` is the one the ``azure-functions`` library sets.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger
from azure.functions.http import HttpResponseConverter

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\??\}")

# The methods a function may list (azure.functions.HttpMethod); the host routes no others.
HOST_METHODS = tuple(m.value for m in func.HttpMethod)
# Paths the host itself owns: they never reach a function.
HOST_RESERVED_PREFIXES = ("admin", "runtime")


def host_order_key(function_name: str) -> str:
    """The host sorts functions with StringComparison.OrdinalIgnoreCase: code points of the upper-cased names."""
    return function_name.upper()


@dataclass(frozen=True)
class Route:
    """One HTTP function of the app: its route template, methods and handler."""

    name: str
    template: str
    methods: tuple[str, ...]
    handler: Callable[[func.HttpRequest], Any]
    pattern: re.Pattern
    auth_level: str = "anonymous"   # "function" / "admin": the host asks for a key

    def needs_key(self) -> bool:
        return self.auth_level != "anonymous"

    @property
    def api(self):
        """What the function serves per method (a :class:`shared.http.PathFunction`), if it is one of ours."""
        return getattr(self.handler, "__api__", None)

    @property
    def is_catch_all(self) -> bool:
        return "{*" in self.template

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.strip("/"))
        return None if found is None else {k: v for k, v in found.groupdict().items() if v is not None}


def compile_template(template: str) -> re.Pattern:
    parts, pos = [], 0
    for m in _PARAM.finditer(template):
        parts.append(re.escape(template[pos:m.start()]))
        parts.append(f"(?P<{m.group(2)}>.*)" if m.group(1) else f"(?P<{m.group(2)}>[^/]+)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    regex = "".join(parts)
    # A catch-all segment may also be empty, which removes the slash before it.
    regex = regex.replace("/(?P<", "/?(?P<") if "{*" in template else regex
    return re.compile(regex, re.IGNORECASE)


def _route_of(function) -> Route | None:
    trigger = function.get_trigger()
    if not isinstance(trigger, HttpTrigger):
        return None
    template = (trigger.route or function.get_function_name()).strip("/")
    methods = tuple(getattr(m, "value", str(m)).upper() for m in (trigger.methods or ["GET", "POST"]))
    level = getattr(trigger.auth_level, "value", trigger.auth_level) or "function"  # the host's default is FUNCTION
    return Route(name=function.get_function_name(), template=template, methods=methods,
                 handler=function.get_user_function(), pattern=compile_template(template), auth_level=str(level).lower())


def routes_of_functions(functions) -> list[Route]:
    """The HTTP functions in the order the host tries them."""
    routes = [r for r in (_route_of(f) for f in functions) if r is not None]
    return sorted(routes, key=lambda r: host_order_key(r.name))


def app_routes(app: func.FunctionApp) -> list[Route]:
    """Routes of ``app`` in host order, without calling ``app.get_functions()``.

    The Functions worker calls ``get_functions()`` once when it indexes the app and a
    second call fails on duplicate names, so code running inside the app reads the
    registered builders instead.
    """
    return routes_of_functions(builder._function for builder in app._function_builders)


def resolve(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    """The function the host gives ``method path`` to (the first match in host order), and its route params."""
    if path.strip("/").split("/")[0].lower() in HOST_RESERVED_PREFIXES:
        return None, {}
    for route in routes:
        if method.upper() not in route.methods:
            continue
        params = route.match(path)
        if params is not None:
            return route, params
    return None, {}


def host_request(method: str, url: str, headers: dict[str, str], query_string: str, body: bytes,
                 route_params: dict[str, str]) -> func.HttpRequest:
    """The request as the host hands it to a Python function."""
    headers = {k.lower(): v for k, v in headers.items()}
    declared = headers.get("content-length", "").strip()
    forwarded = body if declared.isdigit() and int(declared) > 0 else b""
    params = {k: v for k, v in parse_qsl(query_string, keep_blank_values=True) if v != ""}
    return func.HttpRequest(method.upper(), url, headers=headers, params=params, route_params=route_params,
                            body=forwarded)


@dataclass
class HostReply:
    status: int
    headers: dict[str, str]
    body: bytes


NOT_ROUTED = HostReply(404, {}, b"")
KEY_HEADER = "x-functions-key"
UNAUTHORIZED = HostReply(401, {"content-type": "application/json"},
                         b'{"detail":{"msg":"This route needs a function key: the x-functions-key header or the code '
                         b'query parameter.","type":"unauthorized"}}')


def has_key(headers: dict[str, str], query_string: str, keys: tuple[str, ...]) -> bool:
    """Whether a request carries one of ``keys`` as the host reads it: ``x-functions-key`` header or ``code`` parameter."""
    given = [v for k, v in headers.items() if k.lower() == KEY_HEADER]
    given += [v for k, v in parse_qsl(query_string) if k == "code"]
    return any(hmac.compare_digest(g.encode(), k.encode()) for g in given for k in keys if k)


def dispatch(routes: list[Route], method: str, path: str, query_string: str = "", headers: dict | None = None,
             body: bytes = b"", host: str = "localhost", keys: tuple[str, ...] = ()) -> tuple[HostReply, Route | None]:
    """Answer one request as the host would: route it, ask a keyed function's caller for one of ``keys``
    (401 without; the host's own body is empty, ours says why), call the function, encode its response."""
    route, route_params = resolve(routes, method, path)
    if route is None:
        return NOT_ROUTED, None
    if route.needs_key() and not has_key(headers or {}, query_string, keys):
        return UNAUTHORIZED, route
    url = f"http://{host}{path}" + (f"?{query_string}" if query_string else "")
    request = host_request(method, url, headers or {}, query_string, body, route_params)
    response = route.handler(request)
    return encode_response(response), route


def encode_response(response: func.HttpResponse) -> HostReply:
    """Status, headers and body as the azure-functions library hands them to the host."""
    datum = HttpResponseConverter.encode(response, expected_type=None).value
    headers = {name.lower(): value.value for name, value in datum["headers"].items()}
    return HostReply(int(datum["status_code"].value), headers, datum["body"].value or b"")


_published: dict[str, Any] = {"app": None, "routes": None}


def publish(app: func.FunctionApp) -> None:
    """Make the app's routes visible to the platform endpoints (OpenAPI, /params, 404/405)."""
    _published["app"] = app
    _published["routes"] = None


def published_routes() -> list[Route]:
    if _published["routes"] is None:
        app = _published["app"]
        _published["routes"] = [] if app is None else app_routes(app)
    return _published["routes"]

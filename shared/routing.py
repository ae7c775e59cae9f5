"""Read the routes a FunctionApp has registered, and match paths against them.

This is the one routing table: the functions registered on the app. The local
host, the OpenAPI document, /params and the JSON 404/405 answers all read it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\??\}")


@dataclass(frozen=True)
class Route:
    """One HTTP function of the app: its route template, methods and handler."""

    name: str
    template: str
    methods: tuple[str, ...]
    handler: Callable[[func.HttpRequest], Any]
    pattern: re.Pattern

    @property
    def spec(self):
        return getattr(self.handler, "__api__", None)

    @property
    def is_catch_all(self) -> bool:
        return "{*" in self.template

    def precedence(self) -> tuple:
        # Literal routes before parameterised ones, catch-all last (as ASP.NET routing orders them).
        params = len(_PARAM.findall(self.template))
        return (self.is_catch_all, params, -len(self.template))

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
    return Route(
        name=function.get_function_name(),
        template=template,
        methods=methods,
        handler=function.get_user_function(),
        pattern=compile_template(template),
    )


def routes_of_functions(functions) -> list[Route]:
    routes = [r for r in (_route_of(f) for f in functions) if r is not None]
    return sorted(routes, key=Route.precedence)


def app_routes(app: func.FunctionApp) -> list[Route]:
    """Routes of ``app`` without calling ``app.get_functions()``.

    The Functions worker calls ``get_functions()`` once when it indexes the app and a
    second call fails on duplicate names, so code running inside the app reads the
    registered builders instead.
    """
    return routes_of_functions(builder._function for builder in app._function_builders)


def resolve(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
    """The route serving ``method path``, its route params, and methods allowed on that path."""
    allowed: list[str] = []
    for route in routes:
        params = route.match(path)
        if params is None:
            continue
        if method.upper() in route.methods:
            return route, params, allowed
        if not route.is_catch_all:
            allowed.extend(m for m in route.methods if m not in allowed)
    return None, {}, allowed


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

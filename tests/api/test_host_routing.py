"""Routing as the real Azure Functions host does it (../shared/reference/functions-host.md).

The host sorts the app's functions by name (ordinal, case-insensitive) and gives a request
to the first function whose route template and method both match: no precedence by
specificity. ``host_route`` below is written from those rules alone, not from our code;
it routes the functions exactly as the worker indexes them (``app.get_functions()``), for
the project as it is and for a copy with scaffolded models whose names sort before and
after every existing name.
"""
from __future__ import annotations

import json
import subprocess
import sys

import azure.functions as func
import pytest

from conftest import ROOT
from local_host.asgi_server import FunctionAppServer
from shared.routing import app_routes, resolve
from helpers import asgi_request, copy_project, run

INDEX = """
import json
import function_app
out = []
for f in function_app.app.get_functions():
    trigger = next((b for b in json.loads(f.get_function_json())["bindings"] if b["type"] == "httpTrigger"), None)
    if trigger is None:
        continue  # a queue trigger: not routed
    methods = [m.upper() for m in trigger["methods"]]
    served = getattr(getattr(f.get_user_function(), "__api__", None), "allowed", None)  # methods it answers itself
    served = [m for m in served if m != "OPTIONS"] if served else None
    out.append({"name": f.get_function_name(), "route": trigger["route"], "methods": methods,
                "serves": sorted(served) if served else [m for m in methods if m != "OPTIONS"]})
print(json.dumps(out))
"""


def index_functions(project=ROOT) -> list[dict]:
    result = subprocess.run([sys.executable, "-c", INDEX], cwd=project, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "DATASET_PATH": str(ROOT / "data" / "wdi")})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def template_matches(template: str, path: str) -> bool:
    """ASP.NET route template matching: literals ignore case, {x} is one segment, {*x} the (possibly empty) rest."""
    wanted = [s for s in template.strip("/").split("/") if s]
    given = [s for s in path.strip("/").split("/") if s]
    for i, segment in enumerate(wanted):
        if segment.startswith("{*"):
            return True
        if i >= len(given):
            return False
        if segment.startswith("{"):
            continue
        if segment.lower() != given[i].lower():
            return False
    return len(given) == len(wanted)


def host_route(functions: list[dict], method: str, path: str) -> str | None:
    for f in sorted(functions, key=lambda f: f["name"].upper()):
        if method in f["methods"] and template_matches(f["route"], path):
            return f["name"]
    return None


def example_path(template: str) -> str:
    parts = []
    for segment in template.split("/"):
        if segment.startswith("{*"):
            break
        parts.append("example" if segment.startswith("{") else segment)
    return "/" + "/".join(parts)


def assert_every_route_reaches_its_function(functions: list[dict]) -> int:
    checked = 0
    for f in sorted(functions, key=lambda f: f["name"].upper()):
        path = example_path(f["route"])
        for method in [*f["serves"], "OPTIONS"]:
            for variant in (path, path.upper(), path + "/"):
                assert host_route(functions, method, variant) == f["name"], \
                    f"{method} {variant} is answered by {host_route(functions, method, variant)}, not {f['name']}"
                checked += 1
    return checked


def test_reference_router_follows_the_host_rules():
    functions = [{"name": "b_items", "route": "items/{id}", "methods": ["GET"]},
                 {"name": "A_catch_all", "route": "{*path}", "methods": ["GET"]},
                 {"name": "c_post", "route": "items/{id}", "methods": ["POST"]}]
    assert host_route(functions, "GET", "/items/1") == "A_catch_all"        # first by name, not most specific
    assert host_route(functions, "POST", "/items/1") == "c_post"           # method must match too
    assert host_route(functions, "DELETE", "/items/1") is None             # no function lists it: not routed


def test_every_route_of_the_app_reaches_its_own_function_under_the_host_rules():
    functions = index_functions()
    assert assert_every_route_reaches_its_function(functions) > 60
    catch_all = [f for f in functions if "{*" in f["route"]]
    assert len(catch_all) == 1
    assert host_route(functions, "GET", "/no/such/route") == catch_all[0]["name"]


@pytest.mark.slow
def test_models_named_to_sort_first_and_last_are_not_shadowed(tmp_path):
    project = copy_project(tmp_path / "project")
    for name in ("aaa", "zzzz_last"):
        made = run(["scripts/new_model.py", name], cwd=project)
        assert made.returncode == 0, made.stderr
    functions = index_functions(project)
    models = sorted((f for f in functions if f["route"].split("/")[0] in
                     ("aaa", "zzzz_last", "correlation", "sampleapi", "statimpute", "twolvlImp")),
                    key=lambda f: f["name"].upper())
    assert models[0]["route"].startswith("aaa/") and models[-1]["route"].startswith("zzzz_last/")
    assert assert_every_route_reaches_its_function(functions) > 70
    served = {f["route"] for f in functions}
    assert {"aaa/run", "zzzz_last/run"} <= served


def test_our_resolver_agrees_with_the_host_on_every_request(app):
    functions = index_functions()
    routes = app_routes(app)
    requests = [(m, example_path(f["route"])) for f in functions for m in [*f["serves"], "OPTIONS"]]
    requests += [("GET", "/"), ("POST", "/"), ("GET", "/nope"), ("PUT", "/twolvlImp/predict"),
                 ("TRACE", "/health"), ("GET", "/admin/host/status")]
    for method, path in requests:
        route, _ = resolve(routes, method, path)
        expected = None if path.startswith("/admin") else host_route(functions, method, path)
        assert (route.name if route else None) == expected, f"{method} {path}"


# ---------------------------------------------------------------------------- the local host
def _probe_app():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("b_echo")
    @app.route(route="echo/{name}", methods=["GET", "POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        seen = {"params": dict(req.params), "body": (req.get_body() or b"").decode(), "name": req.route_params["name"],
                "headers": sorted(req.headers.keys())}
        return func.HttpResponse(json.dumps(seen), mimetype="application/json")

    @app.function_name("a_everything")
    @app.route(route="{*path}", methods=["PUT"])
    def everything(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("<p>caught</p>", mimetype="text/html")

    return FunctionAppServer(app)


def test_local_host_routes_first_match_in_name_order_and_shapes_requests_like_the_host():
    server = _probe_app()
    seen = asgi_request(server, "GET", "/echo/ana?x=1&empty=&y=", headers={"X-Mixed-Case": "1"})
    assert seen.status_code == 200
    assert seen.json()["params"] == {"x": "1"}                        # empty values dropped
    assert "x-mixed-case" in seen.json()["headers"]
    assert seen.headers["content-type"] == "application/json"         # no charset on non-text types
    caught = asgi_request(server, "PUT", "/echo/ana")                        # a_ sorts first: its catch-all wins
    assert caught.text == "<p>caught</p>" and caught.headers["content-type"] == "text/html; charset=utf-8"
    unrouted = asgi_request(server, "DELETE", "/echo/ana")                   # nobody lists DELETE
    assert unrouted.status_code == 404 and unrouted.content == b""


def test_local_host_forwards_a_body_only_with_a_content_length():
    server = _probe_app()
    sized = asgi_request(server, "POST", "/echo/ana", content=b'{"a": 1}')
    assert sized.json()["body"] == '{"a": 1}'

    async def chunks():  # no Content-Length: sent chunked
        yield b'{"a": 1}'

    chunked = asgi_request(server, "POST", "/echo/ana", content=chunks())
    assert chunked.json()["body"] == ""


# ---------------------------------------------------------------------------- methods and CORS on every route
DASHBOARD = "https://sids-dashboard.github.io"


def test_cors_preflight_and_405_on_every_route(app, call):
    for route in app_routes(app):
        path = example_path(route.template) if not route.is_catch_all else "/"
        served = [m for m in route.api.allowed if m != "OPTIONS"]
        assert ("HEAD" in served) == ("GET" in served), path  # HEAD is answered wherever GET is (RFC 9110 9.3.2)
        if route.needs_key():  # the host asks for the key before anything reaches the function, preflights too
            assert call("OPTIONS", path).status == call("PUT", path).status == 401, path
            continue
        for method in served:
            pre = call("OPTIONS", path, headers={"Origin": DASHBOARD, "Access-Control-Request-Method": method,
                                                 "Access-Control-Request-Headers": "content-type,access-control-allow-origin"})
            assert pre.status == 204, (path, pre.status)
            assert pre.headers["access-control-allow-origin"] == DASHBOARD
            assert method in pre.headers["access-control-allow-methods"].split(", ")
            assert "access-control-allow-origin" in pre.headers["access-control-allow-headers"]
            assert pre.headers["allow"] == ", ".join([*served, "OPTIONS"])
        if route.is_catch_all:
            continue
        wrong = next(m for m in ("PUT", "DELETE", "PATCH") if m not in served)
        refused = call(wrong, path)
        assert refused.status == 405 and refused.json()["detail"]["type"] == "method_not_allowed"
        assert refused.headers["allow"] == ", ".join([*served, "OPTIONS"])


def test_predict_allows_post_only(call):
    assert call("OPTIONS", "/twolvlImp/predict").headers["allow"] == "POST, OPTIONS"
    refused = call("GET", "/twolvlImp/predict")
    assert refused.status == 405 and refused.headers["allow"] == "POST, OPTIONS"

"""The local host serves the FunctionApp's own registered functions over real HTTP."""
import subprocess
import sys

import azure.functions as func
import httpx

from conftest import ROOT, start_local_host, stop_process
from helpers import asgi_request
from local_host.asgi_server import FunctionAppServer


def _asgi_get(server, path, method="GET", **kwargs):
    return asgi_request(server, method, path, **kwargs)


def test_dispatches_to_functions_registered_on_the_app():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="hello/{name}", methods=["GET"])
    def hello(req: func.HttpRequest) -> func.HttpResponse:
        assert isinstance(req, func.HttpRequest)
        return func.HttpResponse(f"hi {req.route_params['name']} {req.params.get('x')}", mimetype="text/plain")

    server = FunctionAppServer(app)
    reply = _asgi_get(server, "/hello/ana?x=1")
    assert reply.status_code == 200 and reply.text == "hi ana 1"
    assert reply.headers["content-type"].startswith("text/plain")
    # Not registered on the app, so not served: there is no other routing table.
    assert _asgi_get(server, "/health").status_code == 404
    assert _asgi_get(server, "/hello/ana", method="POST").status_code == 404


def test_the_asgi_server_is_a_library_and_the_runner_brings_the_app():
    """The server serves any FunctionApp without importing the project's app; only the runner (local_host.create_server) does."""
    probe = ("import sys, local_host.asgi_server; assert 'function_app' not in sys.modules, 'the server imported the app'; "
             "import local_host; server = local_host.create_server(); "
             "assert 'function_app' in sys.modules and server.routes, 'the runner did not bring the app'")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_registered_function_is_reachable(app, live_server):
    from shared.routing import app_routes

    for route in app_routes(app):
        if route.is_catch_all or "{" in route.template:
            continue
        for method in route.api.handlers:
            reply = httpx.request(method, f"{live_server}/{route.template}", json={} if method == "POST" else None)
            assert reply.status_code not in (404, 405), route.template


def test_requests_are_logged_with_method_path_status_and_duration():
    proc, base, log = start_local_host()
    try:
        httpx.get(base + "/no-such-page")
    finally:
        stop_process(proc)
    text = log.read_text()
    assert "GET /no-such-page -> 404 in" in text and " ms" in text


def test_http_level_cors_gzip_and_size_limit(live_server):
    pre = httpx.options(live_server + "/sampleapi/test_endpoint1",
                        headers={"Origin": "https://sids-dashboard.github.io", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://sids-dashboard.github.io"
    spec = httpx.get(live_server + "/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert spec.headers["content-encoding"] == "gzip" and spec.json()["openapi"] == "3.1.0"
    big = httpx.post(live_server + "/sampleapi/test_endpoint1", content=b"x" * (2 * 1024 * 1024),
                     headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    assert big.json()["detail"]["type"] == "payload_too_large"


def test_service_model_registers_only_that_model_and_loads_no_data():
    proc, base, _ = start_local_host({"SERVICE_MODEL": "sampleapi"})
    try:
        info = httpx.get(base + "/").json()
        health = httpx.get(base + "/health").json()
        paths = httpx.get(base + "/openapi.json").json()["paths"]
    finally:
        stop_process(proc)
    assert [m["name"] for m in info["models"]] == ["sampleapi"]
    assert health["dataset_used"] is False and health["version"] is None and health["service_model"] == "sampleapi"
    assert all(p.startswith("/sampleapi/") or p.count("/") == 1 for p in paths)
    assert "/params" in paths and "/health" in paths


def test_unknown_service_model_fails_with_a_clear_message():
    env = {"SERVICE_MODEL": "nosuchmodel", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", "import function_app"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "SERVICE_MODEL='nosuchmodel' names no model" in result.stderr

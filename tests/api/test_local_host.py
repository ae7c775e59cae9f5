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


# ---------------------------------------------------------------------------- slow request bodies (issue 19)
def _echo_server(**settings):
    from shared.settings import Settings, reset_settings

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo", methods=["POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(str(len(req.get_body() or b"")))

    reset_settings(Settings(**settings))
    try:
        return FunctionAppServer(app)
    finally:
        reset_settings(None)


async def _post(server, declared: int, parts: list[bytes], every: float = 0.0):
    """One POST through the ASGI app: ``declared`` Content-Length, ``parts`` sent ``every`` seconds apart.
    Returns (status, headers, body) and the seconds it took."""
    import asyncio
    import time

    pending = list(parts)
    sent: list = []

    async def receive():
        if pending:
            if sent and every:
                await asyncio.sleep(every)
            sent.append(pending.pop(0))
            return {"type": "http.request", "body": sent[-1], "more_body": bool(pending)}
        await asyncio.sleep(3600)  # a client that has sent everything and waits for the answer

    answer: dict = {}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], dict(message["headers"])
        else:
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    scope = {"type": "http", "method": "POST", "path": "/echo", "query_string": b"",
             "headers": [(b"content-length", str(declared).encode()), (b"content-type", b"application/json")]}
    started = time.perf_counter()
    await server(scope, receive, send)
    return answer, time.perf_counter() - started


def test_a_slow_body_holds_only_what_arrived_and_is_timed_out():
    # Issue 19: a client declaring 1 MiB and sending a byte at a time held its whole reservation until it
    # finished (never): every other POST got 503 at a 1 MiB budget. Now only arrived bytes are held, and
    # a body still incomplete after BODY_READ_TIMEOUT_SECONDS is answered 408.
    import asyncio

    server = _echo_server(max_buffered_body_bytes=1024 * 1024, body_read_timeout_seconds=1.5)

    async def scenario():
        slow = asyncio.ensure_future(_post(server, 1024 * 1024, [b"x"] * 1000, every=0.1))
        await asyncio.sleep(0.3)
        assert 0 < server.bodies.held < 100  # the bytes that arrived, not the 1 MiB declared
        others = await asyncio.gather(*(_post(server, 200 * 1024, [b" " * (200 * 1024)]) for _ in range(4)))
        return await asyncio.wait_for(slow, 10), others

    (slow, seconds), others = asyncio.run(scenario())
    assert [a["status"] for a, _ in others] == [200] * 4
    assert [a["body"] for a, _ in others] == [str(200 * 1024).encode()] * 4
    assert slow["status"] == 408 and b'"request_timeout"' in slow["body"]
    assert slow["headers"][b"connection"] == b"close"
    assert 1.4 < seconds < 5
    assert server.bodies.held == 0


def test_bodies_beyond_the_bound_are_refused_by_the_bytes_that_arrived():
    import asyncio

    server = _echo_server(max_buffered_body_bytes=100_000, body_read_timeout_seconds=5)

    async def scenario():
        first = asyncio.ensure_future(_post(server, 90_000, [b" " * 40_000] * 2 + [b" " * 10_000], every=0.5))
        # first holds 40 kB, from 0.5 s 80 kB, from 1 s its 90 kB (then it is answered)
        await asyncio.sleep(0.1)
        small = await _post(server, 50_000, [b" " * 50_000])         # 40 + 50 kB: within the bound
        await asyncio.sleep(0.6)
        refused = await _post(server, 30_000, [b" " * 30_000])       # 80 + 30 kB: over it
        return await first, small, refused

    (first, _), (small, _), (refused, _) = asyncio.run(scenario())
    assert first["status"] == 200 and small["status"] == 200
    assert refused["status"] == 503 and int(refused["headers"][b"retry-after"]) >= 1
    assert server.bodies.held == 0

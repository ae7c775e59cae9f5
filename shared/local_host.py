"""Serve the FunctionApp locally on a real HTTP server, without Azure Functions Core Tools.

    python -m shared.local_host [--port 7071] [--workers 1]

It imports ``function_app.app`` as the Functions worker does, reads the routes and
methods of the functions it registered (``app.get_functions()``, the same call the
worker makes), and for each request builds a real ``azure.functions.HttpRequest``,
calls the registered function and sends back its ``HttpResponse``. There is no
second routing table. Values from ``local.settings.json`` are loaded into the
environment first, as ``func start`` does (variables already set win).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl

import azure.functions as func

from shared.routing import Route, resolve, routes_of_functions
from shared.settings import PROJECT_ROOT, get_settings

log = logging.getLogger("sids.localhost")


def load_local_settings(path: Path = PROJECT_ROOT / "local.settings.json") -> dict[str, str]:
    """Copy local.settings.json's Values into os.environ without overriding what is already set."""
    if not path.exists():
        return {}
    values = json.loads(path.read_text()).get("Values", {})
    applied = {}
    for key, value in values.items():
        if key not in os.environ:
            os.environ[key] = str(value)
            applied[key] = str(value)
    return applied


class FunctionAppServer:
    """An ASGI application dispatching to the functions a FunctionApp registered."""

    def __init__(self, app: func.FunctionApp, threads: int = 8):
        self.routes: list[Route] = routes_of_functions(app.get_functions())
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fn")
        self.max_body = get_settings().max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method = scope["method"].upper()
        path = scope["path"]
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = await self._read_body(receive, headers)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        route, route_params, _ = resolve(self.routes, method, path)
        if route is None and method not in ("GET", "POST", "OPTIONS"):
            # A method no function registers (TRACE, CONNECT, ...) never reaches the catch-all: still 405, not 404.
            response = func.HttpResponse(json.dumps({"detail": {"msg": f"Method {method[:20]} is not allowed",
                                                                "type": "method_not_allowed"}}),
                                         status_code=405, mimetype="application/json",
                                         headers={"Allow": "GET, POST, OPTIONS", "x-request-id": uuid.uuid4().hex})
        elif route is None:  # only when no catch-all function is registered
            response = func.HttpResponse(json.dumps({"detail": {"msg": "Not found", "type": "not_found"}}),
                                         status_code=404, mimetype="application/json")
        else:
            host = headers.get("host", "localhost")
            qs = scope.get("query_string", b"").decode("latin-1")
            request = func.HttpRequest(method, f"http://{host}{path}" + (f"?{qs}" if qs else ""), headers=headers,
                                       params=query, route_params=route_params, body=body)
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(self.executor, route.handler, request)
        await self._send(send, response, method)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("%s %s -> %d in %.1f ms (%s)", method, path, response.status_code, elapsed,
                 route.name if route else "no route")

    async def _read_body(self, receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return b""  # refused before reading: the function answers 413 from the declared length
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:  # stop reading; the function sees an oversized body and answers 413
                chunks.append(chunk[: self.max_body + 1 - (size - len(chunk))])
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _send(self, send, response: func.HttpResponse, method: str) -> None:
        body = response.get_body() or b""
        out_headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                       for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")]
        if response.mimetype:
            content_type = response.mimetype + (f"; charset={response.charset}" if response.charset else "")
            out_headers.append((b"content-type", content_type.encode("latin-1")))
        out_headers.append((b"content-length", str(0 if method == "HEAD" else len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_server() -> FunctionAppServer:
    """ASGI factory: import the Functions app exactly as the worker would and wrap it."""
    load_local_settings()
    import function_app

    return FunctionAppServer(function_app.app)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (each one is an instance)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    load_local_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"Serving function_app.app on http://{args.host}:{args.port} (docs: http://{args.host}:{args.port}/docs)",
          flush=True)
    uvicorn.run("shared.local_host:create_server", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=False, app_dir=str(PROJECT_ROOT))


if __name__ == "__main__":
    main()

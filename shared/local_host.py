"""Serve the FunctionApp locally on a real HTTP server, without Azure Functions Core Tools.

    python -m shared.local_host [--port 7071] [--workers 1]

It imports ``function_app.app`` as the Functions worker does, reads the routes and
methods of the functions it registered (``app.get_functions()``, the same call the
worker makes) and routes each request by the Functions host's rules
(:func:`shared.routing.dispatch`: functions sorted by name, first match by template and
method, empty query values dropped, body only with a Content-Length). There is no
second routing table. Values from ``local.settings.json`` are loaded into the
environment first, as ``func start`` does (variables already set win).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import azure.functions as func

from shared.host_limits import BodyBytes, call_cancellable, overloaded_response
from shared.http import log_safe
from shared.routing import HostReply, Route, dispatch, routes_of_functions
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

    def __init__(self, app: func.FunctionApp, threads: int | None = None):
        settings = get_settings()
        self.routes: list[Route] = routes_of_functions(app.get_functions())
        # Sized like the Functions host's pool (PYTHON_THREADPOOL_THREAD_COUNT, 1000 by default): predictions
        # waiting for a compute slot must not hold every thread while /health and look-ups queue behind them.
        self.executor = ThreadPoolExecutor(max_workers=threads or settings.threadpool_threads, thread_name_prefix="fn")
        self.max_body = settings.max_body_bytes
        self.bodies = BodyBytes(settings.max_buffered_body_bytes, self.max_body)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        size = self.bodies.size_of(scope)
        if not self.bodies.reserve(size):  # refused before its body is read (MAX_BUFFERED_BODY_BYTES)
            await self._send(send, overloaded_response(), scope["method"].upper())
            log.info("%s %s -> 503 (request bodies held over the limit)", log_safe(scope["method"], 20),
                     log_safe(scope["path"]))
            return
        try:
            await self._serve(scope, receive, send)
        finally:
            self.bodies.release(size)

    async def _serve(self, scope, receive, send):
        started = time.perf_counter()
        method = scope["method"].upper()
        path = scope["path"]
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = await self._read_body(receive, headers)
        query_string = scope.get("query_string", b"").decode("latin-1")
        # A client that disconnects meanwhile has its work cancelled (shared.host_limits).
        (reply, route), _ = await call_cancellable(
            self.executor, lambda: dispatch(self.routes, method, path, query_string, headers, body,
                                            headers.get("host", "localhost")), receive)
        await self._send(send, reply, method)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("%s %s -> %d in %.1f ms (%s)", log_safe(method, 20), log_safe(path), reply.status, elapsed,
                 route.name if route else "not routed")

    async def _read_body(self, receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length", "").strip()
        if not declared.isdigit() or int(declared) == 0:
            return b""  # the host forwards a body only with a Content-Length above 0 (not a chunked one)
        if int(declared) > self.max_body:
            return b""  # refused before reading: the function answers 413 from the declared length
        chunks, size = [], 0
        while size < int(declared):
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _send(self, send, reply: HostReply, method: str) -> None:
        out_headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in reply.headers.items()
                       if k != "content-length"]
        out_headers.append((b"content-length", str(0 if method == "HEAD" else len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})

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

"""Serve any FunctionApp over ASGI, routed as the Functions host routes it (the local host's server).

:class:`FunctionAppServer` reads the routes and methods of the functions an app registered
(``app.get_functions()``, the same call the worker makes) and routes each request by the
Functions host's rules (:func:`shared.routing.dispatch`: functions sorted by name, first match by
template and method, empty query values dropped, body only with a Content-Length). There is no
second routing table. It imports no app: the runner (``python -m local_host``, ``make run``)
imports ``function_app`` and hands its app over; tests hand over their own.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func

from local_host.host_limits import BodyBytes, BodyRefused, call_cancellable, read_body
from local_host.queues import listeners_for
from shared.http import log_safe
from shared.routing import HostReply, Route, dispatch, routes_of_functions
from shared.runs import queue_options
from shared.settings import get_settings, secret_value

log = logging.getLogger("sids.localhost")


class FunctionAppServer:
    """An ASGI application dispatching to the functions a FunctionApp registered."""

    def __init__(self, app: func.FunctionApp, threads: int | None = None, host_json: dict | None = None):
        settings = get_settings()
        self.functions = app.get_functions()  # the worker's one call (a second one fails on duplicate names)
        self.routes: list[Route] = routes_of_functions(self.functions)
        # Queue-triggered functions are served from their queues when host.json is given (local_host/queues.py).
        self.listeners = [] if host_json is None else listeners_for(
            self.functions, queue_options(host_json), settings.local_queue_lease_seconds)
        # Sized like the Functions host's pool (PYTHON_THREADPOOL_THREAD_COUNT, 1000 by default): predictions
        # waiting for a compute slot must not hold every thread while /health and look-ups queue behind them.
        self.executor = ThreadPoolExecutor(max_workers=threads or settings.threadpool_threads, thread_name_prefix="fn")
        self.max_body = settings.max_body_bytes
        self.bodies = BodyBytes(settings.max_buffered_body_bytes)
        self.body_seconds = settings.body_read_timeout_seconds
        # AuthLevel.FUNCTION routes: served only with this key (LOCAL_FUNCTION_KEY); without one set, never.
        self.keys = (secret_value(settings.local_function_key),) if settings.local_function_key else ()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        held = self.bodies.holder()  # the bytes of this request's body that have arrived (MAX_BUFFERED_BODY_BYTES)
        try:
            await self._serve(scope, receive, send, held)
        except BodyRefused as refused:  # over the bound (503) or too slow (408): not read to its end
            await self._send(send, refused.reply, scope["method"].upper())
            log.info("%s %s -> %d (request body: %s)", log_safe(scope["method"], 20), log_safe(scope["path"]),
                     refused.reply.status, "too slow" if refused.reply.status == 408 else "bodies held over the limit")
        finally:
            held.release()

    async def _serve(self, scope, receive, send, held):
        started = time.perf_counter()
        method = scope["method"].upper()
        path = scope["path"]
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = await self._read_body(receive, headers, held)
        query_string = scope.get("query_string", b"").decode("latin-1")
        # A client that disconnects meanwhile has its work cancelled (local_host.host_limits).
        (reply, route), _ = await call_cancellable(
            self.executor, lambda: dispatch(self.routes, method, path, query_string, headers, body,
                                            headers.get("host", "localhost"), self.keys), receive)
        await self._send(send, reply, method)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("%s %s -> %d in %.1f ms (%s)", log_safe(method, 20), log_safe(path), reply.status, elapsed,
                 route.name if route else "not routed")

    async def _read_body(self, receive, headers: dict[str, str], held) -> bytes:
        declared = headers.get("content-length", "").strip()
        if not declared.isdigit() or int(declared) == 0:
            return b""  # the host forwards a body only with a Content-Length above 0 (not a chunked one)
        if int(declared) > self.max_body:
            return b""  # refused before reading: the function answers 413 from the declared length
        return await read_body(receive, int(declared), held, self.body_seconds)

    async def _send(self, send, reply: HostReply, method: str) -> None:
        out_headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in reply.headers.items()
                       if k != "content-length"]
        if method != "HEAD":
            out_headers.append((b"content-length", str(len(reply.body)).encode()))
        # HEAD: the function answered GET's status and headers without the body (shared/http.py); a Content-Length
        # of 0 would misstate the GET body's length (RFC 9110 8.6), so none is sent, as Kestrel sends none
        await send({"type": "http.response.start", "status": reply.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for listener in self.listeners:
                    listener.start()
                    log.info("serving queue trigger %s from queue %s", listener.name, listener.queue.queue_name)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for listener in self.listeners:
                    listener.stop()
                self.executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

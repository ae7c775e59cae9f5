"""What the local host adds to bound its load (kept apart from its routing, in local_host/asgi_server.py).

* :class:`BodyBytes`: the request bodies held in memory at once are bounded (MAX_BUFFERED_BODY_BYTES);
  a request whose body would pass the bound is answered 503 + Retry-After before it is read.
* :func:`call_cancellable`: runs a function on the host's thread pool (sized like the Functions host's,
  PYTHON_THREADPOOL_THREAD_COUNT) and, while it runs, watches the ASGI connection: when the client
  disconnects, the request's cancellation flag is set, so its work stops at its next checkpoint.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import uuid
from concurrent.futures import Executor
from typing import Callable, TypeVar

from shared.capacity import run_cancellable
from shared.routing import HostReply

T = TypeVar("T")


class BodyBytes:
    """Counts the bytes of request bodies the host holds; refuses reservations beyond ``limit``.

    A request reserves its declared Content-Length before its body is read, and releases it when
    its answer is sent. A request without a body (or with a chunked one, which the host does not
    forward) reserves nothing and is never refused: health probes, look-ups.
    """

    def __init__(self, limit: int, max_body: int):
        self.limit = max(0, int(limit))
        self.max_body = max_body
        self.held = 0
        self._lock = threading.Lock()

    def size_of(self, scope: dict) -> int:
        """Bytes to reserve for an ASGI HTTP request, from its headers."""
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                declared = value.decode("latin-1").strip()
                if declared.isdigit() and int(declared) <= self.max_body:  # a larger one is refused unread (413)
                    return int(declared)
                return 0
        return 0

    def reserve(self, size: int) -> bool:
        if size <= 0:
            return True
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def release(self, size: int) -> None:
        if size > 0:
            with self._lock:
                self.held -= size


def overloaded_response(retry_after: int = 1) -> HostReply:
    """503 + Retry-After, in the service's error shape, for a request refused before its body is read."""
    body = {"detail": {"msg": "This instance holds too many request bodies at once; retry shortly.",
                       "type": "overloaded"}}
    return HostReply(503, {"content-type": "application/json", "retry-after": str(max(1, retry_after)),
                           "x-request-id": uuid.uuid4().hex}, json.dumps(body).encode())


async def _disconnected(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def call_cancellable(executor: Executor, fn: Callable[[], T], receive) -> tuple[T, bool]:
    """Run ``fn()`` (the request's dispatch) on ``executor`` while watching the ASGI connection:
    (its result, whether the client disconnected before it was ready)."""
    cancelled = threading.Event()
    context = contextvars.copy_context()  # run_in_executor does not carry context variables by itself
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(executor, context.run, run_cancellable, cancelled, fn)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if work not in done and watcher.exception() is None:
            cancelled.set()  # the client is gone: its work stops at its next checkpoint
        return await work, cancelled.is_set()
    finally:
        watcher.cancel()

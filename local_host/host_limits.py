"""What the local host adds to bound its load (kept apart from its routing, in local_host/asgi_server.py).

* :class:`BodyBytes` and :func:`read_body`: the request bodies held in memory at once are bounded
  (MAX_BUFFERED_BODY_BYTES), counting only the bytes that have arrived, so a client that declares a
  large body and sends it slowly holds only what it sent; a request whose arriving bytes would pass
  the bound is answered 503 + Retry-After, and a body still incomplete after BODY_READ_TIMEOUT_SECONDS
  is answered 408 (a slow-body client holds nothing for longer than that).
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

    A request reserves each part of its body as it arrives (:meth:`Held.add`) and releases all it
    holds when its answer is sent. A request without a body (or with a chunked one, which the host
    does not forward) reserves nothing and is never refused: health probes, look-ups.
    """

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.held = 0
        self._lock = threading.Lock()

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

    def holder(self) -> "Held":
        return Held(self)


class Held:
    """The bytes one request holds in a :class:`BodyBytes`; release them all with :meth:`release`."""

    def __init__(self, pool: BodyBytes):
        self.pool = pool
        self.bytes = 0

    def add(self, size: int) -> bool:
        if not self.pool.reserve(size):
            return False
        self.bytes += size
        return True

    def release(self) -> None:
        self.pool.release(self.bytes)
        self.bytes = 0


class BodyRefused(Exception):
    """The body was not read to its end; ``reply`` is the answer (the connection is closed after it)."""

    def __init__(self, reply: HostReply):
        self.reply = reply


async def read_body(receive, declared: int, held: Held, seconds: float) -> bytes:
    """Read a body of ``declared`` bytes, each part reserved in ``held`` as it arrives, within ``seconds``.

    Raises BodyRefused with a 503 + Retry-After when the arrived bytes would pass the instance's bound,
    and with a 408 when the body has not arrived in time. A client that disconnects ends the read."""
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            while size < declared:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                if not held.add(len(chunk)):
                    raise BodyRefused(overloaded_response())
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyRefused(error_reply(408, "request_timeout", f"The request body did not arrive within {seconds:g} s "
                                      f"({size} of {declared} bytes); send it at once, then retry.")) from None
    return b"".join(chunks)


def error_reply(status: int, error_type: str, msg: str, headers: dict[str, str] | None = None) -> HostReply:
    """An answer of the local host itself, in the service's error shape; the connection is closed after it."""
    body = {"detail": {"msg": msg, "type": error_type}}
    return HostReply(status, {"content-type": "application/json", "connection": "close",
                              "x-request-id": uuid.uuid4().hex, **(headers or {})}, json.dumps(body).encode())


def overloaded_response(retry_after: int = 1) -> HostReply:
    """503 + Retry-After, in the service's error shape, for a request whose body would pass the bound."""
    return error_reply(503, "overloaded", "This instance holds too many request bodies at once; retry shortly.",
                       {"retry-after": str(max(1, retry_after))})


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

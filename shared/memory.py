"""Giving memory back to the system after heavy work (glibc's allocator; a no-op elsewhere).

Measured (issue 19): after heavy predictions an instance's caches held about 2 MiB, yet its resident
memory stayed 3-5x what it was before. The rest was freed memory the allocator kept in its per-thread
arenas. Two remedies, both here:

* :func:`limit_arenas` (``MALLOC_ARENA_MAX``, applied at start): fewer malloc arenas for the many
  request and fit threads, so freed memory is reused rather than spread over one arena per thread;
* :func:`release_soon`: after a heavy request, ``malloc_trim(0)`` on a background thread (at most
  once per ``MIN_INTERVAL`` seconds) returns the free pages of every arena to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

log = logging.getLogger("sids.memory")

M_ARENA_MAX = -8     # mallopt parameter (malloc.h)
MIN_INTERVAL = 2.0   # seconds between two trims (one takes up to ~0.4 s on a fragmented 1 GB heap)
HEAVY_SECONDS = 0.5  # a request that took this long is followed by a trim

_libc = None
_lock = threading.Lock()
_wanted = threading.Event()
_thread: threading.Thread | None = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else False
        except OSError:
            _libc = False
    return _libc or None


def limit_arenas(count: int) -> bool:
    """At most ``count`` malloc arenas from now on (0: glibc's default, 8 per core). True if applied."""
    libc = _glibc()
    if libc is None or count <= 0:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, int(count)))


def trim() -> bool:
    """Return free heap pages to the system now. True if memory was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def _trimmer() -> None:
    while True:
        _wanted.wait()
        _wanted.clear()
        started = time.perf_counter()
        trim()
        log.debug("malloc_trim in %.1f ms", (time.perf_counter() - started) * 1000)
        time.sleep(MIN_INTERVAL)


def release_soon() -> None:
    """Ask for a trim on the background thread (started on first use); returns at once."""
    global _thread
    if _glibc() is None:
        return
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_trimmer, name="malloc-trim", daemon=True)
            _thread.start()
    _wanted.set()

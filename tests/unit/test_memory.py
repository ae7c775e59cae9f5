"""Giving memory back after heavy work (shared/memory.py, issue 19): measured on this process's own RSS."""
import threading
import time

import numpy as np
import pytest

from shared import memory

pytestmark = pytest.mark.skipif(memory._glibc() is None, reason="glibc's allocator only (the service runs on Linux)")


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2 ** 20


def fragment(mib: int) -> None:
    """Allocate ``mib`` MiB in small blocks on other threads, keep one block in 50, free the rest: what a heavy
    request's many small arrays leave behind (freed memory the allocator keeps, pinned by the survivors)."""
    kept = []

    def work():
        blocks = [np.ones(2048) for _ in range(mib * 64)]  # 16 KiB each
        kept.extend(blocks[::50])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fragment.kept = kept


def test_trim_returns_freed_memory_to_the_system():
    fragment(100)
    held = rss_mib()
    assert memory.trim()
    assert rss_mib() < held - 150, (held, rss_mib())  # 400 MiB allocated, ~8 MiB still in use


def test_a_heavy_request_is_followed_by_a_trim_on_the_background_thread(call, monkeypatch):
    trims = []
    monkeypatch.setattr(memory, "trim", lambda: trims.append(time.monotonic()) or True)
    monkeypatch.setattr(memory, "HEAVY_SECONDS", 0.0)
    call("GET", "/health")
    deadline = time.monotonic() + 5
    while not trims and time.monotonic() < deadline:
        time.sleep(0.01)
    assert trims
    monkeypatch.setattr(memory, "HEAVY_SECONDS", 3600.0)
    trims.clear()
    time.sleep(memory.MIN_INTERVAL + 0.2)
    call("GET", "/health")
    time.sleep(0.3)
    assert not trims  # light requests do not trim


def test_arena_limit_is_a_setting_applied_at_start():
    from shared.settings import Settings

    assert Settings.from_env({}).malloc_arena_max == 2
    assert Settings.from_env({"MALLOC_ARENA_MAX": "0"}).malloc_arena_max == 0
    assert memory.limit_arenas(2) and not memory.limit_arenas(0)

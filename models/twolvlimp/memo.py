"""Bounded, thread-safe memo tables: the per-instance result cache and the per-data-version work memos."""
from __future__ import annotations

import threading
from collections import OrderedDict

from shared.dataset import Dataset


class LruCache:
    """Thread-safe LRU: at most ``size`` entries; concurrent requests for the same missing key wait
    for one computation instead of repeating it."""

    def __init__(self, size: int):
        self.size = max(0, int(size))
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict = {}
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            return None

    def contains(self, key) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key, value) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get_or_compute(self, key, compute):
        """(value, was_cached). Exceptions are not cached."""
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return self._items[key], True
                waiter = self._inflight.get(key)
                if waiter is None:
                    waiter = self._inflight[key] = threading.Event()
                    owner = True
                    self.misses += 1
                else:
                    owner = False
            if not owner:
                waiter.wait()
                continue  # the owner stored the value, or failed: then try ourselves
            try:
                value = compute()
                self.put(key, value)
                return value, False
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
                waiter.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# Request-dependent work worth keeping per data version (imputed candidate matrices, selections),
# bounded so that many distinct targets cannot grow an instance's memory without limit.
WORK_MEMO_SIZE = 32


def work_memo(ds: Dataset, key, compute):
    """Like ``ds.memo`` (computed once per data version), but at most WORK_MEMO_SIZE entries are kept."""
    table: LruCache = ds.memo(("twolvlimp", "work"), lambda: LruCache(WORK_MEMO_SIZE))
    return table.get_or_compute(key, compute)[0]


def work_memo_get(ds: Dataset, key):
    """The memoised value, or None (never computes it)."""
    table: LruCache = ds.memo(("twolvlimp", "work"), lambda: LruCache(WORK_MEMO_SIZE))
    return table.get(key)


def work_memo_has(ds: Dataset, key) -> bool:
    table: LruCache = ds.memo(("twolvlimp", "work"), lambda: LruCache(WORK_MEMO_SIZE))
    return table.contains(key)


def work_memo_put(ds: Dataset, key, value) -> None:
    """Store work computed elsewhere under the key the method looks it up by (a batch shares one year's
    imputation across its targets: ``models.twolvlimp.aimode``)."""
    table: LruCache = ds.memo(("twolvlimp", "work"), lambda: LruCache(WORK_MEMO_SIZE))
    table.put(key, value)

"""Caches bounded by bytes (issue 19): :class:`LruCache`, what a value holds (:func:`nbytes_of`), and the
per-data-version memo tables of request-dependent work (:func:`memo_table`), all within one byte bound.

``Dataset.memo`` keeps what is computed once per data version and bounded by the data itself (look-up
lists, counts); work that depends on the request (twolvlImp's imputed matrices and selections,
correlation's standardised profiles) goes into a :func:`memo_table` instead, which evicts the least
recently used entries beyond the version's ``memo_bytes`` (WORK_MEMO_BYTES, given by the store that loaded it).
"""
from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from shared.dataset import Dataset


def nbytes_of(value: Any) -> int:
    """Bytes a cached value holds: array buffers, bytes and strings, and what containers, dataclasses and
    plain objects refer to (each object counted once). An estimate from above of what evicting it frees."""
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None or isinstance(item, (bool, int, float)):
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            root = item  # a view holds its base's whole buffer: counted once, whichever refers to it
            while isinstance(root.base, np.ndarray):
                root = root.base
            if root is item or id(root) not in seen:
                seen.add(id(root))
                total += root.nbytes
            if item.dtype == object:
                stack.extend(item.ravel().tolist())
        elif isinstance(item, (bytes, bytearray, memoryview, str)):
            total += sys.getsizeof(item)
        elif isinstance(item, dict):
            total += sys.getsizeof(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += sys.getsizeof(item)
            stack.extend(item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            total += sys.getsizeof(item)
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            total += sys.getsizeof(item)
            stack.extend(vars(item).values())
        else:
            total += sys.getsizeof(item)
    return total


class LruCache:
    """Thread-safe LRU: at most ``size`` entries holding at most ``max_bytes`` (None: no byte bound) as
    ``sizeof`` counts them, least recently used evicted first; a value larger than ``max_bytes`` on its own
    is returned but not kept. Concurrent requests for the same missing key wait for one computation
    instead of repeating it."""

    def __init__(self, size: int, max_bytes: int | None = None, sizeof: Callable[[Any], int] = nbytes_of):
        self.size = max(0, int(size))
        self.max_bytes = None if max_bytes is None else max(0, int(max_bytes))
        self.sizeof = sizeof
        self._items: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self.bytes = 0
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
        nbytes = self.sizeof(value) if self.max_bytes is not None else 0
        with self._lock:
            if key in self._items:
                self.bytes -= self._sizes.pop(key)
                del self._items[key]
            if self.max_bytes is not None and nbytes > self.max_bytes:
                return  # larger than the whole cache: kept by nobody
            self._items[key] = value
            self._sizes[key] = nbytes
            self.bytes += nbytes
            while len(self._items) > self.size or (self.max_bytes is not None and self.bytes > self.max_bytes):
                old, _ = self._items.popitem(last=False)
                self.bytes -= self._sizes.pop(old)

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
            self._sizes.clear()
            self.bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def memo_table(ds: Dataset, name: tuple, entries: int) -> LruCache:
    """The memo table ``name`` of this data version: at most ``entries`` entries and the version's
    ``memo_bytes`` (WORK_MEMO_BYTES, set by the store that loaded it)."""
    return ds.memo(name, lambda: LruCache(entries, ds.memo_bytes))

"""The one object of a kind an instance keeps for its lifetime (the dataset store, a model's runtime, the
AI Mode service): built by its factory on first use, replaceable by tests, which build their own."""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class InstanceSlot(Generic[T]):
    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The instance's object, built on first use."""
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def peek(self) -> T | None:
        """The object if one was built (never builds one)."""
        return self._value

    def replace(self, new: T | None) -> T | None:
        """Use ``new`` from now on (None: build one on next use); returns the object it replaces."""
        with self._lock:
            old, self._value = self._value, new
            return old

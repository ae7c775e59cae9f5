"""Importing the models' code on first use, from any thread.

The models' heavy code (scikit-learn) is imported after start-up: by the warm-up thread, or by the first
request that needs it, whichever comes first. Two threads importing scikit-learn's modules at once, in
different orders, can be handed a partially initialised module (CPython breaks the import-lock cycle
that way: "cannot import name 'clone' from partially initialized module 'sklearn.base'"), so every such
import goes through one lock: the second thread waits for the first import instead.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType

_lock = threading.RLock()


def import_model_code(name: str) -> ModuleType:
    """``importlib.import_module(name)``, one thread at a time."""
    with _lock:
        return importlib.import_module(name)

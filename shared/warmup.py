"""Start loading the dataset as soon as an instance starts, without delaying start-up."""
from __future__ import annotations

import threading

from shared.platform import uses_dataset
from shared.store import get_store


def preload_dataset() -> threading.Thread | None:
    if not uses_dataset():
        return None
    thread = threading.Thread(target=get_store().refresh, name="dataset-preload", daemon=True)
    thread.start()
    return thread

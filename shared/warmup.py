"""Start loading the dataset as soon as an instance starts, without delaying start-up."""
from __future__ import annotations

import atexit
import threading

from shared.platform import uses_dataset
from shared.store import get_store


def preload_dataset() -> threading.Thread | None:
    if not uses_dataset():
        return None
    thread = threading.Thread(target=get_store().refresh, name="dataset-preload", daemon=True)
    thread.start()
    # A process that exits while the load is still inside pyarrow can hang in interpreter shutdown:
    # let a load in progress finish first (it takes well under a second on the embedded dataset).
    atexit.register(thread.join, 30)
    return thread

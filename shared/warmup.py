"""Start loading the dataset as soon as an instance starts, without delaying start-up.

``function_app.py`` calls :func:`preload_dataset` with the app once its blueprints are
registered: that is the one piece of work an import of ``function_app`` starts, and it runs in
a background thread, so the worker indexes the functions (and the local host starts listening)
while the dataset loads. Whether a load is needed is read from the app passed in (does one of
its models read the dataset?), not from module state, so it does not depend on what else was
called first (issue 11: it used to read the routes :func:`shared.routing.publish` records and
silently skipped the load when ``publish(app)`` had not been called before it).

Nothing else is done at start: the models' own code (scikit-learn) is imported by the first
request that needs it, and what is derived from the data is memoised per data version on first
use (``Dataset.memo``).
"""
from __future__ import annotations

import atexit
import threading

import azure.functions as func

from shared.platform import uses_dataset
from shared.routing import app_routes
from shared.store import get_store


def preload_dataset(app: func.FunctionApp) -> threading.Thread | None:
    """Load the dataset in a background thread if one of ``app``'s models reads it; the thread, or None."""
    if not uses_dataset(app_routes(app)):
        return None
    thread = threading.Thread(target=get_store().refresh, name="dataset-preload", daemon=True)
    thread.start()
    # A process that exits while the load is still inside pyarrow can hang in interpreter shutdown:
    # let a load in progress finish first (it takes well under a second on the embedded dataset).
    atexit.register(thread.join, 30)
    return thread

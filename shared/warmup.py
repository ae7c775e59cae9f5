"""What a new instance does in the background once its functions are registered.

``function_app.py`` calls :func:`warm_up` with the app, after registering the blueprints:
it is the one piece of work an import of ``function_app`` starts. One background thread

1. loads the dataset, if one of the app's models reads it, so that the worker indexes the
   functions (and the local host starts listening) while it loads; then
2. imports the code the models' requests import on first use (each blueprint module's
   ``MODEL_CODE``, e.g. twolvlImp's scikit-learn code), unless ``WARM_MODEL_CODE=0``.

Neither step delays start-up: the import of ``function_app`` imports no scikit-learn, and
``/health`` and the look-ups do not need it, so an instance is ready as soon as its dataset is
(issue 12). Step 2 starts ``MODEL_CODE_DELAY_SECONDS`` after the load, so that the requests that
waited for the data are answered first (an import holds the interpreter for long stretches: started
at once, it delayed the first ``/health`` at platform size by about half a second), and runs while
the dashboard's user fills in the form, so the first ``/estimate`` or ``/predict`` does not pay the
import either. A request that needs the code before it is imported imports it itself; both go through
one lock (:mod:`shared.imports`), so the two wait for one import. A process that exits during the delay skips step 2.

What the app needs is read from the app passed in, not from module state, so it does not depend
on what else was called first (issue 11: the preload read the routes
:func:`shared.routing.publish` records and silently skipped the load when ``publish(app)`` had
not been called before it). What is derived from the data is memoised per data version on first
use (``Dataset.memo``), not computed here.
"""
from __future__ import annotations

import atexit
import logging
import sys
import threading
import time

import azure.functions as func

from shared.http import ApiBlueprint
from shared.imports import import_model_code
from shared.platform import registered_models
from shared.routing import app_routes
from shared.settings import get_settings
from shared.store import get_store

log = logging.getLogger("sids.warmup")

MODEL_CODE_DELAY_SECONDS = 1.0   # from the end of the dataset load to the import of the model code
_exiting = threading.Event()
# Set once the instance is ready (its dataset load ended, or none was needed): what else starts in the
# background (telemetry's configuration, shared/telemetry.py) waits for it, so as not to delay the start.
ready = threading.Event()


def model_code(blueprints: list[ApiBlueprint]) -> list[str]:
    """The modules the blueprints' modules list as ``MODEL_CODE`` (imported by their requests on first use)."""
    wanted = {id(bp) for bp in blueprints}
    found: list[str] = []
    for name, module in sorted(sys.modules.items()):
        if name.startswith("blueprints.") and id(getattr(module, "blueprint", None)) in wanted:
            found.extend(m for m in getattr(module, "MODEL_CODE", ()) if m not in found)
    return found


def _run(load: bool, code: list[str]) -> None:
    if load:
        try:
            get_store().refresh()
        finally:
            ready.set()
    if code and _exiting.wait(MODEL_CODE_DELAY_SECONDS):
        return  # the process is exiting: nothing to warm up for
    for module in code:
        started = time.perf_counter()
        try:
            import_model_code(module)
        except Exception:  # the request that needs it will report the error
            log.exception("warm-up could not import %s", module)
            continue
        log.info("warm-up imported %s in %.2f s", module, time.perf_counter() - started)


def warm_up(app: func.FunctionApp) -> threading.Thread | None:
    """Start the background thread (dataset load, then model code) for ``app``; the thread, or None if nothing to do."""
    models = registered_models(app_routes(app))
    load = any(bp.uses_dataset for bp in models)
    code = model_code(models) if get_settings().warm_model_code else []
    if not load:
        ready.set()
    if not load and not code:
        return None
    thread = threading.Thread(target=_run, args=(load, code), name="instance-warm-up", daemon=True)
    thread.start()
    # A process that exits while the load is still inside pyarrow can hang in interpreter shutdown:
    # let a load (or an import) in progress finish first; one not yet started is skipped.
    atexit.register(_finish, thread)
    return thread


def _finish(thread: threading.Thread) -> None:
    _exiting.set()
    thread.join(30)

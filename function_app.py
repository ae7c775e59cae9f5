"""Azure Functions entry point (Python v2 programming model).

One FunctionApp; one Blueprint per model from ``blueprints/`` (or only the model named
by SERVICE_MODEL), plus the platform endpoints every instance serves.

Importing this module does one thing besides registering functions: ``warm_up(app)`` starts
a background thread that loads the dataset (when a registered model reads it), so the load
overlaps the worker's indexing, and then imports the models' code (scikit-learn), which this
import does not: an instance is ready once its dataset is (shared/warmup.py;
tests/api/test_function_app.py checks that importing this module does not import sklearn).
"""
import azure.functions as func

from blueprints import model_blueprints
from shared.cache import set_memo_bytes
from shared.logs import configure_logging
from shared.memory import limit_arenas
from shared.platform import platform
from shared.routing import publish
from shared.settings import get_settings
from shared.warmup import warm_up

configure_logging()
limit_arenas(get_settings().malloc_arena_max)  # before the request and fit threads allocate (shared/memory.py)
set_memo_bytes(get_settings().work_memo_bytes)  # each per-data-version memo table of request-dependent work

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in model_blueprints(get_settings().service_model):
    app.register_functions(blueprint)
app.register_functions(platform)

publish(app)              # the routes the platform endpoints describe (/openapi.json, /params)
warm_up(app)              # background thread: loads the dataset, then imports the models' code

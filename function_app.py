"""Azure Functions entry point (Python v2 programming model).

One FunctionApp; one Blueprint per model from ``blueprints/`` (or only the model named
by SERVICE_MODEL), plus the platform endpoints every instance serves.

Importing this module does two things besides registering functions: ``warm_up(app)`` starts
a background thread that loads the dataset (when a registered model reads it), so the load
overlaps the worker's indexing, and then imports the models' code (scikit-learn), which this
import does not: an instance is ready once its dataset is (shared/warmup.py;
tests/api/test_function_app.py checks that importing this module does not import sklearn).
With Application Insights set up, telemetry is configured on another background thread once the
instance is ready (shared/telemetry.py): the exporter's import must not delay the start either.
"""
import azure.functions as func

from blueprints import model_blueprints
from shared.logs import configure_logging
from shared.memory import limit_arenas
from shared.platform import platform
from shared.routing import publish
from shared.settings import get_settings
from shared.telemetry import start as start_telemetry
from shared.warmup import ready as warm_up_ready
from shared.warmup import warm_up

configure_logging()
limit_arenas(get_settings().malloc_arena_max)  # before the request and fit threads allocate (shared/memory.py)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in model_blueprints(get_settings().service_model):
    app.register_functions(blueprint)
app.register_functions(platform)

publish(app)              # the routes the platform endpoints describe (/openapi.json, /params)
warm_up(app)              # background thread: loads the dataset, then imports the models' code
start_telemetry(get_settings(), after=warm_up_ready)  # with APPLICATIONINSIGHTS_CONNECTION_STRING: configured
                                                     # on a background thread once the instance is ready

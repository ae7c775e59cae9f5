"""Azure Functions entry point (Python v2 programming model).

One FunctionApp; one Blueprint per model from ``blueprints/`` (or only the model named
by SERVICE_MODEL), plus the platform endpoints every instance serves.

Importing this module does one thing besides registering functions: ``preload_dataset(app)``
starts loading the dataset in a background thread (when a registered model reads it), so the
load overlaps the worker's indexing. Model code (scikit-learn) is imported by the first request
that needs it, not here (tests/test_function_app.py checks that importing this module does not
import sklearn).
"""
import azure.functions as func

from blueprints import model_blueprints
from shared.logs import configure_logging
from shared.platform import platform
from shared.routing import publish
from shared.settings import get_settings
from shared.warmup import preload_dataset

configure_logging()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in model_blueprints(get_settings().service_model):
    app.register_functions(blueprint)
app.register_functions(platform)

publish(app)              # the routes the platform endpoints describe (/openapi.json, /params)
preload_dataset(app)      # background thread: the dataset loads while the worker indexes the app

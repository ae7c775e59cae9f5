"""Azure Functions entry point (Python v2 programming model).

One FunctionApp; one Blueprint per model from ``blueprints/`` (or only the model named
by SERVICE_MODEL), plus the platform endpoints every instance serves.
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

publish(app)
preload_dataset()

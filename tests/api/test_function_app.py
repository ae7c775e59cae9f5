"""function_app.py as the Azure Functions worker sees it (what `func start` and Azure index)."""
import json
import subprocess
import sys

from conftest import ROOT

INDEX_LIKE_THE_WORKER = """
import json, typing, inspect
import function_app
from shared.routing import published_routes
published_routes()            # the app's own introspection must not break the worker's indexing
functions = function_app.app.get_functions()
out = []
for f in functions:
    hints = typing.get_type_hints(f.get_user_function())
    out.append({"name": f.get_function_name(), "json": json.loads(f.get_function_json()),
                "params": list(inspect.signature(f.get_user_function()).parameters),
                "hints": {k: v.__module__ + "." + v.__qualname__ for k, v in hints.items()}})
print(json.dumps(out))
"""


def index(env_extra=None):
    env = {"PATH": "/usr/bin:/bin", **(env_extra or {})}
    result = subprocess.run([sys.executable, "-c", INDEX_LIKE_THE_WORKER], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_worker_indexing_sees_native_http_functions_with_unique_names():
    functions = index()
    names = [f["name"] for f in functions]
    assert len(names) == len(set(names))
    queue = [f for f in functions if f["json"]["bindings"][0]["type"] == "queueTrigger"]
    assert [(f["name"], f["json"]["bindings"][0]["queueName"], f["json"]["bindings"][0]["connection"], f["params"])
            for f in queue] == [("queue_aimode_worker", "aimode", "AzureWebJobsStorage", ["msg"])]
    functions = [f for f in functions if f not in queue]
    for f in functions:
        trigger = next(b for b in f["json"]["bindings"] if b["type"] == "httpTrigger")
        # anonymous, but for the routes that start work (a function key: never anonymous)
        assert trigger["authLevel"] == ("FUNCTION" if trigger["route"] == "aimode/runs" else "ANONYMOUS")
        assert trigger["route"] and not trigger["route"].startswith("api/")
        assert f["json"]["scriptFile"] == "function_app.py"
        assert f["params"] == ["req", "context"]  # context: the worker passes it by name (invocation id, trace)
        assert f["hints"]["req"] == "azure.functions._http.HttpRequest"
        assert f["hints"]["context"] == "azure.functions._abc.Context"
    routes = {next(b for b in f["json"]["bindings"] if b["type"] == "httpTrigger")["route"] for f in functions}
    assert {"health", "params", "openapi.json", "docs", "{*path}", "sampleapi/test_endpoint1"} <= routes


def test_one_blueprint_per_model_module():
    from blueprints import model_blueprints

    blueprints = model_blueprints()
    modules = sorted(p.stem for p in (ROOT / "blueprints").glob("*.py") if not p.stem.startswith("_"))
    assert sorted(b.name.lower() for b in blueprints) == [m.lower() for m in modules]


def test_host_json_serves_routes_without_api_prefix():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["extensionBundle"]["version"].startswith("[4.")


START_AND_LIST_MODULES = """
import json, sys
import function_app
from shared.routing import app_routes, dispatch

def fitting_code():
    return sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy"))

after_import = fitting_code()
routes = app_routes(function_app.app)
statuses = [dispatch(routes, "GET", path, query)[0].status for path, query in
            (("/twolvlImp/target_years", ""), ("/twolvlImp/datasets", "target_year=2015"), ("/health", ""))]
after_lookups = fitting_code()
body = json.dumps({"interpolator": "KNNImputer", "scheme": "AFS", "estimators": 10, "model": "rfr",
                   "interval": "quantile"}).encode()
estimate = dispatch(routes, "POST", "/twolvlImp/estimate", "",
                    {"content-type": "application/json", "content-length": str(len(body))}, body)[0].status
print(json.dumps({"after_import": after_import, "statuses": statuses, "after_lookups": after_lookups,
                  "estimate": estimate, "after_estimate": "sklearn" in fitting_code()}))
"""


def test_starting_the_app_and_answering_health_and_lookups_do_not_import_scikit_learn():
    """An instance's start does not pay for the models' fitting code: sklearn (and scipy) load on first use.

    The background warm-up, which imports it once the dataset is loaded, is off here, so that what
    the start itself and each request import is seen (the warm-up is tested below)."""
    env = {"PATH": "/usr/bin:/bin", "DATASET_PATH": str(ROOT / "data" / "wdi"), "WARM_MODEL_CODE": "0"}
    result = subprocess.run([sys.executable, "-c", START_AND_LIST_MODULES], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["after_import"] == [] and seen["after_lookups"] == []
    assert seen["statuses"] == [200, 200, 200]
    assert seen["estimate"] == 200 and seen["after_estimate"] is True  # ...imported when a request needs it


WARM_UP_WITHOUT_PUBLISH = """
import json, sys
import azure.functions as func
from blueprints import {module}
from shared.store import get_store
from shared.warmup import warm_up

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions({module}.blueprint)
thread = warm_up(app)                # shared.routing.publish(app) is never called
if thread is not None:
    thread.join(120)
print(json.dumps({{"started": thread is not None, "status": get_store().status()["status"],
                   "sklearn": "sklearn" in sys.modules}}))
"""


def warm(module: str, **env_extra) -> dict:
    env = {"PATH": "/usr/bin:/bin", "DATASET_PATH": str(ROOT / "data" / "wdi"), **env_extra}
    result = subprocess.run([sys.executable, "-c", WARM_UP_WITHOUT_PUBLISH.format(module=module)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_warm_up_reads_the_app_it_is_given_not_the_call_order():
    # issue 11: preloading was silently skipped when publish(app) had not been called first
    assert warm("statimpute") == {"started": True, "status": "ok", "sklearn": False}
    # an app whose models read no data and import nothing later has nothing to warm up
    assert warm("sampleapi") == {"started": False, "status": "unavailable", "sklearn": False}


def test_warm_up_imports_the_model_code_after_the_load_unless_turned_off():
    assert warm("twolvlimp") == {"started": True, "status": "ok", "sklearn": True}
    assert warm("twolvlimp", WARM_MODEL_CODE="0") == {"started": True, "status": "ok", "sklearn": False}

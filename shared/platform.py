"""Endpoints every instance serves, whatever models it runs: /, /health, /datasets, /params, docs."""
from __future__ import annotations

import mimetypes
from importlib import resources
from pathlib import Path
from typing import Any

import azure.functions as func
from pydantic import BaseModel

from shared.errors import DatasetUnavailable, MethodNotAllowed, NotFound
from shared.http import FALLBACK_FUNCTION_NAME, ApiBlueprint, json_response
from shared.openapi import ModelParams, model_params, openapi_document
from shared.routing import Route, published_routes
from shared.settings import get_settings
from shared.store import get_store

SERVICE_NAME = "SIDS ML Backend"
VERSION = "2.0.0"
DESCRIPTION = ("Machine-learning backend of the UNDP SIDS Data Platform: fills gaps in country indicators "
               "with model predictions, prediction intervals, feature importances and correlations.")

platform = ApiBlueprint("platform", label="Platform", prefix="", is_model=False, uses_dataset=False)


class ModelInfo(BaseModel):
    name: str
    label: str
    prefix: str
    uses_dataset: bool


class ServiceInfo(BaseModel):
    service: str
    version: str
    models: list[ModelInfo]
    docs: str
    openapi: str


class Health(BaseModel):
    status: str
    source: str | None
    version: str | None
    loaded_at: str | None
    load_seconds: float | None
    rows: int
    indicators: int
    countries: int
    last_error: str | None
    last_error_at: str | None
    dataset_version: str | None = None  # from the dataset's manifest.json, when it has one
    data_warnings: list[str] = []       # what the load ignored (unknown indicators, unusable values)
    dataset_used: bool
    service_model: str | None


class DatasetInfo(BaseModel):
    code: str
    name: str
    source: str | None = None
    license: str | None = None
    indicators: int


def registered_models(routes: list[Route] | None = None) -> list[ApiBlueprint]:
    """The model blueprints among ``routes`` (default: the published app's)."""
    seen: dict[str, ApiBlueprint] = {}
    for route in published_routes() if routes is None else routes:
        for spec in route.api.specs if route.api else ():
            if spec.blueprint is not None and spec.blueprint.is_model:
                seen.setdefault(spec.blueprint.name, spec.blueprint)
    return sorted(seen.values(), key=lambda b: b.name)


def uses_dataset(routes: list[Route] | None = None) -> bool:
    return any(bp.uses_dataset for bp in registered_models(routes))


def service_info() -> ServiceInfo:
    models = [ModelInfo(name=b.name, label=b.label, prefix="/" + b.prefix, uses_dataset=b.uses_dataset)
              for b in registered_models()]
    return ServiceInfo(service=SERVICE_NAME, version=VERSION, models=models, docs="/docs", openapi="/openapi.json")


@platform.get("health", response=Health, errors=(503,))
def health() -> Any:
    """Service and dataset status (used by Kubernetes probes). 503 while no dataset can be served.

    Answers at once from what the instance knows: it never waits for the dataset's storage (a load, or a
    retry after a failed one, runs in the background)."""
    needed = uses_dataset()
    store = get_store()
    if needed:
        store.poke()
    status = store.status()
    if not needed and status["status"] == "unavailable" and not status["last_error"]:
        status["status"] = "ok"  # no model here reads the dataset, so its absence is not a fault
    body = Health(**status, dataset_used=needed, service_model=get_settings().service_model)
    return json_response(body, status=503 if body.status == "unavailable" else 200)


@platform.get("datasets", response=list[DatasetInfo], errors=(503,))
def datasets() -> list[DatasetInfo]:
    """The datasets available, with their names from datasetMeta.csv."""
    data = get_store().get()
    counts = data.indicator_meta["Dataset"].value_counts()
    out = []
    for code, row in data.dataset_meta.iterrows():
        out.append(DatasetInfo(code=str(code), name=str(row["Dataset Name"]),
                               source=row.get("Source") or None, license=row.get("License") or None,
                               indicators=int(counts.get(code, 0))))
    return out


@platform.get("params", response=list[ModelParams])
def params() -> list[dict]:
    """For every model, the inputs of its main endpoint, from which the dashboard builds its forms."""
    return model_params()


@platform.get("openapi.json", response=dict[str, Any])
def openapi() -> dict:
    """This document."""
    return openapi_document(SERVICE_NAME, VERSION, DESCRIPTION)


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API docs</title>
<link rel="stylesheet" href="docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/static/swagger-ui-bundle.js"></script>
<script src="docs/static/docs-init.js"></script>
</body></html>"""

_DOCS_INIT = """window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui",
  deepLinking: true, docExpansion: "list", defaultModelsExpandDepth: 0});"""


def _swagger_asset_dir() -> Path:
    return Path(str(resources.files("swagger_ui") / "static"))


@platform.get("docs", raw=True, content_type="text/html")
def docs(req: func.HttpRequest) -> func.HttpResponse:
    """Swagger UI over /openapi.json, served from the installed swagger-ui-py package (no CDN)."""
    return func.HttpResponse(_DOCS_PAGE.format(title=SERVICE_NAME), mimetype="text/html", charset="utf-8")


_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}


@platform.get("docs/static/{file}", raw=True, hidden=True)
def docs_asset(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("file", "")
    if name == "docs-init.js":
        return func.HttpResponse(_DOCS_INIT, mimetype="application/javascript", charset="utf-8")
    if name not in _ASSETS:
        raise NotFound(f"No such documentation asset: {name[:80]}")
    content = (_swagger_asset_dir() / name).read_bytes()
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return func.HttpResponse(content, mimetype=mime, headers={"Cache-Control": "public, max-age=86400"})


def root_and_fallback(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /`` describes the service; any other path no function serves gets a JSON 404.

    Every other function sorts before this one and lists every method, so under the host's
    first-match routing this catch-all only ever sees paths that nothing else serves.
    """
    path = (req.route_params.get("path") or "").strip("/")
    if path:
        raise NotFound(f"No route /{path[:200]}; see /docs for the available endpoints")
    if req.method.upper() in ("GET", "HEAD"):  # HEAD: answered like GET, the body dropped by the pipeline
        return json_response(service_info())
    raise MethodNotAllowed(f"Method {req.method[:20]} is not allowed on /; use GET",
                           headers={"Allow": "GET, HEAD, OPTIONS"})


for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):  # HEAD goes to GET's handler (shared/http.py)
    platform.endpoint("{*path}", _method, raw=True, response=ServiceInfo, hidden=_method != "GET",
                      summary="Service name, version and the models it serves",
                      function_name=FALLBACK_FUNCTION_NAME)(root_and_fallback)

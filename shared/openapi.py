"""OpenAPI 3.1 document and /params, generated from the registered routes' pydantic models."""
from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from shared.http import ApiBlueprint, RouteSpec
from shared.routing import Route, published_routes
from shared.validation import Lookup, RequiredIf, enum_values, field_metadata

REF = "#/components/schemas/{model}"


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(BaseModel):
    """A malformed request (FastAPI's layout)."""

    detail: list[ValidationErrorItem]


class ErrorDetail(BaseModel):
    msg: str
    type: str
    context: dict[str, Any] | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """A request the service understood but cannot serve (value not supported by the data, unavailable dataset...)."""

    detail: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "No function key (x-functions-key header or code query parameter)",
    404: "Not found",
    405: "Method not allowed",
    411: "Request body sent without a Content-Length (a chunked body is not forwarded by the Functions host)",
    413: "Request body too large",
    415: "Request body is not JSON (Content-Type must be application/json)",
    422: "Invalid request, or a value the data does not support",
    500: "Unexpected error (logged with the request id)",
    503: "Dataset unavailable, or the instance is overloaded (then with a Retry-After header)",
    504: "The computation overran the request's time budget and was stopped",
}


class _Components:
    def __init__(self):
        self.schemas: dict[str, Any] = {}

    def schema_of(self, tp: Any, mode: str) -> dict:
        schema = TypeAdapter(tp).json_schema(ref_template=REF, mode=mode)
        defs = schema.pop("$defs", {})
        top = None
        if schema.get("type") == "object" and "title" in schema and isinstance(tp, type) and issubclass(tp, BaseModel):
            top = tp.__name__
            defs[top] = schema
        # Two models may share a class name (CountryInfo in two blueprints) or differ between
        # request and response mode: give the later one its own name instead of reusing the first.
        renames = {}
        for name, definition in defs.items():
            final, n = name, 1
            while final in self.schemas and self.schemas[final] != definition:
                n += 1
                final = f"{name}{n}"
            if final != name:
                renames[name] = final
        if renames:
            text = json.dumps({"defs": defs, "schema": schema})
            for old, new in renames.items():
                text = text.replace(json.dumps(REF.format(model=old)), json.dumps(REF.format(model=new)))
            loaded = json.loads(text)
            defs = {renames.get(k, k): v for k, v in loaded["defs"].items()}
            schema = loaded["schema"]
        for name, definition in defs.items():
            self.schemas.setdefault(name, definition)
        if top is not None:
            return {"$ref": REF.format(model=renames.get(top, top))}
        return schema


def _parameters(model: type[BaseModel], components: _Components) -> list[dict]:
    schema = components.schema_of(model, "validation")
    if "$ref" in schema:
        schema = components.schemas[schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if prop.get("description"):
            param["description"] = prop["description"]
        params.append(param)
    return params


def _response(description: str, schema: dict, content_type: str = "application/json") -> dict:
    return {"description": description, "content": {content_type: {"schema": schema}}}


def _operation(route: Route, spec: RouteSpec, components: _Components) -> dict:
    several = len(route.api.handlers) > 1
    op_id = f"{route.name}_{spec.method.lower()}" if several else route.name
    op: dict[str, Any] = {"operationId": op_id, "summary": spec.summary, "tags": spec.tags}
    if spec.alias_of:
        op["deprecated"] = True
    if spec.description and spec.description != spec.summary:
        op["description"] = spec.description
    if spec.query is not None:
        op["parameters"] = _parameters(spec.query, components)
    if spec.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": components.schema_of(spec.body, "validation")}}}
    if spec.response is None:
        ok = {"description": "OK"} if spec.content_type == "application/json" else \
            {"description": "OK", "content": {spec.content_type: {"schema": {"type": "string"}}}}
    else:
        ok = _response("OK", components.schema_of(spec.response, "serialization"), spec.content_type)
    if spec.status == 202:
        ok["description"] = "Accepted: the work goes on after the answer"
    responses: dict[str, Any] = {str(spec.status): ok}
    statuses = set(spec.errors)
    if spec.query is not None or spec.body is not None:
        statuses.add(422)
    if spec.body is not None:
        statuses.update((411, 413, 415))
    for status in sorted(statuses):
        if status == 422:
            schema = {"anyOf": [components.schema_of(HTTPValidationError, "serialization"),
                                components.schema_of(ErrorResponse, "serialization")]}
        else:
            schema = components.schema_of(ErrorResponse, "serialization")
        responses[str(status)] = _response(ERROR_DESCRIPTIONS.get(status, "Error"), schema)
    op["responses"] = responses
    if spec.main:
        op["x-main-endpoint"] = True
    if getattr(spec.auth_level, "value", spec.auth_level) != "anonymous":
        op["security"] = [{FUNCTION_KEY: []}, {FUNCTION_KEY_QUERY: []}]
    return op


FUNCTION_KEY, FUNCTION_KEY_QUERY = "functionKey", "functionKeyQuery"
SECURITY_SCHEMES = {  # how the Functions host takes a function key (routes with AuthLevel.FUNCTION)
    FUNCTION_KEY: {"type": "apiKey", "in": "header", "name": "x-functions-key"},
    FUNCTION_KEY_QUERY: {"type": "apiKey", "in": "query", "name": "code"},
}


def openapi_document(title: str, version: str, description: str = "") -> dict:
    components = _Components()
    paths: dict[str, dict] = {}
    tags: dict[str, str] = {}
    for route in published_routes():
        api = route.api
        for spec in api.specs if api else ():
            if spec.hidden:
                continue
            path = "/" if route.is_catch_all else "/" + spec.path
            paths.setdefault(path, {})[spec.method.lower()] = _operation(route, spec, components)
            if spec.blueprint is not None and spec.blueprint.is_model:
                tags.setdefault(spec.blueprint.label, spec.blueprint.description)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "tags": [{"name": "Platform", "description": "Service status, datasets and model descriptions"}]
        + [{"name": name, "description": desc} for name, desc in tags.items()],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(components.schemas.items())), "securitySchemes": SECURITY_SCHEMES},
    }


# ---------------------------------------------------------------------------- /params
def _label(name: str, title: str | None) -> str:
    if title:
        return title
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ")
    return words[:1].upper() + words[1:]


def _input_type(prop: dict, annotation: Any) -> dict:
    values = enum_values(annotation)
    if values is not None:
        return {"type": "enum", "values": values}
    if "anyOf" in prop:
        prop = next((p for p in prop["anyOf"] if p.get("type") != "null"), prop)
    out = {"type": prop.get("type", "string")}
    if out["type"] == "array":
        out["items"] = (prop.get("items") or {}).get("type", "string")
    for bound in ("minimum", "maximum", "minItems", "maxItems"):
        if bound in prop:
            out[bound] = prop[bound]
    return out


def model_inputs(model: type[BaseModel]) -> list[dict]:
    """The /params description of a request model's fields."""
    schema = model.model_json_schema(mode="validation")
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    inputs = []
    for name, info in model.model_fields.items():
        prop = props.get(info.alias or name, {})
        lookups = field_metadata(info, Lookup)
        rules = field_metadata(info, RequiredIf)
        if name in required:
            conditions: dict[str, Any] = {"required": True}
        elif rules:
            conditions = {"required": {r.field: [getattr(v, "value", v) for v in r.values] for r in rules}}
        else:
            conditions = {"required": False}
        entry = {
            "parameter": name,
            "label": _label(name, info.title),
            "description": info.description or "",
            **_input_type(prop, info.annotation),
            "req_endpoint": None if not lookups else {
                "path": lookups[0].path, "method": lookups[0].method, "inputs": list(lookups[0].inputs)},
            "conditions": conditions,
        }
        if not info.is_required() and info.default is not None:
            entry["default"] = getattr(info.default, "value", info.default)
        inputs.append(entry)
    return inputs


class ParamInput(BaseModel):
    parameter: str
    label: str
    description: str
    type: str
    values: list[Any] | None = None
    items: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    minItems: int | None = None
    maxItems: int | None = None
    default: Any = None
    req_endpoint: dict[str, Any] | None
    conditions: dict[str, Any]


class ModelParams(BaseModel):
    model: str = Field(description="Model name, also its route prefix")
    label: str
    description: str
    endpoint: str
    method: str
    inputs: list[ParamInput]


def model_params() -> list[dict]:
    """One entry per registered model with a main endpoint."""
    out = []
    for spec in (s for route in published_routes() if route.api for s in route.api.specs):
        if not spec.main or spec.body is None:
            continue
        bp: ApiBlueprint = spec.blueprint
        out.append({"model": bp.name, "label": bp.label, "description": bp.description,
                    "endpoint": "/" + spec.path, "method": spec.method, "inputs": model_inputs(spec.body)})
    return sorted(out, key=lambda m: m["model"])

"""/openapi.json and /params, generated from the registered routes (the Swagger UI page rendered by
Chromium: tests/system/test_swagger_ui.py)."""
import re

from shared.routing import app_routes


def test_openapi_covers_every_registered_route(app, call):
    doc = call("GET", "/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for route in app_routes(app):
        for spec in route.api.specs:
            if spec.hidden:
                continue
            path = "/" if route.is_catch_all else "/" + route.template
            assert (path, spec.method) in documented, route.template


def test_openapi_document_is_valid_and_refs_resolve(call):
    from openapi_spec_validator import validate

    doc = call("GET", "/openapi.json").json()
    validate(doc)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', str(doc).replace("'", '"')))
    assert refs <= set(doc["components"]["schemas"])


def test_openapi_request_schema_is_the_handlers_pydantic_model(call):
    from blueprints.sampleapi import SampleRequest

    doc = call("GET", "/openapi.json").json()
    op = doc["paths"]["/sampleapi/test_endpoint1"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    schema = doc["components"]["schemas"][ref]
    assert set(schema["properties"]) == set(SampleRequest.model_fields)
    assert schema["required"] == ["requiredField"]
    assert "422" in op["responses"] and "413" in op["responses"] and "411" in op["responses"]


def test_params_lists_each_models_main_endpoint_inputs(call):
    params = call("GET", "/params").json()
    sample = next(m for m in params if m["model"] == "sampleapi")
    assert sample["endpoint"] == "/sampleapi/test_endpoint1"
    inputs = {i["parameter"]: i for i in sample["inputs"]}
    assert inputs["requiredField"]["conditions"] == {"required": True}
    assert inputs["optionalField"]["conditions"] == {"required": False}
    assert inputs["requiredField"]["label"] == "Required field"
    assert inputs["requiredField"]["type"] == "string"


def test_params_describes_enums_lookups_and_conditions():
    from typing import Annotated, Literal, Optional

    import azure.functions as func
    from pydantic import Field

    from shared.http import ApiBlueprint
    from shared.openapi import model_inputs
    from shared.validation import ApiModel, Lookup, RequiredIf

    class Req(ApiModel):
        scheme: Literal["MANUAL", "AFS"] = Field(..., title="Scheme")
        picks: Annotated[Optional[list[str]], RequiredIf("scheme", "MANUAL"),
                         Lookup("/m/picks", "POST", ("scheme",))] = None

    inputs = {i["parameter"]: i for i in model_inputs(Req)}
    assert inputs["scheme"]["type"] == "enum" and inputs["scheme"]["values"] == ["MANUAL", "AFS"]
    assert inputs["picks"]["conditions"] == {"required": {"scheme": ["MANUAL"]}}
    assert inputs["picks"]["req_endpoint"] == {"path": "/m/picks", "method": "POST", "inputs": ["scheme"]}
    assert inputs["picks"]["type"] == "array"

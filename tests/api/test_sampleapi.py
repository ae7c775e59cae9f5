"""The sample model keeps the old service's documented contract, and shows up like any other model."""
import pytest

from models import sampleapi


def test_pure_functions():
    assert sampleapi.describe("a") == "Received a"
    assert sampleapi.describe("a", "b") == "Received a and b"
    assert sampleapi.greet("Ana") == "Hi Ana"


def test_endpoint1_echoes_both_fields(call):
    reply = call("POST", "/sampleapi/test_endpoint1",
                 {"requiredField": "required 123", "optionalField": "optional 123"})
    assert reply.status == 200
    assert reply.json() == {"resp1": "Received required 123 and optional 123"}


def test_endpoint1_optional_field_may_be_left_out_and_unknown_fields_are_ignored(call):
    reply = call("POST", "/sampleapi/test_endpoint1", {"requiredField": "x", "somethingElse": 1})
    assert reply.status == 200 and reply.json() == {"resp1": "Received x"}


@pytest.mark.parametrize("body,loc", [
    ({"optionalField": "y"}, ["body", "requiredField"]),
    ({"requiredField": 5}, ["body", "requiredField"]),
    ({"requiredField": "x" * 1001}, ["body", "requiredField"]),
])
def test_endpoint1_validation(call, body, loc):
    reply = call("POST", "/sampleapi/test_endpoint1", body)
    assert reply.status == 422
    assert reply.json()["detail"][0]["loc"] == loc


def test_endpoint1_rejects_malformed_json(call):
    reply = call("POST", "/sampleapi/test_endpoint1", body=b"{not json")
    assert reply.status == 422 and reply.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_endpoint2_greets(call, method):
    reply = call(method, "/sampleapi/test_endpoint2", params={"name": "Ana"})
    assert reply.status == 200 and reply.json() == "Hi Ana"
    missing = call(method, "/sampleapi/test_endpoint2")
    assert missing.status == 422 and missing.json()["detail"][0]["loc"] == ["query", "name"]


def test_params_and_openapi(call):
    entry = next(m for m in call("GET", "/params").json() if m["model"] == "sampleapi")
    assert entry["endpoint"] == "/sampleapi/test_endpoint1" and entry["label"] == "Sample Model"
    inputs = {i["parameter"]: i for i in entry["inputs"]}
    assert inputs["requiredField"]["conditions"] == {"required": True}
    assert inputs["optionalField"]["conditions"] == {"required": False}
    assert inputs["requiredField"]["label"] == "Required field"
    paths = call("GET", "/openapi.json").json()["paths"]
    assert set(paths["/sampleapi/test_endpoint2"]) == {"get", "post"}
    assert paths["/sampleapi/test_endpoint1"]["post"]["x-main-endpoint"] is True


def test_endpoint1_over_http(live_server):
    import httpx

    reply = httpx.post(live_server + "/sampleapi/test_endpoint1", json={"requiredField": "a", "optionalField": "b"})
    assert reply.status_code == 200 and reply.json() == {"resp1": "Received a and b"}
    assert httpx.get(live_server + "/sampleapi/test_endpoint2", params={"name": "Ana"}).json() == "Hi Ana"

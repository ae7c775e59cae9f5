"""The HTTP behaviour every route shares (shared/http.py), exercised through real func.HttpRequest objects."""
import gzip
import json
import logging

import azure.functions as func
import pytest
from pydantic import Field

import models.errors
import shared.capacity
from models.errors import ModelError
from shared.capacity import CapacityError, Overloaded
from shared.errors import UnsupportedValue
from shared.http import ERROR_ANSWERS, ApiBlueprint
from local_host.asgi_server import FunctionAppServer
from conftest import client_headers
from helpers import asgi_request
from shared.routing import app_routes, host_request, resolve
from shared.settings import Settings, reset_settings
from shared.validation import ApiModel, Lookup, RequiredIf

from typing import Annotated, Literal, Optional


class Order(ApiModel):
    scheme: Literal["MANUAL", "AFS"] = Field(..., description="How predictors are chosen")
    items: Annotated[Optional[list[str]], RequiredIf("scheme", "MANUAL"),
                     Lookup("/shop/items", "GET", ("scheme",))] = Field(None, title="Items")
    count: int = Field(1, ge=1, le=5)


def _make_app():
    bp = ApiBlueprint("shop", label="Test shop")

    @bp.post("order", body=Order, response=dict[str, int], main=True)
    def order(req: Order) -> dict:
        if req.items and "unknown" in req.items:
            raise UnsupportedValue(f"Unknown item in {req.items}")
        return {"count": req.count}

    @bp.get("boom", response=dict[str, int])
    def boom() -> dict:
        raise RuntimeError("secret internal detail /srv/app/file.py")

    @bp.get("busy", response=dict[str, int])
    def busy() -> dict:
        raise Overloaded("This instance is busy. Retry later.", retry_after_seconds=7, queued=3)

    @bp.get("big", response=list[int])
    def big() -> list:
        return list(range(5000))

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(bp)
    return app


APP = _make_app()
ROUTES = app_routes(APP)


def invoke(method, path, body=None, headers=None):
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    route, params = resolve(ROUTES, method, path)
    req = host_request(method, "http://localhost" + path, client_headers(headers, raw), "", raw or b"", params)
    return route.handler(req)


def payload(resp):
    raw = resp.get_body()
    if resp.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def test_valid_body_is_served_as_json():
    resp = invoke("POST", "/shop/order", {"scheme": "MANUAL", "items": ["a"], "count": 3})
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert payload(resp) == {"count": 3}


def test_malformed_body_gets_fastapi_422_list():
    resp = invoke("POST", "/shop/order", {"scheme": "OTHER", "count": 9})
    assert resp.status_code == 422
    detail = payload(resp)["detail"]
    locs = {tuple(d["loc"]) for d in detail}
    assert ("body", "scheme") in locs and ("body", "count") in locs
    assert all(set(d) >= {"loc", "msg", "type"} for d in detail)


def test_conditional_requirement_declared_once_is_enforced():
    resp = invoke("POST", "/shop/order", {"scheme": "MANUAL"})
    assert resp.status_code == 422
    [error] = payload(resp)["detail"]
    assert error["loc"] == ["body", "items"]
    assert error["type"] == "missing"
    assert "scheme is MANUAL" in error["msg"]
    assert invoke("POST", "/shop/order", {"scheme": "AFS"}).status_code == 200


def test_unsupported_value_gets_value_error_detail_with_its_own_message():
    first = payload(invoke("POST", "/shop/order", {"scheme": "MANUAL", "items": ["unknown", "x"]}))
    second = payload(invoke("POST", "/shop/order", {"scheme": "MANUAL", "items": ["unknown", "y"]}))
    assert first["detail"]["type"] == "value_error"
    assert "'x'" in first["detail"]["msg"] and "'y'" in second["detail"]["msg"]


def test_model_errors_carry_no_status_and_are_mapped_in_one_place():
    resp = invoke("GET", "/shop/busy")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"
    assert payload(resp) == {"detail": {"msg": "This instance is busy. Retry later.", "type": "overloaded",
                                        "context": {"queued": 3}}}
    defined = {c for module in (models.errors, shared.capacity) for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, (ModelError, CapacityError)) and c.__subclasses__() == []}
    assert defined <= set(ERROR_ANSWERS)  # every status-free error has its answer in the table
    assert not any(hasattr(c, "status") for c in defined)


@pytest.mark.parametrize("raw", [b"{not json", b'{"scheme": NaN}', b'{"count": 1e999999}', b"\xff\xfe", b""])
def test_invalid_json_is_a_clear_422(raw):
    resp = invoke("POST", "/shop/order", raw)
    assert resp.status_code == 422
    detail = payload(resp)["detail"]
    assert detail[0]["loc"][0] == "body"
    assert detail[0]["type"] in ("json_invalid", "model_type", "missing", "finite_number", "int_from_float",
                                 "int_parsing")


def test_oversized_body_is_413_before_parsing():
    reset_settings(Settings(max_body_bytes=100))
    try:
        resp = invoke("POST", "/shop/order", b"{" + b" " * 200 + b"}")
        assert resp.status_code == 413
        resp = invoke("POST", "/shop/order", b"{}", headers={"content-length": "5000"})
        assert resp.status_code == 413
    finally:
        reset_settings(None)


def test_unexpected_error_is_logged_with_request_id_and_not_leaked(caplog):
    with caplog.at_level(logging.ERROR, logger="sids.http"):
        resp = invoke("GET", "/shop/boom", headers={"x-request-id": "req-123"})
    assert resp.status_code == 500
    text = resp.get_body().decode()
    assert "secret" not in text and "/srv" not in text and "Traceback" not in text
    assert payload(resp)["detail"]["request_id"] == "req-123"
    assert resp.headers["x-request-id"] == "req-123"
    assert "req-123" in caplog.text and "secret internal detail" in caplog.text


def test_request_id_is_generated_when_missing_or_unsafe():
    resp = invoke("POST", "/shop/order", {"scheme": "AFS"}, headers={"x-request-id": "bad id\n"})
    rid = resp.headers["x-request-id"]
    assert rid != "bad id\n" and len(rid) == 32


def test_cors_preflight_answers_listed_origin_only():
    ok = invoke("OPTIONS", "/shop/order", headers={"origin": "https://data.undp.org",
                                                   "access-control-request-method": "POST",
                                                   "access-control-request-headers": "content-type"})
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://data.undp.org"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in ok.headers
    denied = invoke("OPTIONS", "/shop/order", headers={"origin": "https://evil.example",
                                                       "access-control-request-method": "POST"})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_cors_header_on_actual_response_for_allowed_origin():
    resp = invoke("POST", "/shop/order", {"scheme": "AFS"}, headers={"origin": "http://localhost:8080"})
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"


def test_large_responses_are_gzipped_when_accepted():
    plain = invoke("GET", "/shop/big")
    zipped = invoke("GET", "/shop/big", headers={"accept-encoding": "gzip, deflate"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert payload(zipped) == json.loads(plain.get_body()) == list(range(5000))


def test_unknown_route_is_json_404(call):
    reply = call("GET", "/no/such/route")
    assert reply.status == 404
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["detail"]["type"] == "not_found"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(call, method):
    reply = call(method, "/health")
    assert reply.status == 405
    assert reply.json()["detail"]["type"] == "method_not_allowed"
    assert reply.headers["allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("path", ["/", "/health", "/openapi.json", "/docs", "/twolvlImp/target_years",
                                  "/twolvlImp/targets?target_year=2015&dataset=wdi", "/no/such/route",
                                  "/twolvlImp/targets?target_year=1066&dataset=wdi"])
def test_head_answers_like_get_without_a_body(call, path):
    # RFC 9110 9.3.2: the status and headers GET would send, no content (issue 19: it was 405).
    for accept in ("identity", "gzip"):
        got = call("GET", path, headers={"accept-encoding": accept})
        head = call("HEAD", path, headers={"accept-encoding": accept})
        assert head.status == got.status, (path, head.status, got.status)
        assert head.body == b"" and got.body != b""
        same = {k: v for k, v in head.headers.items() if k not in ("x-request-id", "content-length")}
        assert same == {k: v for k, v in got.headers.items() if k not in ("x-request-id", "content-length")}


def test_head_is_refused_where_get_is_not_served(call):
    reply = call("HEAD", "/twolvlImp/predict")
    assert reply.status == 405 and reply.body == b""
    assert reply.headers["allow"] == "POST, OPTIONS"
    assert call("OPTIONS", "/health").headers["allow"] == "GET, HEAD, OPTIONS"


def test_a_body_route_without_content_length_is_411(call):
    # The Functions host forwards a body only with a Content-Length: a chunked one arrives empty (issue 19: 422
    # "Expecting value"). With a length, an empty or invalid body is still the 422 it was.
    chunked = call("POST", "/sampleapi/test_endpoint1", headers={"transfer-encoding": "chunked",
                                                                 "content-type": "application/json"})
    assert chunked.status == 411 and chunked.json()["detail"]["type"] == "length_required"
    assert call("POST", "/twolvlImp/predict").status == 411
    empty = call("POST", "/sampleapi/test_endpoint1", headers={"content-length": "0",
                                                               "content-type": "application/json"})
    assert empty.status == 422 and empty.json()["detail"][0]["type"] == "json_invalid"
    assert call("POST", "/sampleapi/test_endpoint2?name=Ana").status == 200  # no body declared: no length needed


def test_wrong_allowed_method_on_known_route_is_405(call):
    reply = call("GET", "/sampleapi/test_endpoint1")
    assert reply.status == 405
    assert "POST" in reply.json()["detail"]["msg"]


@pytest.mark.parametrize("accept,zipped", [("gzip;q=0", False), ("gzip;q=0, deflate", False), ("*;q=0", False),
                                           ("identity", False), ("*", True), ("deflate, gzip;q=0.5", True),
                                           ("GZIP", True), ("gzip;q=bad", False)])
def test_gzip_honours_q_values(accept, zipped):
    resp = invoke("GET", "/shop/big", headers={"accept-encoding": accept})
    assert ("Content-Encoding" in resp.headers) is zipped
    assert payload(resp) == list(range(5000))


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None, "application/jsonp", "text/json"])
def test_post_body_that_is_not_json_is_415_and_never_reaches_the_handler(content_type):
    raw = json.dumps({"scheme": "AFS", "count": 2}).encode()
    headers = {"content-length": str(len(raw))}
    if content_type:
        headers["content-type"] = content_type
    route, params = resolve(ROUTES, "POST", "/shop/order")
    req = func.HttpRequest("POST", "http://localhost/shop/order", headers=headers, params={}, route_params=params,
                           body=raw)
    resp = route.handler(req)
    assert resp.status_code == 415
    assert payload(resp)["detail"]["type"] == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json"])
def test_json_content_types_are_accepted(content_type):
    resp = invoke("POST", "/shop/order", {"scheme": "AFS", "count": 2}, headers={"content-type": content_type})
    assert resp.status_code == 200 and payload(resp) == {"count": 2}


def test_control_characters_in_a_request_cannot_forge_log_lines(caplog):
    from shared.http import log_safe

    assert log_safe("/a\r\nINFO forged\x1b[31m") == "/a\\r\\nINFO forged\\x1b[31m"
    route, params = resolve(ROUTES, "GET", "/shop/big")
    with caplog.at_level(logging.INFO):
        route.handler(func.HttpRequest("PUT\r\nINFO forged", "http://localhost/shop/big", body=b""))
        server = FunctionAppServer(APP)
        asgi_request(server, "GET", "/shop/big%0D%0AINFO%20forged%20line")
    messages = [r.getMessage() for r in caplog.records if r.name in ("sids.http", "sids.localhost")]
    assert len(messages) >= 2 and any("forged" in m for m in messages)
    assert all("\n" not in m and "\r" not in m for m in messages)


"""/aimode routes through the app's registered functions (no server, no queue): keys, validation, status.

The queue run itself is tested against Azurite in tests/system/test_aimode_queue.py and test_aimode_workers.py.
"""
from __future__ import annotations

import json

import pytest

from shared.routing import dispatch, has_key

KEY = "k-123"


@pytest.fixture
def routes(app):
    from shared.routing import app_routes

    return app_routes(app)


@pytest.fixture
def folder_service(tmp_path):
    """The AI Mode service on a scratch folder, with no queue configured."""
    from blueprints.aimode import AiMode, AiModeWork, read_host_json, use_service
    from shared.publish import FolderTarget
    from shared.runs import Runs, queue_options

    previous = use_service(AiMode(runs=Runs(FolderTarget(tmp_path), None), work=AiModeWork(),
                                  options=queue_options(read_host_json())))
    yield tmp_path
    use_service(previous)


def send(routes, method, path, body=None, query="", headers=None, keys=(KEY,)):
    raw = json.dumps(body).encode() if body is not None else b""
    head = {"content-type": "application/json", "content-length": str(len(raw))} if raw else {}
    head.update(headers or {})
    reply, _ = dispatch(routes, method, path, query, head, raw, keys=keys)
    return reply.status, (json.loads(reply.body) if reply.body else None)


def test_starting_a_run_needs_a_function_key(call, routes, folder_service):
    assert call("POST", "/aimode/runs", json_body={"slots": [1]}).status == 401  # the test client has no key
    for headers, query in (({}, ""), ({"x-functions-key": "wrong"}, ""), ({}, "code=wrong")):
        status, body = send(routes, "POST", "/aimode/runs", {"slots": [1]}, query, headers)
        assert status == 401 and body["detail"]["type"] == "unauthorized"
    # with no key configured at all, nobody gets in (never anonymous)
    assert send(routes, "POST", "/aimode/runs", {"slots": [1]}, headers={"x-functions-key": ""}, keys=())[0] == 401
    # the right key, as a header or as ?code=, reaches the function: no queue configured here -> 503 that says so
    for headers, query in (({"x-functions-key": KEY}, ""), ({}, f"code={KEY}")):
        status, body = send(routes, "POST", "/aimode/runs", {"slots": [1]}, query, headers)
        assert status == 503 and "AzureWebJobsStorage" in body["detail"]["msg"], body
    assert send(routes, "GET", "/aimode/status", keys=())[0] == 200  # the status is public


def test_has_key_reads_header_and_code_and_compares_exactly():
    assert has_key({"X-Functions-Key": "abc"}, "", ("abc",))
    assert has_key({}, "code=abc&x=1", ("abc",))
    assert not has_key({"x-functions-key": "abcd"}, "code=ab", ("abc",))
    assert not has_key({"x-functions-key": ""}, "", ("",))


@pytest.mark.parametrize("body", [{"slots": [5]}, {"slots": [1, 1]}, {"slots": []}, {"limit": 0},
                                  {"indicators": ["../etc"]}, {"accuracy_sample": -1}])
def test_bad_run_requests_get_a_422(routes, folder_service, body):
    status, answer = send(routes, "POST", "/aimode/runs", body, headers={"x-functions-key": KEY})
    assert status == 422 and isinstance(answer["detail"], list), answer


def test_codes_not_in_the_dataset_are_refused_before_anything_is_enqueued(wdi):
    from blueprints.aimode import AiModeWork, RunRequest
    from shared.errors import UnsupportedValue

    with pytest.raises(UnsupportedValue, match="1 indicator code.*wdi-NOPE"):
        AiModeWork().messages(wdi, RunRequest(slots=[1], indicators=["wdi-EN.POP.DNST", "wdi-NOPE"]), 0)
    assert set(AiModeWork().messages(wdi, RunRequest(slots=[1, 2], indicators=["wdi-EN.POP.DNST"]), 0)) == {
        "model1/wdi-EN.POP.DNST", "model2/wdi-EN.POP.DNST"}


def test_status_without_any_run_and_for_an_unknown_run(routes, folder_service):
    assert send(routes, "GET", "/aimode/status") == (200, {"current": None, "run": None})
    status, body = send(routes, "GET", "/aimode/status", query="run=nope")
    assert status == 404 and body["detail"]["msg"] == "No run 'nope'"
    assert send(routes, "GET", "/aimode/status", query="run=..%2F..%2Fetc")[0] == 422
    assert send(routes, "GET", "/aimode/status", query="run=a..b")[0] == 404  # a name, but no run


def test_settings_derive_the_queue_endpoint_from_the_account_name():
    from shared.settings import Settings

    settings = Settings.from_env({"AzureWebJobsStorage__accountName": "stkabc"})
    assert settings.queue_endpoint == "https://stkabc.queue.core.windows.net"
    assert Settings.from_env({}).queue_endpoint is None

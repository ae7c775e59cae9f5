"""Property-based tests (Hypothesis) of the validation layer, one of the two places hostile input enters.

The validation layer: every JSON-body and query route of the app, whatever blueprints
are registered, gets arbitrary JSON bodies, near-valid bodies with one or more fields
replaced by hostile values (huge numbers, NaN/Infinity literals, unicode and control
characters in codes, very long lists), and hostile query strings. It must never answer
5xx, every error must have FastAPI's shape, and every answer must be strict JSON.
(The dataset loader, the other place, is in tests/unit/test_hostile_dataset.py.)
"""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from helpers import hostile_text

HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True, database=None)


# --------------------------------------------------------------------------- routes of the app
def _routes():
    import function_app
    from shared.routing import app_routes

    out = []
    for route in app_routes(function_app.app):
        if "{" in route.template:
            continue
        for spec in route.api.specs:
            if spec.raw or spec.hidden or spec.alias_of:
                continue
            if spec.body is not None or spec.query is not None:
                out.append(SimpleNamespace(template=route.template, methods=(spec.method,), spec=spec,
                                           keyed=route.needs_key()))
    return out


ROUTES = _routes()
BODY_ROUTES = [r for r in ROUTES if r.spec.body is not None]
QUERY_ROUTES = [r for r in ROUTES if r.spec.query is not None]
# Prediction endpoints train models: fewer examples there keeps the run short (each is still >= 25).
TEST_KEY = "hostile-input-test-key"
HEAVY = ("predict", "estimate", "cluster", "correlate", "impute")


def budget(route, n: int) -> int:
    return max(25, n // 3) if any(route.template.endswith(h) for h in HEAVY) else n


def _strict_json(raw: bytes) -> Any:
    def reject(name):
        raise AssertionError(f"response holds {name}, which is not JSON")
    return json.loads(raw, parse_constant=reject)


def assert_answer_is_sound(reply, what: str) -> None:
    import gzip

    # (a 503 "not_configured" answers every request to a route this instance is not set up for, whatever its
    # body: POST /aimode/runs without a storage queue)
    not_configured = reply.status == 503 and b'"type":"not_configured"' in reply.body
    assert reply.status < 500 or not_configured, f"{what} -> {reply.status}: {reply.body[:400]!r}"
    assert reply.headers.get("content-type", "").startswith("application/json"), what
    raw = gzip.decompress(reply.body) if reply.headers.get("content-encoding") == "gzip" else reply.body
    body = _strict_json(raw)
    if reply.status >= 400:
        assert isinstance(body, dict) and set(body) == {"detail"}, f"{what}: not FastAPI-shaped: {body!r:.300}"
        detail = body["detail"]
        if isinstance(detail, list):
            assert detail, what
            for item in detail:
                assert {"loc", "msg", "type"} <= set(item), f"{what}: {item!r:.300}"
                assert isinstance(item["loc"], list) and item["loc"], what
                assert item["loc"][0] in ("body", "query", "path"), f"{what}: {item['loc']}"
                assert all(isinstance(p, (str, int)) for p in item["loc"]), what
                assert isinstance(item["msg"], str) and isinstance(item["type"], str), what
        else:
            assert isinstance(detail, dict), f"{what}: {detail!r:.300}"
            assert isinstance(detail.get("msg"), str) and isinstance(detail.get("type"), str), what
        if reply.status == 422 and isinstance(detail, dict):
            assert detail["type"] == "value_error", what


# --------------------------------------------------------------------------- strategies
huge_numbers = st.one_of(
    st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
    st.sampled_from([2 ** 31, 2 ** 63, -(2 ** 63) - 1, 10 ** 300, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
NON_FINITE_LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "9" * 5000, "-0", "1E+309"]
scalar = st.one_of(st.none(), st.booleans(), huge_numbers, hostile_text)
json_values = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                           st.dictionaries(hostile_text, inner, max_size=6)),
                           max_leaves=25)


def encode(value: Any, mode: int) -> bytes:
    """JSON text as a client might send it: escaped, raw UTF-8, or with lone surrogates as raw bytes."""
    if mode == 0:
        return json.dumps(value).encode()
    text = json.dumps(value, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass" if mode == 2 else "replace")


def example_body(model) -> dict:
    """A plausible body for a request model, from the examples and defaults its fields declare."""
    body = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if info.examples:
            body[alias] = info.examples[0]
        elif not info.is_required():
            default = info.get_default(call_default_factory=True)
            body[alias] = getattr(default, "value", default)
    return json.loads(json.dumps(body, default=str))


def fields_of(model) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


# --------------------------------------------------------------------------- validation layer
@pytest.fixture
def call(call):
    """The host's routing, every request with a function key: the validation of keyed routes is under test too
    (without the key the host answers 401 before the function sees the body: tests/api/test_aimode_api.py)."""
    def keyed(method, path, headers=None, **kwargs):
        return call(method, path, headers={**(headers or {}), "x-functions-key": TEST_KEY}, keys=(TEST_KEY,), **kwargs)
    return keyed


def test_routes_were_found():
    assert BODY_ROUTES and QUERY_ROUTES, "no routes with a body or query model: the tests below would be vacuous"


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: r.template)
def test_any_json_body_is_a_clean_4xx_or_an_answer(call, route):
    @settings(HYPO, max_examples=budget(route, 80))
    @given(value=json_values, mode=st.integers(0, 2))
    def check(value, mode):
        reply = call(route.methods[0], "/" + route.template, body=encode(value, mode),
                     headers={"content-type": "application/json"})
        assert_answer_is_sound(reply, f"POST /{route.template} {value!r:.200}")

    check()


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: r.template)
def test_hostile_values_in_otherwise_valid_bodies(call, route):
    base = example_body(route.spec.body)
    names = fields_of(route.spec.body)
    hostile_field_value = st.one_of(scalar, st.lists(hostile_text, max_size=5), json_values,
                                    st.lists(st.sampled_from(["wdi-SP.URB.TOTL", "x", ""]), min_size=1000,
                                             max_size=20000))

    @settings(HYPO, max_examples=budget(route, 80))
    @given(changes=st.dictionaries(st.sampled_from(names + ["unknown_field", ""]), hostile_field_value,
                                   min_size=1, max_size=3),
           drop=st.lists(st.sampled_from(names), max_size=2), mode=st.integers(0, 2))
    def check(changes, drop, mode):
        body = {k: v for k, v in base.items() if k not in drop}
        body.update(changes)
        raw = encode(body, mode)
        assume(len(raw) < 1024 * 1024)
        reply = call("POST", "/" + route.template, body=raw, headers={"content-type": "application/json"})
        assert_answer_is_sound(reply, f"POST /{route.template} {body!r:.300}")

    check()


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: r.template)
def test_non_finite_and_overflowing_number_literals(call, route):
    """NaN, Infinity and numbers beyond float range, as raw JSON literals, in every field."""
    base = example_body(route.spec.body)
    for name in fields_of(route.spec.body):
        for literal in NON_FINITE_LITERALS:
            text = json.dumps({k: v for k, v in base.items() if k != name})
            raw = (text[:-1] + (", " if len(text) > 2 else "") + f'"{name}": {literal}}}').encode()
            reply = call("POST", "/" + route.template, body=raw, headers={"content-type": "application/json"})
            assert_answer_is_sound(reply, f"POST /{route.template} {name}={literal[:20]}")
            if literal in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+309"):
                assert reply.status in (400, 422), f"{name}={literal} accepted: {reply.status}"


@pytest.mark.parametrize("route", QUERY_ROUTES, ids=lambda r: r.template)
def test_hostile_query_strings(call, route):
    names = fields_of(route.spec.query)

    @settings(HYPO, max_examples=budget(route, 60))
    @given(params=st.dictionaries(st.sampled_from(names + ["x", ""]), hostile_text, max_size=4))
    def check(params):
        params = {k: v.encode("utf-8", "replace").decode("utf-8") for k, v in params.items()}
        reply = call(route.methods[0], "/" + route.template, params=params)
        assert_answer_is_sound(reply, f"{route.methods[0]} /{route.template} {params!r:.300}")

    check()


def test_very_long_lists_are_refused_quickly(call):
    import time

    for route in BODY_ROUTES:
        base = example_body(route.spec.body)
        for name in fields_of(route.spec.body):
            body = dict(base, **{name: ["wdi-SP.URB.TOTL"] * 50000})
            started = time.perf_counter()
            reply = call("POST", "/" + route.template, json_body=body)
            assert_answer_is_sound(reply, f"{route.template} {name}=[50000 codes]")
            assert time.perf_counter() - started < 5, f"{route.template} {name}: slow on a long list"

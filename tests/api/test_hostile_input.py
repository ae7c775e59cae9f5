"""Property-based tests (Hypothesis) of the two places hostile input enters the service.

The validation layer: every JSON-body and query route of the app, whatever blueprints
are registered, gets arbitrary JSON bodies, near-valid bodies with one or more fields
replaced by hostile values (huge numbers, NaN/Infinity literals, unicode and control
characters in codes, very long lists), and hostile query strings. It must never answer
5xx, every error must have FastAPI's shape, and every answer must be strict JSON.

The dataset loader (``shared.dataset.build_dataset``): files with NaN/Infinity spellings,
overflowing numbers, garbage cells, hostile codes or random bytes either load into a
dataset with only finite-or-missing values, or fail with a ``DatasetFormatError`` that
names the file; never another exception.
"""
from __future__ import annotations

import io
import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from shared.dataset import (COUNTRY_META, DATA_FILE, DATA_PARQUET, DATASET_META, INDICATOR_META, KNOWN_FILES,
                            MAX_ABS_VALUE, Dataset, DatasetFormatError, build_dataset)

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
                out.append(SimpleNamespace(template=route.template, methods=(spec.method,), spec=spec))
    return out


ROUTES = _routes()
BODY_ROUTES = [r for r in ROUTES if r.spec.body is not None]
QUERY_ROUTES = [r for r in ROUTES if r.spec.query is not None]
# Prediction endpoints train models: fewer examples there keeps the run short (each is still >= 25).
HEAVY = ("predict", "estimate", "cluster", "correlate", "impute")


def budget(route, n: int) -> int:
    return max(25, n // 3) if any(route.template.endswith(h) for h in HEAVY) else n


def _strict_json(raw: bytes) -> Any:
    def reject(name):
        raise AssertionError(f"response holds {name}, which is not JSON")
    return json.loads(raw, parse_constant=reject)


def assert_answer_is_sound(reply, what: str) -> None:
    import gzip

    assert reply.status < 500, f"{what} -> {reply.status}: {reply.body[:400]!r}"
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
CONTROL = "".join(chr(c) for c in range(0, 32)) + "\x7f\x85\u2028\u2029\u202e\ufeff\ufffe"
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(CONTROL + "wdi-.%/\\'\"<>{}$"), max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=("Cs", "Co", "Cn", "So", "Zs", "Mn")), max_size=20),
    st.sampled_from(["", " ", "wdi-", "../../etc/passwd", "%00", "\x00", "NaN", "Infinity", "null", "true",
                     "MANUAL\x00", "rfr ", " 2015", "２０１５", "2015.0", "1e3", "-1", "0x7e0", "9" * 400,
                     "key-wdi-EG.ELC.ACCS.ZS", "wdi-EG.ELC.ACCS.ZS" * 100, "FJI\u200b", "ＦＪＩ"]),
    st.text(min_size=1000, max_size=5000),
)
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


# --------------------------------------------------------------------------- dataset loader
YEARS = ["2000", "2001", "2002"]
COUNTRIES = ["FJI", "JAM", "USA", "FRA"]
INDICATORS = ["wdi-A", "wdi-B", "wdi-C"]


def _csv(rows: list[list[str]]) -> bytes:
    import csv

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


def valid_files(cells: dict[tuple[int, int, int], str] | None = None) -> dict[str, bytes]:
    cells = cells or {}
    data = [["Country Code", "Indicator Code", *YEARS]]
    for c, country in enumerate(COUNTRIES):
        for i, ind in enumerate(INDICATORS):
            data.append([country, ind, *[cells.get((c, i, y), str(1.5 * (c + 1) + i + y)) for y in range(len(YEARS))]])
    meta = [["Indicator Code", "Indicator", "Dimension", "Category", "Dataset"]] + [
        [ind, f"Indicator {ind}", "units", "Cat", "wdi"] for ind in INDICATORS]
    dsets = [["Dataset Code", "Dataset Name"], ["wdi", "World Development Indicators"]]
    cmeta = [["Country Code", "Country Name", "SIDS"]] + [[c, c.lower(), str(c in ("FJI", "JAM"))] for c in COUNTRIES]
    return {DATA_FILE: _csv(data), INDICATOR_META: _csv(meta), DATASET_META: _csv(dsets), COUNTRY_META: _csv(cmeta)}


def load_or_named_error(files: dict[str, bytes]) -> Dataset | DatasetFormatError:
    try:
        data = build_dataset(files, version="t", source="test")
    except DatasetFormatError as exc:
        assert exc.file in KNOWN_FILES, f"error names no dataset file: {exc}"
        assert str(exc).startswith(exc.file + ":"), str(exc)
        return exc
    assert isinstance(data, Dataset)
    assert data.values.shape == (len(data.years), len(data.countries), len(data.indicators))
    assert not np.isinf(data.values).any(), "an infinite value was loaded"
    assert list(data.years) == sorted(set(data.years)), f"years out of order or repeated: {data.years}"
    for codes in (data.countries, data.indicators):
        assert all(isinstance(c, str) and c.strip() == c and c for c in codes), f"blank or padded code in {list(codes)}"
    assert data.indicator_meta.index.equals(data.indicators)
    return data


NON_FINITE_SPELLINGS = ["NaN", "nan", "-nan", "inf", "-inf", "Infinity", "-Infinity", "INF", "1e400", "-1e999",
                        "1E+309"]
cell_values = st.one_of(
    st.sampled_from(NON_FINITE_SPELLINGS + ["", " ", "NA", "null", "None", "N/A", "..", "-", "1,5", "1.5.5",
                                            "0x10", "1_000", "١٢", "½", "1e-400", "-0", "+3", " 7 ", "\x00"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.text(max_size=12),
)


@HYPO
@given(cells=st.dictionaries(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)), cell_values,
                             max_size=12))
@example(cells={(0, 0, 0): "Infinity", (1, 1, 1): "-inf", (2, 2, 2): "NaN", (3, 0, 1): "1e400"})
@example(cells={(0, 0, 0): "abc"})
def test_data_cells_load_as_finite_or_missing_or_fail_naming_the_file(cells):
    outcome = load_or_named_error(valid_files(cells))
    if isinstance(outcome, DatasetFormatError):
        assert outcome.file == DATA_FILE
        return
    for (c, i, y), raw in cells.items():
        got = outcome.values[y, outcome.countries.get_loc(COUNTRIES[c]), outcome.indicators.get_loc(INDICATORS[i])]
        try:
            expected = float(raw.strip())
        except ValueError:
            expected = None
        usable = expected is not None and math.isfinite(expected) and abs(expected) <= MAX_ABS_VALUE
        if usable and raw.strip().lower() not in ("nan", "-nan"):
            assert got == pytest.approx(expected, rel=1e-12, abs=0), f"{raw!r} read as {got}"
        elif expected is not None:
            assert np.isnan(got), f"non-finite or out-of-bound {raw!r} loaded as {got}"


@HYPO
@given(which=st.sampled_from([DATA_FILE, INDICATOR_META, DATASET_META, COUNTRY_META]),
       junk=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "replace")),
                      st.sampled_from([b"", b"\n", b"\xef\xbb\xbf", b"a,b\n1", b'"unterminated', b"\x00" * 50,
                                       b"Country Code,Indicator Code\n", b"Country Code,Indicator Code,2000\n"])))
def test_a_garbage_file_fails_naming_that_file(which, junk):
    files = valid_files()
    files[which] = junk
    outcome = load_or_named_error(files)
    if isinstance(outcome, DatasetFormatError):
        assert outcome.file == which, f"{which} was replaced, error names {outcome.file}: {outcome}"


@HYPO
@given(which=st.sampled_from([DATA_FILE, INDICATOR_META, DATASET_META, COUNTRY_META]),
       row=st.integers(0, 3), col=st.integers(0, 4), value=st.one_of(hostile_text, st.sampled_from(YEARS)),
       duplicate=st.booleans(), drop_column=st.booleans())
@example(which=DATA_FILE, row=0, col=3, value=" 2000", duplicate=False, drop_column=False)  # same year twice
@example(which=DATA_FILE, row=0, col=2, value="2005", duplicate=False, drop_column=False)   # years out of order
@example(which=DATA_FILE, row=1, col=0, value=" ", duplicate=False, drop_column=False)      # blank country code
@example(which=INDICATOR_META, row=1, col=0, value="\t", duplicate=False, drop_column=False)
def test_hostile_codes_and_structure_in_any_file(which, row, col, value, duplicate, drop_column):
    import csv

    files = valid_files()
    rows = list(csv.reader(io.StringIO(files[which].decode())))
    r = min(row, len(rows) - 1)
    c = min(col, len(rows[r]) - 1)
    rows[r][c] = value
    if duplicate:
        rows.append(list(rows[r]))
    if drop_column:
        for line in rows:
            del line[min(col, len(line) - 1)]
    files[which] = _csv(rows)
    outcome = load_or_named_error(files)
    if isinstance(outcome, DatasetFormatError):
        assert outcome.file == which, f"{which} was changed, error names {outcome.file}: {outcome}"


@HYPO
@given(junk=st.binary(max_size=400))
def test_garbage_parquet_fails_naming_the_parquet_file(junk):
    files = valid_files()
    files[DATA_PARQUET] = junk
    outcome = load_or_named_error(files)
    assert isinstance(outcome, DatasetFormatError) and outcome.file == DATA_PARQUET


def test_parquet_with_non_finite_values_loads_them_as_missing():
    import pandas as pd

    frame = pd.DataFrame({"Country Code": ["FJI", "JAM"], "Indicator Code": ["wdi-A", "wdi-A"],
                          "2000": [float("inf"), 1.0], "2001": [float("nan"), -float("inf")]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    files = valid_files()
    files[DATA_PARQUET] = buffer.getvalue()
    data = load_or_named_error(files)
    assert isinstance(data, Dataset)
    assert data.year_frame(2000).at["JAM", "wdi-A"] == 1.0
    assert np.isnan(data.year_frame(2000).at["FJI", "wdi-A"])
    assert np.isnan(data.year_frame(2001).at["JAM", "wdi-A"])

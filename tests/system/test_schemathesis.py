"""Schemathesis against the live local host's /openapi.json: every operation, well over 1000 requests.

The Schemathesis engine runs as its own command-line tool (as a developer would run it)
against the local host, with two checks on every response: no 5xx
(``not_a_server_error``) and the body matches the schema documented for its status code
(``response_schema_conformance``). It runs its examples, coverage (boundary and invalid
values) and fuzzing phases, valid and invalid inputs alike; its HAR report is read back
to count the requests each operation received.

Prediction endpoints train models, so two things keep the run within a few minutes on two
cores: they get fewer fuzzing examples than the look-ups, and the copy of the schema the
run generates from caps the size knobs (``estimators`` at 20 trees, ``number_predictor``
at 5). The service's own bounds are unchanged; only generation is narrowed.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.slow

HEAVY = r"/(predict|estimate|cluster|correlate|impute)$"
CAPS = {"estimators": 20, "number_predictor": 5}  # generation only; see the module docstring
LIGHT_EXAMPLES = 100
HEAVY_EXAMPLES = 25
MIN_REQUESTS = 1000
CHECKS = "not_a_server_error,response_schema_conformance"

CONFIG = f"""
[generation]
max-examples = {LIGHT_EXAMPLES}
deterministic = true
database = "none"

[[operations]]
include-path-regex = "{HEAVY}"
generation = {{ max-examples = {HEAVY_EXAMPLES} }}
"""


def capped(document: dict) -> dict:
    """The OpenAPI document with the CPU-cost knobs capped, wherever they are declared."""
    doc = copy.deepcopy(document)

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in CAPS and isinstance(value, dict):
                    for option in [value, *value.get("anyOf", [])]:
                        if option.get("type") == "integer":
                            option["maximum"] = min(option.get("maximum", CAPS[key]), CAPS[key])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return doc


def operations_of(document: dict) -> dict[str, re.Pattern]:
    ops = {}
    for path, methods in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method in methods:
            if method in ("get", "post", "put", "patch", "delete"):
                ops[f"{method.upper()} {path}"] = pattern
    return ops


def requests_per_operation(har: dict, ops: dict[str, re.Pattern]) -> Counter:
    counts: Counter = Counter()
    for entry in har["log"]["entries"]:
        method = entry["request"]["method"].upper()
        path = urlsplit(entry["request"]["url"]).path
        for label, pattern in ops.items():
            if label.startswith(method + " ") and pattern.match(path):
                counts[label] += 1
                break
        else:
            counts[f"{method} (undocumented)"] += 1
    return counts


def test_capping_only_lowers_the_generation_bounds():
    doc = {"components": {"schemas": {"T": {"properties": {
        "estimators": {"type": "integer", "minimum": 1, "maximum": 500},
        "number_predictor": {"anyOf": [{"type": "integer", "maximum": 50}, {"type": "null"}]},
        "other": {"type": "integer", "maximum": 500}}}}}}
    props = capped(doc)["components"]["schemas"]["T"]["properties"]
    assert props["estimators"]["maximum"] == 20 and props["estimators"]["minimum"] == 1
    assert props["number_predictor"]["anyOf"][0]["maximum"] == 5
    assert props["other"]["maximum"] == 500
    assert doc["components"]["schemas"]["T"]["properties"]["estimators"]["maximum"] == 500  # original untouched


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, tmp_path):
    document = httpx.get(live_server + "/openapi.json", timeout=60).json()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(capped(document)))
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    junit, har = tmp_path / "junit.xml", tmp_path / "requests.har"
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run", str(spec),
           "--url", live_server, "--checks", CHECKS, "--phases", "examples,coverage,fuzzing",
           "--request-timeout", "120", "--no-color", "--report", "junit,har",
           "--report-junit-path", str(junit), "--report-har-path", str(har)]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    summary = run.stdout[-6000:]
    assert run.returncode == 0, f"schemathesis found problems:\n{summary}\n{run.stderr[-2000:]}"

    ops = operations_of(document)
    counts = requests_per_operation(json.loads(har.read_text()), ops)
    total = sum(counts.values())
    print(f"\nschemathesis: {total} requests over {len(ops)} operations")
    for label in sorted(ops):
        print(f"  {counts.get(label, 0):5d}  {label}")

    tested = {case.get("name") for case in ET.parse(junit).getroot().iter("testcase")}
    failed = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    assert not failed, failed
    missing = [label for label in ops if counts.get(label, 0) == 0]
    assert not missing, f"operations never called: {missing}\n{summary}"
    assert set(ops) <= tested, f"not in the report: {set(ops) - tested}"
    assert total >= MIN_REQUESTS, f"only {total} requests\n{summary}"

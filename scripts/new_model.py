#!/usr/bin/env python3
"""Scaffold a new model: its code, its blueprint and its tests, ready to run.

    python scripts/new_model.py NAME [--label "Human title"] [--description "One sentence"] [--root DIR]

writes

* ``models/NAME/__init__.py``  -- the model: plain functions over the dataset, no HTTP;
* ``blueprints/NAME.py``       -- request/response models, a look-up endpoint and the main endpoint;
* ``tests/api/test_NAME.py``   -- tests through real HttpRequests and of the plain functions.

The generated model works as generated (it summarises an indicator over the SIDS in
one year) and passes its generated tests; blueprints are discovered, so it shows up
in ``/``, ``/params``, ``/openapi.json`` and ``/docs`` with no other edit. Replace its
logic with yours: docs/adding-a-model.md walks through each part. Nothing is
overwritten: the command refuses a name whose files already exist.
"""
from __future__ import annotations

import argparse
import keyword
import re
import sys
from pathlib import Path
from string import Template

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
# Route segments the platform serves, and package names a model must not shadow.
RESERVED = frozenset({
    "api", "blueprints", "data", "datasets", "docs", "function_app", "health", "infra", "models", "openapi",
    "params", "platform", "scripts", "shared", "static", "tests", "test",
})


class ScaffoldError(ValueError):
    pass


def check_name(name: str, root: Path = PROJECT_ROOT) -> None:
    if not NAME_PATTERN.match(name):
        raise ScaffoldError(f"invalid model name {name!r}: use 2-40 lowercase letters, digits and underscores, "
                            "starting with a letter (it becomes a Python package and the route prefix)")
    if keyword.iskeyword(name) or name in RESERVED:
        raise ScaffoldError(f"model name {name!r} is reserved; choose another")
    existing = [str(p.relative_to(root)) for p in planned_paths(name, root).values() if p.exists()]
    if existing:
        raise ScaffoldError(f"model {name!r} already exists ({', '.join(existing)}); nothing was written")


def planned_paths(name: str, root: Path = PROJECT_ROOT) -> dict[str, Path]:
    return {
        "model": root / "models" / name / "__init__.py",
        "blueprint": root / "blueprints" / f"{name}.py",
        "tests": root / "tests" / "api" / f"test_{name}.py",
    }


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


# ---------------------------------------------------------------------------- templates
MODEL = Template('''\
"""$label: the model's code. Plain functions over the dataset, no HTTP.

Scaffolded by scripts/new_model.py as a working example: it summarises one indicator
over the Small Island Developing States in one year. Replace the logic with yours and
keep the shape: functions take a ``Dataset`` and plain values, return plain values,
and raise ``ModelInputError`` (the HTTP layer answers 422 with your message) for values the data cannot serve.
"""
from __future__ import annotations

from enum import Enum

import numpy as np

from shared.dataset import Dataset
from models.errors import ModelInputError


class ${Camel}Statistic(str, Enum):
    mean = "mean"
    median = "median"
    quantile = "quantile"


def indicators(data: Dataset) -> list[dict]:
    """Indicators some SIDS has a value for, with the first and last such year.

    It depends only on the dataset, so it is computed once per dataset version (``data.memo``).
    """
    def compute() -> list[dict]:
        sids = data.values[:, data.sids_mask, :]                 # year x SIDS x indicator
        has_value = ~np.all(np.isnan(sids), axis=1)              # year x indicator
        out = []
        for j, code in enumerate(data.indicators):
            years = [y for y, present in zip(data.years, has_value[:, j]) if present]
            if years:
                out.append({"code": str(code), "name": data.indicator_name(code),
                            "first_year": int(years[0]), "last_year": int(years[-1])})
        return out
    return data.memo(("$name", "indicators"), compute)


def summarise(data: Dataset, indicator: str, year: int,
              statistic: ${Camel}Statistic | str = ${Camel}Statistic.mean, quantile: float | None = None) -> dict:
    """A statistic of ``indicator`` over the SIDS that have a value in ``year``."""
    statistic = ${Camel}Statistic(statistic)
    if indicator not in data.indicators:
        raise ModelInputError(f"Unknown indicator {indicator!r}; GET /$name/indicators lists them.",
                               field="indicator")
    if not data.has_year(year):
        raise ModelInputError(f"No year {year} in the dataset; years run from {data.years[0]} to {data.years[-1]}.",
                               field="year")
    values = data.year_frame(year).loc[data.sids_mask, indicator].dropna().to_numpy()
    if values.size == 0:
        raise ModelInputError(f"No SIDS has a value for {indicator} in {year}.", field="year")
    if statistic is ${Camel}Statistic.mean:
        value = float(np.mean(values))
    elif statistic is ${Camel}Statistic.median:
        value = float(np.median(values))
    else:
        if quantile is None:
            raise ModelInputError("statistic quantile needs a quantile between 0 and 1", field="quantile")
        value = float(np.quantile(values, quantile))
    return {"value": value, "countries": int(values.size)}
''')

BLUEPRINT = Template('''\
"""$label (/$name): the model's HTTP endpoints. Scaffolded by scripts/new_model.py.

Blueprints are discovered (blueprints/__init__.py), so this file is all it takes for the
model to be served and to appear in /, /params, /openapi.json and /docs.
See docs/adding-a-model.md.
"""
from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from models import $name as model
from models.$name import ${Camel}Statistic
from shared.http import ApiBlueprint
from shared.store import get_dataset
from shared.validation import ApiModel, Lookup, RequiredIf

blueprint = ApiBlueprint(
    "$name", label=$label_repr,
    description=$description_repr)


# ---------------------------------------------------------------------------- look-up endpoint
class ${Camel}Indicator(ApiModel):
    code: str
    name: str
    first_year: int = Field(description="First year some SIDS has a value")
    last_year: int = Field(description="Last year some SIDS has a value")


@blueprint.get("indicators", response=list[${Camel}Indicator], errors=(503,))
def indicators() -> list[${Camel}Indicator]:
    """Indicators with SIDS data (the values of `indicator`)."""
    return [${Camel}Indicator(**i) for i in model.indicators(get_dataset())]


# ---------------------------------------------------------------------------- main endpoint
class ${Camel}Request(ApiModel):
    # Lookup: the endpoint listing the field's values (shown in /params as req_endpoint, in OpenAPI as x-lookup).
    indicator: Annotated[str, Lookup("/$name/indicators")] = Field(
        ..., title="Indicator", description="Indicator code", min_length=1, max_length=200)
    year: int = Field(..., title="Year", description="Year of the values", ge=1900, le=2100)
    statistic: ${Camel}Statistic = Field(${Camel}Statistic.mean, title="Statistic",
                                         description="What to compute over the SIDS")
    # RequiredIf: required only when another field has one of the given values.
    quantile: Annotated[Optional[float], RequiredIf("statistic", ${Camel}Statistic.quantile.value)] = Field(
        None, title="Quantile", description="Required when statistic is quantile", ge=0, le=1)


class ${Camel}Response(ApiModel):
    indicator: str
    indicator_name: str
    year: int
    statistic: ${Camel}Statistic
    value: float
    countries: int = Field(description="SIDS with a value that year")


@blueprint.post("run", body=${Camel}Request, response=${Camel}Response, main=True, errors=(503,))
def run(req: ${Camel}Request) -> ${Camel}Response:
    """Summarise an indicator over the SIDS in one year (the model's main endpoint, described by /params)."""
    data = get_dataset()
    result = model.summarise(data, req.indicator, req.year, req.statistic, req.quantile)
    return ${Camel}Response(indicator=req.indicator, indicator_name=data.indicator_name(req.indicator), year=req.year,
                           statistic=req.statistic, **result)
''')

TESTS = Template('''\
"""Tests of the $name model (scaffolded by scripts/new_model.py): the plain functions, then the endpoints."""
import math

import pytest

from models import $name as model
from models.errors import ModelInputError


@pytest.fixture(scope="module")
def example(wdi):
    """An indicator and a year with SIDS data in the embedded dataset."""
    first = model.indicators(wdi)[0]
    return first["code"], first["last_year"]


def test_summarise(wdi, example):
    indicator, year = example
    mean = model.summarise(wdi, indicator, year)
    median = model.summarise(wdi, indicator, year, "median")
    assert mean["countries"] == median["countries"] >= 1
    assert model.summarise(wdi, indicator, year, "quantile", 0.5)["value"] == pytest.approx(median["value"])
    with pytest.raises(ModelInputError, match="Unknown indicator"):
        model.summarise(wdi, "no-such-indicator", year)


def test_main_endpoint(call):
    listed = call("GET", "/$name/indicators")
    assert listed.status == 200 and listed.json()
    choice = listed.json()[0]
    reply = call("POST", "/$name/run", {"indicator": choice["code"], "year": choice["last_year"]})
    assert reply.status == 200, reply.json()
    body = reply.json()
    assert body["statistic"] == "mean" and body["countries"] >= 1 and math.isfinite(body["value"])


def test_conditional_requirement(call, example):
    indicator, year = example
    reply = call("POST", "/$name/run", {"indicator": indicator, "year": year, "statistic": "quantile"})
    assert reply.status == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "quantile"]
    ok = call("POST", "/$name/run", {"indicator": indicator, "year": year, "statistic": "quantile", "quantile": 0.9})
    assert ok.status == 200


def test_unsupported_values_are_422(call, example):
    indicator, year = example
    assert call("POST", "/$name/run", {"indicator": "no-such-indicator", "year": year}).status == 422
    assert call("POST", "/$name/run", {"indicator": indicator, "year": 1901}).status == 422
    assert call("POST", "/$name/run", {"year": year}).json()["detail"][0]["loc"] == ["body", "indicator"]


def test_listed_in_params_and_openapi(call):
    entry = next(m for m in call("GET", "/params").json() if m["model"] == "$name")
    assert entry["endpoint"] == "/$name/run" and entry["label"] == $label_repr
    inputs = {i["parameter"]: i for i in entry["inputs"]}
    assert inputs["indicator"]["req_endpoint"]["path"] == "/$name/indicators"
    assert inputs["quantile"]["conditions"] == {"required": {"statistic": ["quantile"]}}
    paths = call("GET", "/openapi.json").json()["paths"]
    assert paths["/$name/run"]["post"]["x-main-endpoint"] is True
    assert "/$name/indicators" in paths
''')


def render(name: str, label: str | None = None, description: str | None = None) -> dict[str, str]:
    """The generated files' contents, keyed like :func:`planned_paths`."""
    label = " ".join((label or name.replace("_", " ").capitalize()).split())
    description = " ".join((description or f"{label}: summarises an indicator over the SIDS in one year "
                                           "(scaffolded example).").split())
    docstring_label = label.replace("\\", "/").replace('"', "'")   # safe inside the generated docstrings
    values = {"name": name, "Camel": camel(name), "label": docstring_label,
              "label_repr": repr(label), "description_repr": repr(description)}
    return {"model": MODEL.substitute(values), "blueprint": BLUEPRINT.substitute(values),
            "tests": TESTS.substitute(values)}


def scaffold(name: str, label: str | None = None, description: str | None = None,
             root: Path = PROJECT_ROOT) -> list[Path]:
    """Write the new model's files under ``root``; returns their paths. Refuses to overwrite anything."""
    root = Path(root).resolve()
    check_name(name, root)
    for folder in ("models", "blueprints", "tests"):
        if not (root / folder).is_dir():
            raise ScaffoldError(f"{root} does not look like the project: no {folder}/ folder")
    paths = planned_paths(name, root)
    contents = render(name, label, description)
    for source in contents.values():
        compile(source, "<generated>", "exec")
    written = []
    for key, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:    # "x": never overwrite
            handle.write(contents[key])
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="model name: lowercase package name and route prefix, e.g. gapfill")
    parser.add_argument("--label", help="human title shown in /params and /docs (default: from the name)")
    parser.add_argument("--description", help="one sentence describing the model")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.name, args.label, args.description, args.root)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"created {path.relative_to(args.root.resolve())}")
    print(f"\nNext: python -m pytest tests/api/test_{args.name}.py, then make run and open /docs "
          f"(the model is served under /{args.name}). Guide: docs/adding-a-model.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

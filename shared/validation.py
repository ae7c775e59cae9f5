"""Request models and the FastAPI-compatible way their errors are reported.

A request model subclasses :class:`ApiModel`. Two kinds of field metadata are
declared once, on the field, and used everywhere (validation, OpenAPI, /params):

* :class:`RequiredIf` -- the field becomes required when another field has one of
  the given values (``manual_predictors`` when ``scheme`` is ``MANUAL``);
* :class:`Lookup` -- the look-up endpoint that lists the field's allowed values.
"""
from __future__ import annotations

import enum
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class RequiredIf:
    """The field is required when ``field`` takes one of ``values``."""

    field: str
    values: tuple[Any, ...]

    def __init__(self, field: str, *values: Any):
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "values", tuple(values))

    def applies(self, model: BaseModel) -> bool:
        current = getattr(model, self.field, None)
        current = getattr(current, "value", current)
        return current in self.values

    def describe(self) -> str:
        shown = " or ".join(str(v) for v in self.values)
        return f"{self.field} is {shown}"


@dataclass(frozen=True)
class Lookup:
    """The endpoint a client calls to list a field's allowed values."""

    path: str
    method: str = "GET"
    inputs: tuple[str, ...] = field(default_factory=tuple)


def field_metadata(info: FieldInfo, kind: type) -> list:
    return [m for m in info.metadata if isinstance(m, kind)]


class ConditionalRequirementError(ValueError):
    pass


class ApiModel(BaseModel):
    """Base for request and response models.

    Unknown fields are ignored, as FastAPI did, so older and newer clients keep working.
    """

    model_config = ConfigDict(extra="ignore", use_enum_values=False)

    @classmethod
    def conditional_requirements(cls) -> dict[str, list[RequiredIf]]:
        found: dict[str, list[RequiredIf]] = {}
        for name, info in cls.model_fields.items():
            rules = field_metadata(info, RequiredIf)
            if rules:
                found[name] = rules
        return found

    @model_validator(mode="after")
    def _enforce_conditional_requirements(self):
        for name, rules in self.conditional_requirements().items():
            for rule in rules:
                if rule.applies(self) and getattr(self, name) is None:
                    raise ConditionalRequirementError(f"{name}: Field required when {rule.describe()}")
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler(core_schema)
        schema = handler.resolve_ref_schema(schema)
        conditions = []
        for name, rules in cls.conditional_requirements().items():
            for rule in rules:
                values = [getattr(v, "value", v) for v in rule.values]
                conditions.append({
                    "if": {"properties": {rule.field: {"enum": values}}, "required": [rule.field]},
                    "then": {"required": [name]},
                })
        if conditions:
            schema["allOf"] = conditions
        for name, info in cls.model_fields.items():
            lookups = field_metadata(info, Lookup)
            prop = schema.get("properties", {}).get(name)
            if lookups and prop is not None:
                lk = lookups[0]
                prop["x-lookup"] = {"path": lk.path, "method": lk.method, "inputs": list(lk.inputs)}
        return schema


class JsonBodyError(Exception):
    def __init__(self, msg: str, position: int | None = None):
        super().__init__(msg)
        self.msg = msg
        self.position = position


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def load_json(raw: bytes) -> Any:
    """Parse a request body strictly: no NaN/Infinity, no numbers too large to represent."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonBodyError("JSON decode error: body is not UTF-8")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"JSON decode error: {exc.msg}", exc.pos)
    except (ValueError, RecursionError) as exc:
        raise JsonBodyError(f"JSON decode error: {exc}")
    return value


def _error_entry(error: dict, location: str) -> dict:
    loc = [location, *error.get("loc", ())]
    msg = error.get("msg", "invalid value")
    err_type = error.get("type", "value_error")
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, ConditionalRequirementError):
        name, _, text = str(ctx_error).partition(": ")
        return {"loc": [location, name], "msg": text, "type": "missing"}
    entry = {"loc": loc, "msg": msg, "type": err_type}
    if "input" in error and location == "query":
        entry["input"] = error["input"]
    return entry


def validation_detail(exc: ValidationError, location: str) -> list[dict]:
    """Turn a pydantic error into FastAPI's ``detail`` list (loc starts with body/query)."""
    return [_error_entry(e, location) for e in exc.errors(include_url=False)]


def json_error_detail(exc: JsonBodyError) -> list[dict]:
    loc: list[Any] = ["body"] if exc.position is None else ["body", exc.position]
    return [{"loc": loc, "msg": exc.msg, "type": "json_invalid"}]


def enum_values(annotation: Any) -> list[Any] | None:
    """The allowed values of an Enum or Literal annotation (unwrapping Optional)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return enum_values(args[0])
        return None
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [m.value for m in annotation]
    return None


"""One module per model; each defines ``blueprint``, an :class:`shared.http.ApiBlueprint`.

Modules are discovered, so adding a model needs no edit here or in function_app.py.
With ``SERVICE_MODEL`` set, only that model's blueprint is returned.
"""
from __future__ import annotations

import importlib
import pkgutil

from shared.http import ApiBlueprint


def model_blueprints(service_model: str | None = None) -> list[ApiBlueprint]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        blueprint = getattr(module, "blueprint", None)
        if isinstance(blueprint, ApiBlueprint):
            found.append(blueprint)
    if service_model:
        wanted = service_model.lower()
        selected = [b for b in found if wanted in (b.name.lower(), b.prefix.lower())]
        if not selected:
            names = ", ".join(b.name for b in found)
            raise ValueError(f"SERVICE_MODEL={service_model!r} names no model; known models: {names}")
        return selected
    return found

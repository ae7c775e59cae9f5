"""Serve the Functions app locally on a real HTTP server, without Azure Functions Core Tools (``make run``).

    python -m local_host [--port 7071] [--workers 1]

A runner, not part of the app: it loads ``local.settings.json`` into the environment first, as
``func start`` does (variables already set win), imports ``function_app.app`` as the Functions
worker does and serves it with uvicorn through :class:`local_host.asgi_server.FunctionAppServer`
(routed by the Functions host's rules; ``host_limits`` is what it adds to bound its load). Neither the
serverless package nor the container image carries this package (.funcignore, .dockerignore): there the
Functions host serves the app.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from local_host.asgi_server import FunctionAppServer

ROOT = Path(__file__).resolve().parent.parent


def load_local_settings(path: Path = ROOT / "local.settings.json") -> dict[str, str]:
    """Copy local.settings.json's Values into os.environ without overriding what is already set."""
    if not path.exists():
        return {}
    values = json.loads(path.read_text()).get("Values", {})
    applied = {}
    for key, value in values.items():
        if key not in os.environ:
            os.environ[key] = str(value)
            applied[key] = str(value)
    return applied


def create_server() -> FunctionAppServer:
    """ASGI factory (one call per worker process): import the Functions app exactly as the worker would and wrap it."""
    load_local_settings()
    import function_app

    return FunctionAppServer(function_app.app, host_json=json.loads((ROOT / "host.json").read_text()))
